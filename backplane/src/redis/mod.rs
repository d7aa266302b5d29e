//! The Redis backplane: a cluster of nodes joined by one Redis (or Redis Cluster).
//!
//! # Layout
//! - [`config`]: [`RedisConfig`] and the fred clients built from it.
//! - [`names`]: every key and channel name, with its type and TTL.
//! - [`codec`]: the binary encoding of messages between nodes.
//! - `scripts` + `lua/*.lua`: the keyspace changes, each one atomic script.
//! - `keyspace`: connections, groups and users on top of the scripts.
//! - `user_state`: rate buckets (`take_token.lua`), last seen, cached read
//!   positions.
//! - `typing`: the typing indicators each node holds (a hash per hub and
//!   node), taken by the sweeper of a dead node.
//! - `rooms`: the rooms kind's presence entries (a hash per hub and room,
//!   a field per connection, expiring after the last write; written and
//!   removed by `room_set.lua` / `room_remove.lua`, which also say what the
//!   user has left there), and the rooms each node's entries are in, taken
//!   by the sweeper of a dead node.
//! - `pubsub`: publishing, subscriptions (with a delayed unsubscribe), receiving.
//! - `liveness`: heartbeats, dead-node sweeps, and the resync after an outage.
//! - [`observe`]: the [`CommandObserver`] told of each command (the node's
//!   trace spans), installed by [`RedisBackplane::observe`].
//! - `memory`: the connections this node registered, to write back after an
//!   outage (their groups are read from the node's registry then, through
//!   [`LocalMembership`]).
//!
//! # Invariants
//! - One publish per send, on the channel of its target; a node ignores what
//!   it published itself.
//! - Every Redis call fails fast with [`BackplaneError::Unavailable`] while
//!   Redis is unreachable (never waits longer than `command_timeout`); local
//!   delivery is the node's and does not depend on Redis.
//! - After any loss (reconnection, heartbeat that finds the node unknown, a
//!   failed write), the node's subscriptions and connections are written back
//!   (connections from memory, their groups from the node); until then [`RedisBackplane::is_ready`] is false.
//! - The inbox holds `inbox_capacity` events; a full one makes the receive task
//!   wait (counted in `inbox_full`), so that fred's buffer fills behind it and
//!   its overflow is counted as `dropped`, never hidden in an unbounded queue.
//! - Nothing here panics on Redis' or other nodes' input.

pub mod codec;
pub mod config;
mod keyspace;
mod liveness;
mod memory;
pub mod names;
pub mod observe;
mod pubsub;
mod rooms;
mod scripts;
mod stats;
mod typing;
mod user_state;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fred::clients::SubscriberClient;
use fred::prelude::{Client, ClientLike, EventInterface, Value};
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::message::{BackplaneEvent, Channel, ClusterMessage};
use crate::names::{ConnectionId, GroupName, HubName, NodeId, UserId};
use crate::{
    BackplaneError, ConnectionRecord, Delivery, Keyspace, LocalMembership, MembershipTtl, PresenceChange, Rate,
    Registered,
};

pub use config::{ConnectError, RedisConfig};
pub use names::RedisNames;
pub use observe::{Command, CommandObserver, Observed};
pub use stats::RedisStats;

use memory::Memory;
use pubsub::Subscriptions;
use scripts::{LuaScript, Scripts};
use stats::Counters;

