//! What every scenario shares: where to connect, and how to open many clients.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use hubwire_protocol::Protocol;
use tokio::sync::Semaphore;

use crate::client::ConnectOptions;
use crate::peer::{Peer, ServerKind};

/// Options of every scenario.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// The server behind the URLs: hubwire, socketio (bench/socketio) or raw (raw_ws_server).
    #[arg(long, value_enum, default_value_t = ServerKind::Hubwire)]
    pub server: ServerKind,
    /// Node base URLs, comma-separated; clients are spread over them round-robin.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    pub url: Vec<String>,
    /// Hub to connect to (the `diagnostics` hub has the methods scenarios use; hubwire only).
    #[arg(long, default_value = "diagnostics")]
    pub hub: String,
    /// Access token for every client (omit for a hub in HUBWIRE_ANONYMOUS_HUBS).
    #[arg(long)]
    pub token: Option<String>,
    /// The node's HS256 secret (`HUBWIRE_JWT_SECRET`): each client gets its
    /// own token, for user `lt-{i}` (scenarios with users, e.g. `chat-hub`).
    #[arg(long)]
    pub token_secret: Option<String>,
    /// A `tenant` claim in every client's own token (with `--token-secret`).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Hub protocol: json or messagepack (hubwire only).
    #[arg(long, default_value = "json", value_parser = parse_protocol)]
    pub protocol: Protocol,
    /// Local source addresses to spread connections over (e.g. 127.0.0.2,127.0.0.3).
    #[arg(long, value_delimiter = ',')]
    pub sources: Vec<IpAddr>,
    /// Connections opened at the same time.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Pids of the server processes (nodes, Redis) whose CPU time the report
    /// gives for the measured phase, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub cpu_pids: Vec<u32>,
    /// Write the machine-readable report here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

fn parse_protocol(name: &str) -> Result<Protocol, String> {
    Protocol::from_name(name).ok_or_else(|| format!("unknown protocol {name}"))
}

impl Common {
    /// Refuses options the chosen server cannot honour.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.server != ServerKind::Hubwire && self.protocol != Protocol::Json {
            anyhow::bail!("--protocol applies to hubwire only; {} has its own", self.server.name());
        }
        if self.url.is_empty() {
            anyhow::bail!("--url needs at least one URL");
        }
        Ok(())
    }

    /// The wire protocol, for reports: the hub protocol on hubwire, else the server's own.
    pub fn protocol_name(&self) -> &'static str {
        match self.server {
            ServerKind::Hubwire => self.protocol.name(),
            ServerKind::Socketio => "socket.io-v5",
            ServerKind::Raw => "text",
        }
    }

    /// These options as command-line arguments, for the `k`-th of `n` worker
    /// processes: the same servers, every `n`-th source address, and a share
    /// of the connect concurrency. No report file: the parent writes it.
    pub fn worker_args(&self, k: usize, n: usize) -> Vec<String> {
        let mut args = vec![
            format!("--server={}", self.server.name()),
            format!("--url={}", self.url.join(",")),
            format!("--hub={}", self.hub),
            format!("--protocol={}", self.protocol.name()),
            format!("--connect-concurrency={}", self.connect_concurrency.div_ceil(n).max(1)),
        ];
        if let Some(token) = &self.token {
            args.push(format!("--token={token}"));
        }
        if let Some(secret) = &self.token_secret {
            args.push(format!("--token-secret={secret}"));
        }
        if let Some(tenant) = &self.tenant {
            args.push(format!("--tenant={tenant}"));
        }
        let sources: Vec<String> = if self.sources.len() >= n {
            self.sources.iter().skip(k).step_by(n).map(IpAddr::to_string).collect()
        } else {
            self.sources.iter().map(IpAddr::to_string).collect()
        };
        if !sources.is_empty() {
            args.push(format!("--sources={}", sources.join(",")));
        }
        args
    }

    /// Options for the `i`-th client.
    pub fn options(&self, i: usize) -> ConnectOptions {
        ConnectOptions {
            base_url: self.url[i % self.url.len()].clone(),
            hub: self.hub.clone(),
            token: match &self.token_secret {
                Some(secret) => crate::rest::user_token(secret, &user_of(i), self.tenant.as_deref()).ok(),
                None => self.token.clone(),
            },
            protocol: self.protocol,
            source: (!self.sources.is_empty()).then(|| self.sources[i % self.sources.len()]),
        }
    }
}

/// The user of the `i`-th client when each has its own token.
pub fn user_of(i: usize) -> String {
    format!("lt-{i}")
}

/// How opening the clients went.
pub struct Opened {
    /// The clients, in index order (failed ones left out).
    pub clients: Vec<(usize, Peer)>,
    /// Connections that failed.
    pub failed: u64,
    /// Seconds it took.
    pub seconds: f64,
}

/// Opens `count` clients, `connect_concurrency` at a time, with a progress line.
pub async fn open_clients(common: &Common, count: usize, label: &str) -> Opened {
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(common.connect_concurrency.max(1)));
    let failed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let (gate, failed, done, options) = (gate.clone(), failed.clone(), done.clone(), common.options(i));
        let server = common.server;
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.ok()?;
            let result = Peer::connect(server, &options).await;
            done.fetch_add(1, Ordering::Relaxed);
            match result {
                Ok(client) => Some((i, client)),
                Err(e) => {
                    if failed.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("[{}] connect {i} failed: {e}", server.name());
                    }
                    None
                }
            }
        }));
    }
    let progress = {
        let (done, label) = (done.clone(), label.to_owned());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                eprintln!("[{label}] connected {}/{count}", done.load(Ordering::Relaxed));
            }
        })
    };
    let mut clients = Vec::with_capacity(count);
    for task in tasks {
        if let Ok(Some(client)) = task.await {
            clients.push(client);
        }
    }
    progress.abort();
    Opened {
        clients,
        failed: failed.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Writes the report as JSON if asked, and prints it for people.
pub fn emit(common: &Common, report: &impl serde::Serialize, summary: &str) -> anyhow::Result<()> {
    if let Some(path) = &common.json {
        std::fs::write(path, serde_json::to_vec_pretty(report)?)?;
    }
    println!("{summary}");
    Ok(())
}
