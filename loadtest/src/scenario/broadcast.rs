//! `broadcast`: receivers in groups, publishers sending to the groups at a
//! fixed rate through the server (hubwire: `SendToGroup`); each receiver
//! measures the latency from the timestamp in the payload.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use serde_json::json;

use super::receive_timed;
use crate::client::ClientError;
use crate::common::{emit, open_clients, Common};
use crate::peer::{Peer, ServerKind};
use crate::stats::{join_latencies, now_micros, Percentiles};
use crate::usage::{CpuClock, CpuUse};

/// Options of the broadcast scenario.
#[derive(Args, Clone, Debug)]
pub struct BroadcastArgs {
    /// Receiving connections.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Groups the receivers are spread over.
    #[arg(long, default_value_t = 10)]
    pub groups: usize,
    /// Messages per second, all publishers together (each reaches one group).
    #[arg(long, default_value_t = 100)]
    pub rate: u64,
    /// Publishing connections (on the first URL).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
}

/// The result of a broadcast run.
#[derive(Serialize)]
pub struct BroadcastReport {
    scenario: &'static str,
    server: ServerKind,
    urls: Vec<String>,
    protocol: &'static str,
    connections: usize,
    connect_failures: u64,
    groups: usize,
    rate: u64,
    seconds: f64,
    sent: u64,
    expected_deliveries: u64,
    received: u64,
    lost: u64,
    deliveries_per_second: f64,
    latency: Percentiles,
    /// CPU used from the first message to the last delivery (or the drain's end).
    publishing_cpu: CpuUse,
}

/// Runs the scenario.
pub async fn run(common: Common, args: BroadcastArgs) -> anyhow::Result<()> {
    let opened = open_clients(&common, args.connections, "broadcast receivers").await;
    let groups = args.groups.max(1);
    let mut sizes = vec![0u64; groups];
    let mut receivers = Vec::new();
    for (i, mut client) in opened.clients {
        let group = i % groups;
        client.join(&format!("g{group}")).await?;
        sizes[group] += 1;
        receivers.push(client);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = receivers
        .into_iter()
        .map(|client| {
            let (stop, received) = (stop.clone(), received.clone());
            tokio::spawn(receive_timed(
                client,
                "broadcast",
                "tick".into(),
                |p| p.get("t")?.as_u64(),
                stop,
                received,
            ))
        })
        .collect();

    let publishers = open_clients(&common, args.publishers.max(1), "broadcast publishers").await;
    let sent = Arc::new(AtomicU64::new(0));
    let per_publisher = (args.rate as f64 / publishers.clients.len().max(1) as f64).max(0.001);
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let started = Instant::now();
    let clock = CpuClock::start(&common.cpu_pids);
    let sending: Vec<_> = publishers
        .clients
        .into_iter()
        .enumerate()
        .map(|(p, (_, client))| tokio::spawn(publish(client, p, per_publisher, groups, deadline, sent.clone())))
        .collect();
    let progress = {
        let (sent, received) = (sent.clone(), received.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                eprintln!(
                    "[broadcast] t={:.0}s sent={} received={}",
                    started.elapsed().as_secs_f64(),
                    sent.load(Ordering::Relaxed),
                    received.load(Ordering::Relaxed)
                );
            }
        })
    };
    let mut per_group_sent = vec![0u64; groups];
    for task in sending {
        for (group, count) in task.await??.into_iter().enumerate() {
            per_group_sent[group] += count;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let expected: u64 = per_group_sent.iter().zip(&sizes).map(|(s, n)| s * n).sum();
    // Let what is in flight arrive, then stop the receivers.
    let drain_until = Instant::now() + Duration::from_secs(5);
    while received.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let publishing_cpu = clock.stop();
    stop.store(true, Ordering::Relaxed);
    progress.abort();
    let mut latencies = join_latencies(tasks).await?;
    let received = received.load(Ordering::Relaxed);
    let report = BroadcastReport {
        scenario: "broadcast",
        server: common.server,
        urls: common.url.clone(),
        protocol: common.protocol_name(),
        connections: args.connections,
        connect_failures: opened.failed,
        groups,
        rate: args.rate,
        seconds,
        sent: per_group_sent.iter().sum(),
        expected_deliveries: expected,
        received,
        lost: expected.saturating_sub(received),
        deliveries_per_second: received as f64 / seconds,
        latency: latencies.percentiles(),
        publishing_cpu,
    };
    let l = report.latency;
    let summary = format!(
        "broadcast ({}): {} connections on {} node(s), {} groups, {} msg/s for {:.1}s: sent {}, delivered {}/{} ({} lost), {:.0} deliveries/s, latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        common.server.name(), report.connections, report.urls.len(), groups, args.rate, seconds, report.sent, received, expected, report.lost,
        report.deliveries_per_second, l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
    );
    emit(&common, &report, &summary)
}

/// Sends at `rate` per second until `deadline`, round-robin over the groups;
/// returns how many went to each group.
async fn publish(
    mut client: Peer,
    index: usize,
    rate: f64,
    groups: usize,
    deadline: Instant,
    sent: Arc<AtomicU64>,
) -> Result<Vec<u64>, ClientError> {
    let mut per_group = vec![0u64; groups];
    let tick = Duration::from_millis(10);
    let per_tick = rate * tick.as_secs_f64();
    let mut owed = 0.0;
    let mut n = index;
    let mut interval = tokio::time::interval(tick);
    while Instant::now() < deadline {
        interval.tick().await;
        owed += per_tick;
        while owed >= 1.0 {
            owed -= 1.0;
            let group = n % groups;
            n += 1;
            let payload = json!({ "t": now_micros(), "n": n });
            client.send_to_group(&format!("g{group}"), "tick", payload).await?;
            per_group[group] += 1;
            sent.fetch_add(1, Ordering::Relaxed);
        }
    }
    client.echo(json!("flush")).await?;
    client.close().await;
    Ok(per_group)
}
