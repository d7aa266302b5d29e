//! Cross-node delivery and the shared keyspace of hubwire.
//!
//! A node owns its connections; this crate owns everything that crosses nodes:
//! publishing a send to the other nodes, subscribing to the channels a node has
//! local interest in, and the cluster-wide keyspace (where each connection lives,
//! which connections belong to a user or a group, which users belong to a group).
//! It does not know the SignalR protocol: it moves routing metadata and opaque bytes.
//!
//! # Layout
//! - [`names`]: the identifier newtypes (`NodeId`, `ConnectionId`, `HubName`, ...).
//! - [`message`]: what crosses nodes: [`Target`], [`Channel`], [`ClusterMessage`],
//!   and what a node's inbox receives: [`BackplaneEvent`].
//! - [`Delivery`] and [`Keyspace`]: the two narrow interfaces every
//!   implementation provides — cross-node delivery (publish, subscribe,
//!   readiness) and the cluster keyspace (connections, groups, users, counts,
//!   and the small per-user state held cluster-wide: rate buckets, last seen,
//!   cached read positions, the rooms kind's presence entries and which
//!   node wrote them).
//! - [`local`]: the in-process implementation (a single node, or several nodes of
//!   one process in tests).
//! - [`redis`]: the Redis implementation (fred): pub/sub fan-out, the keyspace
//!   in Lua scripts, heartbeats and dead-node sweeps, recovery after outages.
//! - [`AnyBackplane`]: the implementation chosen at start-up (static dispatch; no
//!   `dyn` of async traits).
//! - [`LocalMembership`]: what the node tells the backplane about the groups of
//!   its own connections (the node's registry owns them; the Redis backplane
//!   reads them only to write the node back after an outage).
//!
//! # Invariants
//! - A published message is never delivered back to the node that published it:
//!   the origin node delivers to its own connections itself.
//! - The keyspace is the truth for cluster-wide questions; a node's local registry
//!   is the truth only for the connections it holds.
//! - A node's inbox is bounded (the Redis backplane's `inbox_capacity`, the
//!   bus's [`local::INBOX_CAPACITY`]): when it is full, receiving waits rather
//!   than grows a queue without end; the node's reader must never await anything
//!   but the inbox itself.

pub mod local;
pub mod message;
pub mod names;
pub mod redis;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use crate::redis::{RedisBackplane, RedisConfig, RedisNames, RedisStats};
pub use local::{LocalBackplane, LocalBus};
pub use message::{BackplaneEvent, Channel, ClusterBody, ClusterMessage, CommandId, Target};
pub use names::{ConnectionId, GroupName, HubName, NodeId, UserId};

/// The groups of this node's connections, read from their one owner (the
/// node's registry). The Redis backplane keeps no copy: when it writes the
/// node back into the keyspace after an outage (a resync), it takes a
/// snapshot from here, and compares generations to tell whether membership
/// moved while it wrote.
pub trait LocalMembership: Send + Sync {
    /// A number that changes whenever a local connection joins or leaves a group.
    fn generation(&self) -> u64;
    /// The groups of every local connection in at least one, with the
    /// generation they were read at.
    fn snapshot(&self) -> MembershipSnapshot;
}

/// Local group membership at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipSnapshot {
    /// [`LocalMembership::generation`] when taken.
    pub generation: u64,
    /// Each connection's groups.
    pub groups: HashMap<ConnectionId, Vec<GroupName>>,
}

/// Where one connection lives and who holds it, as recorded in the keyspace.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConnectionRecord {
    /// The connection's id (the one clients see, not the secret token).
    pub id: ConnectionId,
    /// The node holding the connection.
    pub node: NodeId,
    /// The hub the connection is connected to.
    pub hub: HubName,
    /// The authenticated user, if any.
    pub user: Option<UserId>,
    /// Transport name as SignalR spells it (`WebSockets`, ...).
    pub transport: String,
    /// Unix time in milliseconds when the connection was registered.
    pub since_ms: u64,
}

