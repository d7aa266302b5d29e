//! The rooms kind: collaborative rooms with presence (MISSION.md's
//! `/hubs/rooms`, seed 004's shopping lists). Clients join and leave rooms
//! and send heartbeats; the others in a room hear who joined and who left,
//! a joiner gets a snapshot of the room's active users.
//!
//! # Layout
//! - [`catalog`]: the operations and events, MISSION.md's names as defaults.
//! - this module: [`RoomsHub`], its settings ([`Settings`]), the calls,
//!   presence, inactivity, the backend's grants and revocations
//!   ([`RoomsHub::grant`], [`RoomsHub::revoke`], for the REST API) and the
//!   takeover of a dead node's presence (`Rooms::take_over`).
//!
//! # Rules
//! - Who may join a room: a user the backend granted it (REST, stored
//!   durably: `Store::grant_room`), or — when the definition says
//!   `claims_grant = true` — whose token's `channels` claim has a pattern
//!   matching the room's group name. Anyone else is refused with a
//!   `HubException` (`access_denied`); with a `backend.authorize` hook, a
//!   user without a grant is asked about (`crate::core::backend`). Access is
//!   checked again on every heartbeat: a heartbeat without access leaves the
//!   room.
//! - A room is the group `group` (with `{id}`): the backend sends to it
//!   through the REST group send.
//! - Presence is cluster-wide: each connection in a room has an entry in the
//!   keyspace (`Node::room_presence_set`: user, display name, picture,
//!   joined, last heartbeat), written by the node holding the connection.
//!   The node removes a connection's entry when it goes inactive, so the
//!   entries present are the active connections, deduplicated per user (a
//!   user in two tabs, or on two nodes, is one active user, joined at their
//!   earliest entry).
//! - `user_joined` goes to the others in the room when a user becomes
//!   active there (no other active connection of theirs in the room),
//!   `user_left` when their last active connection stops being active: it
//!   left, disconnected, went silent for `inactive_after_secs` (its node's
//!   timer), lost its access, or its node died. One announcement per user,
//!   not per tab.
//! - "First / last active connection" is what the keyspace says in the same
//!   atomic step as the entry's write or removal ([`PresenceChange`]: the
//!   connection's previous entry, the user's other entries): of two tabs on
//!   two nodes joining or leaving in the same instant, exactly one sees the
//!   other absent, so one announcement goes out.
//! - A dead node's entries are removed by the node that swept it
//!   (`Hub::on_node_down`, once cluster-wide: `Rooms::take_over`), from
//!   every room they were in (the keyspace lists each node's entries:
//!   `Node::take_rooms_of`), announcing `user_left` (`disconnected`) for
//!   each user with no other active connection left there. A safety net
//!   (a sweep that failed) ignores entries older than twice
//!   `inactive_after_secs` in snapshots and in the first / last decisions.
//! - A silent connection stays in the room's group (it still receives the
//!   backend's sends, as seed 004's hub keeps it) but is no longer active; a
//!   later heartbeat makes it active again (and announces `user_joined`).
//! - Revoking a grant ([`RoomsHub::revoke`]) tells the user's connections
//!   (`access_revoked`), takes them out of the room's group on every node
//!   before it returns, removes their presence and announces `user_left`. A
//!   later heartbeat does not bring them back; only a new grant and
//!   `JoinRoom` do.
//! - Limits ([`crate::hubs::limits`]), at the top of every method: a room
//!   id is at most `rooms.max_room_id_chars`; joins and leaves
//!   (`limits.subscriptions_per_minute`) and heartbeats
//!   (`limits.heartbeats_per_minute`) are rate-limited per user; a
//!   connection is in at most the node's `max_groups_per_connection` rooms.
//!   Refusals are `HubException`s naming the limit, counted in
//!   `hubwire_limit_refusals_total`.

