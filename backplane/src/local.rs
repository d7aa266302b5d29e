//! The in-process backplane: the keyspace in memory, delivery through channels.
//!
//! A [`LocalBus`] stands for "the cluster"; each node of the process holds a
//! [`LocalBackplane`] handle on it. A single node uses one handle and nothing is
//! ever published anywhere; tests put several nodes on one bus to check the
//! same behaviour the Redis backplane must show.
//!
//! A `parking_lot::Mutex` (not a tokio one) guards the state: no critical
//! section awaits, and each is a few map operations.
//!
//! Each node's inbox holds [`INBOX_CAPACITY`] events; a publish to a node
//! whose inbox is full waits for room (after releasing the lock), so that the
//! in-process cluster slows its publishers down rather than losing messages.
//!
//! Rate buckets, last-seen times and cached read positions live in the same
//! state, with the process' monotonic clock standing in for Redis' `TIME`;
//! expired entries are dropped when read, and buckets that have refilled
//! are pruned once there are many.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::message::{BackplaneEvent, Channel, ClusterBody, ClusterMessage, Target};
use crate::names::{ConnectionId, GroupName, HubName, NodeId, UserId};
use crate::{
    BackplaneError, ConnectionRecord, Delivery, Keyspace, MembershipTtl, PresenceChange, Rate, Registered,
    LAST_SEEN_TTL, READ_POSITION_TTL,
};

/// Buckets kept before the full ones are pruned.
const PRUNE_BUCKETS_AT: usize = 10_000;

/// Events one node's inbox holds on the in-process bus.
pub const INBOX_CAPACITY: usize = 4096;

/// The shared in-process "cluster": keyspace and subscriptions of every node.
#[derive(Clone, Default)]
pub struct LocalBus {
    state: Arc<Mutex<BusState>>,
}

#[derive(Default)]
struct BusState {
    connections: HashMap<ConnectionId, ConnectionRecord>,
    groups: HashMap<(HubName, GroupName), HashSet<ConnectionId>>,
    connection_groups: HashMap<ConnectionId, HashSet<GroupName>>,
    user_connections: HashMap<(HubName, UserId), HashSet<ConnectionId>>,
    /// Persistent user memberships; `None` = no expiry.
    user_groups: HashMap<(HubName, UserId), HashMap<GroupName, Option<Instant>>>,
    nodes: HashMap<NodeId, NodeSlot>,
    /// Token buckets: tokens left when last taken from, and when.
    buckets: HashMap<(HubName, UserId, String), Bucket>,
    /// When each user's last connection closed (Unix ms), and when recorded.
    last_seen: HashMap<(HubName, UserId), (u64, Instant)>,
    /// Cached read positions per (hub, conversation, user), and when written.
    read_positions: HashMap<(HubName, String, UserId), (String, Instant)>,
    /// Typing indicators each node holds, per hub.
    typing: HashMap<(HubName, NodeId), HashSet<(String, UserId)>>,
    /// Room presence entries per (hub, room), and when each room expires.
    rooms: HashMap<(HubName, String), (HashMap<ConnectionId, RoomEntry>, Instant)>,
    /// Where each node's room presence entries are, per hub: (room, connection).
    node_rooms: HashMap<(HubName, NodeId), HashSet<(String, ConnectionId)>>,
}

/// One connection's presence entry in a room.
struct RoomEntry {
    node: NodeId,
    user: UserId,
    entry: String,
}

/// One token bucket.
struct Bucket {
    tokens: f64,
    at: Instant,
    /// When it is full again (it may be pruned then).
    full_at: Instant,
}

struct NodeSlot {
    inbox: mpsc::Sender<BackplaneEvent>,
    channels: HashSet<Channel>,
}

