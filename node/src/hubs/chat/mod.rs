//! The chat kind: conversations persisted in the store, then broadcast to
//! their groups; typing; read receipts; presence. One [`ChatHub`] per
//! definition (the built-in `/hubs/chat` is the definition with MISSION.md's
//! names, [`catalog::CATALOG`]'s defaults).
//!
//! # Layout
//! - [`catalog`]: the kind's operations and events, with the default names.
//! - [`payload`]: event fields under their catalog names; ISO-8601 times.
//! - [`conversations`]: join / leave (with catch-up), send, direct send, mark
//!   read.
//! - [`inbox`]: `GetConversations` (the caller's conversations with their
//!   last message and unread count), also the REST API's user inbox.
//! - [`backend`]: what the REST API does to conversations (create, read,
//!   participants, post a message, history).
//! - [`typing`]: the typing state of this node's connections, and its
//!   announcements (start, refresh, stop, expiry, disconnect).
//! - [`outbox`]: the broadcast mark of stored messages; a repeat whose mark
//!   is missing is broadcast again, and the node that sweeps a dead node
//!   broadcasts what it left unmarked and ends the typing it held.
//! - [`presence`]: online / offline announcements, `UpdatePresence` and
//!   `GetPresence` (also the REST API's presence).
//! - [`offline`]: the offline-delivery hook: new messages for recipients
//!   with no live connection in the cluster POSTed to the app's URL.
//!
//! # Rules
//! - Only participants (in the store) may join, send, type or mark read; a
//!   refusal is a `HubException` or an error event to the caller, as the
//!   definition says ([`Refusal`]).
//! - Sends (`messages_per_minute`) and typing notices (`typing_per_minute`)
//!   are rate-limited per user and hub across the cluster
//!   ([`Node::rate_wait`]): a send beyond it is refused with the time to
//!   retry, a typing notice dropped silently. When the backplane cannot
//!   answer, the call goes ahead (logged): the limit guards against abuse,
//!   and refusing every send while Redis is away would stop the chat.
//! - A message is acknowledged and broadcast only after the store committed
//!   it; a repeated `clientMessageId` returns the stored message and
//!   broadcasts nothing — unless the message's broadcast mark is missing
//!   (its node died or failed before the group send): then it is broadcast
//!   again ([`outbox`]). Delivery is at least once; clients dedupe by id.
//! - Ids and attachments are bounded (`limits.max_*_chars`,
//!   `max_attachments`, `max_attachments_bytes`, `max_participants`): a
//!   value beyond its limit is refused with a `HubException` (REST: 400)
//!   naming the limit, counted as `chat_input` in
//!   `hubwire_limit_refusals_total`.
//! - Every send goes through [`Chat::emit`], which lays the event out as the
//!   definition says; an event the definition turns off is not sent.

pub mod backend;
pub mod catalog;
pub mod conversations;
pub mod inbox;
pub mod offline;
pub mod outbox;
pub mod payload;
pub mod presence;
pub mod typing;

use std::sync::Arc;

use futures_util::future::{BoxFuture, LocalBoxFuture};
use serde_json::{Map, Value};

use crate::core::connection::ConnectionHandle;
use crate::core::definition::RefusalStyle;
use crate::core::hub::{Hub, HubCall, HubError, HubReply, MethodSpec};
use crate::core::metrics::Limit;
use crate::core::node::{Node, NodeError, SendOrder};
use crate::hubs::definition::{BoundArgs, BoundEvent, Bounded, Definition};
use catalog::{Event, Op, CATALOG};
use hubwire_backplane::{ConnectionId, GroupName, HubName, NodeId, Target, UserId};
use hubwire_store::{Store, StoreError};

/// A hub of the chat kind.
#[derive(Clone)]
pub struct ChatHub {
    chat: Arc<Chat>,
}

