//! `loadtest`: load scenarios against one hubwire node or a cluster.
//!
//! Every scenario is bounded in time and count, prints progress on stderr and
//! a summary on stdout, and writes a JSON report with `--json FILE`. Targets
//! must be loopback addresses on shared machines.

use clap::{Parser, Subcommand};
use hubwire_loadtest::common::Common;
use hubwire_loadtest::scenario::{broadcast, chat, chat_hub, echo, idle, notify};

#[derive(Parser)]
#[command(
    name = "loadtest",
    version,
    about = "Load scenarios against hubwire (SignalR over WebSockets), or the same against Socket.IO or a protocol-less server"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Receivers in groups, publishers sending to the groups at a fixed rate.
    Broadcast {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: broadcast::BroadcastArgs,
    },
    /// Tenant-wide notifications (REST) to every connection of a notifications hub.
    Notify {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: notify::NotifyArgs,
    },
    /// The seeds' chat mix: conversations of 2–10 users, typing, messages, read receipts.
    Chat {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: chat::ChatArgs,
    },
    /// The same mix against the real chat hub: persisted messages, typing, read receipts.
    ChatHub {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: chat_hub::ChatHubArgs,
    },
    /// Invoke-with-result round trips under concurrency.
    Echo {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: echo::EchoArgs,
    },
    /// Hold N connections; connect rate and node memory per connection.
    Idle {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: idle::IdleArgs,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (Scenario::Broadcast { common, .. }
    | Scenario::Chat { common, .. }
    | Scenario::ChatHub { common, .. }
    | Scenario::Echo { common, .. }
    | Scenario::Idle { common, .. }
    | Scenario::Notify { common, .. }) = &cli.scenario;
    common.check()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.scenario {
            Scenario::Broadcast { common, args } => broadcast::run(common, args).await,
            Scenario::Chat { common, args } => chat::run(common, args).await,
            Scenario::ChatHub { common, args } => chat_hub::run(common, args).await,
            Scenario::Echo { common, args } => echo::run(common, args).await,
            Scenario::Idle { common, args } => idle::run(common, args).await,
            Scenario::Notify { common, args } => notify::run(common, args).await,
        }
    })
}
