//! The load scenarios, one module each. Every scenario is bounded in time and
//! count, prints a progress line while it runs, and stops by itself. What
//! several share sits here: [`receive_timed`], the receive loop of the
//! fan-out scenarios (broadcast, notify).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::ClientError;
use crate::peer::Peer;
use crate::stats::{now_micros, Latencies};

pub mod broadcast;
pub mod chat;
pub mod chat_hub;
pub mod echo;
pub mod idle;
pub mod notify;

/// How often a silent client pings (hubwire's client timeout is 30 s).
pub const KEEPALIVE: Duration = Duration::from_secs(10);

/// Receives on `client` until `stop`: each event named `event` (ASCII case
/// ignored) counts in `received`, and its latency — now less the send time
/// (µs since the epoch) that `sent_at` reads from its payload — is recorded.
/// Pings while silent; `label` names the scenario in the one line printed
/// when the connection is lost.
pub async fn receive_timed(
    mut client: Peer,
    label: &'static str,
    event: String,
    sent_at: fn(&Value) -> Option<u64>,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
) -> Latencies {
    let mut latencies = Latencies::default();
    let mut last_ping = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match client.next_event(Duration::from_millis(500)).await {
            Ok((name, payload)) if name.eq_ignore_ascii_case(&event) => {
                latencies.record(now_micros().saturating_sub(sent_at(&payload).unwrap_or(0)));
                received.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) | Err(ClientError::Timeout) => {}
            Err(e) => {
                eprintln!("[{label}] receiver lost: {e}");
                break;
            }
        }
        if client.keepalive_if_due(&mut last_ping, KEEPALIVE).await.is_err() {
            break;
        }
    }
    client.close().await;
    latencies
}