pub mod catalog;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{BoxFuture, LocalBoxFuture};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::core::connection::ConnectionHandle;
use crate::core::definition::HubTable;
use crate::core::hub::{Hub, HubCall, HubError, HubReply, MethodSpec};
use crate::core::metrics::Limit;
use crate::core::node::{Node, NodeError, SendOrder};
use crate::hubs::chat::payload::{iso8601, now_ms};
use crate::hubs::definition::{BoundArgs, BoundEvent, Definition, DefinitionError, ID_PLACEHOLDER};
use crate::hubs::limits::{check_rate, input_refused, CallRate};
use catalog::{Event, Op, CATALOG};
use hubwire_backplane::{ConnectionId, GroupName, HubName, NodeId, PresenceChange, Target, UserId};
use hubwire_store::{Store, StoreError};

/// The settings of a rooms hub, defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The group-name template of rooms (with `{id}`).
    pub group: String,
    /// A member silent this long is inactive.
    pub inactive_after: Duration,
    /// Whether the token's `channels` claim grants rooms too.
    pub claims_grant: bool,
    /// The refusal text of a join without access.
    pub access_denied: String,
    /// The longest room id, in characters.
    pub max_room_id_chars: usize,
}

impl Settings {
    /// The settings of `table` (its `[hub.rooms]`), checked.
    pub fn resolve(table: &HubTable) -> Result<Self, DefinitionError> {
        let rooms = table.rooms.clone().unwrap_or_default();
        let error = |field: &str, reason: String| DefinitionError {
            hub: table.path.clone(),
            field: format!("rooms.{field}"),
            reason,
        };
        let group = rooms.group.unwrap_or_else(|| format!("room_{ID_PLACEHOLDER}"));
        if !group.contains(ID_PLACEHOLDER) {
            return Err(error(
                "group",
                format!("{group:?} has no {ID_PLACEHOLDER} for the room id"),
            ));
        }
        let inactive_after_secs = rooms.inactive_after_secs.unwrap_or(45);
        if inactive_after_secs == 0 {
            return Err(error("inactive_after_secs", "must be at least 1".into()));
        }
        Ok(Self {
            group,
            inactive_after: Duration::from_secs(inactive_after_secs),
            claims_grant: rooms.claims_grant.unwrap_or(false),
            access_denied: rooms.access_denied.unwrap_or_else(|| "Access denied".into()),
            max_room_id_chars: rooms.max_room_id_chars.unwrap_or(128),
        })
    }

    /// The group of room `id`.
    pub fn group_of(&self, id: &str) -> String {
        self.group.replace(ID_PLACEHOLDER, id)
    }
}

/// A hub of the rooms kind.
#[derive(Clone)]
pub struct RoomsHub {
    rooms: Arc<Rooms>,
}

/// What a rooms hub's calls, timers and REST operations share.
struct Rooms {
    def: Definition,
    settings: Settings,
    specs: Vec<MethodSpec>,
    hub: HubName,
    store: Store,
    /// The rooms this node's connections are in: the one owner of local
    /// room state. A `std::sync::Mutex`, never held across an await.
    local: Mutex<Local>,
}

#[derive(Default)]
struct Local {
    members: HashMap<(ConnectionId, String), Member>,
    next_generation: u64,
}

/// One connection of this node in one room.
#[derive(Clone, Debug)]
struct Member {
    /// Its current join or heartbeat: an inactivity timer of another one
    /// does nothing.
    generation: u64,
    /// Whether it counts as active (joined or heard from recently).
    active: bool,
    /// Its presence entry (as written to the keyspace).
    entry: Entry,
}

/// A connection's presence entry in the keyspace.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Entry {
    /// The user.
    #[serde(rename = "u")]
    user: String,
    /// Display name (the token's `name`).
    #[serde(rename = "n", default)]
    name: Option<String>,
    /// Picture URL (the token's `picture`).
    #[serde(rename = "p", default)]
    picture: Option<String>,
    /// When it became active (Unix ms).
    #[serde(rename = "j")]
    joined_ms: i64,
    /// Its last join or heartbeat (Unix ms).
    #[serde(rename = "s")]
    seen_ms: i64,
}

