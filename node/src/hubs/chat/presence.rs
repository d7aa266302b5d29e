//! Presence: `user_online` when a user's first connection to the hub is live
//! anywhere in the cluster, `user_offline` once when the last is gone (the
//! node's cluster-wide offline hook), each to the definition's audience;
//! `UpdatePresence` (a client's own say); and `GetPresence`, read from the
//! cluster keyspace.
//!
//! A user counts as online while the keyspace holds a connection of theirs.
//! Both transitions are decided by the keyspace in the atomic step that
//! changes the user's connections: the registration it counts as the user's
//! first is the one that announces `user_online`
//! ([`ConnectionHandle::is_first_of_user`]), the unregistration that removes
//! the last is the one whose node runs the offline hook — so two first
//! connections on two nodes at once announce once, and so do two last ones.
//! Last seen is the keyspace's too (written with that last removal, kept 30
//! days, the same on every node), or now while the user is online.

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

impl Chat {
    /// A connection is live: if the keyspace counted it as its user's first
    /// in the cluster, the user came online.
    pub(super) async fn connected(&self, node: &Node, caller: &ConnectionHandle) {
        let Some(user) = caller.user().filter(|_| caller.is_first_of_user()) else {
            return;
        };
        if let Err(e) = self
            .announce(node, user, Event::UserOnline, vec![caller.id.clone()])
            .await
        {
            tracing::warn!(user = %user, error = %e, "could not announce a user coming online");
        }
    }

    /// The user's last connection in the cluster is gone.
    pub(super) async fn went_offline(&self, node: &Node, user: &UserId) {
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
                for other in self.store.partners_of(user.as_str()).await? {
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
        let id = UserId::from(user);
        let connections = node.user_connections(&self.hub, &id).await?.len();
        let last_seen = if connections > 0 {
            Some(iso8601(now_ms()))
        } else {
            let seen = node.last_seen(&self.hub, &id).await?;
            seen.map(|ms| iso8601(i64::try_from(ms).unwrap_or(i64::MAX)))
        };
        Ok(json!({
            "userId": user,
            "isOnline": connections > 0,
            "lastSeen": last_seen,
            "connections": connections,
        }))
    }
}
