//! Presence: `user_online` when a user's first connection to the hub is live
//! anywhere in the cluster, `user_offline` once when the last is gone (the
//! node's cluster-wide offline hook), each to the definition's audience;
//! `UpdatePresence` (a client's own say); and `GetPresence`, read from the
//! cluster keyspace.
//!
//! A user counts as online while the keyspace holds a connection of theirs.
//! "First connection" is read from the keyspace after the connection
//! registered: two first connections that register at the same instant on
//! two nodes may both see the other and announce nothing. Last seen is kept
//! by this node ([`LastSeen`]): the time it last saw one of the user's
//! connections close, or now while they are online.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use serde_json::{json, Value};

use super::catalog::Event;
use super::payload::{self, iso8601, now_ms};
use super::{Chat, Failure};
use crate::core::connection::ConnectionHandle;
use crate::core::definition::PresenceAudience;
use crate::core::hub::{HubCall, HubError};
use crate::core::node::{Node, NodeError};
use crate::hubs::definition::BoundArgs;
use hubwire_backplane::{ConnectionId, Target, UserId};

/// The most users one `GetPresence` may ask about.
pub const MAX_PRESENCE_USERS: usize = 100;

/// When this node last saw each user's connection close (Unix ms). A
/// `std::sync::Mutex`: held for one map operation, never across an await.
#[derive(Debug, Default)]
pub struct LastSeen(Mutex<HashMap<String, i64>>);

impl LastSeen {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `user` was seen now.
    pub fn saw(&self, user: &UserId) {
        self.map().insert(user.as_str().to_owned(), now_ms());
    }

    /// When `user` was last seen, if this node saw them.
    pub fn get(&self, user: &str) -> Option<i64> {
        self.map().get(user).copied()
    }
}

impl Chat {
    /// A connection is live: if it is its user's only one in the cluster,
    /// the user came online.
    pub(super) async fn connected(&self, node: &Node, caller: &ConnectionHandle) {
        let Some(user) = caller.user() else {
            return;
        };
        match node.user_connections(&self.hub, user).await {
            Ok(connections) if connections.len() == 1 => {
                if let Err(e) = self
                    .announce(node, user, Event::UserOnline, vec![caller.id.clone()])
                    .await
                {
                    tracing::warn!(user = %user, error = %e, "could not announce a user coming online");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(user = %user, error = %e, "cannot tell whether a user came online"),
        }
    }

    /// The user's last connection in the cluster is gone.
    pub(super) async fn went_offline(&self, node: &Node, user: &UserId) {
        self.presence.saw(user);
        if let Err(e) = self.announce(node, user, Event::UserOffline, vec![]).await {
            tracing::warn!(user = %user, error = %e, "could not announce a user going offline");
        }
    }

    /// `update_presence(isOnline)`: the caller says it is online (or not):
    /// `user_online` (or `user_offline`) to the presence audience but the
    /// caller's connection. Nothing changes in the keyspace.
    pub(super) async fn update_presence(&self, call: &HubCall, args: &BoundArgs) -> Result<Value, Failure> {
        let user = super::caller_user(call)?;
        let Some(online) = args.get("isOnline").and_then(Value::as_bool) else {
            return Err(Failure::Error(HubError::Binding(
                "argument 'isOnline' must be true or false".into(),
            )));
        };
        let event = if online { Event::UserOnline } else { Event::UserOffline };
        self.announce(&call.node, &user, event, vec![call.caller.id.clone()])
            .await?;
        Ok(Value::Null)
    }

    /// Sends `event(userId, isOnline)` to the definition's presence audience.
    async fn announce(
        &self,
        node: &Node,
        user: &UserId,
        event: Event,
        except: Vec<ConnectionId>,
    ) -> Result<(), Failure> {
        let fields = payload::fields([
            ("userId", json!(user.as_str())),
            ("isOnline", json!(event == Event::UserOnline)),
        ]);
        match self.def.presence {
            PresenceAudience::Everyone => self.emit(node, event, Target::All, vec![], &fields).await?,
            PresenceAudience::Others => self.emit(node, event, Target::All, except, &fields).await?,
            PresenceAudience::Conversations => {
                let mut others = BTreeSet::new();
                for summary in self.store.conversations_of(user.as_str()).await? {
                    others.extend(summary.conversation.participants);
                }
                others.remove(user.as_str());
                for other in others {
                    let target = Target::User(UserId::from(other));
                    self.emit(node, event, target, except.clone(), &fields).await?;
                }
            }
        }
        Ok(())
    }

    /// `get_presence(userIds)`: `[{userId, isOnline, lastSeen, connections}]`.
    pub(super) async fn get_presence(&self, call: &HubCall, args: &BoundArgs) -> Result<Value, Failure> {
        let users = match args.get("userIds") {
            Some(Value::Array(users)) if users.len() <= MAX_PRESENCE_USERS => users,
            _ => {
                return Err(Failure::Error(HubError::Binding(format!(
                    "argument 'userIds' must be an array of at most {MAX_PRESENCE_USERS} user ids"
                ))))
            }
        };
        let mut presence = Vec::with_capacity(users.len());
        for user in users {
            let Some(user) = user.as_str() else {
                return Err(Failure::Error(HubError::Binding("user ids must be strings".into())));
            };
            presence.push(self.presence_of(&call.node, user).await?);
        }
        Ok(Value::Array(presence))
    }

    /// One user's presence: `{userId, isOnline, lastSeen, connections}`
    /// (`GetPresence` and the REST API's presence).
    pub(super) async fn presence_of(&self, node: &Node, user: &str) -> Result<Value, NodeError> {
        let connections = node.user_connections(&self.hub, &UserId::from(user)).await?.len();
        let last_seen = if connections > 0 {
            Some(iso8601(now_ms()))
        } else {
            self.presence.get(user).map(iso8601)
        };
        Ok(json!({
            "userId": user,
            "isOnline": connections > 0,
            "lastSeen": last_seen,
            "connections": connections,
        }))
    }
}