/// Why a user is no longer active in a room (`user_left`'s `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LeftBecause {
    Left,
    Inactive,
    Disconnected,
    Revoked,
}

impl LeftBecause {
    fn as_str(self) -> &'static str {
        match self {
            Self::Left => "left",
            Self::Inactive => "inactive",
            Self::Disconnected => "disconnected",
            Self::Revoked => "revoked",
        }
    }
}

/// Why a REST operation on a room failed.
#[derive(Debug, thiserror::Error)]
pub enum RoomsError {
    /// A room or user id beyond its limit, or empty.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The node failed (groups, sends).
    #[error(transparent)]
    Node(#[from] NodeError),
}

impl RoomsHub {
    /// A rooms hub serving `def` with `settings`, grants in `store`.
    pub fn new(def: Definition, settings: Settings, store: Store) -> Self {
        let specs = def.methods.iter().map(|m| m.spec.clone()).collect();
        let hub = HubName::from(def.name.as_str());
        Self {
            rooms: Arc::new(Rooms {
                def,
                settings,
                specs,
                hub,
                store,
                local: Mutex::default(),
            }),
        }
    }

    /// The definition it serves.
    pub fn definition(&self) -> &Definition {
        &self.rooms.def
    }

    /// Grants `user` room `room` (durably): `true` if it was not granted.
    pub async fn grant(&self, room: &str, user: &str) -> Result<bool, RoomsError> {
        self.rooms.check_ids(room, user)?;
        Ok(self.rooms.store.grant_room(self.rooms.hub.as_str(), room, user).await?)
    }

    /// The users granted room `room`, by id.
    pub async fn members(&self, room: &str) -> Result<Vec<String>, RoomsError> {
        self.rooms.check_room(room).map_err(RoomsError::Invalid)?;
        Ok(self.rooms.store.room_members(self.rooms.hub.as_str(), room).await?)
    }

    /// Revokes `user`'s grant of room `room`: the grant is deleted, the
    /// user's connections are told (`access_revoked`) and leave the room's
    /// group on every node before this returns, their presence is removed
    /// and `user_left` announced to the others when they were active.
    /// `true` if there was a grant.
    pub async fn revoke(&self, node: &Node, room: &str, user: &str) -> Result<bool, RoomsError> {
        let rooms = &self.rooms;
        rooms.check_ids(room, user)?;
        let had = rooms.store.revoke_room(rooms.hub.as_str(), room, user).await?;
        let user_id = UserId::from(user);
        let group = GroupName::from(rooms.settings.group_of(room));
        let now = now_ms();
        let told = rooms.fields(Event::AccessRevoked, room, now, [("userId", Value::from(user))]);
        rooms
            .emit(node, Event::AccessRevoked, Target::User(user_id.clone()), vec![], &told)
            .await?;
        node.remove_user_from_group(&rooms.hub, &user_id, &group).await?;
        let entries = rooms.entries(node, room).await?;
        for (id, _) in entries.iter().filter(|(_, e)| e.user == user) {
            // The removal of the user's last entry announces it.
            let change = node.room_presence_remove(&rooms.hub, room, id).await?;
            if let Some(entry) = rooms.ended(&change, now) {
                rooms
                    .announce_left(node, room, &entry, vec![], LeftBecause::Revoked)
                    .await?;
            }
        }
        Ok(had)
    }
}

impl Rooms {
    fn event(&self, event: Event) -> &BoundEvent {
        &self.def.events[event as usize]
    }

    /// Refuses empty ids and ids beyond their limits.
    fn check_ids(&self, room: &str, user: &str) -> Result<(), RoomsError> {
        self.check_room(room).map_err(RoomsError::Invalid)?;
        let max_user = self.def.limits.max_user_id_chars;
        if user.is_empty() || user.chars().count() > max_user {
            return Err(RoomsError::Invalid(format!(
                "a user id must be 1 to {max_user} characters (limits.max_user_id_chars)"
            )));
        }
        Ok(())
    }

