//! The MessagePack hub protocol encoding (`"messagepack"`): one MessagePack
//! array per varint-length-prefixed record.
//!
//! Layouts (as ASP.NET's `MessagePackHubProtocolWorker` writes them):
//!
//! | type | array |
//! |------|-------|
//! | Invocation | `[1, headers, invocationId \| nil, target, arguments, streamIds]` |
//! | StreamItem | `[2, headers, invocationId, item]` |
//! | Completion | `[3, headers, invocationId, 1, error]`, `[3, headers, invocationId, 2]`, `[3, headers, invocationId, 3, result]` |
//! | StreamInvocation | `[4, headers, invocationId, target, arguments, streamIds]` |
//! | CancelInvocation | `[5, headers, invocationId]` |
//! | Ping | `[6]` |
//! | Close | `[7, error \| nil, allowReconnect]` |
//! | Ack / Sequence | `[8, sequenceId]` / `[9, sequenceId]` |
//!
//! Decoding is lenient exactly where the reference parsers are: extra trailing
//! elements are ignored (forward compatibility), invocations without the
//! `streamIds` element and closes without `allowReconnect` (older clients) are
//! accepted, an empty or nil invocation id on an Invocation means non-blocking,
//! and an unknown message type yields `Ok(None)`. Arrays shorter than the
//! layout requires fail with "Invalid payload for X message." (JS wording).
//!
//! Submodules: [`read`] (bounds-checked reader, MessagePack → JSON values),
//! [`write`] (writer, JSON values → MessagePack), [`convert`] (the lossy
//! binary/timestamp conversions).

mod convert;
pub use convert::civil_from_days;
mod read;
mod write;

use bytes::{BufMut, BytesMut};

use crate::error::ProtocolError;
use crate::framing::{length_prefix_len, write_length_prefix};
use crate::message::{
    Ack, CancelInvocation, Close, Completion, CompletionOutcome, Headers, HubMessage, Invocation, Sequence, StreamItem,
};
use read::Reader;

const ERROR_RESULT: i64 = 1;
const VOID_RESULT: i64 = 2;
const NON_VOID_RESULT: i64 = 3;

/// Appends `msg` as a length-prefixed MessagePack record.
pub(crate) fn encode(msg: &HubMessage, out: &mut BytesMut) {
    // Most messages are shorter than 128 bytes: reserve a one-byte prefix and
    // only shift the payload when the real prefix turns out longer.
    let start = out.len();
    out.put_u8(0);
    encode_payload(msg, out);
    let payload_end = out.len();
    let len = payload_end - start - 1;
    let prefix_len = length_prefix_len(len);
    if prefix_len > 1 {
        out.put_bytes(0, prefix_len - 1);
        out.copy_within(start + 1..payload_end, start + prefix_len);
    }
    write_length_prefix(len, &mut out[start..start + prefix_len]);
}

fn encode_payload(msg: &HubMessage, out: &mut BytesMut) {
    let ty = u64::from(msg.type_id());
    match msg {
        HubMessage::Invocation(inv) | HubMessage::StreamInvocation(inv) => {
            write::array_len(out, 6);
            write::uint(out, ty);
            headers(out, &inv.headers);
            write::str_or_nil(out, inv.invocation_id.as_deref().filter(|id| !id.is_empty()));
            write::string(out, &inv.target);
            write::array_len(out, inv.arguments.len());
            for arg in &inv.arguments {
                write::value(out, arg);
            }
            write::strings(out, &inv.stream_ids);
        }
        HubMessage::StreamItem(si) => {
            write::array_len(out, 4);
            write::uint(out, ty);
            headers(out, &si.headers);
            write::string(out, &si.invocation_id);
            write::value(out, &si.item);
        }
        HubMessage::Completion(c) => {
            let has_payload = !matches!(c.outcome, CompletionOutcome::Void);
            write::array_len(out, if has_payload { 5 } else { 4 });
            write::uint(out, ty);
            headers(out, &c.headers);
            write::string(out, &c.invocation_id);
            match &c.outcome {
                CompletionOutcome::Error(e) => {
                    write::sint(out, ERROR_RESULT);
                    write::string(out, e);
                }
                CompletionOutcome::Void => write::sint(out, VOID_RESULT),
                CompletionOutcome::Result(v) => {
                    write::sint(out, NON_VOID_RESULT);
                    write::value(out, v);
                }
            }
        }
        HubMessage::CancelInvocation(c) => {
            write::array_len(out, 3);
            write::uint(out, ty);
            headers(out, &c.headers);
            write::string(out, &c.invocation_id);
        }
        HubMessage::Ping => {
            write::array_len(out, 1);
            write::uint(out, ty);
        }
        HubMessage::Close(c) => {
            write::array_len(out, 3);
            write::uint(out, ty);
            write::str_or_nil(out, c.error.as_deref());
            write::boolean(out, c.allow_reconnect);
        }
        HubMessage::Ack(Ack { sequence_id }) | HubMessage::Sequence(Sequence { sequence_id }) => {
            write::array_len(out, 2);
            write::uint(out, ty);
            write::sint(out, *sequence_id);
        }
    }
}

