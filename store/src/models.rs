//! What the store hands out ([`Conversation`], [`Message`], ...) and the rows
//! it reads and writes.

use diesel::prelude::*;
use serde::Serialize;

use crate::schema::{conversations, messages, participants, read_positions};
use crate::MessageId;

/// A conversation with its participants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conversation {
    /// The conversation id.
    pub id: String,
    /// Its kind ("direct", "group", "customer-support", ...).
    pub kind: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// The participants' user ids, sorted.
    pub participants: Vec<String>,
}

/// One participant of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = participants)]
#[diesel(treat_none_as_default_value = false)]
pub struct Participant {
    /// The conversation.
    pub conversation_id: String,
    /// The user.
    pub user_id: String,
    /// Unix milliseconds.
    pub joined_at: i64,
}

/// A stored message, its content decrypted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Message {
    /// Time-ordered id.
    pub id: MessageId,
    /// The conversation.
    pub conversation_id: String,
    /// The sender's user id.
    pub sender_id: String,
    /// The content.
    pub content: String,
    /// Attachments as JSON text.
    pub attachments: Option<String>,
    /// The sender's idempotency key.
    pub client_message_id: Option<String>,
    /// Unix milliseconds.
    pub sent_at: i64,
    /// The key the content is encrypted with at rest; none: plain text.
    pub key_id: Option<String>,
    /// The app's message type ("Text", "Image", ...); none: the hub
    /// definition's default.
    pub message_type: Option<String>,
    /// The node that stored it (see [`crate::outbox`]).
    pub stored_by: Option<String>,
    /// When its broadcast was marked done, Unix milliseconds; none: not
    /// (yet) marked — in the outbox.
    pub broadcast_at: Option<i64>,
}

/// A message to append.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewMessage {
    /// The conversation (it must exist).
    pub conversation_id: String,
    /// The sender's user id.
    pub sender_id: String,
    /// The content.
    pub content: String,
    /// Attachments as JSON text (checked to be JSON).
    pub attachments: Option<String>,
    /// The sender's idempotency key: a second append with the same key in
    /// the same conversation returns the first message.
    pub client_message_id: Option<String>,
    /// The app's message type; none: the hub definition's default.
    pub message_type: Option<String>,
    /// The node storing it, which broadcasts it and marks it broadcast
    /// ([`crate::Store::mark_broadcast`]); none: nobody will (no outbox
    /// sweep for it).
    pub stored_by: Option<String>,
}

/// Where a user has read up to in a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReadPosition {
    /// The newest message read.
    pub message_id: MessageId,
    /// When it was marked read, Unix milliseconds.
    pub read_at: i64,
}

/// A conversation as listed for one user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConversationSummary {
    /// The conversation.
    pub conversation: Conversation,
    /// Its newest message.
    pub last_message: Option<Message>,
    /// Messages of others after the user's read position.
    pub unread: u64,
}

/// A conversation row.
#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = conversations)]
pub(crate) struct ConversationRow {
    pub id: String,
    pub kind: String,
    pub created_at: i64,
}

/// A message row as stored (content possibly encrypted).
#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = messages)]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct MessageRow {
    pub id: i64,
    pub conversation_id: String,
    pub sender_id: String,
    pub content: String,
    pub attachments: Option<String>,
    pub client_message_id: Option<String>,
    pub sent_at: i64,
    pub key_id: Option<String>,
    pub message_type: Option<String>,
    pub stored_by: Option<String>,
    pub broadcast_at: Option<i64>,
}

/// A read-position row.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = read_positions)]
pub(crate) struct ReadPositionRow {
    pub conversation_id: String,
    pub user_id: String,
    pub last_read_id: i64,
    pub read_at: i64,
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