    fn check_room(&self, room: &str) -> Result<(), String> {
        let max = self.settings.max_room_id_chars;
        if room.is_empty() || room.chars().count() > max {
            return Err(format!(
                "a room id must be 1 to {max} characters (rooms.max_room_id_chars)"
            ));
        }
        Ok(())
    }

    /// An event's fields: `eventType` (the app's event name), `roomId`,
    /// `timestamp` and `more`.
    fn fields<const N: usize>(
        &self,
        event: Event,
        room: &str,
        now: i64,
        more: [(&str, Value); N],
    ) -> Map<String, Value> {
        let mut fields = Map::new();
        let name = self.event(event).name.clone().unwrap_or_default();
        fields.insert("eventType".into(), Value::String(name));
        fields.insert("roomId".into(), Value::from(room));
        fields.insert("timestamp".into(), Value::String(iso8601(now)));
        for (k, v) in more {
            fields.insert(k.into(), v);
        }
        fields
    }

    /// Sends `event` with `fields` to `target` (but not `except`), laid out
    /// as the definition says; nothing when the event is off.
    async fn emit(
        &self,
        node: &Node,
        event: Event,
        target: Target,
        except: Vec<ConnectionId>,
        fields: &Map<String, Value>,
    ) -> Result<(), NodeError> {
        let bound = self.event(event);
        let Some(name) = &bound.name else {
            return Ok(());
        };
        let arguments = bound.arguments(fields);
        node.send(&self.hub, target, except, (name, arguments), SendOrder::LocalFirst)
            .await
    }

    /// Whether an entry counts as active: its node removes it when it goes
    /// inactive (and the sweeper of a dead node removes that node's), so
    /// any entry present is; a safety net drops one older than twice
    /// `inactive_after` (its node died and no sweep removed it).
    fn is_fresh(&self, entry: &Entry, now: i64) -> bool {
        let window = i64::try_from(self.entry_ttl().as_millis()).unwrap_or(i64::MAX);
        now.saturating_sub(entry.seen_ms) < window
    }

    /// The room's presence entries, cluster-wide (unreadable ones skipped).
    async fn entries(&self, node: &Node, room: &str) -> Result<Vec<(ConnectionId, Entry)>, NodeError> {
        let raw = node.room_presence(&self.hub, room).await?;
        Ok(raw
            .into_iter()
            .filter_map(|(id, json)| Some((id, serde_json::from_str(&json).ok()?)))
            .collect())
    }

    /// Whether some of `entries` (the keyspace's, of one user) is active.
    fn any_fresh(&self, entries: &[String], now: i64) -> bool {
        entries
            .iter()
            .filter_map(|json| serde_json::from_str::<Entry>(json).ok())
            .any(|e| self.is_fresh(&e, now))
    }

    /// Whether a write made its user active in the room: the connection had
    /// no entry there and the user no other active one (decided in the
    /// write's atomic step, so one of two tabs joining at once says so).
    fn began(&self, change: &PresenceChange, now: i64) -> bool {
        change.previous.is_none() && !self.any_fresh(&change.others, now)
    }

    /// The entry whose removal ended its user's presence in the room: the
    /// connection had one and the user has no other active one left
    /// (decided in the removal's atomic step, so one of two tabs leaving at
    /// once says so).
    fn ended(&self, change: &PresenceChange, now: i64) -> Option<Entry> {
        let entry = serde_json::from_str(change.previous.as_deref()?).ok()?;
        (!self.any_fresh(&change.others, now)).then_some(entry)
    }

    /// The keyspace's entries expire this long after the last write (a
    /// heartbeat refreshes them well before).
    fn entry_ttl(&self) -> Duration {
        self.settings.inactive_after * 2
    }

