//! A message on its way to many connections, encoded at most once per protocol.
//!
//! The JSON encoding is made eagerly: it is also what crosses nodes, so a node
//! receiving it from the backplane hands those exact bytes to its JSON clients.
//! The MessagePack encoding is made on first use.

use std::sync::OnceLock;

use bytes::Bytes;
use hubwire_protocol::{HubMessage, Invocation, Protocol, Value};

/// One invocation for many recipients.
pub struct OutboundMessage {
    json: Bytes,
    message: OnceLock<Option<HubMessage>>,
    msgpack: OnceLock<Bytes>,
}

impl OutboundMessage {
    /// `target(arguments)` as a non-blocking invocation (no invocation id).
    pub fn invocation(target: &str, arguments: Vec<Value>) -> Self {
        let message = HubMessage::Invocation(Invocation {
            target: target.to_owned(),
            arguments,
            ..Invocation::default()
        });
        Self {
            json: Protocol::Json.encode_to_bytes(&message),
            message: OnceLock::from(Some(message)),
            msgpack: OnceLock::new(),
        }
    }

    /// Any hub message (a client-result invocation carries its id).
    pub fn new(message: HubMessage) -> Self {
        Self {
            json: Protocol::Json.encode_to_bytes(&message),
            message: OnceLock::from(Some(message)),
            msgpack: OnceLock::new(),
        }
    }

    /// A message whose JSON record arrived from another node.
    pub fn from_json_record(json: Bytes) -> Self {
        Self {
            json,
            message: OnceLock::new(),
            msgpack: OnceLock::new(),
        }
    }

    /// The JSON record: what crosses nodes.
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    /// The record in `protocol`; `None` only if a record from another node
    /// cannot be decoded (it is then dropped for MessagePack clients).
    pub fn encoded(&self, protocol: Protocol) -> Option<Bytes> {
        match protocol {
            Protocol::Json => Some(self.json.clone()),
            Protocol::MessagePack => {
                if let Some(b) = self.msgpack.get() {
                    return Some(b.clone());
                }
                let message = self.message.get_or_init(|| decode_json_record(&self.json)).as_ref()?;
                Some(self.msgpack.get_or_init(|| protocol.encode_to_bytes(message)).clone())
            }
        }
    }
}

fn decode_json_record(record: &[u8]) -> Option<HubMessage> {
    let (payload, _) = Protocol::Json.next_record(record, usize::MAX).ok()??;
    Protocol::Json.decode(payload).ok()?
}
