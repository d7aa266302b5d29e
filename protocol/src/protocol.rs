//! [`Protocol`]: the entry point tying framing and the two encodings together.
//!
//! A connection picks one protocol in the handshake and then only ever calls
//! [`Protocol::encode`] for outgoing messages and the
//! [`Protocol::next_record`] / [`Protocol::decode`] pair for incoming bytes:
//!
//! ```
//! use hubwire_protocol::{HubMessage, Protocol};
//!
//! let protocol = Protocol::Json;
//! let mut buf = Vec::new();
//! buf.extend_from_slice(b"{\"type\":6}\x1e{\"type\":6}\x1e{\"ty");
//! let mut messages = Vec::new();
//! while let Some((payload, used)) = protocol.next_record(&buf, 32 * 1024)? {
//!     if let Some(msg) = protocol.decode(payload)? {
//!         messages.push(msg);
//!     }
//!     buf.drain(..used);
//! }
//! assert_eq!(messages, [HubMessage::Ping, HubMessage::Ping]);
//! assert_eq!(buf, b"{\"ty"); // incomplete record stays buffered
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use bytes::{Bytes, BytesMut};

use crate::error::{FrameError, ProtocolError};
use crate::framing::{next_binary_record, next_text_record};
use crate::message::HubMessage;
use crate::{json, msgpack};

/// Highest hub protocol version implemented (version 2 added `Ack` and
/// `Sequence` for stateful reconnect), the same for both encodings.
const MAX_VERSION: u32 = 2;

/// A hub protocol encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `"json"`: UTF-8 JSON records terminated by `0x1E`, sent as text frames.
    Json,
    /// `"messagepack"`: varint-length-prefixed MessagePack arrays, sent as binary frames.
    MessagePack,
}

impl Protocol {
    /// Resolves a handshake protocol name, ASCII case-insensitively as ASP.NET's
    /// `DefaultHubProtocolResolver` does.
    pub fn from_name(name: &str) -> Option<Protocol> {
        if name.eq_ignore_ascii_case("json") {
            Some(Protocol::Json)
        } else if name.eq_ignore_ascii_case("messagepack") {
            Some(Protocol::MessagePack)
        } else {
            None
        }
    }

    /// The protocol's name in handshakes and negotiate responses.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Json => "json",
            Protocol::MessagePack => "messagepack",
        }
    }

    /// The protocol version this crate implements: 2 for both encodings, as in
    /// ASP.NET Core 8+ (`ProtocolVersion = 2`) and the current JS clients.
    pub fn version(self) -> u32 {
        MAX_VERSION
    }

    /// Whether a handshake requesting `version` must be accepted.
    ///
    /// Mirrors ASP.NET's `IsVersionSupported` (`version <= Version`): version 1
    /// clients (no `Ack`/`Sequence`, so no stateful reconnect) and version 2
    /// clients are both accepted.
    pub fn is_version_supported(self, version: u32) -> bool {
        version <= self.version()
    }

    /// Whether messages travel in binary WebSocket frames (MessagePack) rather
    /// than text frames (JSON).
    pub fn is_binary(self) -> bool {
        matches!(self, Protocol::MessagePack)
    }

    /// Appends one complete framed record (JSON + `0x1E`, or varint length +
    /// MessagePack payload) to `out`.
    pub fn encode(self, msg: &HubMessage, out: &mut BytesMut) {
        match self {
            Protocol::Json => json::encode(msg, out),
            Protocol::MessagePack => msgpack::encode(msg, out),
        }
    }

    /// Encodes one framed record into a fresh buffer.
    pub fn encode_to_bytes(self, msg: &HubMessage) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        self.encode(msg, &mut out);
        out.freeze()
    }

    /// Splits the next complete record off the front of `buf`.
    ///
    /// Returns the payload without framing and the number of bytes consumed,
    /// or `Ok(None)` if the record is incomplete. Fails with
    /// [`FrameError::TooLarge`] as soon as the payload is known to exceed
    /// `max_len` bytes (separator and prefix not counted): for JSON, when more
    /// than `max_len` bytes are buffered without a separator; for MessagePack,
    /// when the length prefix announces more. A frame may hold several records:
    /// call this in a loop.
    pub fn next_record(self, buf: &[u8], max_len: usize) -> Result<Option<(&[u8], usize)>, FrameError> {
        match self {
            Protocol::Json => next_text_record(buf, max_len),
            Protocol::MessagePack => next_binary_record(buf, max_len),
        }
    }

    /// Decodes one record payload, as returned by [`Protocol::next_record`].
    ///
    /// Returns `Ok(None)` for a well-formed message of an unknown type, which
    /// the official client and server skip for forward compatibility.
    pub fn decode(self, payload: &[u8]) -> Result<Option<HubMessage>, ProtocolError> {
        match self {
            Protocol::Json => json::decode(payload),
            Protocol::MessagePack => msgpack::decode(payload),
        }
    }
}