fn headers(out: &mut BytesMut, headers: &Headers) {
    write::map_len(out, headers.len());
    for (k, v) in headers {
        write::string(out, k);
        write::string(out, v);
    }
}

/// Decodes one MessagePack record payload (without its length prefix).
pub(crate) fn decode(payload: &[u8]) -> Result<Option<HubMessage>, ProtocolError> {
    if payload.is_empty() {
        return Err(ProtocolError::InvalidPayload("empty MessagePack payload"));
    }
    let mut r = Reader::new(payload);
    let count = r
        .array_len("message")
        .map_err(|_| ProtocolError::InvalidPayload("expected a MessagePack array"))?;
    if count == 0 {
        return Err(ProtocolError::InvalidPayload("empty MessagePack array"));
    }
    let need = |min: usize, name: &'static str| {
        if count < min {
            Err(ProtocolError::TooFewElements(name))
        } else {
            Ok(())
        }
    };
    let message = match r.integer("messageType")? {
        1 => {
            need(5, "Invocation")?;
            HubMessage::Invocation(invocation(&mut r, count, false)?)
        }
        4 => {
            need(5, "StreamInvocation")?;
            HubMessage::StreamInvocation(invocation(&mut r, count, true)?)
        }
        2 => {
            need(4, "StreamItem")?;
            HubMessage::StreamItem(StreamItem {
                headers: read_headers(&mut r)?,
                invocation_id: required_id(&mut r)?,
                item: r.value(0)?,
            })
        }
        3 => {
            need(4, "Completion")?;
            let headers = read_headers(&mut r)?;
            let invocation_id = required_id(&mut r)?;
            let outcome = match r.integer("resultKind")? {
                ERROR_RESULT => {
                    need(5, "Completion")?;
                    CompletionOutcome::Error(r.string("error")?)
                }
                VOID_RESULT => CompletionOutcome::Void,
                NON_VOID_RESULT => {
                    need(5, "Completion")?;
                    CompletionOutcome::Result(r.value(0)?)
                }
                _ => return Err(ProtocolError::InvalidResultKind),
            };
            HubMessage::Completion(Completion {
                headers,
                invocation_id,
                outcome,
            })
        }
        5 => {
            need(3, "CancelInvocation")?;
            HubMessage::CancelInvocation(CancelInvocation {
                headers: read_headers(&mut r)?,
                invocation_id: required_id(&mut r)?,
            })
        }
        6 => HubMessage::Ping,
        7 => {
            need(2, "Close")?;
            HubMessage::Close(Close {
                error: r.str_or_nil("error")?,
                allow_reconnect: count > 2 && r.boolean("allowReconnect")?,
            })
        }
        8 => {
            need(2, "Ack")?;
            HubMessage::Ack(Ack {
                sequence_id: r.integer("sequenceId")?,
            })
        }
        9 => {
            need(2, "Sequence")?;
            HubMessage::Sequence(Sequence {
                sequence_id: r.integer("sequenceId")?,
            })
        }
        _ => return Ok(None),
    };
    Ok(Some(message))
}

fn invocation(r: &mut Reader<'_>, count: usize, streaming: bool) -> Result<Invocation, ProtocolError> {
    let headers = read_headers(r)?;
    let invocation_id = if streaming {
        Some(required_id(r)?)
    } else {
        r.str_or_nil("invocationId")?.filter(|id| !id.is_empty())
    };
    let target = r.string("target")?;
    let arg_count = r.array_len("arguments")?;
    // Every argument takes at least one byte: cap the allocation by what is left.
    let mut arguments = Vec::with_capacity(arg_count.min(r.remaining()));
    for _ in 0..arg_count {
        arguments.push(r.value(0)?);
    }
    // Clients older than upload streaming send five elements.
    let stream_ids = if count > 5 {
        let n = r.array_len("streamIds")?;
        (0..n).map(|_| r.string("streamIds")).collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    Ok(Invocation {
        headers,
        invocation_id,
        target,
        arguments,
        stream_ids,
    })
}

fn required_id(r: &mut Reader<'_>) -> Result<String, ProtocolError> {
    r.str_or_nil("invocationId")?
        .filter(|id| !id.is_empty())
        .ok_or(ProtocolError::MissingProperty("invocationId"))
}

fn read_headers(r: &mut Reader<'_>) -> Result<Headers, ProtocolError> {
    let count = r.map_len("headers")?;
    let mut headers = Headers::new();
    for _ in 0..count {
        let key = r.string("headers")?;
        let value = r.string("headers")?;
        headers.insert(key, value);
    }
    Ok(headers)
}
