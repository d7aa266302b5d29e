//! Room presence of the rooms hub kind, in the keyspace so that every node
//! sees who is in a room: one hash per (hub, room), a field per connection
//! holding [`pair`]`(node, pair(user, entry))` — the node that wrote it, the
//! user, the hub's opaque entry (names, last heartbeat). The hash expires a
//! while after its last write, so a room whose nodes all died leaves
//! nothing behind; the hub filters stale entries by their heartbeat.
//!
//! A write (`room_set.lua`) and a removal (`room_remove.lua`) each say, in
//! the same script, what the connection had there and which entries its
//! user has in the room besides: "the user's first / last connection in the
//! room" is decided once cluster-wide.
//!
//! Each node's entries are also listed per hub (a set of
//! [`pair`]`(room, connection)`), so that the node sweeping it after its
//! death can remove them ([`Shared::take_rooms_of`]); a node whose record
//! lease expires unswept loses them with its connections (`expire_node` in
//! the prelude).

use std::collections::HashMap;
use std::time::Duration;

use fred::prelude::{HashesInterface, KeysInterface, SetsInterface, Value};

use super::names::unpair;
use super::scripts::{array, opt_text, text};
use super::Shared;
use crate::names::{ConnectionId, HubName, NodeId, UserId};
use crate::{BackplaneError, PresenceChange};

/// The reply of `room_set.lua` / `room_remove.lua`: the previous entry, then
/// the user's others.
fn change(what: &str, reply: Value) -> Result<PresenceChange, BackplaneError> {
    let mut items = array(what, reply)?.into_iter();
    let previous = items.next().map(|v| opt_text(what, v)).transpose()?.flatten();
    let others = items.map(|v| text(what, v)).collect::<Result<_, _>>()?;
    Ok(PresenceChange { previous, others })
}

/// The hub's entry of a field's value, or `None` for a foreign one.
fn entry_of(value: &str) -> Option<&str> {
    let (_node, rest) = unpair(value)?;
    let (_user, entry) = unpair(rest)?;
    Some(entry)
}

impl Shared {
    pub(super) async fn room_presence_set(
        &self,
        hub: &HubName,
        room: &str,
        id: &ConnectionId,
        user: &UserId,
        entry: &str,
        ttl: Duration,
    ) -> Result<PresenceChange, BackplaneError> {
        let node = &self.config.node;
        let keys = vec![self.names.room(hub, room), self.names.node_rooms(hub, node)];
        let ttl = ttl.as_millis().max(1);
        let args = vec![
            self.names.hub_base(hub),
            room.to_owned(),
            id.to_string(),
            node.to_string(),
            user.to_string(),
            entry.to_owned(),
            ttl.to_string(),
        ];
        let script = &self.scripts.room_set;
        change(script.name(), self.script(script, keys, args).await?)
    }

    pub(super) async fn room_presence_remove(
        &self,
        hub: &HubName,
        room: &str,
        id: &ConnectionId,
    ) -> Result<PresenceChange, BackplaneError> {
        let keys = vec![self.names.room(hub, room)];
        let args = vec![self.names.hub_base(hub), room.to_owned(), id.to_string()];
        let script = &self.scripts.room_remove;
        change(script.name(), self.script(script, keys, args).await?)
    }

    pub(super) async fn room_presence(
        &self,
        hub: &HubName,
        room: &str,
    ) -> Result<Vec<(ConnectionId, String)>, BackplaneError> {
        let key = self.names.room(hub, room);
        let all = self.client.hgetall::<HashMap<String, String>, _>(key);
        let all = self.call("HGETALL room", all).await?;
        Ok(all
            .into_iter()
            .filter_map(|(id, value)| Some((ConnectionId::from(id), entry_of(&value)?.to_owned())))
            .collect())
    }

    /// Takes the (room, connection) pairs of dead node `node`'s entries.
    pub(super) async fn take_rooms_of(
        &self,
        hub: &HubName,
        node: &NodeId,
    ) -> Result<Vec<(String, ConnectionId)>, BackplaneError> {
        let key = self.names.node_rooms(hub, node);
        let members = self.client.smembers::<Vec<String>, _>(&key);
        let members = self.call("SMEMBERS node rooms", members).await?;
        // The node is dead: nothing adds to its set meanwhile.
        let del = self.client.del::<(), _>(&key);
        self.call("DEL node rooms", del).await?;
        Ok(members
            .iter()
            .filter_map(|m| unpair(m))
            .map(|(room, id)| (room.to_owned(), ConnectionId::from(id)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::names::pair;
    use super::*;

    #[test]
    fn a_field_value_holds_node_user_and_entry() {
        let value = pair("n:1", &pair("u:{1}", r#"{"u":"u:{1}"}"#));
        assert_eq!(entry_of(&value), Some(r#"{"u":"u:{1}"}"#));
        assert_eq!(entry_of("not ours"), None);
    }
}
