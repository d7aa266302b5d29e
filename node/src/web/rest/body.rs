//! The body of a send: which client method to invoke, with which arguments.
//!
//! Two encodings, chosen by `Content-Type`:
//!
//! - JSON (`application/json`, any charset, `+json` types, or no content
//!   type): an object with `target` (a non-empty string) and `arguments` (an
//!   array; missing or `null` means none). Property names match
//!   case-insensitively: the Management SDK writes `Target` and `Arguments`.
//! - MessagePack (`application/octet-stream`, what the SDK sends when its hub
//!   protocols are configured, or `application/x-msgpack`): a map from hub
//!   protocol name (`json`, `messagepack`) to that protocol's complete framed
//!   Invocation record. The `json` record is used when present (it is lossless
//!   for JSON clients), else the `messagepack` one, decoded with the protocol
//!   crate's MessagePack-to-JSON mapping.
//!
//! Bodies larger than [`MAX_BODY_BYTES`] are refused with 413 (as soon as the
//! `Content-Length` or the bytes received say so); chunked bodies are fine.

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use bytes::BytesMut;
use futures_util::StreamExt;

use super::error::RestError;
use hubwire_protocol::{HubMessage, Protocol, Value};

/// The largest body accepted, in bytes (Azure's limit: 1 MB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A client method invocation to deliver.
#[derive(Debug, PartialEq)]
pub struct Message {
    /// The client method.
    pub target: String,
    /// Its arguments.
    pub arguments: Vec<Value>,
}

/// How a body is encoded.
#[derive(Debug, PartialEq, Eq)]
enum Encoding {
    Json,
    MessagePack,
}

impl Encoding {
    fn of(content_type: Option<&str>) -> Result<Self, RestError> {
        let Some(content_type) = content_type else {
            return Ok(Encoding::Json);
        };
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "" | "application/json" | "text/json" => Ok(Encoding::Json),
            e if e.ends_with("+json") => Ok(Encoding::Json),
            "application/octet-stream" | "application/x-msgpack" | "application/msgpack" => Ok(Encoding::MessagePack),
            _ => Err(RestError::UnsupportedMediaType(content_type.to_owned())),
        }
    }
}

/// Reads and parses the body of a send request.
pub async fn read_message(req: &HttpRequest, payload: web::Payload) -> Result<Message, RestError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).map(|v| v.to_str());
    let content_type = match content_type {
        Some(Ok(value)) => Some(value),
        Some(Err(_)) => return Err(RestError::UnsupportedMediaType("(not ASCII)".into())),
        None => None,
    };
    let encoding = Encoding::of(content_type)?;
    let bytes = read_limited(req, payload).await?;
    match encoding {
        Encoding::Json => parse_json(&bytes),
        Encoding::MessagePack => parse_envelope(&bytes),
    }
}

/// The body's bytes, refused with 413 beyond [`MAX_BODY_BYTES`].
pub async fn read_limited(req: &HttpRequest, mut payload: web::Payload) -> Result<BytesMut, RestError> {
    let too_large = RestError::TooLarge { limit: MAX_BODY_BYTES };
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(too_large);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| RestError::BadRequest(format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses a JSON body, matching property names case-insensitively.
fn parse_json(bytes: &[u8]) -> Result<Message, RestError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| RestError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(RestError::BadRequest(
            "the body must be a JSON object with \"target\" and \"arguments\"".into(),
        ));
    };
    let (mut target, mut arguments) = (None, None);
    for (name, value) in fields {
        if name.eq_ignore_ascii_case("target") {
            target = Some(value);
        } else if name.eq_ignore_ascii_case("arguments") {
            arguments = Some(value);
        }
    }
    let target = match target {
        Some(Value::String(target)) => target,
        _ => return Err(RestError::BadRequest("\"target\" must be a non-empty string".into())),
    };
    let arguments = match arguments {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(arguments)) => arguments,
        Some(_) => return Err(RestError::BadRequest("\"arguments\" must be an array".into())),
    };
    message(target, arguments)
}

fn message(target: String, arguments: Vec<Value>) -> Result<Message, RestError> {
    if target.is_empty() {
        return Err(RestError::BadRequest("\"target\" must be a non-empty string".into()));
    }
    Ok(Message { target, arguments })
}

/// Parses the SDK's MessagePack body: protocol name → framed Invocation record.
fn parse_envelope(bytes: &[u8]) -> Result<Message, RestError> {
    let invalid = |why: &str| RestError::BadRequest(format!("invalid MessagePack body: {why}"));
    let entries = envelope_entries(bytes).map_err(invalid)?;
    let record = |name: &[u8]| entries.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let (protocol, record) = match (record(b"json"), record(b"messagepack")) {
        (Some(json), _) => (Protocol::Json, json),
        (None, Some(msgpack)) => (Protocol::MessagePack, msgpack),
        (None, None) => return Err(invalid("no \"json\" or \"messagepack\" entry")),
    };
    let payload = match protocol.next_record(record, MAX_BODY_BYTES) {
        Ok(Some((payload, _))) => payload,
        Ok(None) => return Err(invalid("incomplete hub message record")),
        Err(e) => return Err(invalid(&e.to_string())),
    };
    match protocol.decode(payload) {
        Ok(Some(HubMessage::Invocation(invocation))) => message(invocation.target, invocation.arguments),
        Ok(_) => Err(invalid("the hub message is not an Invocation")),
        Err(e) => Err(invalid(&e.to_string())),
    }
}

/// A key and its value in the MessagePack envelope.
type Entry<'a> = (&'a [u8], &'a [u8]);

