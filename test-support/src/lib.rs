//! Real `redis-server` processes for integration tests.
//!
//! - [`RedisServer`]: one server on a free port, no persistence, its own
//!   temporary directory and log file; can be stopped and started again on the
//!   same port.
//! - [`RedisCluster`]: several servers with `--cluster-enabled yes`, joined by
//!   `redis-cli --cluster create` into one cluster of masters.
//! - [`postgres::PostgresServer`]: a PostgreSQL cluster of its own (`initdb`
//!   in a temporary directory) on a free port, trust authentication; can be
//!   stopped and started again on the same port with its data.
//! - [`unique_prefix`]: a key prefix no other test uses.
//! - [`node::NodeProcess`]: a real `hubwire-node` process.
//! - [`http::request`]: a minimal HTTP/1.1 client.
//!
//! # Invariants
//! - Every process started here is killed when its owner is dropped, and its
//!   directory removed; when the dropping thread is panicking (a failed test),
//!   the server's log is printed first.
//! - Nothing binds a fixed port: ports are picked free, and a server that
//!   loses the race for its port is started again on another.

pub mod http;
pub mod node;
pub mod postgres;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a server may take to answer its first `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A key prefix unique to this test run and call.
pub fn unique_prefix(test: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("t-{test}-{}-{nanos:x}-{n}", std::process::id())
}

/// One `redis-server` process.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a standalone server on a free port. Panics (with the server's
    /// log) if it does not come up.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let cluster = !extra.is_empty();
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port(cluster);
            let dir = std::env::temp_dir().join(unique_prefix(&format!("redis-{port}")));
            if let Err(e) = std::fs::create_dir_all(&dir) {
                panic!("cannot create {}: {e}", dir.display());
            }
            let mut server = Self {
                port,
                dir,
                extra: extra.clone(),
                child: None,
            };
            if server.spawn() {
                return server;
            }
            last_log = server.log();
        }
        panic!("redis-server did not start; last log:\n{last_log}");
    }

    /// Spawns the process and waits for `PING`; `false` if it did not answer.
    fn spawn(&mut self) -> bool {
        let log = self.dir.join("redis.log");
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) => panic!("cannot run redis-server (is it installed?): {e}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if ping(self.port) {
                return true;
            }
            if let Some(child) = &mut self.child {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break; // it exited: the port was taken, or bad arguments
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        false
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Killing an exited process fails; then it is gone already.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the stopped server again on the same port, empty (no
    /// persistence). Panics with the log if it does not come up.
    pub fn start_again(&mut self) {
        self.stop();
        if !self.spawn() {
            panic!(
                "redis-server did not restart on port {}; log:\n{}",
                self.port,
                self.log()
            );
        }
    }

    /// Stops and starts the server.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- redis-server log (port {}) ---\n{}", self.port, self.log());
        }
        // Leftovers in the temp directory are harmless.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of masters only, every one its own process.
pub struct RedisCluster {
    servers: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` (at least 3) servers and joins them into a cluster,
    /// waiting until every node reports `cluster_state:ok`.
    pub fn start(masters: usize) -> Self {
        let servers: Vec<RedisServer> = (0..masters)
            .map(|_| RedisServer::start_with(&["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"]))
            .collect();
        let cluster = Self { servers };
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        create.args(cluster.servers.iter().map(|s| format!("127.0.0.1:{}", s.port())));
        create.args(["--cluster-replicas", "0", "--cluster-yes"]);
        let output = match create.output() {
            Ok(output) => output,
            Err(e) => panic!("cannot run redis-cli: {e}"),
        };
        if !output.status.success() {
            panic!(
                "redis-cli --cluster create failed:\n{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let deadline = Instant::now() + START_TIMEOUT;
        while !cluster.servers.iter().all(|s| cluster_ok(s.port())) {
            if Instant::now() > deadline {
                panic!("the cluster did not reach cluster_state:ok");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// A seed URL (the first master).
    pub fn url(&self) -> String {
        self.servers[0].url()
    }

    /// The servers.
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }
}

/// A port that is free now (and, for cluster nodes, whose bus port +10000 is).
fn free_port(cluster: bool) -> u16 {
    loop {
        let port = match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(addr) => addr.port(),
            Err(e) => panic!("cannot find a free port: {e}"),
        };
        if !cluster {
            return port;
        }
        let bus = port.checked_add(10_000);
        if bus.is_some_and(|bus| TcpListener::bind(("127.0.0.1", bus)).is_ok()) {
            return port;
        }
    }
}

/// Sends one inline command and returns what came back first.
fn ask(port: u16, command: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn ping(port: u16) -> bool {
    ask(port, "PING").is_some_and(|reply| reply.starts_with("+PONG"))
}

fn cluster_ok(port: u16) -> bool {
    ask(port, "CLUSTER INFO").is_some_and(|reply| reply.contains("cluster_state:ok"))
}
