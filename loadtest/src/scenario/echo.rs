//! `echo`: every connection sends a value to be echoed (hubwire: invokes
//! `Echo`) and waits for it, in a loop, for a fixed time: round trips per
//! second and their latency.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use serde_json::json;

use crate::common::{emit, open_clients, Common};
use crate::peer::ServerKind;
use crate::stats::{join_latencies, Latencies, Percentiles};
use crate::usage::{CpuClock, CpuUse};

/// Options of the echo scenario.
#[derive(Args, Clone, Debug)]
pub struct EchoArgs {
    /// Connections, each with one invocation in flight.
    #[arg(long, default_value_t = 100)]
    pub connections: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Size of the echoed string, in bytes.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// The hub method invoked (hubwire only): `Echo`, or a method the hub
    /// lacks, forwarded to an upstream (`scripts/bench-upstream.sh`).
    #[arg(long, default_value = "Echo")]
    pub method: String,
}

/// The result of an echo run.
#[derive(Serialize)]
pub struct EchoReport {
    scenario: &'static str,
    server: ServerKind,
    urls: Vec<String>,
    protocol: &'static str,
    connections: usize,
    connect_failures: u64,
    seconds: f64,
    round_trips: u64,
    errors: u64,
    round_trips_per_second: f64,
    latency: Percentiles,
    /// CPU used while the round trips ran.
    cpu: CpuUse,
}

/// Runs the scenario.
pub async fn run(common: Common, args: EchoArgs) -> anyhow::Result<()> {
    let opened = open_clients(&common, args.connections, "echo").await;
    let stop = Arc::new(AtomicBool::new(false));
    let (done, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let payload = "x".repeat(args.payload);
    let started = Instant::now();
    let clock = CpuClock::start(&common.cpu_pids);
    let tasks: Vec<_> = opened
        .clients
        .into_iter()
        .map(|(_, mut client)| {
            let (stop, done, errors, payload) = (stop.clone(), done.clone(), errors.clone(), payload.clone());
            let method = args.method.clone();
            tokio::spawn(async move {
                let mut latencies = Latencies::default();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match client.echo_by(&method, json!(payload)).await {
                        Ok(_) => {
                            latencies.record(t.elapsed().as_micros() as u64);
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                                eprintln!("[echo] {e}");
                            }
                            break;
                        }
                    }
                }
                client.close().await;
                latencies
            })
        })
        .collect();
    for second in 1..=args.duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        eprintln!("[echo] t={second}s round trips={}", done.load(Ordering::Relaxed));
    }
    stop.store(true, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let cpu = clock.stop();
    let mut latencies = join_latencies(tasks).await?;
    let round_trips = done.load(Ordering::Relaxed);
    let report = EchoReport {
        scenario: "echo",
        server: common.server,
        urls: common.url.clone(),
        protocol: common.protocol_name(),
        connections: args.connections,
        connect_failures: opened.failed,
        seconds,
        round_trips,
        errors: errors.load(Ordering::Relaxed),
        round_trips_per_second: round_trips as f64 / seconds,
        latency: latencies.percentiles(),
        cpu,
    };
    let l = report.latency;
    let summary = format!(
        "echo ({}): {} connections, {:.1}s: {} round trips ({:.0}/s), {} errors, latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        common.server.name(), report.connections, seconds, round_trips, report.round_trips_per_second, report.errors, l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
    );
    emit(&common, &report, &summary)
}
