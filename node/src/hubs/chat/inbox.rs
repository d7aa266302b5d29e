//! A user's inbox: their conversations, most recently active first, each
//! with its last message and the number of messages of others after the
//! user's read position (the store's `conversations_of`, one read whatever
//! the count). `GetConversations` for clients (the last message shaped as
//! the definition's `message_received`), and the REST API's
//! `GET /api/hubs/{hub}/users/{user}/conversations` (the REST API's message).

use serde_json::{json, Value};

use super::backend::{conversation_json, message_json, ConversationsError};
use super::catalog::Event;
use super::payload::message_fields;
use super::{caller_user, Chat, ChatHub, Failure};
use crate::core::hub::HubCall;
use hubwire_store::{ConversationSummary, Message};

/// A summary as `{id, type, createdAt, participants, lastMessage, unreadCount}`,
/// the last message (or `null`) laid out by `message`.
pub fn summary_json(summary: &ConversationSummary, message: impl Fn(&Message) -> Value) -> Value {
    let mut value = conversation_json(&summary.conversation);
    if let Value::Object(object) = &mut value {
        let last = summary.last_message.as_ref().map_or(Value::Null, message);
        object.insert("lastMessage".into(), last);
        object.insert("unreadCount".into(), json!(summary.unread));
    }
    value
}

impl Chat {
    /// `get_conversations()`: the caller's inbox.
    pub(super) async fn get_conversations(&self, call: &HubCall) -> Result<Value, Failure> {
        let user = caller_user(call)?;
        let inbox = self.store.conversations_of(user.as_str()).await?;
        let shape = self.event(Event::MessageReceived);
        let summaries = inbox
            .iter()
            .map(|s| summary_json(s, |m| shape.object(&message_fields(m, None, None))))
            .collect();
        Ok(Value::Array(summaries))
    }
}

impl ChatHub {
    /// `user`'s inbox as the REST API shows it.
    pub async fn inbox(&self, user: &str) -> Result<Vec<Value>, ConversationsError> {
        let inbox = self.chat.store.conversations_of(user).await?;
        Ok(inbox.iter().map(|s| summary_json(s, message_json)).collect())
    }
}
