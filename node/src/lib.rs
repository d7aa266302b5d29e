//! hubwire-node: a hub server that speaks the ASP.NET Core SignalR protocol.
//!
//! # Layout
//! - [`config`]: the configuration (TOML file + `HUBWIRE_*` environment).
//! - [`auth`]: user tokens (JWT) and who they stand for.
//! - [`node`]: the shared state of a node and its one send API.
//! - [`cluster`]: what other nodes ask of this one (the inbox task, ordered
//!   group commands) and the answers this node awaits.
//! - [`registry`]: this node's connections by hub, group and user.
//! - [`connection`]: one connection's handle: queue and close signal.
//! - [`outbound`]: a message encoded once per protocol for many recipients.
//! - [`negotiate`], [`transport`]: how clients connect; [`admission`]: the
//!   caps an upgrade must pass before its 101.
//! - [`dispatch`]: hub messages in, hub method calls, completions out.
//! - [`hubs`]: the hub trait and the built-in hubs.
//! - [`rest`]: the server REST API for backends (Azure SignalR compatible).
//! - [`metrics`]: Prometheus metrics (`/metrics`).
//! - [`http`]: routes and [`http::run`].
//! - [`cors`]: allowed origins, CORS and security headers of HTTP responses.
//! - [`proxies`]: which peers' forwarded headers are trusted.

pub mod admission;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod cors;
pub mod dispatch;
pub mod http;
pub mod hubs;
pub mod metrics;
pub mod negotiate;
pub mod node;
pub mod outbound;
pub mod proxies;
pub mod registry;
pub mod rest;
pub mod transport;

use std::sync::Arc;

use hubwire_backplane::{AnyBackplane, LocalBackplane, NodeId, RedisBackplane};

/// Builds a node from its configuration — with the Redis backplane when
/// `redis_url` is set, else the in-process one — and starts the task that
/// delivers what other nodes publish ([`cluster::run_inbox`]).
pub async fn build_node(config: config::Config) -> anyhow::Result<Arc<node::Node>> {
    let auth = auth::Authenticator::from_config(&config)?;
    let node_id = NodeId::from(config.node_id.clone().unwrap_or_else(negotiate::random_id));
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
    let mut hubs = hubs::HubSet::default();
    if config.diagnostics_hub {
        hubs = hubs.with(Arc::new(hubs::diagnostics::DiagnosticsHub));
    }
    let node = Arc::new(node::Node::new(config, auth, backplane, hubs));
    node.start().await?;
    tokio::spawn(cluster::run_inbox(node.clone(), inbox));
    Ok(node)
}
