//! `raw_ws_server`: the protocol-less WebSocket broadcast server of the
//! benchmarks ([`hubwire_loadtest::raw_server`]), on one node.
//!
//! ```sh
//! raw_ws_server [--listen 127.0.0.1:18300]
//! ```
//!
//! Prints one line starting with `ready` once it accepts connections;
//! SIGTERM or Ctrl-C stops it.

use clap::Parser;
use tokio::net::TcpSocket;
use tokio::signal::unix::{signal, SignalKind};

/// Handshakes waiting to be accepted (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: u32 = 1024;

#[derive(Parser)]
#[command(
    name = "raw_ws_server",
    about = "Minimal WebSocket group broadcast server (the benchmarks' limit)"
)]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "RAW_WS_LISTEN", default_value = "127.0.0.1:18300")]
    listen: std::net::SocketAddr,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let socket = if cli.listen.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(cli.listen)?;
        // The default backlog (128) overflows under a burst of handshakes, and a
        // dropped SYN costs its client a one-second retransmission.
        let listener = socket.listen(BACKLOG)?;
        let mut terminate = signal(SignalKind::terminate())?;
        println!(
            "ready: raw_ws_server {} (pid {})",
            listener.local_addr()?,
            std::process::id()
        );
        let shutdown = async move {
            tokio::select! {
                _ = terminate.recv() => {}
                // If Ctrl-C cannot be listened for, the branch is off and SIGTERM still works.
                Ok(()) = tokio::signal::ctrl_c() => {}
            }
        };
        hubwire_loadtest::raw_server::run(listener, shutdown).await;
        Ok(())
    })
}