    /// Whether the caller may be in `room` (asked by its `method`): a stored
    /// grant, or (when the definition allows it) a `channels` pattern
    /// matching its group, or — when the hub has a `backend.authorize` hook —
    /// the app's backend saying so (seed 004's `HasAccessAsync`; a backend
    /// that cannot answer allows nothing).
    async fn has_access(&self, call: &HubCall, user: &UserId, room: &str, method: &str) -> Result<bool, HubError> {
        let group = self.settings.group_of(room);
        if self.settings.claims_grant {
            if let Some(principal) = &call.caller.principal {
                if !principal.channels.is_empty() && principal.may_join(&group) {
                    return Ok(true);
                }
            }
        }
        let granted = self
            .store
            .is_room_member(self.hub.as_str(), room, user.as_str())
            .await
            .map_err(store_failed)?;
        if granted || !call.node.backend.authorizes(self.hub.as_str()) {
            return Ok(granted);
        }
        let arguments = [Value::String(room.to_owned())];
        match call
            .node
            .backend
            .authorize(self.hub.as_str(), user, method, &group, &arguments)
            .await
        {
            Ok(allow) => Ok(allow),
            Err(e) => {
                tracing::warn!(hub = %self.hub, room, error = %e, "authorisation backend unavailable: refusing");
                Ok(false)
            }
        }
    }

    async fn run(self: Arc<Self>, call: HubCall, op: Op, method: &str, args: BoundArgs) -> Result<Value, HubError> {
        let user = call
            .caller
            .user()
            .cloned()
            .ok_or_else(|| HubError::Hub("This hub needs a signed-in user.".into()))?;
        let room = args.required_text("roomId")?;
        self.check_room(&room)
            .map_err(|text| input_refused(&call.node, &self.hub, Limit::RoomsInput, text))?;
        let rate = match op {
            Op::JoinRoom | Op::LeaveRoom => CallRate::Subscriptions,
            Op::Heartbeat => CallRate::Heartbeats,
        };
        check_rate(&call, &self.def.limits, rate).await?;
        match op {
            Op::JoinRoom => self.join(&call, &user, &room, method).await?,
            Op::LeaveRoom => {
                self.leave(&call.node, &call.caller.id, &room, LeftBecause::Left)
                    .await?
            }
            Op::Heartbeat => self.heartbeat(&call, &user, &room, method).await?,
        }
        Ok(Value::Null)
    }

    /// `join_room(roomId)`.
    async fn join(self: &Arc<Self>, call: &HubCall, user: &UserId, room: &str, method: &str) -> Result<(), HubError> {
        if !self.has_access(call, user, room, method).await? {
            return Err(HubError::Hub(self.settings.access_denied.clone()));
        }
        let node = &call.node;
        let me = &call.caller.id;
        let group = GroupName::from(self.settings.group_of(room));
        node.add_to_group(&self.hub, &group, me).await.map_err(node_failed)?;
        let change = self.activate(call, user, room).await?;
        let now = now_ms();
        if self.began(&change, now) {
            self.announce_joined(node, room, user, &call.caller, vec![me.clone()])
                .await
                .map_err(node_failed)?;
        }
        let snapshot = self.active_users(node, room, now).await.map_err(node_failed)?;
        let fields = self.fields(Event::PresenceUpdate, room, now, [("activeUsers", snapshot)]);
        self.emit(
            node,
            Event::PresenceUpdate,
            Target::Connection(me.clone()),
            vec![],
            &fields,
        )
        .await
        .map_err(node_failed)
    }

