//! `chat`: the seeds' traffic mix. Users sit in conversations of 2–10
//! participants (sizes drawn from a fixed seed, so runs repeat); each user
//! sends messages at a steady rate, announcing typing first; every
//! participant who receives a message answers with a read receipt. Messages,
//! typing events and receipts all go to the whole conversation.
//!
//! The conversation is a group of the `diagnostics` hub and every event a
//! group send: this measures the fan-out mix of a chat (message + typing +
//! a receipt per reader), not persistence, which the chat hub adds.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use serde_json::json;

use crate::client::ClientError;
use crate::common::{emit, open_clients, Common};
use crate::pace::Pace;
use crate::peer::{Peer, ServerKind};
use crate::stats::{join_latencies, now_micros, Latencies, Percentiles};
use crate::usage::{CpuClock, CpuUse};

/// How often a silent client pings (hubwire's client timeout is 30 s).
const KEEPALIVE: Duration = Duration::from_secs(10);
/// Options of the chat scenario.
#[derive(Args, Clone, Debug)]
pub struct ChatArgs {
    /// Users (one connection each).
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Smallest conversation.
    #[arg(long, default_value_t = 2)]
    pub min_size: usize,
    /// Largest conversation.
    #[arg(long, default_value_t = 10)]
    pub max_size: usize,
    /// Messages each user sends per minute.
    #[arg(long, default_value_t = 6.0)]
    pub messages_per_minute: f64,
    /// Seconds of chatting.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
}

/// The result of a chat run.
#[derive(Serialize)]
pub struct ChatReport {
    scenario: &'static str,
    server: ServerKind,
    urls: Vec<String>,
    protocol: &'static str,
    connections: usize,
    connect_failures: u64,
    conversations: usize,
    seconds: f64,
    messages_sent: u64,
    messages_expected: u64,
    messages_received: u64,
    messages_lost: u64,
    typing_received: u64,
    receipts_received: u64,
    events_per_second: f64,
    message_latency: Percentiles,
    cpu: CpuUse,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    expected: AtomicU64,
    messages: AtomicU64,
    typing: AtomicU64,
    receipts: AtomicU64,
}

/// Conversation sizes from a fixed seed (xorshift), covering `users`.
pub fn conversation_sizes(users: usize, min: usize, max: usize) -> Vec<usize> {
    let (min, max) = (min.max(2), max.max(min.max(2)));
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut sizes = Vec::new();
    let mut left = users;
    while left > 0 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let size = (min + (state % (max - min + 1) as u64) as usize).min(left);
        sizes.push(size);
        left -= size;
    }
    sizes
}

/// Runs the scenario.
pub async fn run(common: Common, args: ChatArgs) -> anyhow::Result<()> {
    let sizes = conversation_sizes(args.connections, args.min_size, args.max_size);
    let opened = open_clients(&common, args.connections, "chat users").await;
    let mut seats = Vec::new();
    for (size, conversation) in sizes.iter().zip(0..) {
        seats.extend(std::iter::repeat_n((conversation, *size), *size));
    }
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let period = Duration::from_secs_f64(60.0 / args.messages_per_minute.max(0.001));
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let mut users = Vec::new();
    for (i, mut client) in opened.clients {
        let (conversation, size) = seats[i];
        let group = format!("chat{conversation}");
        client.join(&group).await?;
        users.push((i, client, group, size));
    }
    let started = Instant::now();
    let clock = CpuClock::start(&common.cpu_pids);
    let tasks: Vec<_> = users
        .into_iter()
        .map(|(i, client, group, size)| {
            // Spread the first sends over one period so users do not send in lockstep.
            let first = period.mul_f64((i % 97) as f64 / 97.0);
            let user = User {
                id: i,
                group,
                size,
                period,
                deadline,
                stop: stop.clone(),
                counters: counters.clone(),
            };
            tokio::spawn(user.run(client, first))
        })
        .collect();
    let progress = {
        let counters = counters.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                eprintln!(
                    "[chat] t={:.0}s sent={} messages={} typing={} receipts={}",
                    started.elapsed().as_secs_f64(),
                    counters.sent.load(Ordering::Relaxed),
                    counters.messages.load(Ordering::Relaxed),
                    counters.typing.load(Ordering::Relaxed),
                    counters.receipts.load(Ordering::Relaxed),
                );
            }
        })
    };
    tokio::time::sleep_until(deadline.into()).await;
    let seconds = started.elapsed().as_secs_f64();
    let drain_until = Instant::now() + Duration::from_secs(5);
    while counters.messages.load(Ordering::Relaxed) < counters.expected.load(Ordering::Relaxed)
        && Instant::now() < drain_until
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu = clock.stop();
    stop.store(true, Ordering::Relaxed);
    progress.abort();
    let mut latencies = join_latencies(tasks).await?;
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (expected, messages) = (load(&counters.expected), load(&counters.messages));
    let (typing, receipts) = (load(&counters.typing), load(&counters.receipts));
    let report = ChatReport {
        scenario: "chat",
        server: common.server,
        urls: common.url.clone(),
        protocol: common.protocol_name(),
        connections: args.connections,
        connect_failures: opened.failed,
        conversations: sizes.len(),
        seconds,
        messages_sent: load(&counters.sent),
        messages_expected: expected,
        messages_received: messages,
        messages_lost: expected.saturating_sub(messages),
        typing_received: typing,
        receipts_received: receipts,
        events_per_second: (messages + typing + receipts) as f64 / seconds,
        message_latency: latencies.percentiles(),
        cpu,
    };
    let l = report.message_latency;
    let summary = format!(
        "chat ({}): {} users in {} conversations ({}–{}), {} msg/user/min for {:.1}s: sent {}, delivered {}/{} ({} lost), typing {}, receipts {}, {:.0} events/s, message latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        common.server.name(), args.connections, report.conversations, args.min_size, args.max_size, args.messages_per_minute,
        seconds, report.messages_sent, messages, expected, report.messages_lost, typing, receipts, report.events_per_second,
        l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
    );
    emit(&common, &report, &summary)
}

