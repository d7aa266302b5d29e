//! Real `hubwire-node` processes for integration tests.
//!
//! [`NodeProcess`] starts the binary with the environment a test gives it
//! (listening on a free port chosen by the node itself), waits for the line the
//! node prints once bound, keeps its output, and kills it on drop — printing
//! that output first when the test is failing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a node may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One `hubwire-node` process.
pub struct NodeProcess {
    binary: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
    address: String,
    output: Arc<Mutex<Vec<String>>>,
    name: String,
}

impl NodeProcess {
    /// Starts `binary` with `env` (on top of a cleared `HUBWIRE_*` environment
    /// and `HUBWIRE_DIAGNOSTICS_HUB=true`) and `HUBWIRE_LISTEN=127.0.0.1:0`.
    /// Panics with its output if it does not come up.
    pub fn start(name: &str, binary: &Path, env: &[(&str, &str)]) -> Self {
        let mut node = Self {
            binary: binary.to_owned(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            child: None,
            address: String::new(),
            output: Arc::default(),
            name: name.to_owned(),
        };
        node.spawn("127.0.0.1:0");
        node
    }

    fn spawn(&mut self, listen: &str) {
        let mut command = Command::new(&self.binary);
        for (key, _) in std::env::vars() {
            if key.starts_with("HUBWIRE_") {
                command.env_remove(key);
            }
        }
        command
            .env("HUBWIRE_LISTEN", listen)
            // Off by default in the node; integration tests drive it (a test's
            // own `env` may still turn it off).
            .env("HUBWIRE_DIAGNOSTICS_HUB", "true")
            // Its SQLite store and development secret in a directory of its
            // own, not the test's working directory (a test's `env` may
            // name another).
            .env(
                "HUBWIRE_DATA_DIR",
                std::env::temp_dir().join(format!("hubwire-test-{}-{}", std::process::id(), self.name)),
            )
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => panic!("cannot run {}: {e}", self.binary.display()),
        };
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        if let Some(stdout) = child.stdout.take() {
            let output = self.output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(address) = line.strip_prefix("hubwire-node listening on http://") {
                        // The receiver is gone once the start timed out.
                        let _ = tx.send(address.to_owned());
                    }
                    output.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        if let Some(stderr) = child.stderr.take() {
            let output = self.output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    output.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        self.child = Some(child);
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(address) => self.address = address,
            Err(_) => panic!("{} did not start; output:\n{}", self.name, self.output()),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An exited process cannot be killed; it is gone either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is still running: started, not killed by
    /// [`NodeProcess::kill`], and not exited on its own.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Starts the process again on the same address.
    pub fn restart(&mut self) {
        self.kill();
        let listen = self.address.clone();
        let deadline = Instant::now() + START_TIMEOUT;
        // The old socket may linger briefly; SO_REUSEADDR makes this quick.
        while std::net::TcpListener::bind(&listen).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.spawn(&listen);
    }

    /// Everything the node printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- {} output ---\n{}", self.name, self.output());
        }
    }
}
