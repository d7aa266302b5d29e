//! Conversations for clients: join (with catch-up) and leave, send and
//! direct send, mark read.
//!
//! Catch-up without a gap: a join adds the connection to the group first and
//! reads the messages after the client's cursor second, so that every message
//! is either delivered live or returned (some maybe both: clients tell them
//! apart by id). Message ids are time-ordered and stored, so a cursor from
//! any node works on any other.

use serde_json::{json, Map, Value};

use super::catalog::Event;
use super::payload::{self, iso8601, message_fields};
use super::{caller_user, optional_text, text, Chat, Failure, Invocation, Refusal};
use crate::core::hub::{HubCall, HubError};
use crate::core::metrics::Limit;
use crate::core::node::{Node, NodeError};
use crate::hubs::definition::{BoundArgs, Bounded};
use hubwire_backplane::{ConnectionId, Target, UserId};
use hubwire_store::{Message, MessageId, NewMessage, ReadPosition};

/// A cached read position as [`Chat::read_position`] writes it.
pub fn parse_read_position(text: &str) -> Option<ReadPosition> {
    let (message, read_at) = text.split_once('|')?;
    Some(ReadPosition {
        message_id: message.parse().ok()?,
        read_at: read_at.parse().ok()?,
    })
}

/// A message id argument: decimal text or a number.
fn message_id(args: &BoundArgs, param: &str) -> Result<Option<MessageId>, Failure> {
    let Some(text) = optional_text(args, param)? else {
        return Ok(None);
    };
    text.parse().map(Some).map_err(|_| {
        Failure::Error(HubError::Binding(format!(
            "argument '{param}' must be a message id, not {text:?}"
        )))
    })
}

impl Chat {
    /// A message as the definition shapes `event`'s object.
    fn message_object(
        &self,
        event: Event,
        message: &Message,
        sender_name: Option<&str>,
        recipient: Option<&str>,
    ) -> Value {
        self.event(event)
            .object(&message_fields(message, sender_name, recipient))
    }

    /// `join_conversation(conversationId, afterMessageId?)`: participants
    /// only; joins the group, tells the group, returns the messages after
    /// the cursor (none without one; `0` means from the first). With an
    /// authorisation hook (`asked`), the backend must allow it too.
    pub(super) async fn join(
        &self,
        call: &HubCall,
        args: &BoundArgs,
        asked: Option<&Invocation>,
    ) -> Result<Value, Failure> {
        let user = caller_user(call)?;
        let conversation = self.conversation_arg(call, args)?;
        let after = message_id(args, "afterMessageId")?;
        self.check_participant(&conversation, &user).await?;
        let group = self.group(&conversation);
        self.check_backend(call, &user, group.as_str(), asked).await?;
        call.join_group(&group).await?;
        let fields = payload::fields([
            ("conversationId", json!(conversation)),
            ("userId", json!(user.as_str())),
        ]);
        let except = vec![call.caller.id.clone()];
        self.emit(
            &call.node,
            Event::UserJoinedConversation,
            Target::Group(group),
            except,
            &fields,
        )
        .await?;
        let missed = match after {
            Some(after) => {
                self.store
                    .messages_after(&conversation, Some(after), self.def.limits.catch_up_max)
                    .await?
            }
            None => Vec::new(),
        };
        let missed = missed
            .iter()
            .map(|m| self.message_object(Event::MessageReceived, m, None, None))
            .collect();
        Ok(Value::Array(missed))
    }

    /// `leave_conversation(conversationId)`: leaves the group, then tells it.
    pub(super) async fn leave(&self, call: &HubCall, args: &BoundArgs) -> Result<Value, Failure> {
        let user = caller_user(call)?;
        let conversation = self.conversation_arg(call, args)?;
        let group = self.group(&conversation);
        let hub = &call.caller.hub;
        if call.node.remove_from_group(hub, &group, &call.caller.id).await? {
            let fields = payload::fields([
                ("conversationId", json!(conversation)),
                ("userId", json!(user.as_str())),
            ]);
            self.emit(
                &call.node,
                Event::UserLeftConversation,
                Target::Group(group),
                vec![],
                &fields,
            )
            .await?;
        }
        Ok(Value::Null)
    }

