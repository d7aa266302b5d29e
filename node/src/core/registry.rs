//! The node's local registry: which connections this node holds, and which of
//! them belong to each hub, group and user.
//!
//! Only local state lives here; the cluster-wide view is the backplane's. It is
//! the one owner of which groups this node's connections are in: the Redis
//! backplane reads it (as [`LocalMembership`]) to write the node back into the
//! keyspace after an outage, and keeps no copy. One
//! `RwLock` guards the whole registry: lookups for a send take the read lock for
//! as long as it takes to clone the recipients' `Arc`s, and nothing awaits while
//! holding it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::core::connection::ConnectionHandle;
use hubwire_backplane::{ConnectionId, GroupName, HubName, LocalMembership, MembershipSnapshot, Target, UserId};

type Members = HashMap<ConnectionId, Arc<ConnectionHandle>>;

#[derive(Default)]
struct State {
    connections: Members,
    hubs: HashMap<HubName, Members>,
    groups: HashMap<(HubName, GroupName), Members>,
    users: HashMap<(HubName, UserId), Members>,
    connection_groups: HashMap<ConnectionId, HashSet<GroupName>>,
    /// Changes on every change of `connection_groups`.
    generation: u64,
}

/// What removing a connection changed.
pub struct Removed {
    /// The removed connection.
    pub handle: Arc<ConnectionHandle>,
    /// Groups that have no local member any more.
    pub emptied_groups: Vec<GroupName>,
    /// Whether it was its user's last local connection in its hub.
    pub last_of_user: bool,
}

/// Local connections by id, hub, group and user.
#[derive(Default)]
pub struct Registry {
    state: RwLock<State>,
}

fn insert(map: &mut Members, handle: &Arc<ConnectionHandle>) -> bool {
    let first = map.is_empty();
    map.insert(handle.id.clone(), handle.clone());
    first
}

/// Removes `id` from the members under `key`; true if the set became empty.
fn remove<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Members>, key: &K, id: &ConnectionId) -> bool {
    let Some(members) = map.get_mut(key) else {
        return false;
    };
    if members.remove(id).is_none() {
        return false;
    }
    if members.is_empty() {
        map.remove(key);
        return true;
    }
    false
}

impl Registry {
    /// Adds a connection. Returns whether it is its user's first local
    /// connection in its hub.
    pub fn add(&self, handle: &Arc<ConnectionHandle>) -> bool {
        let mut s = self.state.write();
        s.connections.insert(handle.id.clone(), handle.clone());
        insert(s.hubs.entry(handle.hub.clone()).or_default(), handle);
        match handle.user() {
            Some(user) => insert(s.users.entry((handle.hub.clone(), user.clone())).or_default(), handle),
            None => false,
        }
    }

    /// Removes a connection from everything it belongs to.
    pub fn remove(&self, id: &ConnectionId) -> Option<Removed> {
        let mut s = self.state.write();
        let handle = s.connections.remove(id)?;
        remove(&mut s.hubs, &handle.hub, id);
        let last_of_user = match handle.user() {
            Some(user) => remove(&mut s.users, &(handle.hub.clone(), user.clone()), id),
            None => false,
        };
        let mut emptied_groups = Vec::new();
        let groups = s.connection_groups.remove(id).unwrap_or_default();
        if !groups.is_empty() {
            s.generation += 1;
        }
        for group in groups {
            if remove(&mut s.groups, &(handle.hub.clone(), group.clone()), id) {
                emptied_groups.push(group);
            }
        }
        Some(Removed {
            handle,
            emptied_groups,
            last_of_user,
        })
    }

    /// A local connection by id.
    pub fn get(&self, id: &ConnectionId) -> Option<Arc<ConnectionHandle>> {
        self.state.read().connections.get(id).cloned()
    }

    /// Adds a local connection to a group; true if it is the group's first local member.
    pub fn join(&self, group: &GroupName, handle: &Arc<ConnectionHandle>) -> bool {
        let mut s = self.state.write();
        if !s.connections.contains_key(&handle.id) {
            return false;
        }
        let added = s
            .connection_groups
            .entry(handle.id.clone())
            .or_default()
            .insert(group.clone());
        s.generation += u64::from(added);
        insert(s.groups.entry((handle.hub.clone(), group.clone())).or_default(), handle)
    }

    /// Removes a local connection from a group; true if the group has no local member left.
    pub fn leave(&self, hub: &HubName, group: &GroupName, id: &ConnectionId) -> bool {
        let mut s = self.state.write();
        if let Some(groups) = s.connection_groups.get_mut(id) {
            let removed = groups.remove(group);
            s.generation += u64::from(removed);
        }
        remove(&mut s.groups, &(hub.clone(), group.clone()), id)
    }

    /// Whether local connection `id` is in `group`.
    pub fn is_in_group(&self, id: &ConnectionId, group: &GroupName) -> bool {
        self.state
            .read()
            .connection_groups
            .get(id)
            .is_some_and(|groups| groups.contains(group))
    }

    /// The local connections a target designates in a hub, minus `except`.
    pub fn resolve(&self, hub: &HubName, target: &Target, except: &[ConnectionId]) -> Vec<Arc<ConnectionHandle>> {
        let s = self.state.read();
        let members = match target {
            Target::All => s.hubs.get(hub),
            Target::Group(g) => s.groups.get(&(hub.clone(), g.clone())),
            Target::User(u) => s.users.get(&(hub.clone(), u.clone())),
            Target::Connection(id) => {
                return s
                    .connections
                    .get(id)
                    .filter(|h| h.hub == *hub && !except.contains(id))
                    .cloned()
                    .into_iter()
                    .collect();
            }
        };
        members
            .map(|m| m.values().filter(|h| !except.contains(&h.id)).cloned().collect())
            .unwrap_or_default()
    }

