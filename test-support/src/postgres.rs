//! A real PostgreSQL server for integration tests: `initdb` into a temporary
//! directory, `pg_ctl start` on a free port with trust authentication.
//!
//! PostgreSQL refuses to run as root; when the tests run as root, every
//! PostgreSQL binary runs as the `postgres` user (or `nobody`) through
//! `runuser`, and the directory is handed to that user.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::{free_port, unique_prefix};

/// One PostgreSQL server (a cluster of its own, in its own directory).
pub struct PostgresServer {
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    user: Option<String>,
    running: bool,
}

impl PostgresServer {
    /// Creates a cluster and starts it on a free port. Panics (with the
    /// server's log) if it does not come up.
    pub fn start() -> Self {
        let bin = bin_dir();
        let user = run_as();
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port(false);
            let dir = std::env::temp_dir().join(unique_prefix(&format!("pg-{port}")));
            if let Err(e) = std::fs::create_dir_all(&dir) {
                panic!("cannot create {}: {e}", dir.display());
            }
            let mut server = Self {
                port,
                dir,
                bin: bin.clone(),
                user: user.clone(),
                running: false,
            };
            server.chown();
            let data = server.data_dir();
            let init = server.run(
                "initdb",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-U".as_ref(),
                    "postgres".as_ref(),
                    "--auth=trust".as_ref(),
                    "--no-sync".as_ref(),
                    "-E".as_ref(),
                    "UTF8".as_ref(),
                ],
            );
            if !init.status.success() {
                panic!(
                    "initdb failed:\n{}\n{}",
                    String::from_utf8_lossy(&init.stdout),
                    String::from_utf8_lossy(&init.stderr)
                );
            }
            if server.spawn() {
                return server;
            }
            last_log = server.log();
        }
        panic!("postgres did not start; last log:\n{last_log}");
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// Runs one PostgreSQL binary (as the non-root user when root).
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Output {
        let program = self.bin.join(program);
        let mut command = match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        command.args(args).stdin(Stdio::null());
        match command.output() {
            Ok(output) => output,
            Err(e) => panic!("cannot run {} (is PostgreSQL installed?): {e}", program.display()),
        }
    }

    /// Gives the directory to the user PostgreSQL runs as.
    fn chown(&self) {
        if let Some(user) = &self.user {
            let status = Command::new("chown").arg("-R").arg(user).arg(&self.dir).status();
            if !status.is_ok_and(|s| s.success()) {
                panic!("cannot chown {} to {user}", self.dir.display());
            }
        }
    }

    /// `pg_ctl start -w`; `false` if the server did not come up.
    fn spawn(&mut self) -> bool {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let data = self.data_dir();
        let log = self.log_file();
        let out = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "30".as_ref(),
                "start".as_ref(),
            ],
        );
        self.running = out.status.success();
        if !self.running {
            self.stop(); // it may have half-started
        }
        self.running
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`, as a crash
    /// would) and waits until it is gone. Its data stays.
    pub fn stop(&mut self) {
        let data = self.data_dir();
        // Stopping a server that is not running fails; then it is gone already.
        let _ = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
        self.running = false;
    }

    /// Starts the stopped server again on the same port, with its data.
    /// Panics with the log if it does not come up.
    pub fn start_again(&mut self) {
        self.stop();
        if !self.spawn() {
            panic!("postgres did not restart on port {}; log:\n{}", self.port, self.log());
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- postgres log (port {}) ---\n{}", self.port, self.log());
        }
        // Leftovers in the temp directory are harmless.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with an `initdb`, else the
/// directory of `initdb` on the `PATH` (an empty path: run by name).
fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_default()
}

/// The user to run PostgreSQL as when we are root (`initdb` refuses root).
fn run_as() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return None;
    }
    let has_postgres = Command::new("id")
        .arg("postgres")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    Some(if has_postgres { "postgres" } else { "nobody" }.to_owned())
}