/// What a node learns when it registers a connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registered {
    /// The groups the user was added to persistently in this hub, which the
    /// connection joined.
    pub groups: Vec<GroupName>,
    /// The user's live connections to the hub cluster-wide, this one
    /// included, counted in the same atomic step as the registration (0 for
    /// an anonymous connection): 1 means it is the user's first.
    pub user_connections: usize,
}

/// The answer of a rate bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    /// A token was taken: the action may go ahead.
    Allowed,
    /// The bucket is empty; a token will be there after this long.
    RetryAfter(Duration),
}

/// What changing a connection's presence entry in a room found, decided in
/// the same atomic step as the change (so of two tabs of a user leaving at
/// once, exactly one sees the other gone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PresenceChange {
    /// The connection's entry before the change; `None`: it had none.
    pub previous: Option<String>,
    /// The entries the connection's user has in the room after the change,
    /// but the connection's own.
    pub others: Vec<String>,
}

/// How long the keyspace keeps a user's last-seen time.
pub const LAST_SEEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// How long the keyspace keeps a cached read position.
pub const READ_POSITION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Errors of cluster operations.
#[derive(Debug, thiserror::Error)]
pub enum BackplaneError {
    /// The user already holds the maximum number of connections.
    #[error("user connection limit of {limit} reached")]
    UserLimit {
        /// The configured limit.
        limit: usize,
    },
    /// The shared store cannot be reached; local delivery still works.
    #[error("backplane unavailable: {0}")]
    Unavailable(String),
}

/// How long a user's membership in a group lasts (the REST API's `ttl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipTtl {
    /// Until removed: applies to the user's current and future connections.
    Forever,
    /// Only the user's current connections; nothing is remembered.
    CurrentConnectionsOnly,
    /// Applies to current and future connections until it expires.
    For(Duration),
}

/// Cross-node delivery, the first of the two narrow interfaces between a node
/// and the rest of the cluster (as centrifuge splits its `Broker` from its
/// `PresenceManager`): publish a message to the nodes interested in its
/// channel, and say which channels this node is interested in.
///
/// Implementations must be cheap to share between actix workers
/// (`Send + Sync`), and are created once in `main`.
#[allow(async_fn_in_trait)]
pub trait Delivery: Send + Sync {
    /// The id of the node this handle belongs to.
    fn node_id(&self) -> &NodeId;
    /// Whether cluster operations currently work (for `/readyz`). Local
    /// delivery does not depend on it.
    fn is_ready(&self) -> bool;
    /// Sends a message to every other node interested in its channel.
    async fn publish(&self, msg: ClusterMessage) -> Result<(), BackplaneError>;
    /// Starts receiving messages published on `channel` (idempotent); returns
    /// once the subscription is effective, so a publish after it is received.
    async fn subscribe(&self, channel: Channel) -> Result<(), BackplaneError>;
    /// Stops receiving messages published on `channel` (idempotent). An
    /// implementation may wait a short delay first, and stay subscribed if
    /// the channel is subscribed again meanwhile.
    async fn unsubscribe(&self, channel: Channel) -> Result<(), BackplaneError>;
}

