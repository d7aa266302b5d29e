//! What the REST API does to a chat hub's conversations, for backends:
//! create and read conversations, add and remove participants, post a
//! message (persist, then broadcast: seed 001's "REST then broadcast"),
//! page the history, read users' presence.

use serde_json::{json, Value};

use super::catalog::Event;
use super::payload::{self, iso8601, message_fields};
use super::ChatHub;
use std::sync::Arc;

use crate::core::metrics::Limit;
use crate::core::node::{Node, NodeError};
use crate::hubs::definition::Bounded;
use hubwire_backplane::{Target, UserId};
use hubwire_store::{Conversation, Message, MessageId, NewMessage, StoreError};

/// The most messages one history page holds.
pub const MAX_PAGE: usize = 200;

/// A message a backend posts.
#[derive(Debug, Default)]
pub struct PostedMessage {
    /// The sender (a participant).
    pub sender_id: String,
    /// Its display name, for the `senderName` field.
    pub sender_name: Option<String>,
    /// The content.
    pub content: String,
    /// The idempotency key.
    pub client_message_id: Option<String>,
    /// Attachments (any JSON).
    pub attachments: Option<Value>,
    /// The app's message type; none: the definition's default.
    pub message_type: Option<String>,
}

/// The kind of a conversation the REST API creates without a `type`.
pub const DEFAULT_KIND: &str = "group";

/// Why a REST operation on conversations failed.
#[derive(Debug, thiserror::Error)]
pub enum ConversationsError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cluster could not carry out the group change or the broadcast.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The content is empty, too long or not text.
    #[error("{0}")]
    InvalidContent(String),
    /// The sender is not a participant.
    #[error("{0}")]
    NotParticipant(String),
    /// An id, the attachments or the participants are beyond their limit.
    #[error("{0}")]
    Limit(String),
}

/// A message as the REST API shows it (the hub's client names aside):
/// `{id, conversationId, senderId, content, attachments, clientMessageId, sentAt}`.
pub fn message_json(message: &Message) -> Value {
    let fields = message_fields(message, None, None);
    json!({
        "id": fields["id"],
        "conversationId": fields["conversationId"],
        "senderId": fields["senderId"],
        "content": fields["content"],
        "attachments": fields["attachments"],
        "clientMessageId": fields["clientMessageId"],
        "messageType": message.message_type,
        "sentAt": fields["sentAt"],
    })
}

/// A conversation as the REST API shows it.
pub fn conversation_json(conversation: &Conversation) -> Value {
    json!({
        "id": conversation.id,
        "type": conversation.kind,
        "createdAt": iso8601(conversation.created_at),
        "participants": conversation.participants,
    })
}

impl ChatHub {
    /// Refuses `value` beyond its length limit (counted as `chat_input`).
    fn check_length(&self, node: &Node, kind: Bounded, value: &str) -> Result<(), ConversationsError> {
        self.chat
            .def
            .limits
            .check_length(kind, value)
            .map_err(|text| self.refused(node, text))
    }

    /// A refusal by an input limit, counted.
    fn refused(&self, node: &Node, text: String) -> ConversationsError {
        node.metrics.refused(self.chat.hub.as_str(), Limit::ChatInput);
        ConversationsError::Limit(text)
    }

    /// Creates a conversation (or returns the one with the same id, kind and
    /// participants); ids and the participant count within their limits.
    pub async fn create_conversation(
        &self,
        node: &Node,
        id: Option<&str>,
        kind: Option<&str>,
        participants: &[String],
    ) -> Result<Conversation, ConversationsError> {
        if let Some(id) = id {
            self.check_length(node, Bounded::ConversationId, id)?;
        }
        for user in participants {
            self.check_length(node, Bounded::UserId, user)?;
        }
        let limits = &self.chat.def.limits;
        limits
            .check_participants(participants.len())
            .map_err(|text| self.refused(node, text))?;
        let participants: Vec<&str> = participants.iter().map(String::as_str).collect();
        let kind = kind.unwrap_or(DEFAULT_KIND);
        Ok(self.chat.store.create_conversation(id, kind, &participants).await?)
    }