    /// Every local connection (for shutdown).
    pub fn all(&self) -> Vec<Arc<ConnectionHandle>> {
        self.state.read().connections.values().cloned().collect()
    }

    /// The number of local connections.
    pub fn len(&self) -> usize {
        self.state.read().connections.len()
    }

    /// Whether the node holds no connection.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl LocalMembership for Registry {
    fn generation(&self) -> u64 {
        self.state.read().generation
    }

    fn snapshot(&self) -> MembershipSnapshot {
        let s = self.state.read();
        let groups = s
            .connection_groups
            .iter()
            .filter(|(_, groups)| !groups.is_empty())
            .map(|(id, groups)| (id.clone(), groups.iter().cloned().collect()))
            .collect();
        MembershipSnapshot {
            generation: s.generation,
            groups,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::core::auth::Principal;
    use hubwire_protocol::Protocol;

    fn conn(id: &str, hub: &str, user: Option<&str>) -> Arc<ConnectionHandle> {
        let principal = user.map(|u| Principal {
            user: UserId::from(u),
            name: None,
            picture: None,
            tenant: None,
            roles: vec![],
            channels: vec![],
            expires: u64::MAX,
            groups: Vec::new(),
        });
        ConnectionHandle::new(
            id.into(),
            hub.into(),
            principal,
            Protocol::Json,
            "WebSockets",
            crate::core::connection::QueueLimits {
                records: 8,
                bytes: 1 << 20,
            },
            crate::core::metrics::Metrics::new().hub(hub),
        )
        .0
    }

    fn ids(handles: Vec<Arc<ConnectionHandle>>) -> Vec<String> {
        let mut ids: Vec<String> = handles.iter().map(|h| h.id.to_string()).collect();
        ids.sort();
        ids
    }

    #[test]
    fn targets_resolve_to_exactly_their_local_connections() {
        let r = Registry::default();
        let hub = HubName::from("h");
        let (a1, a2, b1, other) = (
            conn("a1", "h", Some("a")),
            conn("a2", "h", Some("a")),
            conn("b1", "h", Some("b")),
            conn("o", "x", Some("a")),
        );
        assert!(r.add(&a1));
        assert!(!r.add(&a2), "second connection of a user");
        r.add(&b1);
        r.add(&other);
        let g = GroupName::from("g");
        assert!(r.join(&g, &a1));
        assert!(!r.join(&g, &b1));
        assert_eq!(ids(r.resolve(&hub, &Target::All, &[])), ["a1", "a2", "b1"]);
        assert_eq!(ids(r.resolve(&hub, &Target::All, &["a2".into()])), ["a1", "b1"]);
        assert_eq!(ids(r.resolve(&hub, &Target::Group(g.clone()), &[])), ["a1", "b1"]);
        assert_eq!(ids(r.resolve(&hub, &Target::User("a".into()), &[])), ["a1", "a2"]);
        assert_eq!(
            ids(r.resolve(&hub, &Target::Connection("o".into()), &[])),
            Vec::<String>::new(),
            "other hub"
        );
        assert!(r.is_in_group(&a1.id, &g) && !r.is_in_group(&a2.id, &g));
        assert!(!r.leave(&hub, &g, &a1.id));
        assert!(!r.is_in_group(&a1.id, &g), "left");
        assert!(r.leave(&hub, &g, &b1.id), "last local member left");
    }

    #[test]
    fn removing_reports_emptied_groups_and_the_last_user_connection() {
        let r = Registry::default();
        let (a1, a2) = (conn("a1", "h", Some("a")), conn("a2", "h", Some("a")));
        r.add(&a1);
        r.add(&a2);
        r.join(&"solo".into(), &a1);
        r.join(&"shared".into(), &a1);
        r.join(&"shared".into(), &a2);
        let removed = r.remove(&"a1".into()).unwrap();
        assert_eq!(removed.emptied_groups, vec![GroupName::from("solo")]);
        assert!(!removed.last_of_user);
        let removed = r.remove(&"a2".into()).unwrap();
        assert!(removed.last_of_user);
        assert!(r.is_empty());
        assert!(r.remove(&"a2".into()).is_none());
    }

    #[test]
    fn membership_snapshots_follow_joins_and_leaves() {
        let r = Registry::default();
        let hub = HubName::from("h");
        let (a1, a2) = (conn("a1", "h", Some("a")), conn("a2", "h", None));
        r.add(&a1);
        r.add(&a2);
        let empty = r.snapshot();
        assert!(empty.groups.is_empty());
        r.join(&"g".into(), &a1);
        r.join(&"k".into(), &a1);
        r.join(&"g".into(), &a2);
        let snapshot = r.snapshot();
        assert_ne!(snapshot.generation, empty.generation);
        let mut of_a1 = snapshot.groups[&ConnectionId::from("a1")].clone();
        of_a1.sort();
        assert_eq!(of_a1, [GroupName::from("g"), GroupName::from("k")]);
        assert_eq!(snapshot.groups[&ConnectionId::from("a2")], [GroupName::from("g")]);
        r.join(&"g".into(), &a1);
        assert_eq!(r.generation(), snapshot.generation, "joining again changes nothing");
        r.leave(&hub, &"g".into(), &a2.id);
        assert_ne!(r.generation(), snapshot.generation);
        assert!(!r.snapshot().groups.contains_key(&a2.id), "in no group any more");
        let before = r.generation();
        r.remove(&a1.id);
        assert_ne!(r.generation(), before, "its groups went with it");
        assert!(r.snapshot().groups.is_empty());
    }
}
