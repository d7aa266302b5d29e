//! The backplane's own memory of what this node put into the keyspace.
//!
//! Redis may lose the keyspace (a restart without persistence), or miss writes
//! while unreachable, or a sweeper may remove the connections of a node it
//! wrongly took for dead. The node's connections are still alive, so after
//! every such event the backplane writes them back from this memory.
//!
//! # Invariants
//! - A change to a registered connection reaches memory before Redis, and
//!   stays whatever Redis says: when the write fails, a later resync repairs
//!   Redis from memory. A new connection enters memory once Redis accepted it
//!   (the per-user limit decides); one whose registration failed half-way is
//!   marked stale, so that Redis forgets it too.
//! - It holds exactly this node's registered connections and the groups each
//!   is in, as far as this node learnt of them (its own calls, and the group
//!   commands other nodes published for its connections).
//! - `generation` changes on every mutation, so a resync can tell whether the
//!   memory moved under it and another pass is needed.

use std::collections::{HashMap, HashSet};

use crate::message::{ClusterBody, ClusterMessage, Target};
use crate::names::{ConnectionId, GroupName, HubName, UserId};
use crate::ConnectionRecord;

/// This node's connections and their groups.
#[derive(Default)]
pub(super) struct Memory {
    owned: HashMap<ConnectionId, Owned>,
    /// Connections unregistered while Redis could not be told, or while a
    /// resync may have written them back; with their hub.
    stale: HashMap<ConnectionId, HubName>,
    generation: u64,
    resyncing: bool,
}

struct Owned {
    record: ConnectionRecord,
    groups: HashSet<GroupName>,
}

/// What a resync writes back.
pub(super) struct Snapshot {
    /// Live connections and their groups.
    pub(super) owned: Vec<(ConnectionRecord, Vec<GroupName>)>,
    /// Connections to remove from Redis.
    pub(super) stale: Vec<(HubName, ConnectionId)>,
    /// The memory's generation when taken.
    pub(super) generation: u64,
}

impl Memory {
    pub(super) fn insert(&mut self, record: ConnectionRecord, groups: &[GroupName]) {
        self.generation += 1;
        self.stale.remove(&record.id);
        let groups = groups.iter().cloned().collect();
        self.owned.insert(record.id.clone(), Owned { record, groups });
    }

    /// Forgets a connection; its hub if it was ours.
    pub(super) fn remove(&mut self, id: &ConnectionId) -> Option<HubName> {
        let owned = self.owned.remove(id)?;
        self.generation += 1;
        if self.resyncing {
            self.stale.insert(id.clone(), owned.record.hub.clone());
        }
        Some(owned.record.hub)
    }

    /// Marks a connection as still to be removed from Redis.
    pub(super) fn mark_stale(&mut self, hub: HubName, id: ConnectionId) {
        self.generation += 1;
        self.stale.insert(id, hub);
    }

    pub(super) fn join(&mut self, id: &ConnectionId, group: &GroupName) {
        if let Some(owned) = self.owned.get_mut(id) {
            self.generation += 1;
            owned.groups.insert(group.clone());
        }
    }

    pub(super) fn leave(&mut self, id: &ConnectionId, group: &GroupName) {
        if let Some(owned) = self.owned.get_mut(id) {
            self.generation += 1;
            owned.groups.remove(group);
        }
    }

    fn of_user<'a>(&'a mut self, hub: &'a HubName, user: &'a UserId) -> impl Iterator<Item = &'a mut Owned> + 'a {
        self.owned
            .values_mut()
            .filter(move |o| o.record.hub == *hub && o.record.user.as_ref() == Some(user))
    }

    pub(super) fn join_user(&mut self, hub: &HubName, user: &UserId, group: &GroupName) {
        self.generation += 1;
        for owned in self.of_user(hub, user) {
            owned.groups.insert(group.clone());
        }
    }

    pub(super) fn leave_user(&mut self, hub: &HubName, user: &UserId, group: &GroupName) {
        self.generation += 1;
        for owned in self.of_user(hub, user) {
            owned.groups.remove(group);
        }
    }

    pub(super) fn leave_all_user(&mut self, hub: &HubName, user: &UserId) {
        self.generation += 1;
        for owned in self.of_user(hub, user) {
            owned.groups.clear();
        }
    }

    /// Follows a group command another node published for this node's connections.
    pub(super) fn apply(&mut self, msg: &ClusterMessage) {
        let (target, group, join) = match &msg.body {
            ClusterBody::AddToGroup { target, group, .. } => (target, group, true),
            ClusterBody::RemoveFromGroup { target, group, .. } => (target, group, false),
            _ => return,
        };
        match (target, join) {
            (Target::Connection(id), true) => self.join(id, group),
            (Target::Connection(id), false) => self.leave(id, group),
            (Target::User(user), true) => self.join_user(&msg.hub, user, group),
            (Target::User(user), false) => self.leave_user(&msg.hub, user, group),
            _ => {}
        }
    }

    /// Starts a resync: what to write back. Until [`Memory::end_resync`],
    /// removed connections are also marked stale, in case the resync writes
    /// them back after their removal.
    pub(super) fn begin_resync(&mut self) -> Snapshot {
        self.resyncing = true;
        Snapshot {
            owned: self
                .owned
                .values()
                .map(|o| (o.record.clone(), o.groups.iter().cloned().collect()))
                .collect(),
            stale: self.stale.iter().map(|(id, hub)| (hub.clone(), id.clone())).collect(),
            generation: self.generation,
        }
    }

    /// Ends a resync; `true` if the memory did not move meanwhile (the keyspace
    /// now matches it).
    pub(super) fn end_resync(&mut self, snapshot_generation: u64, removed: &[ConnectionId]) -> bool {
        self.resyncing = false;
        for id in removed {
            self.stale.remove(id);
        }
        self.generation == snapshot_generation
    }

    /// The hubs this node holds connections in (whose leases its heartbeat
    /// renews).
    pub(super) fn hubs(&self) -> HashSet<HubName> {
        let hubs: HashSet<&HubName> = self.owned.values().map(|o| &o.record.hub).collect();
        hubs.into_iter().cloned().collect()
    }

    /// Whether this node holds a connection in `hub`.
    pub(super) fn holds_in(&self, hub: &HubName) -> bool {
        self.owned.values().any(|o| o.record.hub == *hub)
    }

    /// Every live connection id (for shutdown).
    pub(super) fn ids(&self) -> Vec<ConnectionId> {
        self.owned.keys().cloned().collect()
    }
}