/// The cluster keyspace, the second narrow interface: where each connection
/// lives, who is in which group, counts. Every method is cluster-wide.
#[allow(async_fn_in_trait)]
pub trait Keyspace: Send + Sync {
    /// Leaves the cluster: forgets this node's remaining connections and its
    /// liveness entry, and stops background work. The handle is not used
    /// afterwards (the Redis backplane refuses every call).
    async fn shutdown(&self) -> Result<(), BackplaneError>;
    /// Records a new connection. With `max_per_user`, refuses the connection
    /// atomically when its user already has that many. Returns the groups the
    /// user was added to persistently in this hub, which the connection
    /// joins, and the user's connection count after it.
    async fn register(
        &self,
        record: &ConnectionRecord,
        max_per_user: Option<usize>,
    ) -> Result<Registered, BackplaneError>;
    /// Forgets a connection and its group memberships. Returns its user when
    /// it was the user's last connection to its hub cluster-wide (decided in
    /// the same atomic step, so only one unregistration says so); the user's
    /// last-seen time is then written (see [`Keyspace::last_seen`]).
    async fn unregister(&self, id: &ConnectionId) -> Result<Option<UserId>, BackplaneError>;
    /// The record of a connection anywhere in the cluster.
    async fn connection(&self, id: &ConnectionId) -> Result<Option<ConnectionRecord>, BackplaneError>;
    /// Records that a connection belongs to a group.
    async fn join_group(&self, hub: &HubName, group: &GroupName, id: &ConnectionId) -> Result<(), BackplaneError>;
    /// Records that a connection left a group; `false` if it was not a member.
    async fn leave_group(&self, hub: &HubName, group: &GroupName, id: &ConnectionId) -> Result<bool, BackplaneError>;
    /// The groups a connection belongs to (empty for an unknown connection).
    async fn connection_groups(&self, hub: &HubName, id: &ConnectionId) -> Result<Vec<GroupName>, BackplaneError>;
    /// The connections of a group, cluster-wide.
    async fn group_connections(
        &self,
        hub: &HubName,
        group: &GroupName,
    ) -> Result<Vec<ConnectionRecord>, BackplaneError>;
    /// Adds a user to a group for its current connections and, unless `ttl` says
    /// otherwise, its future ones.
    async fn add_user_to_group(
        &self,
        hub: &HubName,
        user: &UserId,
        group: &GroupName,
        ttl: MembershipTtl,
    ) -> Result<(), BackplaneError>;
    /// Removes a user's persistent membership; `false` if there was none.
    async fn remove_user_from_group(
        &self,
        hub: &HubName,
        user: &UserId,
        group: &GroupName,
    ) -> Result<bool, BackplaneError>;
    /// Removes every persistent membership of a user in a hub; the groups it left.
    async fn remove_user_from_all_groups(&self, hub: &HubName, user: &UserId)
        -> Result<Vec<GroupName>, BackplaneError>;
    /// Whether the user is a member (persistently, or through a live connection).
    async fn user_in_group(&self, hub: &HubName, user: &UserId, group: &GroupName) -> Result<bool, BackplaneError>;
    /// The connections of a user in a hub, cluster-wide.
    async fn user_connections(&self, hub: &HubName, user: &UserId) -> Result<Vec<ConnectionRecord>, BackplaneError>;
    /// Every live node with its number of connections to a hub (nodes
    /// without any included), ordered by node id.
    async fn node_connection_counts(&self, hub: &HubName) -> Result<Vec<(NodeId, usize)>, BackplaneError>;
    /// The number of connections to a hub, cluster-wide.
    async fn hub_connection_count(&self, hub: &HubName) -> Result<usize, BackplaneError>;
    /// Takes a token from the user's bucket `bucket` in a hub: a token bucket
    /// of `limit` tokens, refilled evenly over `per` (so at most `limit`
    /// actions in any `per`, and a burst of `limit` after a quiet `per`),
    /// held cluster-wide with one clock. A `limit` of 0 refuses everything.
    async fn take_token(
        &self,
        hub: &HubName,
        user: &UserId,
        bucket: &str,
        limit: u32,
        per: Duration,
    ) -> Result<Rate, BackplaneError>;
    /// When the user's last connection to the hub closed (Unix ms), kept for
    /// [`LAST_SEEN_TTL`]; `None` if never seen or forgotten.
    async fn last_seen(&self, hub: &HubName, user: &UserId) -> Result<Option<u64>, BackplaneError>;
    /// Caches the user's read position in a conversation (an opaque text the
    /// caller encodes), for [`READ_POSITION_TTL`].
    async fn cache_read_position(
        &self,
        hub: &HubName,
        conversation: &str,
        user: &UserId,
        position: &str,
    ) -> Result<(), BackplaneError>;
    /// The cached read position, if any.
    async fn cached_read_position(
        &self,
        hub: &HubName,
        conversation: &str,
        user: &UserId,
    ) -> Result<Option<String>, BackplaneError>;
    /// Records that this node holds (`held`) or no longer holds a typing
    /// indicator of `user` in `conversation`, so that whoever sweeps this
    /// node after its death can announce its end.
    async fn typing_held(
        &self,
        hub: &HubName,
        conversation: &str,
        user: &UserId,
        held: bool,
    ) -> Result<(), BackplaneError>;
    /// Takes (reads and forgets) the typing indicators dead node `node` held
    /// in `hub`: (conversation, user) pairs.
    async fn take_typing_of(&self, hub: &HubName, node: &NodeId) -> Result<Vec<(String, UserId)>, BackplaneError>;
    /// Records connection `id`'s presence entry in room `room` of `hub`
    /// (an opaque `entry`, the rooms hub's JSON) for `user`, written by this
    /// node, replacing the previous one; the room's presence expires `ttl`
    /// after its last write. Says what was there before and which entries
    /// the user has in the room besides this one.
    async fn room_presence_set(
        &self,
        hub: &HubName,
        room: &str,
        id: &ConnectionId,
        user: &UserId,
        entry: &str,
        ttl: Duration,
    ) -> Result<PresenceChange, BackplaneError>;
    /// Removes connection `id`'s presence entry from room `room` (whichever
    /// node wrote it). Says what was removed (`previous`: `None` if there
    /// was no entry) and which entries its user has left in the room.
    async fn room_presence_remove(
        &self,
        hub: &HubName,
        room: &str,
        id: &ConnectionId,
    ) -> Result<PresenceChange, BackplaneError>;
    /// The presence entries of room `room` of `hub`, cluster-wide.
    async fn room_presence(&self, hub: &HubName, room: &str) -> Result<Vec<(ConnectionId, String)>, BackplaneError>;
    /// Takes (reads and forgets) where dead node `node`'s presence entries
    /// in `hub` are: (room, connection) pairs. The entries stay until
    /// removed ([`Keyspace::room_presence_remove`]).
    async fn take_rooms_of(&self, hub: &HubName, node: &NodeId) -> Result<Vec<(String, ConnectionId)>, BackplaneError>;
}