    /// `heartbeat(roomId)`: refreshes the caller's presence; without access
    /// any more it leaves the room; a connection not in the room (never
    /// joined, left, or removed by a revocation) stays out.
    async fn heartbeat(
        self: &Arc<Self>,
        call: &HubCall,
        user: &UserId,
        room: &str,
        method: &str,
    ) -> Result<(), HubError> {
        let node = &call.node;
        let me = &call.caller.id;
        if !self.has_access(call, user, room, method).await? {
            return self.leave(node, me, room, LeftBecause::Revoked).await;
        }
        if self.local_member(me, room).is_none() {
            return Ok(());
        }
        let group = GroupName::from(self.settings.group_of(room));
        if !node.registry.is_in_group(me, &group) {
            // Taken out of the group (a revocation): forget it silently.
            self.forget(me, room);
            return Ok(());
        }
        let change = self.activate(call, user, room).await?;
        if self.began(&change, now_ms()) {
            self.announce_joined(node, room, user, &call.caller, vec![me.clone()])
                .await
                .map_err(node_failed)?;
        }
        Ok(())
    }

    fn local_member(&self, id: &ConnectionId, room: &str) -> Option<Member> {
        let local = self.local.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        local.members.get(&(id.clone(), room.to_owned())).cloned()
    }

    fn forget(&self, id: &ConnectionId, room: &str) -> Option<Member> {
        let mut local = self.local.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        local.members.remove(&(id.clone(), room.to_owned()))
    }