/// One node's handle on the Redis backplane. Dropping it stops its heartbeats
/// (the others then sweep its connections; if none does, they stop counting
/// when its record leases expire); [`Backplane::shutdown`] leaves the cluster
/// cleanly instead.
pub struct RedisBackplane {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// State shared by the handle and its background tasks.
struct Shared {
    config: RedisConfig,
    names: RedisNames,
    client: Client,
    subscriber: SubscriberClient,
    scripts: Scripts,
    /// The node's inbox, bounded by `inbox_capacity`.
    inbox: mpsc::Sender<BackplaneEvent>,
    memory: Mutex<Memory>,
    /// The groups of this node's connections (the node's registry), read by resyncs.
    membership: std::sync::OnceLock<Arc<dyn LocalMembership>>,
    subscriptions: Mutex<Subscriptions>,
    /// Hubs this process has recorded in `<p>:hubs` since the last resync.
    known_hubs: Mutex<std::collections::HashSet<HubName>>,
    counters: Counters,
    /// `hubwire_redis_duration_seconds`: every call through [`Shared::call`].
    round_trips: prometheus::Histogram,
    /// Told of every call through [`Shared::call`] ([`RedisBackplane::observe`]).
    observer: std::sync::OnceLock<Arc<dyn CommandObserver>>,
    /// Set when the keyspace may not match memory; cleared by a resync.
    needs_resync: AtomicBool,
    /// A resync is writing this node back: not ready until it is done.
    resyncing: AtomicBool,
    /// Wakes the maintenance task for an early resync.
    wake: Notify,
    heartbeat_ok: AtomicBool,
    closed: AtomicBool,
}

impl RedisBackplane {
    /// Connects to Redis, joins the cluster (heartbeat, event channel) and
    /// starts the background tasks. Messages and events for this node arrive
    /// on the returned receiver. Fails if Redis does not answer in time.
    pub async fn connect(config: RedisConfig) -> Result<(Self, mpsc::Receiver<BackplaneEvent>), ConnectError> {
        config.validate()?;
        let (client, subscriber) = config.clients()?;
        let init = async {
            client.init().await?;
            subscriber.init().await
        };
        let connected = tokio::time::timeout(config.command_timeout * 2, init).await;
        if let Err(e) = connected
            .map_err(|_| "timed out".to_owned())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            quit(&client, &subscriber);
            return Err(ConnectError::Redis(e));
        }
        let (inbox, receiver) = mpsc::channel(config.inbox_capacity);
        let messages = subscriber.message_rx();
        let shared = Arc::new(Shared {
            names: RedisNames::new(&config.prefix),
            config,
            client,
            subscriber,
            scripts: Scripts::new(),
            inbox,
            memory: Mutex::default(),
            membership: std::sync::OnceLock::new(),
            subscriptions: Mutex::default(),
            known_hubs: Mutex::default(),
            counters: Counters::default(),
            round_trips: stats::round_trips(),
            observer: std::sync::OnceLock::new(),
            needs_resync: AtomicBool::new(false),
            resyncing: AtomicBool::new(false),
            wake: Notify::new(),
            heartbeat_ok: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        let joined = async {
            shared.subscribe_events().await?;
            shared.heartbeat().await?;
            shared.sweep_previous_run().await
        };
        if let Err(e) = joined.await {
            quit(&shared.client, &shared.subscriber);
            return Err(ConnectError::Redis(e.to_string()));
        }
        shared.heartbeat_ok.store(true, Ordering::Relaxed);
        let span = tracing::info_span!("backplane", node = %shared.config.node);
        let tasks = vec![
            tokio::spawn(pubsub::receive(shared.clone(), messages).instrument(span.clone())),
            tokio::spawn(liveness::heartbeats(shared.clone()).instrument(span.clone())),
            tokio::spawn(liveness::maintenance(shared.clone()).instrument(span.clone())),
            tokio::spawn(liveness::watch_connections(shared.clone()).instrument(span)),
        ];
        tracing::info!(node = %shared.config.node, prefix = %shared.config.prefix, cluster = shared.config.cluster, "joined the Redis backplane");
        let backplane = Self {
            shared,
            tasks: Mutex::new(tasks),
        };
        Ok((backplane, receiver))
    }

    /// The histogram of Redis calls, for `/metrics`.
    pub fn round_trips(&self) -> prometheus::Histogram {
        self.shared.round_trips.clone()
    }

    /// The counters since start, for `/metrics`.
    pub fn stats(&self) -> RedisStats {
        self.shared.counters.snapshot()
    }

    /// Gives the backplane the owner of local group membership; resyncs
    /// write each connection back in the groups it reports. Without one (the
    /// backplane's own tests), connections are written back in no group but
    /// their user's. Only the first call counts.
    pub fn attach_membership(&self, membership: Arc<dyn LocalMembership>) {
        // A second owner would be a wiring mistake; the first one stays.
        let _ = self.shared.membership.set(membership);
    }

    /// Tells `observer` of every Redis command from now on (the node's trace
    /// spans; [`observe`]). Only the first call counts.
    pub fn observe(&self, observer: Arc<dyn CommandObserver>) {
        // A second observer would be a wiring mistake; the first one stays.
        let _ = self.shared.observer.set(observer);
    }

    /// The names this backplane uses (for operators and tests).
    pub fn names(&self) -> &RedisNames {
        &self.shared.names
    }

    fn stop_tasks(&self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }
}

impl Drop for RedisBackplane {
    fn drop(&mut self) {
        self.stop_tasks();
        quit(&self.shared.client, &self.shared.subscriber);
    }
}

/// Closes both connections in the background (no keyspace cleanup).
fn quit(client: &Client, subscriber: &SubscriberClient) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let (client, subscriber) = (client.clone(), subscriber.clone());
        runtime.spawn(async move {
            // Quitting a connection that is already gone fails; nothing is left to close.
            let _ = client.quit().await;
            let _ = subscriber.quit().await;
        });
    }
}