/// The backplane a node runs with, chosen once at start-up.
pub enum AnyBackplane {
    /// In-process: one node, or several nodes of one process.
    Local(LocalBackplane),
    /// Redis: a cluster of nodes.
    Redis(RedisBackplane),
}

impl AnyBackplane {
    /// Gives the backplane the owner of local group membership, for writing
    /// the node back after an outage. The in-process backplane never loses
    /// its keyspace and needs none.
    pub fn attach_membership(&self, membership: Arc<dyn LocalMembership>) {
        if let Self::Redis(redis) = self {
            redis.attach_membership(membership);
        }
    }
}

/// Implements a trait for [`AnyBackplane`] by handing every method to the
/// implementation chosen at start-up (static dispatch: no `dyn` of async traits).
macro_rules! forward {
    (impl $trait:ident {
        $(fn $sync:ident(&self) -> $sret:ty;)*
        $(async fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*
    }) => {
        impl $trait for AnyBackplane {
            $(fn $sync(&self) -> $sret {
                match self {
                    AnyBackplane::Local(b) => b.$sync(),
                    AnyBackplane::Redis(b) => b.$sync(),
                }
            })*
            $(async fn $name(&self $(, $arg: $ty)*) -> $ret {
                match self {
                    AnyBackplane::Local(b) => b.$name($($arg),*).await,
                    AnyBackplane::Redis(b) => b.$name($($arg),*).await,
                }
            })*
        }
    };
}

forward!(impl Delivery {
    fn node_id(&self) -> &NodeId;
    fn is_ready(&self) -> bool;
    async fn publish(&self, msg: ClusterMessage) -> Result<(), BackplaneError>;
    async fn subscribe(&self, channel: Channel) -> Result<(), BackplaneError>;
    async fn unsubscribe(&self, channel: Channel) -> Result<(), BackplaneError>;
});

forward!(impl Keyspace {
    async fn shutdown(&self) -> Result<(), BackplaneError>;
    async fn register(&self, record: &ConnectionRecord, max_per_user: Option<usize>) -> Result<Registered, BackplaneError>;
    async fn unregister(&self, id: &ConnectionId) -> Result<Option<UserId>, BackplaneError>;
    async fn connection(&self, id: &ConnectionId) -> Result<Option<ConnectionRecord>, BackplaneError>;
    async fn join_group(&self, hub: &HubName, group: &GroupName, id: &ConnectionId) -> Result<(), BackplaneError>;
    async fn leave_group(&self, hub: &HubName, group: &GroupName, id: &ConnectionId) -> Result<bool, BackplaneError>;
    async fn connection_groups(&self, hub: &HubName, id: &ConnectionId) -> Result<Vec<GroupName>, BackplaneError>;
    async fn group_connections(&self, hub: &HubName, group: &GroupName) -> Result<Vec<ConnectionRecord>, BackplaneError>;
    async fn add_user_to_group(&self, hub: &HubName, user: &UserId, group: &GroupName, ttl: MembershipTtl) -> Result<(), BackplaneError>;
    async fn remove_user_from_group(&self, hub: &HubName, user: &UserId, group: &GroupName) -> Result<bool, BackplaneError>;
    async fn remove_user_from_all_groups(&self, hub: &HubName, user: &UserId) -> Result<Vec<GroupName>, BackplaneError>;
    async fn user_in_group(&self, hub: &HubName, user: &UserId, group: &GroupName) -> Result<bool, BackplaneError>;
    async fn user_connections(&self, hub: &HubName, user: &UserId) -> Result<Vec<ConnectionRecord>, BackplaneError>;
    async fn node_connection_counts(&self, hub: &HubName) -> Result<Vec<(NodeId, usize)>, BackplaneError>;
    async fn hub_connection_count(&self, hub: &HubName) -> Result<usize, BackplaneError>;
    async fn take_token(&self, hub: &HubName, user: &UserId, bucket: &str, limit: u32, per: Duration) -> Result<Rate, BackplaneError>;
    async fn last_seen(&self, hub: &HubName, user: &UserId) -> Result<Option<u64>, BackplaneError>;
    async fn cache_read_position(&self, hub: &HubName, conversation: &str, user: &UserId, position: &str) -> Result<(), BackplaneError>;
    async fn cached_read_position(&self, hub: &HubName, conversation: &str, user: &UserId) -> Result<Option<String>, BackplaneError>;
    async fn typing_held(&self, hub: &HubName, conversation: &str, user: &UserId, held: bool) -> Result<(), BackplaneError>;
    async fn take_typing_of(&self, hub: &HubName, node: &NodeId) -> Result<Vec<(String, UserId)>, BackplaneError>;
    async fn room_presence_set(&self, hub: &HubName, room: &str, id: &ConnectionId, user: &UserId, entry: &str, ttl: Duration) -> Result<PresenceChange, BackplaneError>;
    async fn room_presence_remove(&self, hub: &HubName, room: &str, id: &ConnectionId) -> Result<PresenceChange, BackplaneError>;
    async fn room_presence(&self, hub: &HubName, room: &str) -> Result<Vec<(ConnectionId, String)>, BackplaneError>;
    async fn take_rooms_of(&self, hub: &HubName, node: &NodeId) -> Result<Vec<(String, ConnectionId)>, BackplaneError>;
});
