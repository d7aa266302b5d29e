//! The JSON hub protocol encoding (`"json"`): one JSON object per record.
//!
//! Encoding writes camelCase properties in ASP.NET's order (`type`, `headers`,
//! `invocationId`, `target`, `arguments`, `streamIds`, `item`, `result`,
//! `error`, `allowReconnect`, `sequenceId`) straight into the output buffer,
//! omitting `headers` and `streamIds` when empty, `invocationId` when absent,
//! `error` when absent and `allowReconnect` when false. A completion with
//! [`CompletionOutcome::Result`]`(Null)` writes `"result":null`, a void one
//! writes neither `result` nor `error`.
//!
//! Decoding follows ASP.NET's `JsonHubProtocol.ParseMessage`: properties may
//! come in any order, unknown properties are ignored, a `null` property counts
//! as absent except for `item` and `result` (where `null` is a value), an empty
//! invocation id counts as absent, and an unknown `type` yields `Ok(None)`
//! ("Future protocol changes can add message types, old clients can ignore
//! them" — the `default:` branch of the C# and TypeScript parsers).

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::error::ProtocolError;
use crate::framing::write_record_separator;
use crate::message::{
    Ack, CancelInvocation, Close, Completion, CompletionOutcome, Headers, HubMessage, Invocation, Sequence, StreamItem,
};

/// The wire shape written for every message; `None` fields are omitted.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireOut<'a> {
    #[serde(rename = "type")]
    ty: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<&'a Headers>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invocation_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a [Value]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_ids: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_reconnect: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence_id: Option<i64>,
}

/// Appends `msg` as JSON followed by the record separator.
pub(crate) fn encode(msg: &HubMessage, out: &mut BytesMut) {
    let ty = msg.type_id();
    let wire = match msg {
        HubMessage::Invocation(inv) | HubMessage::StreamInvocation(inv) => WireOut {
            ty,
            headers: headers_out(&inv.headers),
            invocation_id: inv.invocation_id.as_deref().filter(|id| !id.is_empty()),
            target: Some(&inv.target),
            arguments: Some(&inv.arguments),
            stream_ids: (!inv.stream_ids.is_empty()).then_some(&inv.stream_ids[..]),
            ..WireOut::default()
        },
        HubMessage::StreamItem(si) => WireOut {
            ty,
            headers: headers_out(&si.headers),
            invocation_id: Some(&si.invocation_id),
            item: Some(&si.item),
            ..WireOut::default()
        },
        HubMessage::Completion(c) => {
            let (result, error) = match &c.outcome {
                CompletionOutcome::Void => (None, None),
                CompletionOutcome::Result(v) => (Some(v), None),
                CompletionOutcome::Error(e) => (None, Some(e.as_str())),
            };
            WireOut {
                ty,
                headers: headers_out(&c.headers),
                invocation_id: Some(&c.invocation_id),
                result,
                error,
                ..WireOut::default()
            }
        }
        HubMessage::CancelInvocation(c) => WireOut {
            ty,
            headers: headers_out(&c.headers),
            invocation_id: Some(&c.invocation_id),
            ..WireOut::default()
        },
        HubMessage::Ping => WireOut {
            ty,
            ..WireOut::default()
        },
        HubMessage::Close(c) => WireOut {
            ty,
            error: c.error.as_deref(),
            allow_reconnect: c.allow_reconnect.then_some(true),
            ..WireOut::default()
        },
        HubMessage::Ack(Ack { sequence_id }) | HubMessage::Sequence(Sequence { sequence_id }) => WireOut {
            ty,
            sequence_id: Some(*sequence_id),
            ..WireOut::default()
        },
    };
    write_json(out, &wire);
    write_record_separator(out);
}

/// Headers are omitted from the wire when empty.
fn headers_out(h: &Headers) -> Option<&Headers> {
    (!h.is_empty()).then_some(h)
}

/// Serializes `value` as JSON into `out`.
pub(crate) fn write_json<T: Serialize + ?Sized>(out: &mut BytesMut, value: &T) {
    // Writing to memory cannot fail, and every type serialized here (including
    // `serde_json::Value`, whose map keys are strings and numbers are finite)
    // is always representable as JSON.
    serde_json::to_writer(out.writer(), value).expect("JSON serialization into memory is infallible");
}

/// The wire shape read for every message; absent (or `null`) properties are `None`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireIn {
    #[serde(rename = "type")]
    ty: Option<Value>,
    headers: Option<Value>,
    invocation_id: Option<Value>,
    target: Option<Value>,
    arguments: Option<Value>,
    stream_ids: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    item: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Value>,
    error: Option<Value>,
    allow_reconnect: Option<Value>,
    sequence_id: Option<Value>,
}

