//! The ASP.NET Core SignalR hub protocol: pure encoding and decoding, no I/O.
//!
//! Implements the JSON and MessagePack encodings of the hub protocol
//! (`src/SignalR/docs/specs/HubProtocol.md` in dotnet/aspnetcore), version 2
//! (with the `Ack`/`Sequence` messages of stateful reconnect), and the JSON
//! handshake that precedes them. Where the spec and the official JavaScript
//! client disagree, this crate follows the client (and ASP.NET's server).
//!
//! Argument, item and result values are [`serde_json::Value`] for both
//! encodings. MessagePack values map onto JSON as follows:
//!
//! - nil, booleans, integers (`u64`/`i64`), strings, arrays: one to one;
//!   float32 widens to float64; NaN and ±infinity become `null`.
//! - maps become objects; non-string keys are replaced by their JSON text
//!   (`1` → `"1"`, `true` → `"true"`), later duplicates win.
//! - `bin` becomes a base64 string, and the timestamp extension (type -1,
//!   which .NET and `@msgpack/msgpack` use for dates) becomes an RFC 3339 UTC
//!   string; other extension types are rejected with
//!   [`ProtocolError::UnsupportedExtension`]. These conversions are one-way:
//!   re-encoding yields a string.
//! - in the other direction, JSON integers are written as MessagePack ints and
//!   all other numbers as float64.
//! - nesting inside one MessagePack value is limited to 100 levels, which keeps
//!   every decoded message re-encodable as JSON that serde_json parses again.
//!
//! JSON floats are parsed exactly (serde_json's `float_roundtrip` feature), so
//! a double relayed from one client to another keeps every bit.
//!
//! Unknown message types decode to `Ok(None)`: both the TypeScript client
//! (`JsonHubProtocol.ts` / `MessagePackHubProtocol.ts`) and ASP.NET's
//! `ParseMessage` have a `default:` branch commented "Future protocol changes
//! can add message types, old clients can ignore them".
//!
//! # Layout
//!
//! - `message`: [`HubMessage`] and its bodies, shared by both encodings.
//! - `protocol`: [`Protocol`], name/version negotiation, and the
//!   `encode` / `next_record` / `decode` entry points.
//! - `framing`: record separators and varint length prefixes.
//! - `json`: the JSON encoding.
//! - `msgpack`: the MessagePack encoding (`read`, `write` and the lossy
//!   `convert`ers live below it).
//! - `handshake`: handshake request/response parsing and writing.
//! - `error`: [`FrameError`] and [`ProtocolError`].

mod error;
mod framing;
mod handshake;
mod json;
mod message;
mod msgpack;
mod protocol;

pub use error::{FrameError, ProtocolError};
pub use handshake::{
    encode_handshake_request, encode_handshake_response, parse_handshake_request, parse_handshake_response,
    HandshakeRequest,
};
pub use message::{
    Ack, CancelInvocation, Close, Completion, CompletionOutcome, Headers, HubMessage, Invocation, Sequence, StreamItem,
};
pub use msgpack::civil_from_days;
pub use protocol::Protocol;
pub use serde_json::Value;

/// The ASCII record separator terminating every JSON record and handshake.
pub const RECORD_SEPARATOR: u8 = 0x1e;
