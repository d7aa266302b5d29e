//! hubwire-node: a hub server that speaks the ASP.NET Core SignalR protocol.
//!
//! # Layout: three layers, each depending only on the ones below it
//! - [`core`] (lowest): configuration, tokens, connections and their registry,
//!   sends and cluster commands ([`core::node::Node`]), the inbox of what
//!   other nodes ask, hub dispatch and the hub trait, metrics
//!   ([`core::metrics`]), log output ([`core::logging`]) and OpenTelemetry
//!   spans with their OTLP exporter ([`core::telemetry`]). No HTTP, no
//!   particular hub. A store, a rate limiter or presence goes here; so does the
//!   signed webhook sender ([`core::webhook`]: bounded queue, timeout, retries).
//! - [`hubs`]: the built-in hubs, each implementing [`core::hub::Hub`]. A new
//!   hub goes here; a hub's rules on top of core services too (the chat
//!   kind's offline-delivery rule, `hubs::chat::offline`, on the webhook;
//!   the notifications kind, `hubs::notifications`).
//! - [`web`] (highest): everything HTTP — negotiate, the transports
//!   (`web::transport`: WebSockets in `websocket.rs`; Server-Sent Events in
//!   `sse.rs` and Long Polling in `long_polling.rs`, which share
//!   `sessions.rs`; what all three share in `accept.rs` and `records.rs`),
//!   the REST API, CORS, token extraction, the development page, routes and
//!   [`web::http::run`]. A new transport or REST route goes here.
//!
//! The protocol features beyond plain invocations each have a module of
//! their own in the core, with the transport's part beside the transport:
//! stateful reconnect in `core::replay` (replay buffer, sequence ids,
//! resumable connections) and `web::transport::resume` (a WebSocket
//! connection outliving its socket); client results in `core::client_results`
//! (and its table, `core::result_waiters`); client-to-server streams in
//! `core::upload`.
//!
//! This file wires the three together ([`build`]); `main.rs` parses the
//! command line and runs [`web::http::run`]. `node/tests/layers.rs` checks
//! the rule: no module imports a layer above its own, and the modules import
//! each other without cycles.

pub mod core;
pub mod hubs;
pub mod web;

use std::sync::Arc;

use hubwire_backplane::{AnyBackplane, LocalBackplane, NodeId, RedisBackplane};

use hubwire_store::Store;

use crate::core::{auth, config, inbox, negotiations};
use crate::web::state::AppState;

/// Builds a node from its configuration — with the Redis backplane when
/// `redis_url` is set, else the in-process one; the store in PostgreSQL when
/// `database_url` is set, else SQLite in `data_dir` — with the built-in hubs the
/// configuration asks for (refused when a hub definition is wrong), and starts the task that delivers what other
/// nodes publish ([`inbox::run_inbox`]) and the chat hubs' offline-delivery
/// hooks ([`core::webhook`], `hubs::chat::offline`).
pub async fn build(config: config::Config) -> anyhow::Result<AppState> {
    let auth = auth::Authenticator::from_config(&config)?;
    let node_id = NodeId::from(config.node_id.clone().unwrap_or_else(negotiations::random_id));
    let otlp = config.otlp_endpoint.clone().or_else(|| {
        std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty())
    });
    if let Some(endpoint) = otlp {
        let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "hubwire".into());
        crate::core::telemetry::install(&endpoint, &service, node_id.as_str())?;
    }
    let (backplane, inbox) = match config.redis_backplane(&node_id) {
        None => {
            let (backplane, inbox) = LocalBackplane::single(node_id);
            (AnyBackplane::Local(backplane), inbox)
        }
        Some(redis) => {
            let (backplane, inbox) = RedisBackplane::connect(redis).await?;
            (AnyBackplane::Redis(backplane), inbox)
        }
    };
    let store = Store::open(&config.store()).await?;
    // Spans of store calls and Redis commands, only when traces are exported
    // (otherwise neither has an observer: one atomic load per call).
    if crate::core::telemetry::enabled() {
        store.observe(Arc::new(crate::core::telemetry::StoreSpans));
        if let AnyBackplane::Redis(redis) = &backplane {
            redis.observe(Arc::new(crate::core::telemetry::RedisSpans));
        }
    }
    if !config.message_retention.is_empty() {
        store.spawn_retention();
    }
    let built = hubs::built_in(&config, &store)?;
    let redis_round_trips = match &backplane {
        AnyBackplane::Redis(redis) => Some(redis.round_trips()),
        AnyBackplane::Local(_) => None,
    };
    let node = Arc::new(built.hubs.serve(config, auth, backplane));
    node.metrics.adopt(&store.round_trips());
    if let Some(histogram) = redis_round_trips {
        node.metrics.adopt(&histogram);
    }
    node.start().await?;
    for chat in &built.chats {
        chat.start(&node);
    }
    for hub in &built.notifications {
        hub.start();
    }
    tokio::spawn(inbox::run_inbox(node.clone(), inbox));
    Ok(AppState {
        node,
        hubs: built.hubs,
        chats: built.chats,
        notifications: built.notifications,
        rooms: built.rooms,
        store: Some(store),
        sessions: Default::default(),
    })
}