/// Deserializes a property that is present, keeping an explicit `null` as `Some(Null)`.
pub(crate) fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Decodes one JSON record payload (without its separator).
pub(crate) fn decode(payload: &[u8]) -> Result<Option<HubMessage>, ProtocolError> {
    // serde would also accept a JSON array for a struct; the protocol requires an object.
    if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ProtocolError::InvalidPayload("expected a JSON object"));
    }
    // Validating up front also rejects invalid UTF-8 inside ignored properties,
    // which serde_json would skip over.
    let text = std::str::from_utf8(payload).map_err(|e| ProtocolError::InvalidJson(format!("invalid UTF-8: {e}")))?;
    let wire: WireIn = serde_json::from_str(text).map_err(|e| ProtocolError::InvalidJson(e.to_string()))?;
    let ty = match wire.ty {
        None => return Err(ProtocolError::MissingProperty("type")),
        Some(ty) => integer(ty, "type", "Number")?,
    };
    let message = match ty {
        1 | 4 => {
            let invocation = Invocation {
                headers: headers(wire.headers)?,
                invocation_id: string(wire.invocation_id, "invocationId")?.filter(|id| !id.is_empty()),
                target: string(wire.target, "target")?.ok_or(ProtocolError::MissingProperty("target"))?,
                arguments: match wire.arguments {
                    None => return Err(ProtocolError::MissingProperty("arguments")),
                    Some(Value::Array(args)) => args,
                    Some(_) => return Err(invalid("arguments", "Array")),
                },
                stream_ids: stream_ids(wire.stream_ids)?,
            };
            if ty == 1 {
                HubMessage::Invocation(invocation)
            } else if invocation.invocation_id.is_none() {
                return Err(ProtocolError::MissingProperty("invocationId"));
            } else {
                HubMessage::StreamInvocation(invocation)
            }
        }
        2 => HubMessage::StreamItem(StreamItem {
            headers: headers(wire.headers)?,
            invocation_id: required_id(wire.invocation_id)?,
            item: wire.item.ok_or(ProtocolError::MissingProperty("item"))?,
        }),
        3 => {
            let outcome = match (string(wire.error, "error")?, wire.result) {
                (Some(_), Some(_)) => return Err(ProtocolError::ResultAndError),
                (Some(error), None) => CompletionOutcome::Error(error),
                (None, Some(result)) => CompletionOutcome::Result(result),
                (None, None) => CompletionOutcome::Void,
            };
            HubMessage::Completion(Completion {
                headers: headers(wire.headers)?,
                invocation_id: required_id(wire.invocation_id)?,
                outcome,
            })
        }
        5 => HubMessage::CancelInvocation(CancelInvocation {
            headers: headers(wire.headers)?,
            invocation_id: required_id(wire.invocation_id)?,
        }),
        6 => HubMessage::Ping,
        7 => HubMessage::Close(Close {
            error: string(wire.error, "error")?,
            allow_reconnect: match wire.allow_reconnect {
                None => false,
                Some(Value::Bool(b)) => b,
                Some(_) => return Err(invalid("allowReconnect", "Boolean")),
            },
        }),
        8 => HubMessage::Ack(Ack {
            sequence_id: sequence_id(wire.sequence_id)?,
        }),
        9 => HubMessage::Sequence(Sequence {
            sequence_id: sequence_id(wire.sequence_id)?,
        }),
        _ => return Ok(None),
    };
    Ok(Some(message))
}

fn invalid(property: &'static str, expected: &'static str) -> ProtocolError {
    ProtocolError::InvalidPropertyType { property, expected }
}

/// An integral JSON number (`1` or `1.0`, as the JS client's `typeof === "number"` allows).
fn integer(v: Value, property: &'static str, expected: &'static str) -> Result<i64, ProtocolError> {
    let Value::Number(n) = v else {
        return Err(invalid(property, expected));
    };
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    match n.as_f64() {
        // The range check makes the cast exact.
        Some(f) if f.fract() == 0.0 && f >= -(2f64.powi(63)) && f < 2f64.powi(63) => Ok(f as i64),
        _ => Err(invalid(property, expected)),
    }
}

fn string(v: Option<Value>, property: &'static str) -> Result<Option<String>, ProtocolError> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(property, "String")),
    }
}

fn required_id(v: Option<Value>) -> Result<String, ProtocolError> {
    string(v, "invocationId")?
        .filter(|id| !id.is_empty())
        .ok_or(ProtocolError::MissingProperty("invocationId"))
}

fn sequence_id(v: Option<Value>) -> Result<i64, ProtocolError> {
    integer(
        v.ok_or(ProtocolError::MissingProperty("sequenceId"))?,
        "sequenceId",
        "Integer",
    )
}

fn headers(v: Option<Value>) -> Result<Headers, ProtocolError> {
    match v {
        None => Ok(Headers::new()),
        Some(Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                _ => Err(invalid("headers", "Object with String values")),
            })
            .collect(),
        Some(_) => Err(invalid("headers", "Object")),
    }
}

fn stream_ids(v: Option<Value>) -> Result<Vec<String>, ProtocolError> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::Array(ids)) => ids
            .into_iter()
            .map(|id| match id {
                Value::String(s) => Ok(s),
                _ => Err(invalid("streamIds", "Array of String")),
            })
            .collect(),
        Some(_) => Err(invalid("streamIds", "Array")),
    }
}