impl BusState {
    /// The entries `user` has in `room`, but connection `id`'s.
    fn user_room_entries(&self, room: &(HubName, String), user: &UserId, id: &ConnectionId) -> Vec<String> {
        let Some((entries, _)) = self.rooms.get(room) else {
            return Vec::new();
        };
        entries
            .iter()
            .filter(|(other, e)| *other != id && e.user == *user)
            .map(|(_, e)| e.entry.clone())
            .collect()
    }

    fn live_user_groups(&mut self, hub: &HubName, user: &UserId) -> Vec<GroupName> {
        let now = Instant::now();
        let Some(groups) = self.user_groups.get_mut(&(hub.clone(), user.clone())) else {
            return Vec::new();
        };
        groups.retain(|_, expiry| expiry.is_none_or(|at| at > now));
        groups.keys().cloned().collect()
    }

    fn user_connection_ids(&self, hub: &HubName, user: &UserId) -> Vec<ConnectionId> {
        self.user_connections
            .get(&(hub.clone(), user.clone()))
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn channel_of(&self, hub: &HubName, target: &Target) -> Option<Channel> {
        Some(match target {
            Target::All => Channel::All(hub.clone()),
            Target::Group(g) => Channel::Group(hub.clone(), g.clone()),
            Target::User(u) => Channel::User(hub.clone(), u.clone()),
            Target::Connection(c) => {
                let record = self.connections.get(c).filter(|r| r.hub == *hub)?;
                Channel::Node(record.node.clone())
            }
        })
    }

    fn leave(&mut self, hub: &HubName, group: &GroupName, id: &ConnectionId) -> bool {
        let key = (hub.clone(), group.clone());
        let removed = match self.groups.get_mut(&key) {
            Some(members) => {
                let removed = members.remove(id);
                if members.is_empty() {
                    self.groups.remove(&key);
                }
                removed
            }
            None => false,
        };
        if let Some(groups) = self.connection_groups.get_mut(id) {
            groups.remove(group);
        }
        removed
    }
}

impl LocalBus {
    /// A new, empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches a node to the bus. Messages other nodes publish on channels the
    /// node subscribes to arrive on the returned receiver.
    pub fn attach(&self, node: NodeId) -> (LocalBackplane, mpsc::Receiver<BackplaneEvent>) {
        let (inbox, rx) = mpsc::channel(INBOX_CAPACITY);
        self.state.lock().nodes.insert(
            node.clone(),
            NodeSlot {
                inbox,
                channels: HashSet::new(),
            },
        );
        (
            LocalBackplane {
                bus: self.clone(),
                node,
            },
            rx,
        )
    }
}

/// One node's handle on a [`LocalBus`].
#[derive(Clone)]
pub struct LocalBackplane {
    bus: LocalBus,
    node: NodeId,
}

impl LocalBackplane {
    /// A single node on a bus of its own.
    pub fn single(node: NodeId) -> (Self, mpsc::Receiver<BackplaneEvent>) {
        LocalBus::new().attach(node)
    }

    fn records(state: &BusState, ids: impl Iterator<Item = ConnectionId>) -> Vec<ConnectionRecord> {
        ids.filter_map(|id| state.connections.get(&id).cloned()).collect()
    }
}

impl Delivery for LocalBackplane {
    fn node_id(&self) -> &NodeId {
        &self.node
    }

    fn is_ready(&self) -> bool {
        true
    }

    async fn publish(&self, msg: ClusterMessage) -> Result<(), BackplaneError> {
        let inboxes: Vec<mpsc::Sender<BackplaneEvent>> = {
            let state = self.bus.state.lock();
            let channel = match (&msg.body, msg.body.target()) {
                (ClusterBody::Ack { to, .. } | ClusterBody::Reply { to, .. }, _) => Some(Channel::Node(to.clone())),
                (_, Some(target)) => state.channel_of(&msg.hub, target),
                (_, None) => None,
            };
            let Some(channel) = channel else {
                return Ok(()); // a connection no node holds: nothing to deliver to
            };
            let subscribed = state
                .nodes
                .iter()
                .filter(|(id, slot)| **id != msg.origin && slot.channels.contains(&channel));
            subscribed.map(|(_, slot)| slot.inbox.clone()).collect()
        };
        for inbox in inboxes {
            // A closed inbox means that node has shut down; it has no one to deliver to.
            let _ = inbox.send(BackplaneEvent::Message(msg.clone())).await;
        }
        Ok(())
    }

