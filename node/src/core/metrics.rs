//! Prometheus metrics, served as text at `/metrics`.
//!
//! Per-hub series are resolved once per connection ([`HubMetrics`]) so the hot
//! path increments a counter it already holds instead of looking a label up.
//! All names start with `hubwire_`.

use std::fmt::Write;
use std::time::Instant;

use crate::core::webhook::WebhookCounters;
use hubwire_backplane::{AnyBackplane, Delivery};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric of a node.
pub struct Metrics {
    registry: Registry,
    connections: IntGaugeVec,
    connections_opened: IntCounterVec,
    disconnects: IntCounterVec,
    connection_duration: HistogramVec,
    handshakes_failed: IntCounterVec,
    messages_in: IntCounterVec,
    messages_out: IntCounterVec,
    bytes_in: IntCounterVec,
    bytes_out: IntCounterVec,
    invocation_duration: HistogramVec,
    /// Backplane events received and not yet handled by the inbox task.
    pub inbox_pending: IntGauge,
    slow_closed: IntCounterVec,
    delivery: HistogramVec,
    streams_running: IntGaugeVec,
    limit_refusals: IntCounterVec,
    requests_refused: IntCounterVec,
    /// Negotiated connection tokens not yet used by a transport (set when rendered).
    pub negotiations_pending: IntGauge,
    /// Group channel subscribes and unsubscribes (other nodes' commands and
    /// this node's own joins) queued or running on their lanes.
    pub cluster_commands_pending: IntGauge,
    /// Cluster commands of this node that other nodes did not confirm in time.
    pub cluster_ack_timeouts: IntCounter,
    /// Stateful connections whose socket dropped, waiting for the client's new one.
    pub stateful_reconnect_waiting: IntGauge,
    /// Stateful connections resumed on a new socket.
    pub stateful_reconnects: IntCounter,
    queued_bytes: IntGauge,
    /// Connection attempts refused before the WebSocket upgrade, by reason.
    pub connections_refused: Refusals,
    /// Upgraded sockets held (handshakes included): what `max_connections` caps.
    pub sockets: IntGauge,
    /// Upgraded sockets whose SignalR handshake is not complete yet.
    pub handshakes: IntGauge,
    websocket_closes: IntCounterVec,
    webhooks: IntCounterVec,
    hook_requests: IntCounterVec,
    hook_duration: HistogramVec,
    backend_shared: IntCounterVec,
}

/// How a request to the app's backend ended (the `outcome` label of
/// `hubwire_hook_requests_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookOutcome {
    /// A 2xx answer.
    Ok,
    /// Another status.
    Status,
    /// Unreachable, or a broken answer.
    Failed,
    /// No whole answer within the hook's timeout.
    Timeout,
}

impl HookOutcome {
    const ALL: [Self; 4] = [Self::Ok, Self::Status, Self::Failed, Self::Timeout];

    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Status => "status",
            Self::Failed => "failed",
            Self::Timeout => "timeout",
        }
    }

    /// The outcome of an exchange bounded by a timeout: `Err` is the
    /// timeout, `Ok(Err)` a failure, `Ok(Ok(status))` an answer.
    pub fn of<E, T>(result: &Result<Result<T, E>, tokio::time::error::Elapsed>, status: impl Fn(&T) -> u16) -> Self {
        match result {
            Ok(Ok(answer)) if (200..300).contains(&status(answer)) => Self::Ok,
            Ok(Ok(_)) => Self::Status,
            Ok(Err(_)) => Self::Failed,
            Err(_) => Self::Timeout,
        }
    }
}

/// The series of one hook of one hub ([`Metrics::hook`]).
#[derive(Clone, Debug)]
pub struct HookSeries {
    requests: [IntCounter; 4],
    duration: Histogram,
}

impl HookSeries {
    /// Counts one request that ended as `outcome`, started at `started`.
    pub fn record(&self, outcome: HookOutcome, started: Instant) {
        let index = HookOutcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.requests[index].inc();
        self.duration.observe(started.elapsed().as_secs_f64());
    }
}

