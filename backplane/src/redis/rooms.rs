//! Room presence of the rooms hub kind, in the keyspace so that every node
//! sees who is in a room: one hash per (hub, room), a field per connection
//! holding the hub's opaque entry (user, names, last heartbeat). The hash
//! expires a while after its last write, so a room whose nodes all died
//! leaves nothing behind; the hub filters stale entries by their heartbeat.

use std::collections::HashMap;
use std::time::Duration;

use fred::prelude::{HashesInterface, KeysInterface};

use super::Shared;
use crate::names::{ConnectionId, HubName};
use crate::BackplaneError;

impl Shared {
    pub(super) async fn room_presence_set(
        &self,
        hub: &HubName,
        room: &str,
        id: &ConnectionId,
        entry: &str,
        ttl: Duration,
    ) -> Result<(), BackplaneError> {
        let key = self.names.room(hub, room);
        let set = self.client.hset::<(), _, _>(&key, (id.as_str(), entry));
        self.call("HSET room", set).await?;
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        let expire = self.client.pexpire::<(), _>(&key, ttl, None);
        self.call("PEXPIRE room", expire).await
    }

    pub(super) async fn room_presence_remove(
        &self,
        hub: &HubName,
        room: &str,
        id: &ConnectionId,
    ) -> Result<(), BackplaneError> {
        let key = self.names.room(hub, room);
        let del = self.client.hdel::<(), _, _>(key, id.as_str());
        self.call("HDEL room", del).await
    }

    pub(super) async fn room_presence(
        &self,
        hub: &HubName,
        room: &str,
    ) -> Result<Vec<(ConnectionId, String)>, BackplaneError> {
        let key = self.names.room(hub, room);
        let all = self.client.hgetall::<HashMap<String, String>, _>(key);
        let all = self.call("HGETALL room", all).await?;
        Ok(all.into_iter().map(|(id, e)| (ConnectionId::from(id), e)).collect())
    }
}
