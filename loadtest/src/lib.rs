//! hubwire's load tester, and the SignalR client it is built on.
//!
//! # Layout
//! - [`client`]: a SignalR client over WebSockets using the node's codec.
//! - [`common`]: options every scenario shares, opening many clients.
//! - [`pace`]: when a steady sender's next send is due.
//! - [`peer`]: one client over hubwire and the servers it is compared with
//!   (Socket.IO, the protocol-less server), so scenarios run unchanged on all.
//! - [`raw_server`]: that protocol-less WebSocket broadcast server (binary
//!   `raw_ws_server`), the limit of the benchmarks.
//! - [`rest`]: tokens and the one REST call a scenario's setup needs.
//! - [`scenario`]: the scenarios (`broadcast`, `chat`, `chat-hub`, `echo`, `idle`, `notify`).
//! - [`stats`]: latency percentiles.
//! - [`usage`]: CPU time and resident memory of the processes involved.

pub mod client;
pub mod common;
pub mod pace;
pub mod peer;
pub mod raw_server;
pub mod rest;
pub mod scenario;
pub mod stats;
pub mod usage;

pub use client::{Client, ClientError, ConnectOptions};
pub use peer::{Peer, ServerKind};