    async fn subscribe(&self, channel: Channel) -> Result<(), BackplaneError> {
        if let Some(slot) = self.bus.state.lock().nodes.get_mut(&self.node) {
            slot.channels.insert(channel);
        }
        Ok(())
    }

    async fn unsubscribe(&self, channel: Channel) -> Result<(), BackplaneError> {
        if let Some(slot) = self.bus.state.lock().nodes.get_mut(&self.node) {
            slot.channels.remove(&channel);
        }
        Ok(())
    }
}

impl Keyspace for LocalBackplane {
    async fn shutdown(&self) -> Result<(), BackplaneError> {
        let own: Vec<ConnectionId> = {
            let mut state = self.bus.state.lock();
            state.nodes.remove(&self.node);
            state
                .connections
                .values()
                .filter(|c| c.node == self.node)
                .map(|c| c.id.clone())
                .collect()
        };
        for id in own {
            self.unregister(&id).await?;
        }
        Ok(())
    }

    async fn register(
        &self,
        record: &ConnectionRecord,
        max_per_user: Option<usize>,
    ) -> Result<Registered, BackplaneError> {
        let mut state = self.bus.state.lock();
        let mut user_connections = 0;
        if let Some(user) = &record.user {
            let key = (record.hub.clone(), user.clone());
            let held = state.user_connections.get(&key).map_or(0, HashSet::len);
            if let Some(limit) = max_per_user.filter(|limit| held >= *limit) {
                return Err(BackplaneError::UserLimit { limit });
            }
            let ids = state.user_connections.entry(key).or_default();
            ids.insert(record.id.clone());
            user_connections = ids.len();
        }
        state.connections.insert(record.id.clone(), record.clone());
        let groups = match &record.user {
            Some(user) => state.live_user_groups(&record.hub, user),
            None => Vec::new(),
        };
        for group in &groups {
            state
                .groups
                .entry((record.hub.clone(), group.clone()))
                .or_default()
                .insert(record.id.clone());
            state
                .connection_groups
                .entry(record.id.clone())
                .or_default()
                .insert(group.clone());
        }
        Ok(Registered {
            groups,
            user_connections,
        })
    }

    async fn unregister(&self, id: &ConnectionId) -> Result<Option<UserId>, BackplaneError> {
        let mut state = self.bus.state.lock();
        let Some(record) = state.connections.remove(id) else {
            return Ok(None);
        };
        let mut gone = None;
        if let Some(user) = &record.user {
            let key = (record.hub.clone(), user.clone());
            if let Some(ids) = state.user_connections.get_mut(&key) {
                if ids.remove(id) && ids.is_empty() {
                    state.user_connections.remove(&key);
                    state.last_seen.insert(key, (unix_ms(), Instant::now()));
                    gone = Some(user.clone());
                }
            }
        }
        for group in state.connection_groups.remove(id).unwrap_or_default() {
            state.leave(&record.hub, &group, id);
        }
        Ok(gone)
    }

    async fn connection(&self, id: &ConnectionId) -> Result<Option<ConnectionRecord>, BackplaneError> {
        Ok(self.bus.state.lock().connections.get(id).cloned())
    }

    async fn join_group(&self, hub: &HubName, group: &GroupName, id: &ConnectionId) -> Result<(), BackplaneError> {
        let mut state = self.bus.state.lock();
        if !state.connections.contains_key(id) {
            return Ok(());
        }
        state
            .groups
            .entry((hub.clone(), group.clone()))
            .or_default()
            .insert(id.clone());
        state
            .connection_groups
            .entry(id.clone())
            .or_default()
            .insert(group.clone());
        Ok(())
    }