/// What a chat hub's calls and hooks share.
pub struct Chat {
    def: Definition,
    specs: Vec<MethodSpec>,
    hub: HubName,
    store: Store,
    typing: typing::Typing,
    outbox: Arc<outbox::Outbox>,
    /// The offline-delivery hook, once started ([`Chat::start_offline_hook`]).
    offline: std::sync::OnceLock<offline::OfflineHook>,
}

/// Why a call was refused, as the definition's refusal texts name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The caller is not a participant of the conversation.
    NotParticipant,
    /// No such conversation.
    NotFound,
    /// The content is empty or too long.
    InvalidContent,
    /// The sender is beyond `messages_per_minute`.
    RateLimited {
        /// Whole seconds until a send is allowed again (at least 1).
        retry_secs: u64,
    },
}

/// How a call failed: refused (answered as the definition says), or an error.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Refused by a rule of the hub.
    #[error("refused: {0:?}")]
    Refused(Refusal),
    /// Failed.
    #[error(transparent)]
    Error(HubError),
}

impl From<HubError> for Failure {
    fn from(error: HubError) -> Self {
        Failure::Error(error)
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Error(match error {
            StoreError::Unavailable(_) | StoreError::Closed => {
                HubError::Hub("The message store is not available right now; nothing was stored. Try again.".into())
            }
            StoreError::Invalid(m) | StoreError::NotFound(m) | StoreError::Conflict(m) => HubError::Hub(m),
            other => HubError::Internal(other.to_string()),
        })
    }
}

impl From<NodeError> for Failure {
    fn from(error: NodeError) -> Self {
        Failure::Error(HubError::Hub(error.to_string()))
    }
}