    /// Makes the caller active in `room` now: its entry written, a new
    /// generation, an inactivity timer armed. Says what the write found.
    async fn activate(self: &Arc<Self>, call: &HubCall, user: &UserId, room: &str) -> Result<PresenceChange, HubError> {
        let me = call.caller.id.clone();
        let now = now_ms();
        let (entry, generation) = {
            let mut local = self.local.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            local.next_generation += 1;
            let generation = local.next_generation;
            let principal = call.caller.principal.as_ref();
            let key = (me.clone(), room.to_owned());
            let joined_ms = match local.members.get(&key) {
                Some(m) if m.active => m.entry.joined_ms,
                _ => now,
            };
            let entry = Entry {
                user: user.as_str().to_owned(),
                name: principal.and_then(|p| p.name.clone()),
                picture: principal.and_then(|p| p.picture.clone()),
                joined_ms,
                seen_ms: now,
            };
            local.members.insert(
                key,
                Member {
                    generation,
                    active: true,
                    entry: entry.clone(),
                },
            );
            (entry, generation)
        };
        let json = serde_json::to_string(&entry).map_err(|e| HubError::Internal(e.to_string()))?;
        let change = call
            .node
            .room_presence_set(&self.hub, room, &me, user, &json, self.entry_ttl())
            .await
            .map_err(node_failed)?;
        let (rooms, node, room) = (self.clone(), call.node.clone(), room.to_owned());
        let wait = self.settings.inactive_after;
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            rooms.expire(&node, &me, &room, generation).await;
        });
        Ok(change)
    }

    /// The inactivity timer of generation `generation` fired: unless a
    /// later join or heartbeat came, the connection is inactive (it stays in
    /// the group) and `user_left` is announced when it was the user's last
    /// active connection in the room.
    async fn expire(&self, node: &Node, id: &ConnectionId, room: &str, generation: u64) {
        let group = GroupName::from(self.settings.group_of(room));
        let in_group = {
            let mut local = self.local.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let key = (id.clone(), room.to_owned());
            match local.members.get_mut(&key) {
                Some(m) if m.generation == generation && m.active => {
                    if node.registry.is_in_group(id, &group) {
                        m.active = false;
                        Some(true)
                    } else {
                        local.members.remove(&key);
                        Some(false)
                    }
                }
                _ => None,
            }
        };
        let Some(in_group) = in_group else {
            return;
        };
        let result = async {
            let change = node.room_presence_remove(&self.hub, room, id).await?;
            if let Some(entry) = self.ended(&change, now_ms()).filter(|_| in_group) {
                self.announce_left(node, room, &entry, vec![id.clone()], LeftBecause::Inactive)
                    .await?;
            }
            Ok::<_, NodeError>(())
        };
        if let Err(e) = result.await {
            tracing::warn!(room, error = %e, "could not end an inactive room member");
        }
    }

    /// The connection leaves `room` (a call, or its access is gone): out of
    /// the group, its entry removed, `user_left` announced when it was
    /// active and the user's last active connection there. A connection
    /// already taken out of the group (a revocation announced it) announces
    /// nothing.
    async fn leave(&self, node: &Node, id: &ConnectionId, room: &str, why: LeftBecause) -> Result<(), HubError> {
        let group = GroupName::from(self.settings.group_of(room));
        let in_group = node.registry.is_in_group(id, &group);
        self.forget(id, room);
        if in_group {
            node.remove_from_group(&self.hub, &group, id)
                .await
                .map_err(node_failed)?;
        }
        let change = node
            .room_presence_remove(&self.hub, room, id)
            .await
            .map_err(node_failed)?;
        if let Some(entry) = self.ended(&change, now_ms()).filter(|_| in_group) {
            self.announce_left(node, room, &entry, vec![id.clone()], why)
                .await
                .map_err(node_failed)?;
        }
        Ok(())
    }

    /// A connection closed (it already left its groups): every room it was
    /// in loses it.
    async fn disconnected(&self, node: &Node, id: &ConnectionId) {
        let gone: Vec<String> = {
            let mut local = self.local.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let keys: Vec<_> = local.members.keys().filter(|(c, _)| c == id).cloned().collect();
            keys.into_iter()
                .filter_map(|k| local.members.remove(&k).map(|_| k.1))
                .collect()
        };
        for room in gone {
            self.end_presence(node, &room, id, LeftBecause::Disconnected).await;
        }
    }

    /// Removes connection `id`'s entry from `room` and announces `user_left`
    /// when that ended its user's presence there. No entry any more: a
    /// revocation (which announced it) or the inactivity timer removed it.
    async fn end_presence(&self, node: &Node, room: &str, id: &ConnectionId, why: LeftBecause) {
        let result = async {
            let change = node.room_presence_remove(&self.hub, room, id).await?;
            if let Some(entry) = self.ended(&change, now_ms()) {
                self.announce_left(node, room, &entry, vec![], why).await?;
            }
            Ok::<_, NodeError>(())
        };
        if let Err(e) = result.await {
            tracing::warn!(room, error = %e, "could not end a room member's presence");
        }
    }

    /// Node `dead` died and this node swept it: its connections' entries
    /// leave every room they were in, each user announced as left
    /// (`disconnected`) unless they have another active connection there.
    async fn take_over(&self, node: &Node, dead: &NodeId) {
        match node.take_rooms_of(&self.hub, dead).await {
            Ok(held) => {
                for (room, id) in held {
                    self.end_presence(node, &room, &id, LeftBecause::Disconnected).await;
                }
            }
            Err(e) => tracing::warn!(node = %dead, error = %e, "could not read a dead node's room presence"),
        }
    }

    async fn announce_joined(
        &self,
        node: &Node,
        room: &str,
        user: &UserId,
        caller: &ConnectionHandle,
        except: Vec<ConnectionId>,
    ) -> Result<(), NodeError> {
        let principal = caller.principal.as_ref();
        let fields = self.fields(
            Event::UserJoined,
            room,
            now_ms(),
            [
                ("userId", Value::from(user.as_str())),
                ("displayName", principal.and_then(|p| p.name.clone()).into()),
                ("avatarUrl", principal.and_then(|p| p.picture.clone()).into()),
            ],
        );
        let group = GroupName::from(self.settings.group_of(room));
        self.emit(node, Event::UserJoined, Target::Group(group), except, &fields)
            .await
    }

    async fn announce_left(
        &self,
        node: &Node,
        room: &str,
        entry: &Entry,
        except: Vec<ConnectionId>,
        why: LeftBecause,
    ) -> Result<(), NodeError> {
        let fields = self.fields(
            Event::UserLeft,
            room,
            now_ms(),
            [
                ("userId", Value::from(entry.user.as_str())),
                ("displayName", entry.name.clone().into()),
                ("avatarUrl", entry.picture.clone().into()),
                ("reason", Value::from(why.as_str())),
            ],
        );
        let group = GroupName::from(self.settings.group_of(room));
        self.emit(node, Event::UserLeft, Target::Group(group), except, &fields)
            .await
    }

    /// The room's active users, one per user (earliest join first), each
    /// laid out as the definition's `active_user` says.
    async fn active_users(&self, node: &Node, room: &str, now: i64) -> Result<Value, NodeError> {
        let entries = self.entries(node, room).await?;
        Ok(Value::Array(
            snapshot(entries.into_iter().map(|(_, e)| e), |e| self.is_fresh(e, now))
                .iter()
                .map(|e| {
                    let mut fields = Map::new();
                    fields.insert("userId".into(), Value::from(e.user.as_str()));
                    fields.insert("displayName".into(), e.name.clone().into());
                    fields.insert("avatarUrl".into(), e.picture.clone().into());
                    fields.insert("joinedAt".into(), Value::String(iso8601(e.joined_ms)));
                    fields.insert("lastSeenAt".into(), Value::String(iso8601(e.seen_ms)));
                    self.event(Event::ActiveUser).object(&fields)
                })
                .collect(),
        ))
    }
}

