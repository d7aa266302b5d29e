//! `chat-hub`: the seeds' chat mix against hubwire's real chat hub
//! (`/hubs/chat`), so every message is persisted before it is broadcast.
//!
//! Users (`lt-{i}`, one connection each, tokens signed with `--token-secret`)
//! sit in conversations of 2–10 participants that the scenario creates first
//! through the REST API (`POST /api/hubs/{hub}/conversations`). Each user
//! announces typing (`StartTyping`), sends (`SendMessage` with a
//! `clientMessageId`, the send time in the content) at a steady rate; every
//! participant who receives a message answers with `MarkAsRead`. What it
//! reports next to the `chat` scenario (the same mix over diagnostics-hub
//! groups, no store): messages persisted per second (acknowledged by the
//! server's `MessageSent`), latency from send to `ReceiveMessage` at the
//! other participants, none lost, server CPU.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use serde_json::{json, Value};

use crate::client::{Client, ClientError};
use crate::common::{emit, open_clients, user_of, Common};
use crate::pace::Pace;
use crate::peer::ServerKind;
use crate::rest;
use crate::scenario::chat::conversation_sizes;
use crate::stats::{join_latencies, now_micros, Latencies, Percentiles};
use crate::usage::{CpuClock, CpuUse};

/// How often a silent client pings (hubwire's client timeout is 30 s).
const KEEPALIVE: Duration = Duration::from_secs(10);

/// Options of the chat-hub scenario.
#[derive(Args, Clone, Debug)]
pub struct ChatHubArgs {
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
    /// Leave typing and read receipts out: messages only (what persistence alone costs).
    #[arg(long)]
    pub messages_only: bool,
    /// Prefix of the conversation ids (make it unique per run: the store keeps them).
    #[arg(long, default_value = "lt")]
    pub run_id: String,
}

/// The result of a chat-hub run.
#[derive(Serialize)]
pub struct ChatHubReport {
    scenario: &'static str,
    urls: Vec<String>,
    hub: String,
    protocol: &'static str,
    messages_only: bool,
    connections: usize,
    connect_failures: u64,
    conversations: usize,
    seconds: f64,
    messages_sent: u64,
    messages_persisted: u64,
    persisted_per_second: f64,
    unacknowledged: u64,
    messages_expected: u64,
    messages_received: u64,
    messages_lost: u64,
    typing_received: u64,
    receipts_received: u64,
    message_latency: Percentiles,
    cpu: CpuUse,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    persisted: AtomicU64,
    errors: AtomicU64,
    expected: AtomicU64,
    messages: AtomicU64,
    typing: AtomicU64,
    receipts: AtomicU64,
}