impl Shared {
    /// Runs one Redis call: refused at once while disconnected, bounded by the
    /// command timeout, errors counted.
    async fn call<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, BackplaneError> {
        self.call_with(self.client.is_connected(), what, call).await
    }

    /// [`Shared::call`] on a client whose connection state is `connected`.
    async fn call_with<T>(
        &self,
        connected: bool,
        what: &str,
        call: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, BackplaneError> {
        self.observed(connected, Command::plain(what), call).await
    }

    /// [`Shared::call_with`] of `command`, told to the observer, if any.
    async fn observed<T>(
        &self,
        connected: bool,
        command: Command<'_>,
        call: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, BackplaneError> {
        let mut observed = self.observer.get().and_then(|observer| observer.command(&command));
        let what = command.what;
        let failure = if self.closed.load(Ordering::Relaxed) {
            format!("{what}: the backplane is shut down")
        } else if !connected {
            format!("{what}: not connected to Redis")
        } else {
            let _round_trip = self.round_trips.start_timer();
            match tokio::time::timeout(self.config.command_timeout, call).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => format!("{what}: {e}"),
                Err(_) => format!("{what}: timed out"),
            }
        };
        Counters::bump(&self.counters.redis_errors);
        if let Some(observed) = observed.as_mut() {
            observed.failed(&failure);
        }
        Err(BackplaneError::Unavailable(failure))
    }

    /// Runs a Lua script through [`Shared::call`] (observed as its `EVALSHA`).
    async fn script(&self, script: &LuaScript, keys: Vec<String>, args: Vec<String>) -> Result<Value, BackplaneError> {
        let connected = self.client.is_connected();
        self.observed(
            connected,
            Command::script(script.name()),
            script.run(&self.client, keys, args),
        )
        .await
    }

    /// Notes that a keyspace write may not have reached Redis.
    fn write_failed<T>(&self, result: Result<T, BackplaneError>) -> Result<T, BackplaneError> {
        if result.is_err() {
            self.needs_resync.store(true, Ordering::Relaxed);
        }
        result
    }
}

impl Delivery for RedisBackplane {
    fn node_id(&self) -> &NodeId {
        &self.shared.config.node
    }

    fn is_ready(&self) -> bool {
        let s = &self.shared;
        !s.closed.load(Ordering::Relaxed)
            && s.client.is_connected()
            && s.subscriber.is_connected()
            && s.heartbeat_ok.load(Ordering::Relaxed)
            && !s.needs_resync.load(Ordering::Relaxed)
            && !s.resyncing.load(Ordering::Relaxed)
    }

    async fn publish(&self, msg: ClusterMessage) -> Result<(), BackplaneError> {
        self.shared.publish(&msg).await
    }

    async fn subscribe(&self, channel: Channel) -> Result<(), BackplaneError> {
        self.shared.subscribe(channel).await
    }

    async fn unsubscribe(&self, channel: Channel) -> Result<(), BackplaneError> {
        pubsub::unsubscribe(&self.shared, channel);
        Ok(())
    }
}

impl Keyspace for RedisBackplane {
    async fn shutdown(&self) -> Result<(), BackplaneError> {
        let result = self.shared.leave().await;
        self.stop_tasks();
        quit(&self.shared.client, &self.shared.subscriber);
        result
    }

    async fn register(
        &self,
        record: &ConnectionRecord,
        max_per_user: Option<usize>,
    ) -> Result<Registered, BackplaneError> {
        self.shared.register(record, max_per_user).await
    }

    async fn unregister(&self, id: &ConnectionId) -> Result<Option<UserId>, BackplaneError> {
        self.shared.unregister(id).await
    }

    async fn connection(&self, id: &ConnectionId) -> Result<Option<ConnectionRecord>, BackplaneError> {
        self.shared.connection(id).await
    }

    async fn join_group(&self, hub: &HubName, group: &GroupName, id: &ConnectionId) -> Result<(), BackplaneError> {
        self.shared.join_group(hub, group, id).await
    }

    async fn leave_group(&self, hub: &HubName, group: &GroupName, id: &ConnectionId) -> Result<bool, BackplaneError> {
        self.shared.leave_group(hub, group, id).await
    }

    async fn node_connection_counts(&self, hub: &HubName) -> Result<Vec<(NodeId, usize)>, BackplaneError> {
        self.shared.node_counts(hub).await
    }

