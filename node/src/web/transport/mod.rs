//! Transports: how hub messages travel between a client and the node.

pub mod frame;
mod refusal;
mod resume;
pub mod websocket;