/// The entries of a MessagePack map whose keys and values are str or bin.
fn envelope_entries(bytes: &[u8]) -> Result<Vec<Entry<'_>>, &'static str> {
    let mut cursor = Cursor { rest: bytes };
    let count = cursor.map_len()?;
    let mut entries = Vec::new();
    for _ in 0..count {
        let key = cursor.str_or_bin()?;
        let value = cursor.str_or_bin()?;
        entries.push((key, value));
    }
    Ok(entries)
}

struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.rest.len() < n {
            return Err("truncated");
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, &'static str> {
        self.take(1).map(|b| b[0])
    }

    /// A big-endian unsigned integer of `width` bytes.
    fn uint(&mut self, width: usize) -> Result<usize, &'static str> {
        Ok(self.take(width)?.iter().fold(0, |n, b| n << 8 | usize::from(*b)))
    }

    fn map_len(&mut self) -> Result<usize, &'static str> {
        match self.byte()? {
            b @ 0x80..=0x8f => Ok(usize::from(b & 0x0f)),
            0xde => self.uint(2),
            0xdf => self.uint(4),
            _ => Err("expected a map"),
        }
    }

    fn str_or_bin(&mut self) -> Result<&'a [u8], &'static str> {
        let len = match self.byte()? {
            b @ 0xa0..=0xbf => usize::from(b & 0x1f),
            0xc4 | 0xd9 => self.uint(1)?,
            0xc5 | 0xda => self.uint(2)?,
            0xc6 | 0xdb => self.uint(4)?,
            _ => return Err("expected a string or binary"),
        };
        self.take(len)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hubwire_protocol::Invocation;
    use serde_json::json;

    fn parsed(body: Value) -> Result<Message, RestError> {
        parse_json(body.to_string().as_bytes())
    }

    #[test]
    fn property_names_match_case_insensitively() {
        let expected = Message {
            target: "news".into(),
            arguments: vec![json!(1), json!({ "Text": "hi" })],
        };
        let args = json!([1, { "Text": "hi" }]);
        assert_eq!(
            parsed(json!({ "Target": "news", "Arguments": args })).unwrap(),
            expected
        );
        assert_eq!(
            parsed(json!({ "target": "news", "arguments": args })).unwrap(),
            expected
        );
        assert_eq!(
            parsed(json!({ "TARGET": "news", "aRgUmEnTs": args })).unwrap(),
            expected
        );
    }

    #[test]
    fn null_or_missing_arguments_mean_none() {
        let none = parsed(json!({ "Target": "ping", "Arguments": null })).unwrap();
        assert!(none.arguments.is_empty());
        assert!(parsed(json!({ "Target": "ping" })).unwrap().arguments.is_empty());
    }

    #[test]
    fn malformed_bodies_are_bad_requests() {
        for body in [
            json!({ "Arguments": [] }),
            json!({ "Target": "", "Arguments": [] }),
            json!({ "Target": 3 }),
            json!({ "Target": "x", "Arguments": "no" }),
            json!(["x"]),
        ] {
            assert!(matches!(parsed(body), Err(RestError::BadRequest(_))));
        }
        assert!(matches!(parse_json(b"{"), Err(RestError::BadRequest(_))));
    }

    #[test]
    fn content_types_choose_the_encoding() {
        assert_eq!(
            Encoding::of(Some("application/json; charset=utf-8")).unwrap(),
            Encoding::Json
        );
        assert_eq!(Encoding::of(Some("Application/JSON")).unwrap(), Encoding::Json);
        assert_eq!(Encoding::of(Some("application/vnd.api+json")).unwrap(), Encoding::Json);
        assert_eq!(Encoding::of(None).unwrap(), Encoding::Json);
        assert_eq!(
            Encoding::of(Some("application/octet-stream")).unwrap(),
            Encoding::MessagePack
        );
        assert!(matches!(
            Encoding::of(Some("text/plain")),
            Err(RestError::UnsupportedMediaType(_))
        ));
    }

    fn str_entry(out: &mut Vec<u8>, s: &str) {
        out.push(0xa0 | u8::try_from(s.len()).unwrap());
        out.extend_from_slice(s.as_bytes());
    }

    fn bin_entry(out: &mut Vec<u8>, bytes: &[u8]) {
        out.push(0xc5);
        out.extend_from_slice(&u16::try_from(bytes.len()).unwrap().to_be_bytes());
        out.extend_from_slice(bytes);
    }

    fn envelope(protocols: &[Protocol]) -> Vec<u8> {
        let invocation = HubMessage::Invocation(Invocation {
            target: "news".into(),
            arguments: vec![json!("hello"), json!({ "n": 7 })],
            ..Invocation::default()
        });
        let mut out = vec![0x80 | u8::try_from(protocols.len()).unwrap()];
        for protocol in protocols {
            str_entry(&mut out, protocol.name());
            bin_entry(&mut out, &protocol.encode_to_bytes(&invocation));
        }
        out
    }

    #[test]
    fn the_sdk_messagepack_body_is_understood() {
        let expected = Message {
            target: "news".into(),
            arguments: vec![json!("hello"), json!({ "n": 7 })],
        };
        for protocols in [
            vec![Protocol::Json],
            vec![Protocol::MessagePack],
            vec![Protocol::MessagePack, Protocol::Json],
        ] {
            assert_eq!(parse_envelope(&envelope(&protocols)).unwrap(), expected);
        }
    }

    #[test]
    fn broken_messagepack_bodies_are_bad_requests() {
        let full = envelope(&[Protocol::Json]);
        for body in [&full[..full.len() - 3], &[0x80][..], &[0x91, 0x01][..], &[][..]] {
            assert!(matches!(parse_envelope(body), Err(RestError::BadRequest(_))));
        }
    }
}
