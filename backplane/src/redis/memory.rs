//! What this node put into the keyspace: its registered connections.
//!
//! Redis may lose the keyspace (a restart without persistence), or miss writes
//! while unreachable, or a sweeper may remove the connections of a node it
//! wrongly took for dead. The node's connections are still alive, so after
//! every such event the backplane writes them back: their records from here,
//! their groups from the node's registry (the one owner of local group
//! membership, read through [`crate::LocalMembership`]; nothing here copies it).
//!
//! # Invariants
//! - A change to a registered connection reaches memory before Redis, and
//!   stays whatever Redis says: when the write fails, a later resync repairs
//!   Redis from memory. A new connection enters memory once Redis accepted it
//!   (the per-user limit decides); one whose registration failed half-way is
//!   marked stale, so that Redis forgets it too.
//! - It holds exactly this node's registered connections — also those still in
//!   their handshake, which the registry does not know yet.
//! - `generation` changes on every mutation, so a resync can tell whether the
//!   memory moved under it and another pass is needed.

use std::collections::{HashMap, HashSet};

use crate::names::{ConnectionId, HubName};
use crate::ConnectionRecord;

/// This node's registered connections.
#[derive(Default)]
pub(super) struct Memory {
    owned: HashMap<ConnectionId, ConnectionRecord>,
    /// How many of them each hub holds (whose leases the heartbeat renews).
    per_hub: HashMap<HubName, usize>,
    /// Connections unregistered while Redis could not be told, or while a
    /// resync may have written them back; with their hub.
    stale: HashMap<ConnectionId, HubName>,
    generation: u64,
    resyncing: bool,
}

/// What a resync writes back.
pub(super) struct Snapshot {
    /// Live connections.
    pub(super) owned: Vec<ConnectionRecord>,
    /// Connections to remove from Redis.
    pub(super) stale: Vec<(HubName, ConnectionId)>,
    /// The memory's generation when taken.
    pub(super) generation: u64,
}

impl Memory {
    pub(super) fn insert(&mut self, record: ConnectionRecord) {
        self.generation += 1;
        self.stale.remove(&record.id);
        let hub = record.hub.clone();
        if self.owned.insert(record.id.clone(), record).is_none() {
            *self.per_hub.entry(hub).or_default() += 1;
        }
    }

    /// Forgets a connection; its hub if it was ours.
    pub(super) fn remove(&mut self, id: &ConnectionId) -> Option<HubName> {
        let record = self.owned.remove(id)?;
        self.generation += 1;
        if let Some(count) = self.per_hub.get_mut(&record.hub) {
            *count -= 1;
            if *count == 0 {
                self.per_hub.remove(&record.hub);
            }
        }
        if self.resyncing {
            self.stale.insert(id.clone(), record.hub.clone());
        }
        Some(record.hub)
    }

    /// Marks a connection as still to be removed from Redis.
    pub(super) fn mark_stale(&mut self, hub: HubName, id: ConnectionId) {
        self.generation += 1;
        self.stale.insert(id, hub);
    }

    /// Starts a resync: what to write back. Until [`Memory::end_resync`],
    /// removed connections are also marked stale, in case the resync writes
    /// them back after their removal.
    pub(super) fn begin_resync(&mut self) -> Snapshot {
        self.resyncing = true;
        Snapshot {
            owned: self.owned.values().cloned().collect(),
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
        self.per_hub.keys().cloned().collect()
    }

    /// Whether this node holds a connection in `hub`.
    pub(super) fn holds_in(&self, hub: &HubName) -> bool {
        self.per_hub.contains_key(hub)
    }

    /// Every live connection id (for shutdown).
    pub(super) fn ids(&self) -> Vec<ConnectionId> {
        self.owned.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::NodeId;

    fn record(id: &str, hub: &str) -> ConnectionRecord {
        ConnectionRecord {
            id: id.into(),
            node: NodeId::from("n"),
            hub: hub.into(),
            user: None,
            transport: "WebSockets".into(),
            since_ms: 0,
        }
    }

    #[test]
    fn hubs_are_counted_per_connection() {
        let mut memory = Memory::default();
        memory.insert(record("a", "chat"));
        memory.insert(record("a", "chat")); // written again: still one
        memory.insert(record("b", "chat"));
        memory.insert(record("c", "other"));
        assert!(memory.holds_in(&"chat".into()) && memory.holds_in(&"other".into()));
        memory.remove(&"a".into());
        assert!(memory.holds_in(&"chat".into()), "b is still there");
        memory.remove(&"b".into());
        assert!(!memory.holds_in(&"chat".into()));
        assert_eq!(memory.hubs(), HashSet::from([HubName::from("other")]));
    }

    #[test]
    fn a_removal_during_a_resync_is_remembered_as_stale() {
        let mut memory = Memory::default();
        memory.insert(record("a", "chat"));
        memory.remove(&"a".into());
        let first = memory.begin_resync();
        assert!(first.stale.is_empty(), "removed outside a resync");
        assert!(memory.end_resync(first.generation, &[]));
        memory.insert(record("b", "chat"));
        let snapshot = memory.begin_resync();
        memory.remove(&"b".into());
        assert!(!memory.end_resync(snapshot.generation, &[]), "moved during the resync");
        let next = memory.begin_resync();
        assert_eq!(next.stale, vec![(HubName::from("chat"), ConnectionId::from("b"))]);
        assert!(memory.end_resync(next.generation, &["b".into()]));
        assert!(memory.begin_resync().stale.is_empty());
    }
}
