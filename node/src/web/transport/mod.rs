//! Transports: how hub messages travel between a client and the node.
//!
//! # Layout
//! - [`websocket`]: WebSockets, on the socket itself ([`frame`] is its RFC 6455 framing).
//! - [`sessions`]: what Server-Sent Events and Long Polling share: the table
//!   of their connections on this node, the task that runs each one, the
//!   client's sends (`POST`) and `DELETE`; [`sse`] and [`long_polling`] are
//!   their server-to-client halves.
//! - `accept`, `records`, `refusal`: what every transport shares — the checks
//!   of a request opening a connection, the handshake and hub records in and
//!   out, refusals as HTTP responses.

mod accept;
pub mod frame;
pub mod long_polling;
mod records;
mod refusal;
pub mod sessions;
pub mod sse;
pub mod websocket;