    async fn connection_groups(&self, hub: &HubName, id: &ConnectionId) -> Result<Vec<GroupName>, BackplaneError> {
        let key = self.shared.names.conn_groups(hub, id);
        let groups: Vec<String> = self
            .shared
            .call(
                "SMEMBERS",
                fred::prelude::SetsInterface::smembers(&self.shared.client, key),
            )
            .await?;
        Ok(groups.into_iter().map(GroupName::from).collect())
    }

    async fn group_connections(
        &self,
        hub: &HubName,
        group: &GroupName,
    ) -> Result<Vec<ConnectionRecord>, BackplaneError> {
        self.shared
            .records(hub, self.shared.names.group_conns(hub, group))
            .await
    }

    async fn add_user_to_group(
        &self,
        hub: &HubName,
        user: &UserId,
        group: &GroupName,
        ttl: MembershipTtl,
    ) -> Result<(), BackplaneError> {
        self.shared.add_user_to_group(hub, user, group, ttl).await
    }

    async fn remove_user_from_group(
        &self,
        hub: &HubName,
        user: &UserId,
        group: &GroupName,
    ) -> Result<bool, BackplaneError> {
        self.shared.remove_user_from_group(hub, user, group).await
    }

    async fn remove_user_from_all_groups(
        &self,
        hub: &HubName,
        user: &UserId,
    ) -> Result<Vec<GroupName>, BackplaneError> {
        self.shared.remove_user_from_all_groups(hub, user).await
    }

    async fn user_in_group(&self, hub: &HubName, user: &UserId, group: &GroupName) -> Result<bool, BackplaneError> {
        self.shared.user_in_group(hub, user, group).await
    }

    async fn user_connections(&self, hub: &HubName, user: &UserId) -> Result<Vec<ConnectionRecord>, BackplaneError> {
        self.shared.records(hub, self.shared.names.user_conns(hub, user)).await
    }

    async fn hub_connection_count(&self, hub: &HubName) -> Result<usize, BackplaneError> {
        // Per node, so that the connections of a node whose lease expired
        // (or that left the live set) do not count.
        let counts = self.shared.node_counts(hub).await?;
        Ok(counts.into_iter().map(|(_, count)| count).sum())
    }

    async fn take_token(
        &self,
        hub: &HubName,
        user: &UserId,
        bucket: &str,
        limit: u32,
        per: std::time::Duration,
    ) -> Result<Rate, BackplaneError> {
        self.shared.take_token(hub, user, bucket, limit, per).await
    }

    async fn last_seen(&self, hub: &HubName, user: &UserId) -> Result<Option<u64>, BackplaneError> {
        self.shared.last_seen(hub, user).await
    }

    async fn cache_read_position(
        &self,
        hub: &HubName,
        conversation: &str,
        user: &UserId,
        position: &str,
    ) -> Result<(), BackplaneError> {
        self.shared.cache_read_position(hub, conversation, user, position).await
    }

    async fn cached_read_position(
        &self,
        hub: &HubName,
        conversation: &str,
        user: &UserId,
    ) -> Result<Option<String>, BackplaneError> {
        self.shared.cached_read_position(hub, conversation, user).await
    }

    async fn typing_held(
        &self,
        hub: &HubName,
        conversation: &str,
        user: &UserId,
        held: bool,
    ) -> Result<(), BackplaneError> {
        self.shared.typing_held(hub, conversation, user, held).await
    }

    async fn take_typing_of(&self, hub: &HubName, node: &NodeId) -> Result<Vec<(String, UserId)>, BackplaneError> {
        self.shared.take_typing_of(hub, node).await
    }

    async fn room_presence_set(
        &self,
        hub: &HubName,
        room: &str,
        id: &ConnectionId,
        user: &UserId,
        entry: &str,
        ttl: std::time::Duration,
    ) -> Result<PresenceChange, BackplaneError> {
        self.shared.room_presence_set(hub, room, id, user, entry, ttl).await
    }

    async fn room_presence_remove(
        &self,
        hub: &HubName,
        room: &str,
        id: &ConnectionId,
    ) -> Result<PresenceChange, BackplaneError> {
        self.shared.room_presence_remove(hub, room, id).await
    }

    async fn room_presence(&self, hub: &HubName, room: &str) -> Result<Vec<(ConnectionId, String)>, BackplaneError> {
        self.shared.room_presence(hub, room).await
    }

    async fn take_rooms_of(&self, hub: &HubName, node: &NodeId) -> Result<Vec<(String, ConnectionId)>, BackplaneError> {
        self.shared.take_rooms_of(hub, node).await
    }
}