    /// `send_message` / `send_direct_message`: checks the content, persists
    /// (with its `messageType`, if given), then (for a new message, or a
    /// repeat whose broadcast is not marked done: [`super::outbox`]) broadcasts `message_received` — to the
    /// conversation's group but the caller (unless `message_sent` is off),
    /// or to every connection of the
    /// direct recipient — and `message_sent` to the sender's connections;
    /// clears the sender's typing there. Returns the stored message.
    pub(super) async fn send(&self, call: &HubCall, args: &BoundArgs, direct: bool) -> Result<Value, Failure> {
        let user = caller_user(call)?;
        let content = match args.get("content") {
            Some(Value::String(content)) => content.clone(),
            Some(_) | None => return Err(Failure::Refused(Refusal::InvalidContent)),
        };
        if !self.def.limits.content_ok(&content) {
            return Err(Failure::Refused(Refusal::InvalidContent));
        }
        let client_message_id = optional_text(args, "clientMessageId")?.filter(|c| !c.is_empty());
        if let Some(id) = &client_message_id {
            self.check_length(&call.node, Bounded::ClientMessageId, id)?;
        }
        if let Some(attachments) = args.get("attachments") {
            let checked = self.def.limits.check_attachments(attachments);
            checked.map_err(|text| self.limit_refused(&call.node, text))?;
        }
        // Every input limit before the rate: a refused input takes no token.
        let (target, bounded) = match direct {
            true => ("recipientUserId", Bounded::UserId),
            false => ("conversationId", Bounded::ConversationId),
        };
        if let Some(id) = optional_text(args, target)? {
            self.check_length(&call.node, bounded, &id)?;
        }
        let per_minute = self.def.limits.messages_per_minute;
        if let Some(retry_secs) = call
            .node
            .rate_wait(&self.hub, &user, Limit::MessageRate, per_minute)
            .await
        {
            return Err(Failure::Refused(Refusal::RateLimited { retry_secs }));
        }
        let attachments = args.get("attachments").map(Value::to_string);
        let (conversation, recipient) = if direct {
            let recipient = text(args, "recipientUserId")?;
            if recipient == user.as_str() {
                return Err(Failure::Error(HubError::Hub(
                    "A direct message needs another user.".into(),
                )));
            }
            let conversation = self.store.direct_conversation(user.as_str(), &recipient).await?;
            (conversation.id, Some(recipient))
        } else {
            let conversation = self.conversation_arg(call, args)?;
            self.check_caller(call, &conversation, &user).await?;
            (conversation, None)
        };
        let message_type = optional_text(args, "messageType")?;
        let (message, inserted) = self
            .store
            .append_message(NewMessage {
                conversation_id: conversation.clone(),
                sender_id: user.as_str().to_owned(),
                content,
                attachments,
                client_message_id,
                message_type,
                stored_by: Some(super::outbox::stored_by(call.node.node_id(), &self.hub)),
            })
            .await?;
        let sender_name = call.caller.principal.as_ref().and_then(|p| p.name.clone());
        let fields = message_fields(&message, sender_name.as_deref(), recipient.as_deref());
        // A new message, or a repeat of one whose broadcast is not marked done.
        let claim = self.claim_broadcast(&message, inserted).await;
        if claim.broadcasts() {
            // The caller hears its own message as `message_sent`; with that
            // event off, as the rest of the group does.
            let except = match recipient {
                Some(_) => vec![],
                None if self.event(Event::MessageSent).name.is_none() => vec![],
                None => vec![call.caller.id.clone()],
            };
            let sent = self
                .broadcast(&call.node, &fields, recipient.as_deref(), &user, except)
                .await;
            self.broadcast_done(message.id, claim, sent.is_ok());
            sent?;
            self.offline_delivery(&call.node, &fields, recipient.as_deref());
        }
        self.typing_cleared_by_send(&call.node, &conversation, &user).await;
        Ok(self.event(Event::MessageSent).object(&fields))
    }

    /// A new message's broadcast: `message_received` to the conversation's
    /// group but `except` (or to every connection of the direct `recipient`),
    /// then `message_sent` to every connection of the sender.
    pub(super) async fn broadcast(
        &self,
        node: &Node,
        fields: &Map<String, Value>,
        recipient: Option<&str>,
        sender: &UserId,
        except: Vec<ConnectionId>,
    ) -> Result<(), NodeError> {
        let target = match recipient {
            Some(recipient) => Target::User(UserId::from(recipient)),
            None => {
                let conversation = fields.get("conversationId").and_then(Value::as_str).unwrap_or_default();
                Target::Group(self.group(conversation))
            }
        };
        self.emit(node, Event::MessageReceived, target, except, fields).await?;
        self.emit(node, Event::MessageSent, Target::User(sender.clone()), vec![], fields)
            .await
    }

    /// Writes a stored read position through to the cluster's cache (as
    /// `<messageId>|<readAt ms>`; see [`parse_read_position`]). A failure is
    /// logged: the store stays the truth.
    async fn cache_read(&self, node: &Node, conversation: &str, user: &UserId, position: &ReadPosition) {
        let text = format!("{}|{}", position.message_id, position.read_at);
        if let Err(e) = node.cache_read_position(&self.hub, conversation, user, &text).await {
            tracing::warn!(user = %user, error = %e, "could not cache a read position");
        }
    }

    /// The read position of `user` in `conversation`: the cluster's cache,
    /// else the store (and then cached).
    pub async fn read_position(
        &self,
        node: &Node,
        conversation: &str,
        user: &UserId,
    ) -> Result<Option<ReadPosition>, Failure> {
        match node.cached_read_position(&self.hub, conversation, user).await {
            Ok(Some(text)) => {
                if let Some(position) = parse_read_position(&text) {
                    return Ok(Some(position));
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "read position cache unavailable; reading the store"),
        }
        let stored = self.store.read_position(conversation, user.as_str()).await?;
        if let Some(position) = &stored {
            self.cache_read(node, conversation, user, position).await;
        }
        Ok(stored)
    }

    /// `mark_as_read(conversationId, messageId)`: stores the read position
    /// (it only moves forward), caches it cluster-wide, and tells the rest of
    /// the group where it is.
    pub(super) async fn mark_read(&self, call: &HubCall, args: &BoundArgs) -> Result<Value, Failure> {
        let user = caller_user(call)?;
        let conversation = self.conversation_arg(call, args)?;
        let message = message_id(args, "messageId")?
            .ok_or_else(|| Failure::Error(HubError::Binding("argument 'messageId' is missing".into())))?;
        self.check_caller(call, &conversation, &user).await?;
        let position = self.store.mark_read(&conversation, user.as_str(), message).await?;
        self.cache_read(&call.node, &conversation, &user, &position).await;
        let fields = payload::fields([
            ("conversationId", json!(conversation)),
            ("messageId", json!(position.message_id.to_string())),
            ("userId", json!(user.as_str())),
            ("readAt", json!(iso8601(position.read_at))),
        ]);
        let except = vec![call.caller.id.clone()];
        let group = Target::Group(self.group(&conversation));
        self.emit(&call.node, Event::MessageRead, group, except, &fields)
            .await?;
        Ok(Value::Null)
    }
}
