//! The `hubwire-node` binary: runs a node, prints a development token, or
//! probes a running node's `/healthz` or `/readyz` (the image's HEALTHCHECK:
//! it has no shell and no HTTP client).

use std::net::TcpListener;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use hubwire_node::core::auth::{Authenticator, Claims};
use hubwire_node::core::config::Config;
use hubwire_node::core::logging::{self, LogFormat};

/// A SignalR-compatible hub server node. Configuration comes from the file
/// given with --config (TOML) and from HUBWIRE_* environment variables; see
/// docs/configuration.md for every field and its default.
#[derive(Parser)]
#[command(name = "hubwire-node", version)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "HUBWIRE_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node (the default).
    Serve,
    /// Print a development token signed with the configured HS256 secret.
    Token {
        /// The user id (`sub`).
        #[arg(long)]
        user: String,
        /// Display name (`name`).
        #[arg(long)]
        name: Option<String>,
        /// Tenant (`tenant`).
        #[arg(long)]
        tenant: Option<String>,
        /// Roles (`roles`), repeatable.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Channel patterns (`channels`), repeatable.
        #[arg(long = "channel")]
        channels: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// GET a path of the node at the configured listen address (0.0.0.0 is
    /// asked on 127.0.0.1); exit status 0 for a 200, 1 otherwise.
    Probe {
        /// The path, e.g. /healthz (alive) or /readyz (ready).
        #[arg(default_value = "/readyz")]
        path: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Token {
            user,
            name,
            tenant,
            roles,
            channels,
            ttl,
        } => {
            let auth = Authenticator::from_config(&config)?;
            let mut claims = Claims::new(&user, ttl).with_roles(roles).with_channels(channels);
            claims.name = name;
            claims.tenant = tenant;
            println!("{}", auth.issue(&claims)?);
            Ok(())
        }
        Command::Serve => serve(config),
        Command::Probe { path } => probe(&config.listen, &path),
    }
}

/// One HTTP/1.1 GET with a short timeout; Ok only for a 200.
fn probe(listen: &str, path: &str) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;
    let mut address: SocketAddr = listen.parse().with_context(|| format!("listen address {listen}"))?;
    if address.ip().is_unspecified() {
        address.set_ip(if address.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let timeout = Duration::from_secs(3);
    let mut stream =
        TcpStream::connect_timeout(&address, timeout).with_context(|| format!("cannot connect to {address}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    let status_line = String::from_utf8_lossy(&head[..n]);
    let status = status_line.split_whitespace().nth(1).unwrap_or("none");
    anyhow::ensure!(status == "200", "{path} on {address} answered {status}");
    Ok(())
}

fn serve(mut config: Config) -> anyhow::Result<()> {
    // The id is settled here so that every log line can carry it.
    let node = config
        .node_id
        .get_or_insert_with(hubwire_node::core::negotiations::random_id)
        .clone();
    logging::init(LogFormat::resolve(&config.log_format)?, &node);
    let listener = TcpListener::bind(&config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    actix_web::rt::System::new().block_on(async move {
        let state = hubwire_node::build(config).await?;
        println!("hubwire-node listening on http://{address}");
        tracing::info!(%address, node = %state.node.id(), "listening");
        hubwire_node::web::http::run(listener, state, shutdown_signal()).await?;
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
