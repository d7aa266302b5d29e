//! Per-user state held cluster-wide, reached through [`Node`]: rate buckets
//! (`take_rate`), when a user was last seen, cached read positions, and the
//! typing indicators this node holds (for whoever sweeps it), and the
//! presence entries of rooms (the rooms kind: each write and removal says
//! what the user has left in the room, decided atomically; each node's
//! entries are listed for whoever sweeps it). The
//! backplane holds it (Redis in a cluster: one atomic Lua script per bucket
//! take, on Redis' clock; in-process on one node); this module only names
//! the operations for the layers above and counts what they refuse.

use std::time::Duration;

use crate::core::metrics::Limit;
use crate::core::node::{Node, NodeError};
use hubwire_backplane::{ConnectionId, HubName, Keyspace, NodeId, PresenceChange, Rate, UserId};

/// The window of every per-minute limit.
pub const MINUTE: Duration = Duration::from_secs(60);

impl Node {
    /// Takes a token of `user`'s bucket `bucket` in `hub`, a token bucket of
    /// `limit_per_minute` tokens that refills evenly over a minute, shared by
    /// the user's connections on every node. A refusal is counted in
    /// `/metrics` under `limit`.
    pub async fn take_rate(
        &self,
        hub: &HubName,
        user: &UserId,
        bucket: Limit,
        limit_per_minute: u32,
    ) -> Result<Rate, NodeError> {
        let rate = self
            .backplane
            .take_token(hub, user, bucket.as_str(), limit_per_minute, MINUTE)
            .await?;
        if matches!(rate, Rate::RetryAfter(_)) {
            self.metrics.refused(hub.as_str(), bucket);
        }
        Ok(rate)
    }

    /// [`Node::take_rate`] for a call: `None` when it may go ahead (also
    /// when `per_minute` is 0, no limit, and when the backplane cannot
    /// answer: logged, the limit guards against abuse and must not stop the
    /// hub while Redis is away), else the whole seconds to wait (at least 1).
    pub async fn rate_wait(&self, hub: &HubName, user: &UserId, bucket: Limit, per_minute: u32) -> Option<u64> {
        if per_minute == 0 {
            return None;
        }
        match self.take_rate(hub, user, bucket, per_minute).await {
            Ok(Rate::Allowed) => None,
            Ok(Rate::RetryAfter(wait)) => Some(wait.as_millis().div_ceil(1000).max(1) as u64),
            Err(e) => {
                tracing::warn!(user = %user, limit = bucket.as_str(), error = %e, "rate limit unavailable; letting the call through");
                None
            }
        }
    }

    /// When `user`'s last connection to `hub` closed anywhere in the
    /// cluster (Unix ms), kept 30 days.
    pub async fn last_seen(&self, hub: &HubName, user: &UserId) -> Result<Option<u64>, NodeError> {
        Ok(self.backplane.last_seen(hub, user).await?)
    }

    /// Caches `user`'s read position in `conversation` cluster-wide (the
    /// store stays the truth: write through after it committed).
    pub async fn cache_read_position(
        &self,
        hub: &HubName,
        conversation: &str,
        user: &UserId,
        position: &str,
    ) -> Result<(), NodeError> {
        Ok(self
            .backplane
            .cache_read_position(hub, conversation, user, position)
            .await?)
    }

    /// The cached read position of `user` in `conversation`, if cached.
    pub async fn cached_read_position(
        &self,
        hub: &HubName,
        conversation: &str,
        user: &UserId,
    ) -> Result<Option<String>, NodeError> {
        Ok(self.backplane.cached_read_position(hub, conversation, user).await?)
    }

    /// Records cluster-wide that this node holds (`held`), or no longer
    /// holds, `user`'s typing indicator in `conversation`.
    pub async fn typing_held(
        &self,
        hub: &HubName,
        conversation: &str,
        user: &UserId,
        held: bool,
    ) -> Result<(), NodeError> {
        Ok(self.backplane.typing_held(hub, conversation, user, held).await?)
    }

    /// Takes the typing indicators dead node `node` held in `hub`.
    pub async fn take_typing_of(&self, hub: &HubName, node: &NodeId) -> Result<Vec<(String, UserId)>, NodeError> {
        Ok(self.backplane.take_typing_of(hub, node).await?)
    }

    /// Writes connection `id`'s presence entry in room `room` of `hub` for
    /// `user`; the room's entries expire `ttl` after the last write. Says,
    /// decided cluster-wide in the same step, what the connection had there
    /// and which entries the user has in the room besides.
    pub async fn room_presence_set(
        &self,
        hub: &HubName,
        room: &str,
        id: &ConnectionId,
        user: &UserId,
        entry: &str,
        ttl: Duration,
    ) -> Result<PresenceChange, NodeError> {
        Ok(self
            .backplane
            .room_presence_set(hub, room, id, user, entry, ttl)
            .await?)
    }

    /// Removes connection `id`'s presence entry from room `room` of `hub`.
    /// Says, decided cluster-wide in the same step, what was removed and
    /// which entries its user still has in the room.
    pub async fn room_presence_remove(
        &self,
        hub: &HubName,
        room: &str,
        id: &ConnectionId,
    ) -> Result<PresenceChange, NodeError> {
        Ok(self.backplane.room_presence_remove(hub, room, id).await?)
    }

    /// The presence entries of room `room` of `hub`, cluster-wide.
    pub async fn room_presence(&self, hub: &HubName, room: &str) -> Result<Vec<(ConnectionId, String)>, NodeError> {
        Ok(self.backplane.room_presence(hub, room).await?)
    }

    /// Takes where dead node `node`'s presence entries in `hub` are: (room,
    /// connection) pairs, for its sweeper to remove them.
    pub async fn take_rooms_of(&self, hub: &HubName, node: &NodeId) -> Result<Vec<(String, ConnectionId)>, NodeError> {
        Ok(self.backplane.take_rooms_of(hub, node).await?)
    }
}
