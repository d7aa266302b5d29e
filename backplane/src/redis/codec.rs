//! The binary encoding of what crosses nodes through Redis pub/sub.
//!
//! One frame per published message:
//!
//! ```text
//! frame   = version:u8 (2) kind:u8 origin:str body
//! kind 1  Deliver          hub:str target except:list payload:bytes trace:opt-str
//! kind 2  AddToGroup       hub:str target group:str ack:varint
//! kind 3  RemoveFromGroup  hub:str target group:str ack:varint
//! kind 4  Close            hub:str target except:list reason:opt-str ack:varint
//! kind 5  NodeDown         node:str count:varint record*
//! kind 6  Ack              hub:str to:str id:varint
//! kind 7  Reply            hub:str to:str connection:str payload:bytes
//! record  = id:str hub:str user:opt-str transport:str since_ms:varint
//! target  = 0 (All) | 1 group:str | 2 user:str | 3 connection:str
//! str     = len:varint utf-8 bytes;  bytes = len:varint bytes
//! list    = count:varint str*;  opt-str = 0 | 1 str
//! varint  = unsigned LEB128, at most 10 bytes;  ack = 0 (none) | command id
//! ```
//!
//! Version 2 added the command ids and `Ack` (acknowledged group and close
//! commands), version 3 the trace context of a `Deliver` (a W3C
//! `traceparent`): nodes of different versions refuse each other's frames,
//! so a cluster is upgraded by replacing all its nodes, not one by one.
//!
//! # Invariants
//! - Decoding never panics and never trusts a length: every read is checked
//!   against what is left, and a frame with bytes after its end is refused.
//! - The payload is not copied on decode: it is a slice of the received buffer.

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::{BackplaneEvent, ClusterBody, ClusterMessage, Target};
use crate::names::{ConnectionId, HubName, NodeId, UserId};
use crate::ConnectionRecord;

const VERSION: u8 = 3;

/// Why a received frame could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The frame ended in the middle of a field.
    #[error("frame truncated")]
    Truncated,
    /// A newer (or foreign) encoding.
    #[error("unknown frame version {0}")]
    Version(u8),
    /// A body kind this node does not know.
    #[error("unknown frame kind {0}")]
    Kind(u8),
    /// A target tag this node does not know.
    #[error("unknown target tag {0}")]
    Target(u8),
    /// A name that is not UTF-8.
    #[error("name is not UTF-8")]
    Utf8,
    /// A varint longer than 64 bits.
    #[error("varint overflow")]
    Varint,
    /// Bytes after the end of the frame.
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

/// Encodes a message published by a node.
pub fn encode_message(msg: &ClusterMessage) -> Bytes {
    let mut out = BytesMut::with_capacity(64 + payload_len(&msg.body));
    let kind = match &msg.body {
        ClusterBody::Deliver { .. } => 1,
        ClusterBody::AddToGroup { .. } => 2,
        ClusterBody::RemoveFromGroup { .. } => 3,
        ClusterBody::Close { .. } => 4,
        ClusterBody::Ack { .. } => 6,
        ClusterBody::Reply { .. } => 7,
    };
    out.put_u8(VERSION);
    out.put_u8(kind);
    put_str(&mut out, msg.origin.as_str());
    put_str(&mut out, msg.hub.as_str());
    if let Some(target) = msg.body.target() {
        put_target(&mut out, target);
    }
    match &msg.body {
        ClusterBody::Deliver {
            except, payload, trace, ..
        } => {
            put_list(&mut out, except);
            put_bytes(&mut out, payload);
            put_opt(&mut out, trace.as_deref());
        }
        ClusterBody::AddToGroup { group, ack, .. } | ClusterBody::RemoveFromGroup { group, ack, .. } => {
            put_str(&mut out, group.as_str());
            put_varint(&mut out, ack.unwrap_or(0));
        }
        ClusterBody::Close {
            except, reason, ack, ..
        } => {
            put_list(&mut out, except);
            put_opt(&mut out, reason.as_deref());
            put_varint(&mut out, ack.unwrap_or(0));
        }
        ClusterBody::Ack { to, id } => {
            put_str(&mut out, to.as_str());
            put_varint(&mut out, *id);
        }
        ClusterBody::Reply {
            to,
            connection,
            payload,
        } => {
            put_str(&mut out, to.as_str());
            put_str(&mut out, connection.as_str());
            put_bytes(&mut out, payload);
        }
    }
    out.freeze()
}

/// Encodes the event "`node` died, these connections were removed", sent by
/// the sweeping node `origin`.
pub fn encode_node_down(origin: &NodeId, node: &NodeId, removed: &[ConnectionRecord]) -> Bytes {
    let mut out = BytesMut::with_capacity(32 + removed.len() * 64);
    out.put_u8(VERSION);
    out.put_u8(5);
    put_str(&mut out, origin.as_str());
    put_str(&mut out, node.as_str());
    put_varint(&mut out, removed.len() as u64);
    for record in removed {
        put_str(&mut out, record.id.as_str());
        put_str(&mut out, record.hub.as_str());
        put_opt(&mut out, record.user.as_ref().map(UserId::as_str));
        put_str(&mut out, &record.transport);
        put_varint(&mut out, record.since_ms);
    }
    out.freeze()
}