/// One user's behaviour.
struct User {
    id: usize,
    group: String,
    size: usize,
    period: Duration,
    deadline: Instant,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

impl User {
    async fn run(self, mut client: Peer, first: Duration) -> Latencies {
        let mut latencies = Latencies::default();
        let mut pace = Pace::new(first, self.period, self.deadline);
        let mut last_ping = Instant::now();
        let mut n = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            if pace.take_due() {
                if self.send(&mut client, n).await.is_err() {
                    break;
                }
                n += 1;
                continue;
            }
            let wait = pace.wait();
            match client.next_event(wait).await {
                Ok((event, payload)) => {
                    if payload.get("from").and_then(|f| f.as_u64()) == Some(self.id as u64) {
                        continue; // our own event, echoed by the group send
                    }
                    match event.as_str() {
                        "ReceiveMessage" => {
                            let sent_at = payload.get("t").and_then(|t| t.as_u64()).unwrap_or(0);
                            latencies.record(now_micros().saturating_sub(sent_at));
                            self.counters.messages.fetch_add(1, Ordering::Relaxed);
                            let receipt = json!({ "from": self.id, "message": payload.get("n") });
                            if client.send_to_group(&self.group, "MessageRead", receipt).await.is_err() {
                                break;
                            }
                        }
                        "TypingChanged" => {
                            self.counters.typing.fetch_add(1, Ordering::Relaxed);
                        }
                        "MessageRead" => {
                            self.counters.receipts.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
                Err(ClientError::Timeout) => {}
                Err(e) => {
                    eprintln!("[chat] user {} lost: {e}", self.id);
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

    /// Typing, then the message.
    async fn send(&self, client: &mut Peer, n: u64) -> Result<(), ClientError> {
        let typing = json!({ "from": self.id, "isTyping": true });
        client.send_to_group(&self.group, "TypingChanged", typing).await?;
        let message = json!({ "from": self.id, "n": n, "t": now_micros(), "content": "hello from the load test" });
        client.send_to_group(&self.group, "ReceiveMessage", message).await?;
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        self.counters
            .expected
            .fetch_add(self.size as u64 - 1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::conversation_sizes;

    #[test]
    fn conversations_cover_every_user_within_the_bounds() {
        let sizes = conversation_sizes(1000, 2, 10);
        assert_eq!(sizes.iter().sum::<usize>(), 1000);
        assert!(sizes[..sizes.len() - 1].iter().all(|s| (2..=10).contains(s)));
        assert!(sizes.contains(&2) && sizes.contains(&10), "{sizes:?}");
        assert_eq!(sizes, conversation_sizes(1000, 2, 10), "repeatable");
    }
}