/// A limit that refused something a client or a REST caller asked for (the
/// `limit` label of `hubwire_limit_refusals_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// A stream invocation beyond `max_streams_per_connection`.
    StreamsPerConnection,
    /// A group name longer than the node accepts.
    GroupNameLength,
    /// A group beyond `max_groups_per_connection`.
    GroupsPerConnection,
    /// A JoinGroup outside the token's `channels` patterns.
    ChannelsClaim,
    /// A send to other users without the `admin` role.
    AdminRole,
    /// A chat message beyond the hub's `messages_per_minute` for its sender.
    MessageRate,
    /// A typing notice beyond the hub's `typing_per_minute` (dropped).
    TypingRate,
    /// A chat id, attachments or participant list beyond its limit.
    ChatInput,
    /// A subscribe or unsubscribe (channels, rooms, groups) beyond the hub's
    /// `subscriptions_per_minute` for its user.
    SubscriptionRate,
    /// A room heartbeat beyond the hub's `heartbeats_per_minute`.
    HeartbeatRate,
    /// A notification acknowledgement or read beyond `acks_per_minute`.
    AckRate,
    /// A relay beyond the hub's `relays_per_minute`.
    RelayRate,
    /// A notifications hub's channel, id or REST field beyond its limit.
    NotificationsInput,
    /// A rooms hub's room or user id beyond its limit.
    RoomsInput,
    /// A groups hub's argument or relay beyond its limit.
    GroupsInput,
}

impl Limit {
    /// Every limit.
    pub const ALL: [Limit; 7] = [
        Limit::StreamsPerConnection,
        Limit::GroupNameLength,
        Limit::GroupsPerConnection,
        Limit::ChannelsClaim,
        Limit::AdminRole,
        Limit::MessageRate,
        Limit::TypingRate,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::StreamsPerConnection => "streams_per_connection",
            Limit::GroupNameLength => "group_name_length",
            Limit::GroupsPerConnection => "groups_per_connection",
            Limit::ChannelsClaim => "channels_claim",
            Limit::AdminRole => "admin_role",
            Limit::MessageRate => "message_rate",
            Limit::TypingRate => "typing_rate",
            Limit::ChatInput => "chat_input",
            Limit::SubscriptionRate => "subscription_rate",
            Limit::HeartbeatRate => "heartbeat_rate",
            Limit::AckRate => "ack_rate",
            Limit::RelayRate => "relay_rate",
            Limit::NotificationsInput => "notifications_input",
            Limit::RoomsInput => "rooms_input",
            Limit::GroupsInput => "groups_input",
        }
    }
}

/// The `reason` values of `hubwire_requests_refused_total`.
const REQUEST_REFUSALS: [&str; 5] = [
    "negotiate_user_limit",
    "negotiate_node_limit",
    "user_mismatch",
    "origin",
    "token_expired",
];

/// Why a connection was closed as too slow (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowReason {
    /// Its queue held `outbound_queue` records.
    QueueRecords,
    /// Its queue held `outbound_queue_bytes` bytes.
    QueueBytes,
    /// A write made no progress for `write_timeout_secs`.
    WriteTimeout,
}

impl SlowReason {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::QueueRecords => "queue_records",
            Self::QueueBytes => "queue_bytes",
            Self::WriteTimeout => "write_timeout",
        }
    }
}

/// One hub's slow-connection counters, one per [`SlowReason`].
#[derive(Clone)]
pub struct SlowCloses([IntCounter; 3]);

impl SlowCloses {
    /// The counter of `reason`.
    pub fn get(&self, reason: SlowReason) -> &IntCounter {
        &self.0[reason as usize]
    }
}

/// Why an upgrade was refused (the `reason` label of `hubwire_connections_refused_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    /// The node holds `max_connections` sockets.
    NodeFull,
    /// `max_handshakes` handshakes are in progress.
    Handshakes,
    /// `max_handshakes_per_ip` handshakes are in progress from the client's address.
    HandshakesPerIp,
    /// The user holds `max_connections_per_user` connections (handshakes included).
    UserLimit,
    /// The backplane could not register the connection.
    Backplane,
}

