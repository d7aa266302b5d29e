//! Who is typing where: the one owner of typing state of a chat hub on this
//! node.
//!
//! A typer's indicator lives on the node of the connection that started it
//! (its `StartTyping` arrives there), keyed by conversation and user. Each
//! start or refresh takes a new generation and arms a timer; a timer whose
//! generation is no longer current does nothing, so a refresh extends the
//! indicator. Every clear — `StopTyping`, a send, expiry, the typer's
//! disconnect — happens here once and is announced by the caller of these
//! methods, so that nobody "types" forever. The node also records in the
//! keyspace which indicators it holds (on a start that is new and on each
//! clear, not on a refresh), so that the node that sweeps it after its
//! death announces their end ([`Chat::take_over`]). A `std::sync::Mutex`: it is held
//! for a map operation, never across an await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::catalog::Event;
use super::{caller_user, payload, Chat, Failure};
use crate::core::hub::HubCall;
use crate::core::metrics::Limit;
use crate::core::node::Node;
use crate::hubs::definition::BoundArgs;
use hubwire_backplane::{ConnectionId, Target, UserId};

/// One conversation and one user.
pub type TypingKey = (String, String);

#[derive(Debug)]
struct Entry {
    connection: ConnectionId,
    generation: u64,
}

/// The typing indicators of this node's connections.
#[derive(Debug, Default)]
pub struct Typing {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<TypingKey, Entry>,
    next_generation: u64,
}

/// What a start did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    /// The generation its timer must still find to expire it.
    pub generation: u64,
    /// Whether the user was not typing there before (announce it).
    pub new: bool,
}

impl Typing {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves a map that is still whole.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `user` starts (or goes on) typing in `conversation` on `connection`.
    pub fn start(&self, key: TypingKey, connection: &ConnectionId) -> Started {
        let mut state = self.state();
        state.next_generation += 1;
        let generation = state.next_generation;
        let entry = Entry {
            connection: connection.clone(),
            generation,
        };
        let new = state.entries.insert(key, entry).is_none();
        Started { generation, new }
    }

    /// Clears an indicator; the connection that held it, if there was one.
    pub fn stop(&self, key: &TypingKey) -> Option<ConnectionId> {
        self.state().entries.remove(key).map(|e| e.connection)
    }

    /// Clears an indicator if it is still of `generation` (its timer ran
    /// out): the connection that held it, if so.
    pub fn expire(&self, key: &TypingKey, generation: u64) -> Option<ConnectionId> {
        let mut state = self.state();
        if state.entries.get(key).is_some_and(|e| e.generation == generation) {
            return state.entries.remove(key).map(|e| e.connection);
        }
        None
    }

    /// Whether this node holds an indicator of (conversation, user).
    pub fn holds(&self, key: &TypingKey) -> bool {
        self.state().entries.contains_key(key)
    }

    /// Clears every indicator `connection` held (it has closed).
    pub fn clear_connection(&self, connection: &ConnectionId) -> Vec<TypingKey> {
        let mut state = self.state();
        let keys: Vec<TypingKey> = state
            .entries
            .iter()
            .filter(|(_, e)| e.connection == *connection)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &keys {
            state.entries.remove(key);
        }
        keys
    }
}