impl ChatHub {
    /// A chat hub serving `def`, persisting in `store`.
    pub fn new(def: Definition, store: Store) -> Self {
        let specs = def.methods.iter().map(|m| m.spec.clone()).collect();
        let hub = HubName::from(def.name.as_str());
        Self {
            chat: Arc::new(Chat {
                def,
                specs,
                hub,
                store,
                typing: typing::Typing::default(),
                outbox: Arc::default(),
                offline: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The definition it serves.
    pub fn definition(&self) -> &Definition {
        &self.chat.def
    }

    /// Starts what runs beside the calls (the offline-delivery hook, when
    /// the definition has one), counting in `node`'s metrics.
    pub fn start(&self, node: &Node) {
        self.chat.start_offline_hook(node);
    }
}

impl Chat {
    fn event(&self, event: Event) -> &BoundEvent {
        &self.def.events[event as usize]
    }

    /// The group of conversation `id`.
    fn group(&self, id: &str) -> GroupName {
        GroupName::from(self.def.group_of(id))
    }

    /// Sends `event` with `fields` to `target` (but not to `except`), laid
    /// out as the definition says; nothing when the event is off.
    async fn emit(
        &self,
        node: &Node,
        event: Event,
        target: Target,
        except: Vec<ConnectionId>,
        fields: &Map<String, Value>,
    ) -> Result<(), NodeError> {
        let bound = self.event(event);
        let Some(name) = &bound.name else {
            return Ok(());
        };
        let arguments = bound.arguments(fields);
        node.send(&self.hub, target, except, (name, arguments), SendOrder::LocalFirst)
            .await
    }

    /// Answers a refusal as the definition says: a `HubException`, or the
    /// error event to the caller and a Completion without a result.
    async fn refuse(&self, call: &HubCall, refusal: Refusal) -> Result<HubReply, HubError> {
        let refusals = &self.def.refusals;
        let text = match refusal {
            Refusal::NotParticipant => refusals.not_participant.clone(),
            Refusal::NotFound => refusals.not_found.clone(),
            Refusal::InvalidContent => refusals.invalid_content.clone(),
            Refusal::RateLimited { retry_secs } => {
                refusals.rate_limited_text(self.def.limits.messages_per_minute, retry_secs)
            }
        };
        match refusals.style {
            RefusalStyle::Exception => Err(HubError::Hub(text)),
            RefusalStyle::Event => {
                let event = match refusal {
                    Refusal::InvalidContent | Refusal::RateLimited { .. } => Event::MessageError,
                    Refusal::NotParticipant | Refusal::NotFound => Event::ConversationError,
                };
                let fields = payload::fields([("error", Value::String(text))]);
                let caller = Target::Connection(call.caller.id.clone());
                self.emit(&call.node, event, caller, vec![], &fields)
                    .await
                    .map_err(|e| HubError::Hub(e.to_string()))?;
                Ok(HubReply::Value(Value::Null))
            }
        }
    }

    /// Refuses unless `user` takes part in `conversation` (not found when it
    /// does not exist).
    async fn check_participant(&self, conversation: &str, user: &UserId) -> Result<(), Failure> {
        if self.store.is_participant(conversation, user.as_str()).await? {
            return Ok(());
        }
        let exists = self.store.get_conversation(conversation).await?.is_some();
        Err(Failure::Refused(if exists {
            Refusal::NotParticipant
        } else {
            Refusal::NotFound
        }))
    }

    /// [`Chat::check_participant`] for the caller, answered without the store
    /// when the calling connection is in the conversation's group: only a
    /// participant's `JoinConversation` (or the trusted backend) puts it
    /// there, and removing a participant takes every connection of the user
    /// out of the group at once. Typing, sends and receipts of joined
    /// connections — nearly all of a chat's traffic — cost no query.
    async fn check_caller(&self, call: &HubCall, conversation: &str, user: &UserId) -> Result<(), Failure> {
        let group = self.group(conversation);
        if call.node.registry.is_in_group(&call.caller.id, &group) {
            return Ok(());
        }
        self.check_participant(conversation, user).await
    }

    /// Refuses `value` beyond its length limit (a `HubException` naming it).
    fn check_length(&self, node: &Node, kind: Bounded, value: &str) -> Result<(), Failure> {
        self.def
            .limits
            .check_length(kind, value)
            .map_err(|text| self.limit_refused(node, text))
    }

    /// A refusal by an input limit: counted, a `HubException` with `text`.
    fn limit_refused(&self, node: &Node, text: String) -> Failure {
        node.metrics.refused(self.hub.as_str(), Limit::ChatInput);
        Failure::Error(HubError::Hub(text))
    }

    /// The `conversationId` argument, refused beyond its length limit.
    fn conversation_arg(&self, call: &HubCall, args: &BoundArgs) -> Result<String, Failure> {
        let conversation = text(args, "conversationId")?;
        self.check_length(&call.node, Bounded::ConversationId, &conversation)?;
        Ok(conversation)
    }

    async fn run(
        self: Arc<Self>,
        call: HubCall,
        op: Op,
        args: BoundArgs,
        asked: Option<Invocation>,
    ) -> Result<Value, Failure> {
        if let Some(user) = call.caller.user() {
            self.check_length(&call.node, Bounded::UserId, user.as_str())?;
        }
        match op {
            Op::Ping => Ok(Value::from("pong")),
            Op::GetPresence => self.get_presence(&call, &args).await,
            Op::JoinConversation => self.join(&call, &args, asked.as_ref()).await,
            Op::LeaveConversation => self.leave(&call, &args).await,
            Op::SendMessage => self.send(&call, &args, false).await,
            Op::SendDirectMessage => self.send(&call, &args, true).await,
            Op::StartTyping => self.clone().start_typing(&call, &args).await,
            Op::StopTyping => self.stop_typing(&call, &args).await,
            Op::MarkAsRead => self.mark_read(&call, &args).await,
            Op::GetConversations => self.get_conversations(&call).await,
            Op::UpdatePresence => self.update_presence(&call, &args).await,
        }
    }
}

/// A client's invocation as the backend's authorisation hook is told of it.
pub(super) struct Invocation {
    /// The method as the client named it.
    method: String,
    /// Its arguments as sent.
    arguments: Vec<Value>,
}

impl Chat {
    /// With `asked` (the hub names an authorisation hook), asks the
    /// backend whether `user` may join `group`: a denial, and a backend
    /// that cannot answer (logged), refuse as a non-participant.
    async fn check_backend(
        &self,
        call: &HubCall,
        user: &UserId,
        group: &str,
        asked: Option<&Invocation>,
    ) -> Result<(), Failure> {
        let Some(asked) = asked else {
            return Ok(());
        };
        let backend = &call.node.backend;
        match backend
            .authorize(self.hub.as_str(), user, &asked.method, group, &asked.arguments)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(Failure::Refused(Refusal::NotParticipant)),
            Err(e) => {
                tracing::warn!(user = %user, group, error = %e, "authorisation backend unavailable: refusing the join");
                Err(Failure::Refused(Refusal::NotParticipant))
            }
        }
    }
}

/// The caller's user: the chat kind needs one.
fn caller_user(call: &HubCall) -> Result<UserId, Failure> {
    call.caller
        .user()
        .cloned()
        .ok_or_else(|| Failure::Error(HubError::Hub("This hub needs a signed-in user.".into())))
}

/// Argument `param` as text (a number is taken as its decimal text).
fn text(args: &BoundArgs, param: &str) -> Result<String, Failure> {
    Ok(args.required_text(param)?)
}

/// Argument `param` as text, if given.
fn optional_text(args: &BoundArgs, param: &str) -> Result<Option<String>, Failure> {
    Ok(args.text(param)?)
}

impl Hub for ChatHub {
    fn name(&self) -> &str {
        &self.chat.def.name
    }

    fn methods(&self) -> &[MethodSpec] {
        &self.chat.specs
    }

    fn invoke(
        &self,
        call: HubCall,
        method: usize,
        args: Vec<Value>,
    ) -> LocalBoxFuture<'static, Result<HubReply, HubError>> {
        let chat = self.chat.clone();
        let bound = chat.def.methods.get(method);
        let Some((bound, op)) = bound.and_then(|b| Some((b, Op::of(b.operation)?))) else {
            return Box::pin(async move { Err(HubError::Internal(format!("no method number {method}"))) });
        };
        // What the backend's authorisation hook is told of a join: the
        // method as the client named it and its arguments as sent.
        let asked =
            (matches!(op, Op::JoinConversation) && call.node.backend.authorizes(&chat.def.name)).then(|| Invocation {
                method: bound.spec.name.to_string(),
                arguments: args.clone(),
            });
        let args = chat.def.bind(&CATALOG, bound, args);
        Box::pin(async move {
            match chat.clone().run(call.clone(), op, args, asked).await {
                Ok(value) => Ok(HubReply::Value(value)),
                Err(Failure::Refused(refusal)) => chat.refuse(&call, refusal).await,
                Err(Failure::Error(error)) => Err(error),
            }
        })
    }

    fn max_connections_per_user(&self) -> Option<usize> {
        self.chat.def.limits.max_connections_per_user
    }

    fn on_connected(&self, node: Arc<Node>, caller: Arc<ConnectionHandle>) -> BoxFuture<'static, ()> {
        let chat = self.chat.clone();
        Box::pin(async move { chat.connected(&node, &caller).await })
    }

    fn on_disconnected(&self, node: Arc<Node>, caller: Arc<ConnectionHandle>) -> BoxFuture<'static, ()> {
        let chat = self.chat.clone();
        Box::pin(async move { chat.clear_typing_of(&node, &caller.id).await })
    }

    fn on_user_offline(&self, node: Arc<Node>, _hub: HubName, user: UserId) -> BoxFuture<'static, ()> {
        let chat = self.chat.clone();
        Box::pin(async move { chat.went_offline(&node, &user).await })
    }

    fn on_node_down(&self, node: Arc<Node>, dead: NodeId) -> BoxFuture<'static, ()> {
        let chat = self.chat.clone();
        Box::pin(async move { chat.take_over(&node, &dead).await })
    }
}