/// The active users of some entries: those `fresh`, one per user (the
/// earliest joined, the latest heard from), ordered by when they joined.
fn snapshot(entries: impl Iterator<Item = Entry>, fresh: impl Fn(&Entry) -> bool) -> Vec<Entry> {
    let mut by_user: HashMap<String, Entry> = HashMap::new();
    for entry in entries.filter(|e| fresh(e)) {
        match by_user.get_mut(&entry.user) {
            Some(seen) => {
                seen.seen_ms = seen.seen_ms.max(entry.seen_ms);
                if entry.joined_ms < seen.joined_ms {
                    seen.joined_ms = entry.joined_ms;
                }
                if seen.name.is_none() {
                    seen.name = entry.name;
                }
                if seen.picture.is_none() {
                    seen.picture = entry.picture;
                }
            }
            None => {
                by_user.insert(entry.user.clone(), entry);
            }
        }
    }
    let mut users: Vec<Entry> = by_user.into_values().collect();
    users.sort_by(|a, b| a.joined_ms.cmp(&b.joined_ms).then_with(|| a.user.cmp(&b.user)));
    users
}

fn store_failed(error: StoreError) -> HubError {
    match error {
        StoreError::Unavailable(_) | StoreError::Closed => {
            HubError::Hub("The store is not available right now. Try again.".into())
        }
        other => HubError::Internal(other.to_string()),
    }
}

fn node_failed(error: NodeError) -> HubError {
    HubError::Hub(error.to_string())
}

impl Hub for RoomsHub {
    fn name(&self) -> &str {
        &self.rooms.def.name
    }

    fn methods(&self) -> &[MethodSpec] {
        &self.rooms.specs
    }

    fn invoke(
        &self,
        call: HubCall,
        method: usize,
        args: Vec<Value>,
    ) -> LocalBoxFuture<'static, Result<HubReply, HubError>> {
        let rooms = self.rooms.clone();
        let called =
            (rooms.def.call(&CATALOG, method, args, Op::of)).map(|(b, op, args)| (b.spec.name.to_string(), op, args));
        Box::pin(async move {
            let (name, op, args) = called?;
            rooms.run(call, op, &name, args).await.map(HubReply::Value)
        })
    }

    fn max_connections_per_user(&self) -> Option<usize> {
        self.rooms.def.limits.max_connections_per_user
    }

    fn on_disconnected(&self, node: Arc<Node>, caller: Arc<ConnectionHandle>) -> BoxFuture<'static, ()> {
        let rooms = self.rooms.clone();
        Box::pin(async move { rooms.disconnected(&node, &caller.id).await })
    }

    fn on_node_down(&self, node: Arc<Node>, dead: NodeId) -> BoxFuture<'static, ()> {
        let rooms = self.rooms.clone();
        Box::pin(async move { rooms.take_over(&node, &dead).await })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