/// The refusal counters, one per [`RefusalReason`].
pub struct Refusals([IntCounter; 5]);

impl Refusals {
    /// Counts one refusal.
    pub fn count(&self, reason: RefusalReason) {
        self.0[reason as usize].inc();
    }
}

/// Why a connection ended (the `reason` label of `hubwire_disconnects_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client closed or went away.
    ClientClosed,
    /// The server closed it with an error (protocol error, client timeout, too slow).
    Error,
    /// The node shut down (drain).
    Shutdown,
    /// Its access token expired (`close_on_token_expiry`).
    TokenExpired,
    /// A hub or the REST API closed it.
    Closed,
}

impl DisconnectReason {
    /// Every reason.
    pub const ALL: [DisconnectReason; 5] = [
        Self::ClientClosed,
        Self::Error,
        Self::Shutdown,
        Self::TokenExpired,
        Self::Closed,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::Error => "error",
            Self::Shutdown => "shutdown",
            Self::TokenExpired => "token_expired",
            Self::Closed => "closed",
        }
    }
}

/// One open connection in `hubwire_connections`; [`OpenConnection::closed`]
/// counts its end by reason and its duration. Dropped unclosed, it only
/// leaves the gauge.
pub struct OpenConnection {
    active: IntGauge,
    disconnects: IntCounterVec,
    duration: Histogram,
    hub: String,
    transport: &'static str,
    since: Instant,
    ended: bool,
}

impl OpenConnection {
    /// Counts the end of the connection.
    pub fn closed(mut self, reason: DisconnectReason) {
        self.ended = true;
        self.active.dec();
        self.disconnects
            .with_label_values(&[self.hub.as_str(), self.transport, reason.label()])
            .inc();
        self.duration.observe(self.since.elapsed().as_secs_f64());
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if !self.ended {
            self.active.dec();
        }
    }
}

