//! The handshake: always one JSON object terminated by `0x1E`, whatever hub
//! protocol is being negotiated.
//!
//! Owns parsing and writing of `HandshakeRequest` (`{"protocol":"json","version":1}`)
//! and `HandshakeResponse` (`{}` or `{"error":"..."}`), following ASP.NET's
//! `HandshakeProtocol`: unknown properties are ignored, `protocol` and
//! `version` are required, and a response carrying a `type` property is
//! rejected (the peer skipped the handshake and sent a hub message).
//!
//! Parsers return `Ok(None)` until a complete record is buffered, and report
//! the bytes consumed: hub messages may follow in the same buffer (the JS
//! client can send its first invocation in the same frame as the handshake).

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ProtocolError;
use crate::framing::{next_text_record, write_record_separator};
use crate::json::write_json;
use crate::protocol::Protocol;

/// The client's first message: which hub protocol (and version) it will speak.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize)]
pub struct HandshakeRequest {
    /// Protocol name as sent by the client (see [`Protocol::from_name`]).
    pub protocol: String,
    /// Protocol version requested (see [`Protocol::is_version_supported`]).
    pub version: u32,
}

#[derive(Deserialize)]
struct WireRequest {
    protocol: Option<Value>,
    version: Option<Value>,
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(rename = "type", default, deserialize_with = "crate::json::present")]
    ty: Option<Value>,
    error: Option<Value>,
}

#[derive(Serialize)]
struct ResponseOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

fn invalid(message: impl Into<String>) -> ProtocolError {
    ProtocolError::InvalidHandshake(message.into())
}

/// Splits the first record off `buf` and parses it as JSON of shape `T`.
fn parse_record<'de, T: Deserialize<'de>>(buf: &'de [u8]) -> Result<Option<(T, usize)>, ProtocolError> {
    let Some((payload, consumed)) = next_text_record(buf, usize::MAX).map_err(|e| invalid(e.to_string()))? else {
        return Ok(None);
    };
    if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(invalid("expected a JSON object"));
    }
    let text = std::str::from_utf8(payload).map_err(|e| invalid(e.to_string()))?;
    let parsed = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    Ok(Some((parsed, consumed)))
}

/// Parses the client's handshake request from the front of `buf`.
///
/// Returns `Ok(None)` when no complete record is buffered yet, otherwise the
/// request and the number of bytes it occupied (including the separator).
/// The caller bounds `buf`'s size; this function accepts any record length.
pub fn parse_handshake_request(buf: &[u8]) -> Result<Option<(HandshakeRequest, usize)>, ProtocolError> {
    let Some((wire, consumed)) = parse_record::<WireRequest>(buf)? else {
        return Ok(None);
    };
    let protocol = match wire.protocol {
        Some(Value::String(p)) => p,
        None => return Err(invalid("Missing required property 'protocol'.")),
        Some(_) => return Err(invalid("Expected 'protocol' to be of type String.")),
    };
    let version = match wire.version {
        None => return Err(invalid("Missing required property 'version'.")),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| invalid("Expected 'version' to be a non-negative integer."))?,
        Some(_) => return Err(invalid("Expected 'version' to be of type Number.")),
    };
    Ok(Some((HandshakeRequest { protocol, version }, consumed)))
}

/// Encodes a handshake request for `protocol` at [`Protocol::version`].
pub fn encode_handshake_request(protocol: Protocol) -> Bytes {
    let request = HandshakeRequest {
        protocol: protocol.name().to_owned(),
        version: protocol.version(),
    };
    let mut out = BytesMut::with_capacity(40);
    write_json(&mut out, &request);
    write_record_separator(&mut out);
    out.freeze()
}

/// Encodes a handshake response: `{}` on success, `{"error":"..."}` on failure.
///
/// As in ASP.NET, an empty error string counts as success.
pub fn encode_handshake_response(error: Option<&str>) -> Bytes {
    let mut out = BytesMut::with_capacity(error.map_or(3, |e| e.len() + 16));
    let response = ResponseOut {
        error: error.filter(|e| !e.is_empty()),
    };
    write_json(&mut out, &response);
    write_record_separator(&mut out);
    out.freeze()
}

/// Parses the server's handshake response from the front of `buf`.
///
/// Returns `Ok(None)` when no complete record is buffered yet, otherwise the
/// error text (`None` on success) and the number of bytes consumed.
pub fn parse_handshake_response(buf: &[u8]) -> Result<Option<(Option<String>, usize)>, ProtocolError> {
    let Some((wire, consumed)) = parse_record::<WireResponse>(buf)? else {
        return Ok(None);
    };
    if wire.ty.is_some() {
        return Err(invalid("Expected a handshake response from the server."));
    }
    let error = match wire.error {
        None => None,
        Some(Value::String(e)) => Some(e),
        Some(_) => return Err(invalid("Expected 'error' to be of type String.")),
    };
    Ok(Some((error, consumed)))
}
