//! The HTTP-facing layer: everything that speaks HTTP or touches a socket,
//! on top of [`crate::core`] (and of no particular hub).
//!
//! # Layout, lowest first
//! - [`state`]: the app state, token extraction, connection authorization.
//! - [`cors`]: allowed origins, CORS and security headers of HTTP responses.
//! - [`http`]: the app state, token extraction from requests, routes and
//!   [`http::run`] (serving, then graceful shutdown).
//! - [`azure`]: Azure SignalR Service's client URL (`/client/?hub=`) and
//!   the client tokens the access key signs.
//! - [`negotiate`]: `POST /hubs/{hub}/negotiate`.
//! - [`transport`]: the transports — WebSockets (RFC 6455 framing of our
//!   own), Server-Sent Events and Long Polling.
//! - [`rest`]: the server REST API for backends (Azure SignalR compatible).
//! - [`dev`]: development mode's transport check page.

pub mod azure;
pub mod cors;
pub mod dev;
pub mod http;
pub mod negotiate;
pub mod rest;
pub mod state;
pub mod transport;