    async fn leave_group(&self, hub: &HubName, group: &GroupName, id: &ConnectionId) -> Result<bool, BackplaneError> {
        Ok(self.bus.state.lock().leave(hub, group, id))
    }

    async fn node_connection_counts(&self, hub: &HubName) -> Result<Vec<(NodeId, usize)>, BackplaneError> {
        let state = self.bus.state.lock();
        let mut counts: Vec<(NodeId, usize)> = state.nodes.keys().map(|n| (n.clone(), 0)).collect();
        counts.sort();
        for record in state.connections.values().filter(|c| c.hub == *hub) {
            if let Ok(i) = counts.binary_search_by(|(n, _)| n.cmp(&record.node)) {
                counts[i].1 += 1;
            }
        }
        Ok(counts)
    }

    async fn connection_groups(&self, hub: &HubName, id: &ConnectionId) -> Result<Vec<GroupName>, BackplaneError> {
        let state = self.bus.state.lock();
        let in_hub = state.connections.get(id).is_some_and(|c| c.hub == *hub);
        Ok(match state.connection_groups.get(id) {
            Some(groups) if in_hub => groups.iter().cloned().collect(),
            _ => Vec::new(),
        })
    }

    async fn group_connections(
        &self,
        hub: &HubName,
        group: &GroupName,
    ) -> Result<Vec<ConnectionRecord>, BackplaneError> {
        let state = self.bus.state.lock();
        let ids = state
            .groups
            .get(&(hub.clone(), group.clone()))
            .cloned()
            .unwrap_or_default();
        Ok(Self::records(&state, ids.into_iter()))
    }

    async fn add_user_to_group(
        &self,
        hub: &HubName,
        user: &UserId,
        group: &GroupName,
        ttl: MembershipTtl,
    ) -> Result<(), BackplaneError> {
        let mut state = self.bus.state.lock();
        let expiry = match ttl {
            MembershipTtl::Forever => Some(None),
            MembershipTtl::For(d) => Some(Some(Instant::now() + d)),
            MembershipTtl::CurrentConnectionsOnly => None,
        };
        if let Some(expiry) = expiry {
            state
                .user_groups
                .entry((hub.clone(), user.clone()))
                .or_default()
                .insert(group.clone(), expiry);
        }
        let ids = state.user_connection_ids(hub, user);
        for id in ids {
            state
                .groups
                .entry((hub.clone(), group.clone()))
                .or_default()
                .insert(id.clone());
            state.connection_groups.entry(id).or_default().insert(group.clone());
        }
        Ok(())
    }

    async fn remove_user_from_group(
        &self,
        hub: &HubName,
        user: &UserId,
        group: &GroupName,
    ) -> Result<bool, BackplaneError> {
        let mut state = self.bus.state.lock();
        let live = state.live_user_groups(hub, user);
        let persistent = live.contains(group);
        if let Some(groups) = state.user_groups.get_mut(&(hub.clone(), user.clone())) {
            groups.remove(group);
        }
        let ids = state.user_connection_ids(hub, user);
        let mut any = persistent;
        for id in ids {
            any |= state.leave(hub, group, &id);
        }
        Ok(any)
    }

    async fn remove_user_from_all_groups(
        &self,
        hub: &HubName,
        user: &UserId,
    ) -> Result<Vec<GroupName>, BackplaneError> {
        let mut state = self.bus.state.lock();
        let mut groups: HashSet<GroupName> = state.live_user_groups(hub, user).into_iter().collect();
        state.user_groups.remove(&(hub.clone(), user.clone()));
        let ids = state.user_connection_ids(hub, user);
        for id in ids {
            for group in state.connection_groups.get(&id).cloned().unwrap_or_default() {
                state.leave(hub, &group, &id);
                groups.insert(group);
            }
        }
        Ok(groups.into_iter().collect())
    }

