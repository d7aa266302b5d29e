//! `notify`: tenant-wide notifications (issue 10's Show 6). Every client
//! connects to a notifications hub with its own token carrying the same
//! `tenant` claim (`--token-secret`, `--tenant`); the backend's part is
//! played by REST: `POST /api/hubs/{hub}/notifications` with
//! `{"tenant", "type", "title", "data": {"t": <send time>}}` at a fixed
//! rate. Each notification is persisted, then sent to the tenant's group on
//! every node; each client records the latency from the send time in `data`
//! of each `ReceiveNotification`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use serde_json::json;

use super::receive_timed;
use crate::common::{emit, open_clients, Common};
use crate::rest;
use crate::stats::{join_latencies, now_micros, Percentiles};
use crate::usage::{CpuClock, CpuUse};

/// Options of the notify scenario.
#[derive(Args, Clone, Debug)]
pub struct NotifyArgs {
    /// Receiving connections (each its own user of the tenant).
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Tenant-wide notifications per second.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// The event the hub sends a notification as.
    #[arg(long, default_value = "ReceiveNotification")]
    pub event: String,
}

/// The result of a notify run.
#[derive(Serialize)]
pub struct NotifyReport {
    scenario: &'static str,
    urls: Vec<String>,
    hub: String,
    connections: usize,
    connect_failures: u64,
    seconds: f64,
    sent: u64,
    expected_deliveries: u64,
    received: u64,
    lost: u64,
    deliveries_per_second: f64,
    latency: Percentiles,
    /// CPU used from the first notification to the last delivery (or the drain's end).
    sending_cpu: CpuUse,
}

/// Runs the scenario.
pub async fn run(common: Common, args: NotifyArgs) -> anyhow::Result<()> {
    let (Some(secret), Some(tenant)) = (common.token_secret.clone(), common.tenant.clone()) else {
        anyhow::bail!("notify needs --token-secret and --tenant: every client's token carries the tenant claim");
    };
    let opened = open_clients(&common, args.connections, "notify receivers").await;
    let receivers = opened.clients.len() as u64;
    // The tenant group is joined at connect, just after the handshake: let it settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = opened
        .clients
        .into_iter()
        .map(|(_, client)| {
            let (stop, received) = (stop.clone(), received.clone());
            tokio::spawn(receive_timed(
                client,
                "notify",
                args.event.clone(),
                |p| p.pointer("/data/t")?.as_u64(),
                stop,
                received,
            ))
        })
        .collect();
    let admin = rest::admin_token(&secret)?;
    let path = format!("/api/hubs/{}/notifications", common.hub);
    let started = Instant::now();
    let clock = CpuClock::start(&common.cpu_pids);
    let mut sent = 0u64;
    let every = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
    let mut interval = tokio::time::interval(every);
    let deadline = started + Duration::from_secs(args.duration);
    while Instant::now() < deadline {
        interval.tick().await;
        let body =
            json!({ "tenant": tenant, "type": "bench", "title": "tick", "data": { "t": now_micros(), "n": sent } });
        let url = &common.url[sent as usize % common.url.len()];
        rest::post(url, &path, &admin, &body).await?;
        sent += 1;
        eprintln!(
            "[notify] t={:.0}s sent={sent} received={}",
            started.elapsed().as_secs_f64(),
            received.load(Ordering::Relaxed)
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let expected = sent * receivers;
    let drain_until = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sending_cpu = clock.stop();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = join_latencies(tasks).await?;
    let received = received.load(Ordering::Relaxed);
    let report = NotifyReport {
        scenario: "notify",
        urls: common.url.clone(),
        hub: common.hub.clone(),
        connections: args.connections,
        connect_failures: opened.failed,
        seconds,
        sent,
        expected_deliveries: expected,
        received,
        lost: expected.saturating_sub(received),
        deliveries_per_second: received as f64 / seconds,
        latency: latencies.percentiles(),
        sending_cpu,
    };
    let l = report.latency;
    let summary = format!(
        "notify: {} connections ({} failed) on {} node(s), {} tenant-wide notifications in {:.1}s: delivered {}/{} ({} lost), {:.0} deliveries/s, latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        report.connections, report.connect_failures, report.urls.len(), sent, seconds, received, expected, report.lost,
        report.deliveries_per_second, l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
    );
    emit(&common, &report, &summary)
}
