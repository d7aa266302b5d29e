//! Transports: how hub messages travel between a client and the node.
//!
//! # Layout
//! - [`websocket`]: WebSockets, on the socket itself ([`frame`] is its RFC 6455 framing).
//! - [`connect`]: a `GET` of a hub that is not an upgrade: SSE or a poll.
//! - [`sessions`]: what Server-Sent Events and Long Polling share: the task
//!   that runs each connection, the client's sends (`POST`) and `DELETE`;
//!   [`session`] holds what a connection's task and requests share and the
//!   node's table of them; [`sse`] and [`long_polling`] are their
//!   server-to-client halves.
//! - `accept`, `records`, `refusal`: what every transport shares — the checks
//!   of a request opening a connection, the handshake and hub records in and
//!   out, refusals as HTTP responses.

mod accept;
pub mod connect;
pub mod frame;
pub mod long_polling;
mod records;
mod refusal;
mod resume;
pub mod session;
pub mod sessions;
pub mod sse;
pub mod websocket;