    async fn user_in_group(&self, hub: &HubName, user: &UserId, group: &GroupName) -> Result<bool, BackplaneError> {
        let mut state = self.bus.state.lock();
        if state.live_user_groups(hub, user).contains(group) {
            return Ok(true);
        }
        let members = state.groups.get(&(hub.clone(), group.clone()));
        Ok(members.is_some_and(|members| {
            state
                .user_connection_ids(hub, user)
                .iter()
                .any(|id| members.contains(id))
        }))
    }

    async fn user_connections(&self, hub: &HubName, user: &UserId) -> Result<Vec<ConnectionRecord>, BackplaneError> {
        let state = self.bus.state.lock();
        let ids = state.user_connection_ids(hub, user);
        Ok(Self::records(&state, ids.into_iter()))
    }

    async fn hub_connection_count(&self, hub: &HubName) -> Result<usize, BackplaneError> {
        Ok(self
            .bus
            .state
            .lock()
            .connections
            .values()
            .filter(|c| c.hub == *hub)
            .count())
    }

    async fn take_token(
        &self,
        hub: &HubName,
        user: &UserId,
        bucket: &str,
        limit: u32,
        per: Duration,
    ) -> Result<Rate, BackplaneError> {
        if limit == 0 {
            return Ok(Rate::RetryAfter(per));
        }
        let now = Instant::now();
        let mut state = self.bus.state.lock();
        if state.buckets.len() >= PRUNE_BUCKETS_AT {
            state.buckets.retain(|_, b| b.full_at > now);
        }
        let key = (hub.clone(), user.clone(), bucket.to_owned());
        let (limit, per_ms) = (f64::from(limit), per.as_secs_f64() * 1000.0);
        let entry = state.buckets.entry(key).or_insert(Bucket {
            tokens: limit,
            at: now,
            full_at: now,
        });
        let elapsed_ms = now.duration_since(entry.at).as_secs_f64() * 1000.0;
        let tokens = (entry.tokens + elapsed_ms * limit / per_ms).min(limit);
        let (tokens, rate) = if tokens >= 1.0 {
            (tokens - 1.0, Rate::Allowed)
        } else {
            let wait_ms = ((1.0 - tokens) * per_ms / limit).ceil();
            (tokens, Rate::RetryAfter(Duration::from_millis(wait_ms as u64)))
        };
        let refill_ms = ((limit - tokens) * per_ms / limit).ceil();
        *entry = Bucket {
            tokens,
            at: now,
            full_at: now + Duration::from_millis(refill_ms as u64),
        };
        Ok(rate)
    }

