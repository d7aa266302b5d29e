//! The protocol-independent hub message model.
//!
//! Every message of the SignalR hub protocol (types 1–9) is one variant of
//! [`HubMessage`]; both wire encodings ([`crate::Protocol::Json`] and
//! [`crate::Protocol::MessagePack`]) encode and decode exactly this model.
//!
//! Invariants the codecs rely on (and that decoding guarantees):
//! - an `invocation_id` that is `Some` is never empty: an empty id on the wire
//!   means "no id" for [`HubMessage::Invocation`] and is rejected elsewhere;
//! - required ids ([`StreamItem`], [`Completion`], [`CancelInvocation`], and a
//!   [`HubMessage::StreamInvocation`]'s `invocation_id`) are non-empty strings;
//! - values are [`serde_json::Value`] for both encodings, see the crate docs for
//!   the MessagePack value mapping.

use std::collections::BTreeMap;

use serde_json::Value;

/// Message headers: string keys to string values, never interpreted by the protocol.
pub type Headers = BTreeMap<String, String>;

/// One hub protocol message.
#[derive(Clone, Debug, PartialEq)]
pub enum HubMessage {
    /// Type 1: invoke a method on the peer; blocking if `invocation_id` is set.
    Invocation(Invocation),
    /// Type 2: one item of a stream (server-to-client results or client uploads).
    StreamItem(StreamItem),
    /// Type 3: completion of an invocation or of a stream.
    Completion(Completion),
    /// Type 4: invoke a streaming method; `invocation_id` is required on the wire
    /// (encoding a `None` id writes no id and the peer will reject it).
    StreamInvocation(Invocation),
    /// Type 5: cancel an invocation or stream.
    CancelInvocation(CancelInvocation),
    /// Type 6: keep-alive.
    Ping,
    /// Type 7: connection is closing.
    Close(Close),
    /// Type 8: stateful-reconnect acknowledgement.
    Ack(Ack),
    /// Type 9: stateful-reconnect sequence announcement.
    Sequence(Sequence),
}

impl HubMessage {
    /// The numeric message type used on the wire (1–9).
    pub fn type_id(&self) -> u8 {
        match self {
            HubMessage::Invocation(_) => 1,
            HubMessage::StreamItem(_) => 2,
            HubMessage::Completion(_) => 3,
            HubMessage::StreamInvocation(_) => 4,
            HubMessage::CancelInvocation(_) => 5,
            HubMessage::Ping => 6,
            HubMessage::Close(_) => 7,
            HubMessage::Ack(_) => 8,
            HubMessage::Sequence(_) => 9,
        }
    }
}

/// Body of an [`HubMessage::Invocation`] or [`HubMessage::StreamInvocation`].
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Invocation {
    /// Message headers (omitted on the JSON wire when empty).
    pub headers: Headers,
    /// Invocation id; `None` for a non-blocking invocation.
    pub invocation_id: Option<String>,
    /// Name of the method to invoke (case-sensitive).
    pub target: String,
    /// Method arguments.
    pub arguments: Vec<Value>,
    /// Ids of client-to-server upload streams consumed by this invocation.
    pub stream_ids: Vec<String>,
}

/// Body of a [`HubMessage::StreamItem`].
#[derive(Clone, Debug, PartialEq, Default)]
pub struct StreamItem {
    /// Message headers.
    pub headers: Headers,
    /// The stream (or streaming invocation) this item belongs to.
    pub invocation_id: String,
    /// The item itself (may be `null`).
    pub item: Value,
}

/// Body of a [`HubMessage::Completion`].
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Completion {
    /// Message headers.
    pub headers: Headers,
    /// The invocation or stream being completed.
    pub invocation_id: String,
    /// How it completed.
    pub outcome: CompletionOutcome,
}

/// The outcome carried by a [`Completion`].
#[derive(Clone, Debug, PartialEq, Default)]
pub enum CompletionOutcome {
    /// No result (void method, end of a stream). Distinct from `Result(Null)`.
    #[default]
    Void,
    /// A result value; `Result(Value::Null)` is encoded as an explicit `null`.
    Result(Value),
    /// An error message.
    Error(String),
}

/// Body of a [`HubMessage::CancelInvocation`].
#[derive(Clone, Debug, PartialEq, Default)]
pub struct CancelInvocation {
    /// Message headers.
    pub headers: Headers,
    /// The invocation to cancel.
    pub invocation_id: String,
}

/// Body of a [`HubMessage::Close`].
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Close {
    /// Error that caused the close, if any.
    pub error: Option<String>,
    /// Whether a client with automatic reconnect should reconnect.
    pub allow_reconnect: bool,
}

/// Body of a [`HubMessage::Ack`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Ack {
    /// Highest trackable sequence id the sender has processed.
    pub sequence_id: i64,
}

/// Body of a [`HubMessage::Sequence`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Sequence {
    /// Sequence id of the next trackable message the sender will send.
    pub sequence_id: i64,
}