/// The series of one hub, held by each of its connections.
#[derive(Clone)]
pub struct HubMetrics {
    /// Hub messages received from clients.
    pub messages_in: IntCounter,
    /// Records queued to clients.
    pub messages_out: IntCounter,
    /// Bytes of hub messages received from clients (SignalR records, framing excluded).
    pub bytes_in: IntCounter,
    /// Bytes of WebSocket payload written to clients (records, pings, Close).
    pub bytes_out: IntCounter,
    /// Connections closed as too slow, by reason.
    pub slow_closed: SlowCloses,
    /// Seconds a record waited in its connection queue before the writer took it.
    pub delivery: Histogram,
    /// Server-to-client streams running.
    pub streams_running: IntGauge,
    /// Bytes waiting in connection queues, node-wide (one gauge for every hub).
    pub queued_bytes: IntGauge,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    // Names are constants of this module and unique; a clash is a programming error caught by the tests.
    registry
        .register(Box::new(collector.clone()))
        .unwrap_or_else(|e| panic!("metric registration: {e}"));
    collector
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let hub = &["hub"];
        let gauge = |name, help| IntGaugeVec::new(opts(name, help), hub).map(|g| register(&registry, g));
        let counter = |name, help| IntCounterVec::new(opts(name, help), hub).map(|c| register(&registry, c));
        let connection = &["hub", "transport", "protocol"];
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)
                .map(|h| register(&registry, h))
        };
        let built = (|| -> prometheus::Result<Self> {
            Ok(Self {
                connections: register(
                    &registry,
                    IntGaugeVec::new(opts("hubwire_connections", "Open connections (handshake completed)"), connection)?,
                ),
                connections_opened: register(
                    &registry,
                    IntCounterVec::new(
                        opts("hubwire_connections_opened_total", "Connections whose handshake completed"),
                        connection,
                    )?,
                ),
                disconnects: register(
                    &registry,
                    IntCounterVec::new(
                        opts("hubwire_disconnects_total", "Connections ended, by reason"),
                        &["hub", "transport", "reason"],
                    )?,
                ),
                connection_duration: histogram(
                    "hubwire_connection_duration_seconds",
                    "Seconds from a completed handshake to the connection's end",
                    &["hub", "transport"],
                    &[1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 14400.0, 86400.0],
                )?,
                handshakes_failed: counter(
                    "hubwire_handshakes_failed_total",
                    "Upgraded sockets whose SignalR handshake failed or timed out",
                )?,
                messages_in: counter("hubwire_messages_in_total", "Hub messages received from clients")?,
                messages_out: counter("hubwire_messages_out_total", "Records queued to clients")?,
                bytes_in: counter(
                    "hubwire_received_bytes_total",
                    "Bytes of hub messages received from clients",
                )?,
                bytes_out: counter(
                    "hubwire_sent_bytes_total",
                    "Bytes of WebSocket payload written to clients",
                )?,
                invocation_duration: histogram(
                    "hubwire_invocation_duration_seconds",
                    "Seconds a hub method invocation ran, from dispatch to its result",
                    &["hub", "method"],
                    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
                )?,
                inbox_pending: register(
                    &registry,
                    IntGauge::new(
                        "hubwire_backplane_inbox_pending",
                        "Backplane messages received and waiting for the inbox task (the node's lag behind the cluster)",
                    )?,
                ),
                slow_closed: IntCounterVec::new(
                    opts(
                        "hubwire_slow_connections_closed_total",
                        "Connections closed as too slow: queue full (records or bytes) or a write timed out",
                    ),
                    &["hub", "reason"],
                )
                .map(|c| register(&registry, c))?,
                delivery: HistogramVec::new(
                    HistogramOpts::new(
                        "hubwire_delivery_seconds",
                        "Seconds a record waited in its connection queue before the writer took it",
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    ]),
                    hub,
                )
                .map(|h| register(&registry, h))?,
                streams_running: gauge("hubwire_streams_running", "Server-to-client streams running")?,
                limit_refusals: IntCounterVec::new(
                    opts(
                        "hubwire_limit_refusals_total",
                        "Requests refused by a limit (streams, groups, channels claim, admin role)",
                    ),
                    &["hub", "limit"],
                )
                .map(|c| register(&registry, c))?,
                requests_refused: IntCounterVec::new(
                    opts(
                        "hubwire_requests_refused_total",
                        "Negotiations, upgrades and connections refused or closed by a security limit, by reason",
                    ),
                    &["reason"],
                )
                .map(|c| register(&registry, c))?,
                negotiations_pending: IntGauge::with_opts(opts(
                    "hubwire_negotiations_pending",
                    "Negotiated connection tokens not yet used by a transport",
                ))
                .map(|g| register(&registry, g))?,
                cluster_commands_pending: IntGauge::with_opts(opts(
                    "hubwire_cluster_commands_pending",
                    "Group channel subscribes and unsubscribes (other nodes' commands, own joins) queued or running",
                ))
                .map(|g| register(&registry, g))?,
                cluster_ack_timeouts: IntCounter::with_opts(opts(
                    "hubwire_cluster_ack_timeouts_total",
                    "Group and close commands for other nodes' connections that were not confirmed in time",
                ))
                .map(|c| register(&registry, c))?,
                stateful_reconnect_waiting: register(
                    &registry,
                    IntGauge::new(
                        "hubwire_stateful_reconnect_waiting",
                        "Stateful connections whose socket dropped, waiting for their client's new socket",
                    )?,
                ),
                stateful_reconnects: IntCounter::with_opts(opts(
                    "hubwire_stateful_reconnects_total",
                    "Stateful connections resumed on a new socket",
                ))
                .map(|c| register(&registry, c))?,
                queued_bytes: register(
                    &registry,
                    IntGauge::new(
                        "hubwire_outbound_queued_bytes",
                        "Bytes of records waiting in connection queues for their writers",
                    )?,
                ),
                connections_refused: {
                    let refused = register(
                        &registry,
                        IntCounterVec::new(
                            opts(
                                "hubwire_connections_refused_total",
                                "WebSocket upgrades refused before the 101, by reason",
                            ),
                            &["reason"],
                        )?,
                    );
                    let reasons = [
                        "node_full",
                        "handshakes",
                        "handshakes_per_ip",
                        "user_limit",
                        "backplane",
                    ];
                    Refusals(reasons.map(|r| refused.with_label_values(&[r])))
                },
                sockets: register(
                    &registry,
                    IntGauge::new(
                        "hubwire_websocket_sockets",
                        "Upgraded WebSocket sockets held, handshakes included",
                    )?,
                ),
                handshakes: register(
                    &registry,
                    IntGauge::new(
                        "hubwire_handshakes_in_progress",
                        "Upgraded sockets whose SignalR handshake is not complete",
                    )?,
                ),
                websocket_closes: IntCounterVec::new(
                    opts(
                        "hubwire_websocket_closes_total",
                        "WebSocket Close frames sent, by status code (1002 protocol error, 1007 invalid UTF-8, 1009 too big)",
                    ),
                    &["code"],
                )
                .map(|c| register(&registry, c))?,
                webhooks: IntCounterVec::new(
                    opts(
                        "hubwire_webhook_total",
                        "Webhook bodies (offline-delivery hook) by outcome: queued, delivered, retried (attempts), failed (gave up), dropped (queue full)",
                    ),
                    &["hub", "hook", "outcome"],
                )
                .map(|c| register(&registry, c))?,
                hook_requests: IntCounterVec::new(
                    opts(
                        "hubwire_hook_requests_total",
                        "Requests to the app's backend (upstream events and invocations, authentication and authorisation hooks) by outcome",
                    ),
                    &["hub", "hook", "outcome"],
                )
                .map(|c| register(&registry, c))?,
                hook_duration: histogram(
                    "hubwire_hook_duration_seconds",
                    "Seconds a request to the app's backend took, failures and timeouts included",
                    &["hub", "hook"],
                    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
                )?,
                backend_shared: IntCounterVec::new(
                    opts(
                        "hubwire_backend_shared_total",
                        "Backend hook requests (cache misses) that waited for the same call already in flight instead of making their own, by hook",
                    ),
                    &["hook"],
                )
                .map(|c| register(&registry, c))?,
                registry: registry.clone(),
            })
        })();
        let metrics = built.unwrap_or_else(|e| panic!("metric definition: {e}"));
        // Known label values are exposed at 0 from the start, so that a
        // scrape shows every series before it first moves (docs/metrics.md).
        for reason in REQUEST_REFUSALS {
            metrics.requests_refused.with_label_values(&[reason]);
        }
        for code in [1000u16, 1002, 1007, 1009] {
            metrics.websocket_closes.with_label_values(&[code.to_string().as_str()]);
        }
        metrics
    }

    /// The series of one hub.
    pub fn hub(&self, hub: &str) -> HubMetrics {
        for limit in Limit::ALL {
            self.limit_refusals.with_label_values(&[hub, limit.as_str()]);
        }
        self.handshakes_failed.with_label_values(&[hub]);
        HubMetrics {
            messages_in: self.messages_in.with_label_values(&[hub]),
            messages_out: self.messages_out.with_label_values(&[hub]),
            bytes_in: self.bytes_in.with_label_values(&[hub]),
            bytes_out: self.bytes_out.with_label_values(&[hub]),
            slow_closed: SlowCloses(
                [
                    SlowReason::QueueRecords,
                    SlowReason::QueueBytes,
                    SlowReason::WriteTimeout,
                ]
                .map(|r| self.slow_closed.with_label_values(&[hub, r.label()])),
            ),
            delivery: self.delivery.with_label_values(&[hub]),
            streams_running: self.streams_running.with_label_values(&[hub]),
            queued_bytes: self.queued_bytes.clone(),
        }
    }

    /// Counts a connection open (its handshake completed) until the returned
    /// guard is closed or dropped.
    pub fn open(&self, hub: &str, transport: &'static str, protocol: &'static str) -> OpenConnection {
        let active = self.connections.with_label_values(&[hub, transport, protocol]);
        active.inc();
        self.connections_opened
            .with_label_values(&[hub, transport, protocol])
            .inc();
        for reason in DisconnectReason::ALL {
            self.disconnects.with_label_values(&[hub, transport, reason.label()]);
        }
        OpenConnection {
            active,
            disconnects: self.disconnects.clone(),
            duration: self.connection_duration.with_label_values(&[hub, transport]),
            hub: hub.to_owned(),
            transport,
            since: Instant::now(),
            ended: false,
        }
    }

    /// Counts a SignalR handshake that failed in `hub`.
    pub fn handshake_failed(&self, hub: &str) {
        self.handshakes_failed.with_label_values(&[hub]).inc();
    }

    /// The invocation duration histogram of `method` in `hub` (callers cache it).
    pub fn invocation(&self, hub: &str, method: &str) -> Histogram {
        self.invocation_duration.with_label_values(&[hub, method])
    }

    /// Adds a collector kept elsewhere (the store's and the Redis backplane's
    /// round-trip histograms) to what `/metrics` renders.
    pub fn adopt<C: prometheus::core::Collector + Clone + 'static>(&self, collector: &C) {
        if let Err(e) = self.registry.register(Box::new(collector.clone())) {
            tracing::warn!(error = %e, "metric not adopted");
        }
    }

    /// Counts one refusal by `limit` in `hub`. Looked up each time: refusals
    /// are rare, and connections need not carry a counter per limit.
    pub fn refused(&self, hub: &str, limit: Limit) {
        self.limit_refusals.with_label_values(&[hub, limit.as_str()]).inc();
    }

    /// Counts a request refused: `negotiate_user_limit`, `negotiate_node_limit`,
    /// `user_mismatch`, `origin`, `token_expired`.
    pub fn request_refused(&self, reason: &str) {
        self.requests_refused.with_label_values(&[reason]).inc();
    }

    /// The counters of `hub`'s webhook `hook` (`offline`).
    pub fn webhook(&self, hub: &str, hook: &str) -> WebhookCounters {
        let outcome = |o: &str| self.webhooks.with_label_values(&[hub, hook, o]);
        WebhookCounters {
            queued: outcome("queued"),
            delivered: outcome("delivered"),
            retried: outcome("retried"),
            failed: outcome("failed"),
            dropped: outcome("dropped"),
        }
    }

    /// The series of `hub`'s requests to the app's backend through `hook`
    /// (`upstream_connections`, `upstream_messages`, `authenticate`,
    /// `authorize`): `hubwire_hook_requests_total` by outcome and
    /// `hubwire_hook_duration_seconds`. Resolved once by a hook's owner.
    pub fn hook(&self, hub: &str, hook: &str) -> HookSeries {
        HookSeries {
            requests: HookOutcome::ALL.map(|o| self.hook_requests.with_label_values(&[hub, hook, o.as_str()])),
            duration: self.hook_duration.with_label_values(&[hub, hook]),
        }
    }

    /// The counter of misses of backend hook `hook` (`authenticate`,
    /// `authorize`) that shared a call in flight.
    pub fn backend_shared(&self, hook: &str) -> IntCounter {
        self.backend_shared.with_label_values(&[hook])
    }

    /// Counts a WebSocket Close frame sent with status `code`.
    pub fn websocket_closed(&self, code: u16) {
        self.websocket_closes
            .with_label_values(&[code.to_string().as_str()])
            .inc();
    }

    /// The Prometheus text exposition of every metric, plus the backplane's
    /// own counters (kept by the backplane crate, rendered here).
    pub fn render(&self, backplane: &AnyBackplane) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        let mut text = String::from_utf8_lossy(&out).into_owned();
        let ready = u64::from(backplane.is_ready());
        let _ = writeln!(text, "# HELP hubwire_backplane_ready Whether the backplane is connected and in sync\n# TYPE hubwire_backplane_ready gauge\nhubwire_backplane_ready {ready}");
        if let AnyBackplane::Redis(redis) = backplane {
            let s = redis.stats();
            let counters = [
                ("published", "Messages published to other nodes", s.published),
                ("received", "Messages and events received from other nodes", s.received),
                ("errors", "Redis calls that failed", s.redis_errors),
                ("reconnects", "Times a lost Redis connection came back", s.reconnects),
                (
                    "decode_errors",
                    "Received frames that could not be decoded",
                    s.decode_errors,
                ),
                (
                    "dropped",
                    "Received messages lost because the receiver lagged",
                    s.dropped,
                ),
                (
                    "resyncs",
                    "Times this node wrote its connections back into Redis",
                    s.resyncs,
                ),
                ("nodes_swept", "Dead nodes this node swept", s.nodes_swept),
                (
                    "inbox_full",
                    "Times a received message found the node's inbox full and waited",
                    s.inbox_full,
                ),
            ];
            for (name, help, value) in counters {
                let _ = writeln!(text, "# HELP hubwire_redis_{name}_total {help}\n# TYPE hubwire_redis_{name}_total counter\nhubwire_redis_{name}_total {value}");
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubwire_backplane::{LocalBackplane, NodeId};

    #[test]
    fn hub_series_appear_in_the_text_output() {
        let metrics = Metrics::new();
        let chat = metrics.hub("chat");
        let open = metrics.open("chat", "WebSockets", "json");
        chat.messages_in.inc_by(3);
        let (local, _inbox) = LocalBackplane::single(NodeId::from("n"));
        let text = metrics.render(&AnyBackplane::Local(local));
        assert!(
            text.contains("hubwire_connections{hub=\"chat\",protocol=\"json\",transport=\"WebSockets\"} 1"),
            "{text}"
        );
        open.closed(DisconnectReason::Shutdown);
        let text = metrics.render(&AnyBackplane::Local(LocalBackplane::single(NodeId::from("n")).0));
        assert!(
            text.contains("hubwire_connections{hub=\"chat\",protocol=\"json\",transport=\"WebSockets\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("hubwire_disconnects_total{hub=\"chat\",reason=\"shutdown\",transport=\"WebSockets\"} 1"),
            "{text}"
        );
        assert!(text.contains("hubwire_messages_in_total{hub=\"chat\"} 3"), "{text}");
        assert!(text.contains("hubwire_backplane_ready 1"), "{text}");
        chat.slow_closed.get(SlowReason::WriteTimeout).inc();
        metrics.connections_refused.count(RefusalReason::HandshakesPerIp);
        chat.queued_bytes.add(7);
        metrics.refused("chat", Limit::GroupsPerConnection);
        let text = metrics.render(&AnyBackplane::Local(LocalBackplane::single(NodeId::from("n")).0));
        assert!(
            text.contains("hubwire_slow_connections_closed_total{hub=\"chat\",reason=\"write_timeout\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("hubwire_connections_refused_total{reason=\"handshakes_per_ip\"} 1"),
            "{text}"
        );
        assert!(text.contains("hubwire_outbound_queued_bytes 7"), "{text}");
        assert!(
            text.contains("hubwire_limit_refusals_total{hub=\"chat\",limit=\"groups_per_connection\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn websocket_closes_are_counted_by_code() {
        let metrics = Metrics::new();
        metrics.websocket_closed(1002);
        metrics.websocket_closed(1002);
        metrics.websocket_closed(1007);
        let (local, _inbox) = LocalBackplane::single(NodeId::from("n"));
        let text = metrics.render(&AnyBackplane::Local(local));
        assert!(
            text.contains("hubwire_websocket_closes_total{code=\"1002\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("hubwire_websocket_closes_total{code=\"1007\"} 1"),
            "{text}"
        );
    }
}
