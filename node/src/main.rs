//! The `hubwire-node` binary: runs a node, or prints a development token.

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
    }
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
