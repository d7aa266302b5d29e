//! The core: connections, their registry, sends, cluster commands, hub
//! dispatch and the hub trait. It knows no HTTP (no actix here) and no
//! particular hub: the web layer hands it upgraded connections and REST calls,
//! the hubs layer plugs in through [`hub::Hub`] and [`node::NodeHooks`].
//!
//! # Layout, lowest first (a module uses only modules above it in this list)
//! - [`definition`]: hub definitions as the configuration writes them
//!   (`[[hub]]` tables; checked and resolved in `crate::hubs::definition`).
//! - [`webhook`]: signed JSON POSTs to a configured URL from a bounded
//!   queue, with a timeout, retries and back-off (the chat kind's
//!   offline-delivery hook); the node's one HTTP client.
//! - [`proxies`], [`config`]: the configuration (TOML file + `HUBWIRE_*`
//!   environment) and the trusted-proxy blocks it holds.
//! - [`logging`]: the log output, plain text or JSON lines.
//! - [`telemetry`]: OpenTelemetry spans and their OTLP/HTTP exporter.
//! - [`metrics`]: Prometheus metrics (`/metrics`).
//! - [`auth`]: user tokens (JWT) and who they stand for.
//! - [`backend`]: the app's backend hooks — authentication of requests
//!   without a valid JWT, authorisation of joins and subscriptions — cached
//!   and bounded by a timeout.
//! - [`connection`]: one connection's handle: queue and close signal.
//! - [`upstream`]: Azure SignalR Service's serverless upstream — connection
//!   events and invocations of methods a hub lacks, POSTed to the backend.
//! - [`outbound`]: a message encoded once per protocol for many recipients.
//! - [`registry`]: this node's connections by hub, group and user — the one
//!   owner of local group membership.
//! - [`admission`]: the caps an upgrade must pass before its 101.
//! - [`negotiations`]: the table of negotiated connection tokens.
//! - [`drain`]: what graceful shutdown waits for (a hold per connection).
//! - [`acks`], [`lanes`]: the answers this node awaits from other nodes, and
//!   the per-channel queues cluster commands run on.
//! - [`replay`]: stateful reconnect — a connection's replay buffer and
//!   sequence ids, and the table of connections a new socket may resume.
//! - [`result_waiters`]: the client results this node awaits (the table).
//! - [`node`]: the shared state of a node and its one send API.
//! - [`client_results`]: the node's methods that invoke a client and await
//!   its result, here or on another node.
//! - [`user_state`]: the node's methods on per-user state held cluster-wide
//!   (rate buckets, last seen, cached read positions).
//! - [`inbox`]: what other nodes ask of this one (the inbox task).
//! - [`upload`]: client-to-server streams into hub methods, bounded per stream.
//! - [`hub`]: the hub trait, the hub set, the context of an invocation.
//! - [`dispatch`]: hub messages in, hub method calls, completions out.

pub mod acks;
pub mod admission;
pub mod auth;
pub mod backend;
pub mod client_results;
pub mod config;
pub mod connection;
pub mod definition;
pub mod dispatch;
pub mod drain;
pub mod hub;
pub mod inbox;
pub mod lanes;
pub mod logging;
pub mod metrics;
pub mod negotiations;
pub mod node;
pub mod outbound;
pub mod proxies;
pub mod registry;
pub mod replay;
pub mod result_waiters;
pub mod telemetry;
pub mod upload;
pub mod upstream;
pub mod user_state;
pub mod webhook;