/// Runs the scenario.
pub async fn run(common: Common, args: ChatHubArgs) -> anyhow::Result<()> {
    if common.server != ServerKind::Hubwire {
        anyhow::bail!("chat-hub needs hubwire's chat hub");
    }
    let Some(secret) = common.token_secret.clone() else {
        anyhow::bail!("chat-hub needs --token-secret (the node's HUBWIRE_JWT_SECRET): each user gets its own token");
    };
    let sizes = conversation_sizes(args.connections, args.min_size, args.max_size);
    let mut seats = Vec::with_capacity(args.connections);
    let admin = rest::admin_token(&secret)?;
    let mut first = 0;
    for (k, size) in sizes.iter().enumerate() {
        let id = format!("{}-c{k}", args.run_id);
        let participants: Vec<String> = (first..first + size).map(user_of).collect();
        let body = json!({ "id": id, "type": "group", "participants": participants });
        let url = &common.url[k % common.url.len()];
        rest::post(url, &format!("/api/hubs/{}/conversations", common.hub), &admin, &body).await?;
        seats.extend(std::iter::repeat_n((id, *size), *size));
        first += size;
    }
    eprintln!("[chat-hub] created {} conversations", sizes.len());
    let opened = open_clients(&common, args.connections, "chat-hub users").await;
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let period = Duration::from_secs_f64(60.0 / args.messages_per_minute.max(0.001));
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let mut users = Vec::new();
    for (i, peer) in opened.clients {
        let Some(mut client) = peer.into_hubwire() else {
            anyhow::bail!("not a hubwire connection");
        };
        let (conversation, size) = seats[i].clone();
        if let Err(e) = client
            .invoke("JoinConversation", vec![Value::from(conversation.as_str())])
            .await
        {
            anyhow::bail!("user {i} could not join {conversation}: {e}");
        }
        users.push((i, client, conversation, size));
    }
    let started = Instant::now();
    let clock = CpuClock::start(&common.cpu_pids);
    // A marker for drivers that measure more processes than `--cpu-pids` names.
    eprintln!("[chat-hub] chatting");
    let tasks: Vec<_> = users
        .into_iter()
        .map(|(i, client, conversation, size)| {
            let first = period.mul_f64((i % 97) as f64 / 97.0);
            let user = User {
                id: i,
                conversation,
                size,
                period,
                deadline,
                messages_only: args.messages_only,
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
                let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
                eprintln!(
                    "[chat-hub] t={:.0}s sent={} persisted={} errors={} messages={} typing={} receipts={}",
                    started.elapsed().as_secs_f64(),
                    load(&counters.sent),
                    load(&counters.persisted),
                    load(&counters.errors),
                    load(&counters.messages),
                    load(&counters.typing),
                    load(&counters.receipts),
                );
            }
        })
    };
    tokio::time::sleep_until(deadline.into()).await;
    let seconds = started.elapsed().as_secs_f64();
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let drain_until = Instant::now() + Duration::from_secs(10);
    while (load(&counters.messages) < load(&counters.expected)
        || load(&counters.persisted) + load(&counters.errors) < load(&counters.sent))
        && Instant::now() < drain_until
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu = clock.stop();
    stop.store(true, Ordering::Relaxed);
    progress.abort();
    let mut latencies = join_latencies(tasks).await?;
    let (expected, messages) = (load(&counters.expected), load(&counters.messages));
    let persisted = load(&counters.persisted);
    let report = ChatHubReport {
        scenario: "chat-hub",
        urls: common.url.clone(),
        hub: common.hub.clone(),
        protocol: common.protocol_name(),
        messages_only: args.messages_only,
        connections: args.connections,
        connect_failures: opened.failed,
        conversations: sizes.len(),
        seconds,
        messages_sent: load(&counters.sent),
        messages_persisted: persisted,
        persisted_per_second: persisted as f64 / seconds,
        unacknowledged: load(&counters.sent).saturating_sub(persisted),
        messages_expected: expected,
        messages_received: messages,
        messages_lost: expected.saturating_sub(messages),
        typing_received: load(&counters.typing),
        receipts_received: load(&counters.receipts),
        message_latency: latencies.percentiles(),
        cpu,
    };
    let l = report.message_latency;
    let summary = format!(
        "chat-hub ({}{}): {} users in {} conversations ({}–{}), {} msg/user/min for {:.1}s: sent {}, persisted {} ({:.0}/s, {} unacknowledged), delivered {}/{} ({} lost), typing {}, receipts {}, send→ReceiveMessage p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        common.hub, if args.messages_only { ", messages only" } else { "" }, args.connections, report.conversations, args.min_size, args.max_size, args.messages_per_minute,
        seconds, report.messages_sent, persisted, report.persisted_per_second, report.unacknowledged, messages, expected,
        report.messages_lost, report.typing_received, report.receipts_received, l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
    );
    emit(&common, &report, &summary)
}

/// One user's behaviour.
struct User {
    id: usize,
    conversation: String,
    size: usize,
    period: Duration,
    deadline: Instant,
    messages_only: bool,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

impl User {
    async fn run(self, mut client: Client, first: Duration) -> Latencies {
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
            match client.next_invocation(wait).await {
                Ok((event, arguments)) => {
                    if self
                        .on_event(&mut client, &event, &arguments, &mut latencies)
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Err(ClientError::Timeout) => {}
                Err(e) => {
                    eprintln!("[chat-hub] user {} lost: {e}", self.id);
                    break;
                }
            }
            if last_ping.elapsed() >= KEEPALIVE {
                if client.ping().await.is_err() {
                    break;
                }
                last_ping = Instant::now();
            }
        }
        client.close().await;
        latencies
    }

    async fn on_event(
        &self,
        client: &mut Client,
        event: &str,
        arguments: &[Value],
        latencies: &mut Latencies,
    ) -> Result<(), ClientError> {
        let first = arguments.first().cloned().unwrap_or(Value::Null);
        match event {
            "ReceiveMessage" => {
                let sent_at = first
                    .get("content")
                    .and_then(Value::as_str)
                    .and_then(|c| c.strip_prefix("t="))
                    .and_then(|t| t.split(' ').next())
                    .and_then(|t| t.parse::<u64>().ok())
                    .unwrap_or(0);
                latencies.record(now_micros().saturating_sub(sent_at));
                self.counters.messages.fetch_add(1, Ordering::Relaxed);
                if self.messages_only {
                    return Ok(());
                }
                let id = first.get("id").cloned().unwrap_or(Value::Null);
                client
                    .fire("MarkAsRead", vec![Value::from(self.conversation.as_str()), id])
                    .await
            }
            "MessageSent" => {
                self.counters.persisted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            "TypingChanged" => {
                self.counters.typing.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            "MessageRead" => {
                self.counters.receipts.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            "MessageError" => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Typing, then the message (the send time in its content).
    async fn send(&self, client: &mut Client, n: u64) -> Result<(), ClientError> {
        let conversation = Value::from(self.conversation.as_str());
        if !self.messages_only {
            client.fire("StartTyping", vec![conversation.clone()]).await?;
        }
        let content = format!("t={} hello from the load test", now_micros());
        let client_id = format!("{}-{}", self.id, n);
        client
            .fire(
                "SendMessage",
                vec![conversation, Value::from(content), Value::from(client_id)],
            )
            .await?;
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        self.counters
            .expected
            .fetch_add(self.size as u64 - 1, Ordering::Relaxed);
        Ok(())
    }
}