/// Decodes a frame into its origin node and the event it carries.
pub fn decode(frame: Bytes) -> Result<(NodeId, BackplaneEvent), DecodeError> {
    let mut r = Reader { buf: frame, pos: 0 };
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let kind = r.u8()?;
    let origin = NodeId::from(r.str()?);
    let event = match kind {
        1..=4 => {
            let hub = HubName::from(r.str()?);
            let target = r.target()?;
            let body = match kind {
                1 => ClusterBody::Deliver {
                    target,
                    except: r.list()?,
                    payload: r.bytes()?,
                    trace: r.opt()?,
                },
                2 => ClusterBody::AddToGroup {
                    target,
                    group: r.str()?.into(),
                    ack: r.ack()?,
                },
                3 => ClusterBody::RemoveFromGroup {
                    target,
                    group: r.str()?.into(),
                    ack: r.ack()?,
                },
                _ => ClusterBody::Close {
                    target,
                    except: r.list()?,
                    reason: r.opt()?,
                    ack: r.ack()?,
                },
            };
            let origin = origin.clone();
            BackplaneEvent::Message(ClusterMessage { origin, hub, body })
        }
        6 => {
            let hub = HubName::from(r.str()?);
            let body = ClusterBody::Ack {
                to: NodeId::from(r.str()?),
                id: r.varint()?,
            };
            let origin = origin.clone();
            BackplaneEvent::Message(ClusterMessage { origin, hub, body })
        }
        7 => {
            let hub = HubName::from(r.str()?);
            let body = ClusterBody::Reply {
                to: NodeId::from(r.str()?),
                connection: ConnectionId::from(r.str()?),
                payload: r.bytes()?,
            };
            let origin = origin.clone();
            BackplaneEvent::Message(ClusterMessage { origin, hub, body })
        }
        5 => {
            let node = NodeId::from(r.str()?);
            let count = r.varint()?;
            let mut removed = Vec::new();
            for _ in 0..count {
                removed.push(ConnectionRecord {
                    id: r.str()?.into(),
                    hub: r.str()?.into(),
                    user: r.opt()?.map(UserId::from),
                    transport: r.str()?,
                    node: node.clone(),
                    since_ms: r.varint()?,
                });
            }
            BackplaneEvent::NodeDown {
                node,
                swept_by: origin.clone(),
                removed,
            }
        }
        other => return Err(DecodeError::Kind(other)),
    };
    match r.buf.len() - r.pos {
        0 => Ok((origin, event)),
        n => Err(DecodeError::Trailing(n)),
    }
}

fn payload_len(body: &ClusterBody) -> usize {
    match body {
        ClusterBody::Deliver { payload, .. } | ClusterBody::Reply { payload, .. } => payload.len(),
        _ => 0,
    }
}

fn put_varint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.put_slice(bytes);
}

fn put_str(out: &mut BytesMut, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_opt(out: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            out.put_u8(1);
            put_str(out, s);
        }
        None => out.put_u8(0),
    }
}

fn put_list(out: &mut BytesMut, ids: &[ConnectionId]) {
    put_varint(out, ids.len() as u64);
    for id in ids {
        put_str(out, id.as_str());
    }
}

fn put_target(out: &mut BytesMut, target: &Target) {
    match target {
        Target::All => out.put_u8(0),
        Target::Group(g) => {
            out.put_u8(1);
            put_str(out, g.as_str());
        }
        Target::User(u) => {
            out.put_u8(2);
            put_str(out, u.as_str());
        }
        Target::Connection(c) => {
            out.put_u8(3);
            put_str(out, c.as_str());
        }
    }
}

/// A cursor over a received frame; every read is bounds-checked.
struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    fn u8(&mut self) -> Result<u8, DecodeError> {
        let byte = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(byte)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Varint)
    }

    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.varint()?;
        let left = self.buf.len() - self.pos;
        let len = usize::try_from(len)
            .ok()
            .filter(|len| *len <= left)
            .ok_or(DecodeError::Truncated)?;
        let bytes = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(bytes)
    }

    fn str(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| DecodeError::Utf8)
    }

    fn ack(&mut self) -> Result<Option<u64>, DecodeError> {
        Ok(Some(self.varint()?).filter(|id| *id != 0))
    }

    fn opt(&mut self) -> Result<Option<String>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            _ => self.str().map(Some),
        }
    }

    fn list(&mut self) -> Result<Vec<ConnectionId>, DecodeError> {
        let count = self.varint()?;
        let mut ids = Vec::new();
        for _ in 0..count {
            ids.push(ConnectionId::from(self.str()?));
        }
        Ok(ids)
    }

    fn target(&mut self) -> Result<Target, DecodeError> {
        Ok(match self.u8()? {
            0 => Target::All,
            1 => Target::Group(self.str()?.into()),
            2 => Target::User(self.str()?.into()),
            3 => Target::Connection(self.str()?.into()),
            other => return Err(DecodeError::Target(other)),
        })
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