    /// Posts a message as `post.sender_id` (who must be a participant):
    /// persisted, then (if new) broadcast as a client's send is, to the
    /// whole group. Returns the stored message and whether it was new.
    pub async fn post_message(
        &self,
        node: &Arc<Node>,
        conversation: &str,
        post: PostedMessage,
    ) -> Result<(Value, bool), ConversationsError> {
        let chat = &self.chat;
        self.check_length(node, Bounded::ConversationId, conversation)?;
        self.check_length(node, Bounded::UserId, &post.sender_id)?;
        if let Some(id) = &post.client_message_id {
            self.check_length(node, Bounded::ClientMessageId, id)?;
        }
        if let Some(attachments) = &post.attachments {
            let checked = chat.def.limits.check_attachments(attachments);
            checked.map_err(|text| self.refused(node, text))?;
        }
        if !chat.def.limits.content_ok(&post.content) {
            return Err(ConversationsError::InvalidContent(
                chat.def.refusals.invalid_content.clone(),
            ));
        }
        if chat.store.get_conversation(conversation).await?.is_none() {
            return Err(StoreError::NotFound(format!("conversation '{conversation}' does not exist")).into());
        }
        if !chat.store.is_participant(conversation, &post.sender_id).await? {
            return Err(ConversationsError::NotParticipant(format!(
                "'{}' is not a participant of conversation '{conversation}'",
                post.sender_id
            )));
        }
        let (message, inserted) = chat
            .store
            .append_message(NewMessage {
                conversation_id: conversation.to_owned(),
                sender_id: post.sender_id.clone(),
                content: post.content,
                attachments: post.attachments.as_ref().map(Value::to_string),
                client_message_id: post.client_message_id.filter(|c| !c.is_empty()),
                message_type: post.message_type,
                stored_by: Some(super::outbox::stored_by(node.node_id(), &chat.hub)),
            })
            .await?;
        let fields = message_fields(&message, post.sender_name.as_deref(), None);
        let sender = UserId::from(post.sender_id);
        let claim = chat.claim_broadcast(&message, inserted).await;
        if claim.broadcasts() {
            let sent = chat.broadcast(node, &fields, None, &sender, vec![]).await;
            chat.broadcast_done(message.id, claim, sent.is_ok());
            sent?;
            chat.offline_delivery(node, &fields, None);
        }
        chat.typing_cleared_by_send(node, conversation, &sender).await;
        Ok((message_json(&message), inserted))
    }

    /// Up to `limit` messages of `conversation` before `before`, newest first.
    pub async fn history(
        &self,
        conversation: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Value>, ConversationsError> {
        let messages = self
            .chat
            .store
            .messages_before(conversation, before, limit.min(MAX_PAGE))
            .await?;
        Ok(messages.iter().map(message_json).collect())
    }

    /// Each of `users`' presence, `[{userId, isOnline, lastSeen,
    /// connections}]` as `GetPresence` answers.
    pub async fn presence(&self, node: &Node, users: &[String]) -> Result<Vec<Value>, ConversationsError> {
        let mut presence = Vec::with_capacity(users.len());
        for user in users {
            presence.push(self.chat.presence_of(node, user).await?);
        }
        Ok(presence)
    }

    /// The conversation `id`, if it exists.
    pub async fn conversation(&self, id: &str) -> Result<Option<Conversation>, ConversationsError> {
        Ok(self.chat.store.get_conversation(id).await?)
    }

    /// Adds `user` to `conversation`: `true` if they were not in it. The
    /// user id within its limit, the conversation within `max_participants`.
    pub async fn add_participant(
        &self,
        node: &Node,
        conversation: &str,
        user: &str,
    ) -> Result<bool, ConversationsError> {
        self.check_length(node, Bounded::ConversationId, conversation)?;
        self.check_length(node, Bounded::UserId, user)?;
        if let Some(existing) = self.chat.store.get_conversation(conversation).await? {
            if !existing.participants.iter().any(|p| p == user) {
                let limits = &self.chat.def.limits;
                limits
                    .check_participants(existing.participants.len() + 1)
                    .map_err(|text| self.refused(node, text))?;
            }
        }
        Ok(self.chat.store.add_participant(conversation, user).await?)
    }

    /// Removes `user` from `conversation`; their live connections on every
    /// node leave its group at once and the group (they included) hears
    /// `user_left_conversation`. `true` if they were in it.
    pub async fn remove_participant(
        &self,
        node: &Node,
        conversation: &str,
        user: &str,
    ) -> Result<bool, ConversationsError> {
        let chat = &self.chat;
        let removed = chat.store.remove_participant(conversation, user).await?;
        let user = UserId::from(user);
        let group = chat.group(conversation);
        let fields = payload::fields([
            ("conversationId", json!(conversation)),
            ("userId", json!(user.as_str())),
        ]);
        let mut left = false;
        for record in node.user_connections(&chat.hub, &user).await? {
            left |= node.remove_from_group(&chat.hub, &group, &record.id).await?;
        }
        if left {
            // Once to the user (out of the group by now) and once to the group.
            chat.emit(
                node,
                Event::UserLeftConversation,
                Target::User(user.clone()),
                vec![],
                &fields,
            )
            .await?;
            chat.emit(node, Event::UserLeftConversation, Target::Group(group), vec![], &fields)
                .await?;
        }
        Ok(removed)
    }
}
