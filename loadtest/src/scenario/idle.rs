//! `idle`: open N connections, hold them (keeping them alive as each server
//! wants, see [`Peer::keepalive`]), and report the connect rate and — given
//! the node's pid — its memory per connection (resident set growth / N).
//!
//! With `--processes P` the connections are opened by P copies of this
//! program (workers), each holding its share, so that no process needs more
//! file descriptors than its limit allows; the parent only measures. A
//! worker prints one JSON line once its connections are open, holds them
//! until its standard input closes, then closes them and exits.

use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::common::{emit, open_clients, Common};
use crate::peer::{Peer, ServerKind};
use crate::usage::{rss_kib, CpuClock, CpuUse};

/// Options of the idle scenario.
#[derive(Args, Clone, Debug)]
pub struct IdleArgs {
    /// Connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Seconds to hold them once open.
    #[arg(long, default_value_t = 5)]
    pub hold: u64,
    /// Pid of the (single) node, to measure its resident memory.
    #[arg(long)]
    pub node_pid: Option<u32>,
    /// Client processes sharing the connections (each bounded by its own
    /// open-file limit); give `--sources` with as many addresses.
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// Run as a worker of a `--processes` run (internal).
    #[arg(long, hide = true)]
    pub worker: bool,
}

/// The result of an idle run.
#[derive(Serialize)]
pub struct IdleReport {
    scenario: &'static str,
    server: ServerKind,
    urls: Vec<String>,
    connections: usize,
    processes: usize,
    opened: usize,
    connect_failures: u64,
    connect_seconds: f64,
    connects_per_second: f64,
    node_rss_before_kib: Option<u64>,
    node_rss_after_kib: Option<u64>,
    bytes_per_connection: Option<f64>,
    /// CPU used while connecting (a `--processes` run counts the workers in
    /// none of it: only the servers' share is meaningful then).
    connect_cpu: CpuUse,
}

/// What a worker tells its parent once its connections are open.
#[derive(Serialize, Deserialize)]
struct WorkerOpened {
    opened: usize,
    failed: u64,
}

/// Keeps `clients` alive once a second until `until` completes.
async fn hold(clients: &mut [Peer], until: impl std::future::Future<Output = ()>, label: &str) {
    tokio::pin!(until);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            () = &mut until => return,
            _ = tick.tick() => {}
        }
        eprintln!("[{label}] holding {} connections", clients.len());
        for client in clients.iter_mut() {
            // A client that cannot be kept alive has been closed; it is counted by the node, not here.
            let _ = client.keepalive().await;
        }
    }
}

/// How holding the connections went.
struct Held {
    held: usize,
    failed: u64,
    /// Seconds until every connection was open.
    connect_seconds: f64,
    connect_cpu: CpuUse,
    /// The node's resident set at the end of the hold.
    rss_after_kib: Option<u64>,
}

/// Runs the scenario.
pub async fn run(common: Common, args: IdleArgs) -> anyhow::Result<()> {
    if args.worker {
        return work(common, args).await;
    }
    let before = args.node_pid.and_then(rss_kib);
    let run = if args.processes > 1 {
        spread(&common, &args).await?
    } else {
        let clock = CpuClock::start(&common.cpu_pids);
        let opened = open_clients(&common, args.connections, "idle").await;
        let connect_cpu = clock.stop();
        let mut clients: Vec<_> = opened.clients.into_iter().map(|(_, c)| c).collect();
        hold(&mut clients, tokio::time::sleep(Duration::from_secs(args.hold)), "idle").await;
        let rss_after_kib = args.node_pid.and_then(rss_kib);
        let held = clients.len();
        for client in clients {
            client.close().await;
        }
        Held {
            held,
            failed: opened.failed,
            connect_seconds: opened.seconds,
            connect_cpu,
            rss_after_kib,
        }
    };
    let (held, after) = (run.held, run.rss_after_kib);
    let report = IdleReport {
        scenario: "idle",
        server: common.server,
        urls: common.url.clone(),
        connections: args.connections,
        processes: args.processes.max(1),
        opened: held,
        connect_failures: run.failed,
        connect_seconds: run.connect_seconds,
        connects_per_second: held as f64 / run.connect_seconds.max(f64::EPSILON),
        node_rss_before_kib: before,
        node_rss_after_kib: after,
        bytes_per_connection: match (before, after) {
            (Some(b), Some(a)) if held > 0 => Some((a.saturating_sub(b) * 1024) as f64 / held as f64),
            _ => None,
        },
        connect_cpu: run.connect_cpu,
    };
    let memory = report
        .bytes_per_connection
        .map_or_else(String::new, |b| format!(", node memory {:.0} bytes/connection", b));
    let summary = format!(
        "idle ({}): {held}/{} connections open in {:.1}s ({:.0}/s), {} failures{memory}",
        common.server.name(),
        args.connections,
        report.connect_seconds,
        report.connects_per_second,
        report.connect_failures
    );
    emit(&common, &report, &summary)
}

/// The parent of a `--processes` run: starts the workers, waits until all
/// have opened their share, holds, measures, then lets them go.
async fn spread(common: &Common, args: &IdleArgs) -> anyhow::Result<Held> {
    let n = args.processes;
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let clock = CpuClock::start(&common.cpu_pids);
    let mut workers = Vec::with_capacity(n);
    for k in 0..n {
        let share = args.connections / n + usize::from(k < args.connections % n);
        let child = Command::new(&exe)
            .arg("idle")
            .arg("--worker")
            .arg(format!("--connections={share}"))
            .args(common.worker_args(k, n))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        workers.push(child);
    }
    let (mut held, mut failed) = (0, 0);
    for worker in &mut workers {
        let stdout = worker
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("worker without stdout"))?;
        let line = BufReader::new(stdout)
            .lines()
            .next_line()
            .await?
            .ok_or_else(|| anyhow::anyhow!("a worker ended before opening its connections"))?;
        let opened: WorkerOpened = serde_json::from_str(&line)?;
        held += opened.opened;
        failed += opened.failed;
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    let connect_cpu = CpuUse {
        // The workers' CPU is theirs, not this parent's: not reported.
        loadtest_seconds: None,
        ..clock.stop()
    };
    eprintln!("[idle] {n} workers hold {held} connections");
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let rss_after_kib = args.node_pid.and_then(rss_kib);
    for mut worker in workers {
        // Closing its standard input tells the worker to close its connections and exit.
        drop(worker.stdin.take());
        worker.wait().await?;
    }
    Ok(Held {
        held,
        failed,
        connect_seconds,
        connect_cpu,
        rss_after_kib,
    })
}

/// A worker of a `--processes` run.
async fn work(common: Common, args: IdleArgs) -> anyhow::Result<()> {
    let opened = open_clients(&common, args.connections, "idle worker").await;
    let mut clients: Vec<_> = opened.clients.into_iter().map(|(_, c)| c).collect();
    let line = serde_json::to_string(&WorkerOpened {
        opened: clients.len(),
        failed: opened.failed,
    })?;
    // One line, then nothing: the parent reads it before anything else.
    println!("{line}");
    let parent_done = async {
        let reading = tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()));
        // End of input, a read error or a failed task alike mean the parent is done.
        let _ = reading.await;
    };
    hold(&mut clients, parent_done, "idle worker").await;
    for client in clients {
        client.close().await;
    }
    Ok(())
}