    async fn last_seen(&self, hub: &HubName, user: &UserId) -> Result<Option<u64>, BackplaneError> {
        let mut state = self.bus.state.lock();
        let key = (hub.clone(), user.clone());
        match state.last_seen.get(&key) {
            Some((ms, at)) if at.elapsed() < LAST_SEEN_TTL => Ok(Some(*ms)),
            Some(_) => {
                state.last_seen.remove(&key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn cache_read_position(
        &self,
        hub: &HubName,
        conversation: &str,
        user: &UserId,
        position: &str,
    ) -> Result<(), BackplaneError> {
        let key = (hub.clone(), conversation.to_owned(), user.clone());
        let value = (position.to_owned(), Instant::now());
        self.bus.state.lock().read_positions.insert(key, value);
        Ok(())
    }

    async fn cached_read_position(
        &self,
        hub: &HubName,
        conversation: &str,
        user: &UserId,
    ) -> Result<Option<String>, BackplaneError> {
        let mut state = self.bus.state.lock();
        let key = (hub.clone(), conversation.to_owned(), user.clone());
        match state.read_positions.get(&key) {
            Some((position, at)) if at.elapsed() < READ_POSITION_TTL => Ok(Some(position.clone())),
            Some(_) => {
                state.read_positions.remove(&key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn typing_held(
        &self,
        hub: &HubName,
        conversation: &str,
        user: &UserId,
        held: bool,
    ) -> Result<(), BackplaneError> {
        let mut state = self.bus.state.lock();
        let key = (hub.clone(), self.node.clone());
        let entry = (conversation.to_owned(), user.clone());
        if held {
            state.typing.entry(key).or_default().insert(entry);
        } else if let Some(held) = state.typing.get_mut(&key) {
            held.remove(&entry);
            if held.is_empty() {
                state.typing.remove(&key);
            }
        }
        Ok(())
    }

    async fn take_typing_of(&self, hub: &HubName, node: &NodeId) -> Result<Vec<(String, UserId)>, BackplaneError> {
        let held = self.bus.state.lock().typing.remove(&(hub.clone(), node.clone()));
        Ok(held.into_iter().flatten().collect())
    }

    async fn room_presence_set(
        &self,
        hub: &HubName,
        room: &str,
        id: &ConnectionId,
        user: &UserId,
        entry: &str,
        ttl: Duration,
    ) -> Result<PresenceChange, BackplaneError> {
        let mut state = self.bus.state.lock();
        let now = Instant::now();
        state.rooms.retain(|_, (_, expires)| *expires > now);
        let key = (hub.clone(), room.to_owned());
        let slot = state.rooms.entry(key.clone()).or_insert_with(|| (HashMap::new(), now));
        let written = RoomEntry {
            node: self.node.clone(),
            user: user.clone(),
            entry: entry.to_owned(),
        };
        let previous = slot.0.insert(id.clone(), written).map(|e| e.entry);
        slot.1 = now + ttl;
        state
            .node_rooms
            .entry((hub.clone(), self.node.clone()))
            .or_default()
            .insert((room.to_owned(), id.clone()));
        let others = state.user_room_entries(&key, user, id);
        Ok(PresenceChange { previous, others })
    }

    async fn room_presence_remove(
        &self,
        hub: &HubName,
        room: &str,
        id: &ConnectionId,
    ) -> Result<PresenceChange, BackplaneError> {
        let mut state = self.bus.state.lock();
        let key = (hub.clone(), room.to_owned());
        let Some((entries, expires)) = state.rooms.get_mut(&key) else {
            return Ok(PresenceChange::default());
        };
        if *expires <= Instant::now() {
            state.rooms.remove(&key);
            return Ok(PresenceChange::default());
        }
        let Some(removed) = entries.remove(id) else {
            return Ok(PresenceChange::default());
        };
        if entries.is_empty() {
            state.rooms.remove(&key);
        }
        let index = (hub.clone(), removed.node.clone());
        if let Some(held) = state.node_rooms.get_mut(&index) {
            held.remove(&(room.to_owned(), id.clone()));
            if held.is_empty() {
                state.node_rooms.remove(&index);
            }
        }
        let others = state.user_room_entries(&key, &removed.user, id);
        Ok(PresenceChange {
            previous: Some(removed.entry),
            others,
        })
    }

    async fn room_presence(&self, hub: &HubName, room: &str) -> Result<Vec<(ConnectionId, String)>, BackplaneError> {
        let state = self.bus.state.lock();
        let now = Instant::now();
        Ok(match state.rooms.get(&(hub.clone(), room.to_owned())) {
            Some((entries, expires)) if *expires > now => {
                entries.iter().map(|(id, e)| (id.clone(), e.entry.clone())).collect()
            }
            _ => Vec::new(),
        })
    }

    async fn take_rooms_of(&self, hub: &HubName, node: &NodeId) -> Result<Vec<(String, ConnectionId)>, BackplaneError> {
        let held = self.bus.state.lock().node_rooms.remove(&(hub.clone(), node.clone()));
        Ok(held.into_iter().flatten().collect())
    }
}

/// The wall clock in Unix milliseconds.
fn unix_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}