impl Chat {
    /// `start_typing(conversationId)`: participants only; announces a new
    /// indicator to the rest of the group, and (re)arms its expiry. Beyond
    /// `typing_per_minute` the notice is dropped silently.
    pub(super) async fn start_typing(self: Arc<Self>, call: &HubCall, args: &BoundArgs) -> Result<Value, Failure> {
        let user = caller_user(call)?;
        let conversation = self.conversation_arg(call, args)?;
        self.check_caller(call, &conversation, &user).await?;
        let per_minute = self.def.limits.typing_per_minute;
        if call
            .node
            .rate_wait(&self.hub, &user, Limit::TypingRate, per_minute)
            .await
            .is_some()
        {
            return Ok(Value::Null);
        }
        let key: TypingKey = (conversation.clone(), user.as_str().to_owned());
        let started = self.typing.start(key.clone(), &call.caller.id);
        if started.new {
            self.record_held(&call.node, &key, true).await;
            let fields = typing_fields(&key, true);
            let except = vec![call.caller.id.clone()];
            let group = Target::Group(self.group(&conversation));
            self.emit(&call.node, Event::TypingStarted, group, except, &fields)
                .await?;
        }
        let timeout = Duration::from_secs(self.def.limits.typing_timeout_secs);
        let (chat, node) = (self.clone(), call.node.clone());
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(connection) = chat.typing.expire(&key, started.generation) {
                chat.cleared(&node, &key, connection).await;
            }
        });
        Ok(Value::Null)
    }

    /// `stop_typing(conversationId)`: clears the caller's indicator there.
    pub(super) async fn stop_typing(&self, call: &HubCall, args: &BoundArgs) -> Result<Value, Failure> {
        let user = caller_user(call)?;
        let conversation = self.conversation_arg(call, args)?;
        let key: TypingKey = (conversation, user.as_str().to_owned());
        if let Some(connection) = self.typing.stop(&key) {
            self.cleared(&call.node, &key, connection).await;
        }
        Ok(Value::Null)
    }

    /// A send clears its sender's indicator in the conversation.
    pub(super) async fn typing_cleared_by_send(&self, node: &Node, conversation: &str, user: &UserId) {
        let key: TypingKey = (conversation.to_owned(), user.as_str().to_owned());
        if let Some(connection) = self.typing.stop(&key) {
            self.cleared(node, &key, connection).await;
        }
    }

    /// A closed connection clears every indicator it held.
    pub(super) async fn clear_typing_of(&self, node: &Node, connection: &ConnectionId) {
        for key in self.typing.clear_connection(connection) {
            self.cleared(node, &key, connection.clone()).await;
        }
    }

    /// An indicator this node held is cleared: forgotten in the keyspace,
    /// announced to the group but the typer's connection.
    async fn cleared(&self, node: &Node, key: &TypingKey, connection: ConnectionId) {
        self.record_held(node, key, false).await;
        self.announce_stopped(node, key, vec![connection]).await;
    }

    /// Records in the keyspace that this node holds (or no longer holds) an
    /// indicator. A failure is logged: at worst the sweeper of this node
    /// announces an end nobody needed, or misses one the clients time out.
    async fn record_held(&self, node: &Node, key: &TypingKey, held: bool) {
        let user = UserId::from(key.1.as_str());
        if let Err(e) = node.typing_held(&self.hub, &key.0, &user, held).await {
            tracing::warn!(conversation = %key.0, user = %key.1, error = %e, "could not record a typing indicator");
        }
    }

    /// Tells the group (but `except`) that typing stopped. A
    /// failure is logged: the indicator is cleared here either way, and the
    /// clients' own timeouts end it on their side.
    pub(super) async fn announce_stopped(&self, node: &Node, key: &TypingKey, except: Vec<ConnectionId>) {
        let fields = typing_fields(key, false);
        let group = Target::Group(self.group(&key.0));
        if let Err(e) = self.emit(node, Event::TypingStopped, group, except, &fields).await {
            tracing::warn!(conversation = %key.0, user = %key.1, error = %e, "could not announce that typing stopped");
        }
    }
}

fn typing_fields(key: &TypingKey, typing: bool) -> Map<String, Value> {
    payload::fields([
        ("conversationId", json!(key.0)),
        ("userId", json!(key.1)),
        ("isTyping", json!(typing)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: &str, u: &str) -> TypingKey {
        (c.into(), u.into())
    }

    #[test]
    fn a_refresh_outlives_the_timer_of_the_start_before_it() {
        let typing = Typing::default();
        let c1 = ConnectionId::from("c1");
        let first = typing.start(key("a", "u"), &c1);
        assert!(first.new);
        let again = typing.start(key("a", "u"), &c1);
        assert!(!again.new, "a refresh is not announced again");
        assert_eq!(typing.expire(&key("a", "u"), first.generation), None);
        assert_eq!(typing.expire(&key("a", "u"), again.generation), Some(c1.clone()));
        assert_eq!(typing.stop(&key("a", "u")), None, "cleared once");
    }

    #[test]
    fn a_closed_connection_clears_only_its_own_indicators() {
        let typing = Typing::default();
        let (c1, c2) = (ConnectionId::from("c1"), ConnectionId::from("c2"));
        typing.start(key("a", "u"), &c1);
        typing.start(key("b", "u"), &c1);
        typing.start(key("a", "v"), &c2);
        let mut cleared = typing.clear_connection(&c1);
        cleared.sort();
        assert_eq!(cleared, vec![key("a", "u"), key("b", "u")]);
        assert_eq!(typing.stop(&key("a", "v")), Some(c2));
    }
}
