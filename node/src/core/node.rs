//! The node: everything a connection, a hub or the REST API shares.
//!
//! [`Node`] is created once in `main`, before the HTTP server starts, and handed
//! to every worker behind an `Arc`. It owns the one send API of the node
//! ([`Node::send`]: a target in a hub, an `except` list, a method and its
//! arguments) and the group / close operations; each delivers to this node's own
//! connections through the [`Registry`] and to the rest of the cluster through
//! the backplane with a single publish.
//!
//! A group or close command for connections other nodes hold returns once
//! those nodes applied it ([`crate::core::acks::Acks`]), or fails with
//! [`NodeError::NotAcknowledged`] after `cluster_ack_timeout_ms`: a send right
//! after it reaches exactly the members it should.
//!
//! Every path that names a group — hub methods and the REST API alike — goes
//! through the node, which checks the name here and nowhere else
//! ([`MAX_GROUP_NAME_CHARS`]); adding a connection to a group also checks
//! `max_groups_per_connection`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use crate::core::acks::{Acks, Unanswered};
use crate::core::admission::Admission;
use crate::core::auth::{Authenticator, Principal};
use crate::core::config::Config;
use crate::core::connection::{CloseRequest, ConnectionHandle, TOKEN_EXPIRED};
use crate::core::drain::Drain;
use crate::core::lanes::Lanes;
use crate::core::metrics::{Limit, Metrics};
use crate::core::negotiations::{Limits, Negotiations};
use crate::core::outbound::OutboundMessage;
use crate::core::registry::Registry;
use crate::core::replay::Resumes;
use crate::core::result_waiters::ClientResults;
use crate::core::telemetry::Kind;
use hubwire_backplane::{
    AnyBackplane, BackplaneError, Channel, ClusterBody, ClusterMessage, CommandId, ConnectionId, ConnectionRecord,
    Delivery, GroupName, HubName, Keyspace, MembershipTtl, NodeId, Target, UserId,
};
use hubwire_protocol::Value;

/// The longest group name, in characters, on every path (Azure SignalR
/// Service: fewer than 1025).
pub const MAX_GROUP_NAME_CHARS: usize = 1024;

/// Why the node refused or could not carry out an operation.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The group name is empty or longer than [`MAX_GROUP_NAME_CHARS`].
    #[error("a group name must be 1 to {MAX_GROUP_NAME_CHARS} characters long")]
    GroupName,
    /// The connection is already in `max_groups_per_connection` groups.
    #[error(
        "connection '{id}' is already in {limit} groups, the most one connection may be in (max_groups_per_connection)"
    )]
    TooManyGroups {
        /// The connection.
        id: ConnectionId,
        /// The configured limit.
        limit: usize,
    },
    /// The cluster could not carry out the operation.
    #[error(transparent)]
    Backplane(#[from] BackplaneError),
    /// Nodes holding connections the command was for did not confirm it in
    /// time: it may or may not have been applied there.
    #[error("nodes {nodes:?} did not confirm the command within {timeout_ms} ms; it may not have been applied there")]
    NotAcknowledged {
        /// The nodes that did not answer.
        nodes: Vec<NodeId>,
        /// The configured `cluster_ack_timeout_ms`.
        timeout_ms: u64,
    },
}

/// In which order [`Node::send`] reaches this node's connections and the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOrder {
    /// This node's connections first, so that they get the message even while
    /// Redis is unreachable (hub methods: the caller sees the error anyway).
    LocalFirst,
    /// Publish first, deliver locally only once the publish succeeded: an error
    /// means no connection was sent the message, so that a retry cannot
    /// duplicate it (the REST API's sends, see `docs/rest-api.md`).
    PublishFirst,
}

/// Shared state of one node.
pub struct Node {
    /// The configuration it was started with.
    pub config: Config,
    /// Verifies user tokens.
    pub auth: Authenticator,
    /// The app's backend hooks (authentication, authorisation).
    pub backend: crate::core::backend::Backend,
    /// Cross-node delivery and the shared keyspace: reached only through the
    /// node's methods from outside the core.
    pub(in crate::core) backplane: AnyBackplane,
    /// This node's connections and their groups (the one owner; the Redis
    /// backplane reads their groups from it after an outage).
    pub registry: Arc<Registry>,
    /// The names of the hubs served, as their hubs spell them.
    hubs: Vec<HubName>,
    /// What the hubs want to hear of (offline hooks).
    hooks: Arc<dyn NodeHooks>,
    /// Negotiated connections waiting for their transport.
    pub negotiations: Negotiations,
    /// Stateful connections a reconnecting socket may resume.
    pub resumes: Resumes,
    /// The client results this node awaits.
    pub client_results: ClientResults,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// When the node started.
    pub started: Instant,
    /// Caps on WebSocket upgrades, checked before the 101.
    pub admission: Admission,
    /// The connections graceful shutdown waits for.
    pub drain: Drain,
    /// Commands this node awaits other nodes' answers to.
    pub(crate) acks: Acks,
    /// Group commands from other nodes, in order per group channel.
    pub(crate) lanes: Lanes,
    /// Reserved connections that were their user's first in the cluster
    /// (the keyspace said so atomically), until they go live.
    firsts: parking_lot::Mutex<HashSet<ConnectionId>>,
}

/// What the layers above the node want to hear of. The node calls it and
/// knows nothing of hubs: the hub set implements it (`core::hub`).
pub trait NodeHooks: Send + Sync {
    /// A connection is live: in the registry and the keyspace, its groups
    /// joined. Run on a task of its own.
    fn connected(&self, node: Arc<Node>, handle: Arc<ConnectionHandle>) -> BoxFuture<'static, ()>;
    /// A connection has left this node's registry (awaited before the
    /// offline check).
    fn disconnected(&self, node: Arc<Node>, handle: Arc<ConnectionHandle>) -> BoxFuture<'static, ()>;
    /// A user's last connection to `hub` is gone, cluster-wide — closed, or
    /// lost with its node. Called once cluster-wide.
    fn user_offline(&self, node: Arc<Node>, hub: HubName, user: UserId) -> BoxFuture<'static, ()>;
    /// Node `dead` died and this node swept it (once cluster-wide; also a
    /// previous run of this node's id, swept at start): what it held may be
    /// taken over. Runs after the offline hooks of its users. Does nothing
    /// by default.
    fn node_down(&self, node: Arc<Node>, dead: NodeId) -> BoxFuture<'static, ()> {
        let _ = (node, dead);
        Box::pin(async {})
    }
    /// The connections per user `hub` allows, if it sets its own limit
    /// (else the node's `max_connections_per_user`).
    fn max_connections_per_user(&self, hub: &HubName) -> Option<usize> {
        let _ = hub;
        None
    }
    /// The groups a connection joins as it goes live, before the
    /// connection hook (none by default).
    fn groups_on_connect(&self, handle: &ConnectionHandle) -> Vec<GroupName> {
        let _ = handle;
        Vec::new()
    }
    /// Whether `hub` admits a connection of `principal` (its token already
    /// verified; none: anonymous). All by default.
    fn admits(&self, hub: &HubName, principal: Option<&Principal>) -> bool {
        let _ = (hub, principal);
        true
    }
}

impl Node {
    /// A node with its parts; call [`Node::start`] before serving.
    pub fn new(
        config: Config,
        auth: Authenticator,
        backplane: AnyBackplane,
        hubs: Vec<HubName>,
        hooks: Arc<dyn NodeHooks>,
    ) -> Self {
        let negotiations = Negotiations::new(Limits::of(&config));
        let metrics = Metrics::new();
        let lanes = Lanes::new(metrics.cluster_commands_pending.clone());
        let registry = Arc::new(Registry::default());
        backplane.attach_membership(registry.clone());
        Self {
            admission: Admission::new(&config, &metrics),
            backend: crate::core::backend::Backend::from_config(&config, &metrics),
            config,
            auth,
            backplane,
            registry,
            hubs,
            hooks,
            negotiations,
            resumes: Resumes::default(),
            client_results: ClientResults::default(),
            metrics,
            started: Instant::now(),
            drain: Drain::default(),
            acks: Acks::default(),
            lanes,
            firsts: parking_lot::Mutex::default(),
        }
    }

    /// Subscribes the channels every node listens to: its own, and `All` of each hub.
    pub async fn start(&self) -> Result<(), BackplaneError> {
        self.backplane
            .subscribe(Channel::Node(self.backplane.node_id().clone()))
            .await?;
        for hub in &self.hubs {
            self.backplane.subscribe(Channel::All(hub.clone())).await?;
        }
        Ok(())
    }

    /// The served hub named `name` (case-insensitively), as the hub spells it.
    pub fn hub(&self, name: &str) -> Option<HubName> {
        self.hubs
            .iter()
            .find(|h| h.as_str().eq_ignore_ascii_case(name))
            .cloned()
    }

    /// Closes `handle` when the `exp` of its token passes, unless it closes
    /// first. The Close allows reconnecting: the client's reconnect asks its
    /// token factory for a fresh token. One sleeping task (on the connection's
    /// worker) per connection, and only when `close_on_token_expiry` is on.
    pub fn close_at_expiry(self: &Arc<Self>, handle: &Arc<ConnectionHandle>) {
        let Some(expires) = handle.principal.as_ref().map(|p| p.expires) else {
            return;
        };
        let left = (std::time::UNIX_EPOCH + Duration::from_secs(expires))
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        let (node, handle) = (self.clone(), handle.clone());
        tokio::task::spawn_local(async move {
            tokio::select! {
                () = tokio::time::sleep(left) => {
                    if handle.close(CloseRequest::error(TOKEN_EXPIRED)) {
                        node.metrics.request_refused("token_expired");
                        tracing::debug!(connection = %handle.id, "access token expired: closing");
                    }
                }
                _ = handle.closed() => {}
            }
        });
    }

    /// Whether `hub` admits a connection of `principal` (a hub's own
    /// connect rule, e.g. a groups hub's `connect_role`).
    pub fn admits(&self, hub: &HubName, principal: Option<&Principal>) -> bool {
        self.hooks.admits(hub, principal)
    }

    /// This node's id in the cluster.
    pub fn node_id(&self) -> &NodeId {
        self.backplane.node_id()
    }

    /// Whether graceful shutdown has begun (new connections are refused).
    pub fn is_shutting_down(&self) -> bool {
        self.drain.began()
    }

    /// Sends `method(arguments)` to `target` in `hub`, except some connections:
    /// to local recipients directly, to the rest of the cluster in one publish,
    /// in the order `order` says.
    pub async fn send(
        &self,
        hub: &HubName,
        target: Target,
        except: Vec<ConnectionId>,
        (method, arguments): (&str, Vec<Value>),
        order: SendOrder,
    ) -> Result<(), NodeError> {
        if let Target::Group(group) = &target {
            self.check_group_name(hub, group)?;
        }
        let message = OutboundMessage::invocation(method, arguments);
        if order == SendOrder::LocalFirst {
            self.deliver_local(hub, &target, &except, &message);
        }
        let held_here = matches!(&target, Target::Connection(id) if self.registry.get(id).is_some());
        if !held_here {
            // Within a traced invocation: a span for the publish, whose
            // context the receiving nodes continue.
            let publish = crate::core::telemetry::current().and_then(|parent| {
                let mut span = crate::core::telemetry::span("PUBLISH", Kind::Producer, Some(parent))?;
                span.set("db.system.name", "redis");
                span.set("messaging.system", "redis");
                span.set("messaging.operation.type", "publish");
                Some(span)
            });
            let body = ClusterBody::Deliver {
                target: target.clone(),
                except: except.clone(),
                payload: message.json().clone(),
                trace: publish.as_ref().map(|span| span.context().traceparent()),
            };
            self.publish(hub, body).await?;
            drop(publish);
        }
        if order == SendOrder::PublishFirst {
            self.deliver_local(hub, &target, &except, &message);
        }
        Ok(())
    }

    /// Queues a message to this node's connections of `target`; returns how many.
    pub fn deliver_local(
        &self,
        hub: &HubName,
        target: &Target,
        except: &[ConnectionId],
        message: &OutboundMessage,
    ) -> usize {
        let recipients = self.registry.resolve(hub, target, except);
        recipients
            .iter()
            .filter(|c| message.encoded(c.protocol).is_some_and(|record| c.enqueue(record)))
            .count()
    }

    /// Publishes a command for connections held by `nodes` and returns once
    /// each of them (other than this one) applied it; with none, publishes it
    /// unanswered (a connection that registers meanwhile still hears it).
    async fn command(
        &self,
        hub: &HubName,
        nodes: impl IntoIterator<Item = NodeId>,
        body: impl FnOnce(Option<CommandId>) -> ClusterBody,
    ) -> Result<(), NodeError> {
        let own = self.backplane.node_id();
        let nodes: HashSet<NodeId> = nodes.into_iter().filter(|n| n != own).collect();
        if nodes.is_empty() {
            return Ok(self.publish(hub, body(None)).await?);
        }
        // Expected before publishing: the answer may come before the publish returns.
        let awaited = self.acks.expect(nodes);
        self.publish(hub, body(Some(awaited.id))).await?;
        let timeout = Duration::from_millis(self.config.cluster_ack_timeout_ms);
        let result = awaited
            .wait(timeout)
            .await
            .map_err(|Unanswered { nodes, timeout_ms }| NodeError::NotAcknowledged { nodes, timeout_ms });
        if let Err(e) = &result {
            self.metrics.cluster_ack_timeouts.inc();
            tracing::warn!(error = %e, "a cluster command was not acknowledged");
        }
        result
    }

    /// The nodes holding a user's connections in a hub.
    async fn nodes_of_user(&self, hub: &HubName, user: &UserId) -> Result<Vec<NodeId>, BackplaneError> {
        let records = self.backplane.user_connections(hub, user).await?;
        Ok(records.into_iter().map(|r| r.node).collect())
    }

    async fn publish(&self, hub: &HubName, body: ClusterBody) -> Result<(), BackplaneError> {
        self.backplane
            .publish(ClusterMessage {
                origin: self.backplane.node_id().clone(),
                hub: hub.clone(),
                body,
            })
            .await
    }

    /// Takes a new connection's place in the cluster before its 101: records
    /// it in the keyspace, where the backplane enforces the per-user limit
    /// atomically, cluster-wide, so connections still in their handshake count.
    /// Fails when the user is at the limit. Undone by [`Node::release`], or
    /// completed by [`Node::connected`]. The keyspace also counts the user's
    /// connections in the same step: the one it counts first is marked
    /// [`ConnectionHandle::is_first_of_user`] when it goes live, so that
    /// exactly one connection announces the user coming online.
    pub async fn reserve(
        &self,
        id: &ConnectionId,
        hub: &HubName,
        user: Option<&UserId>,
        transport: &str,
    ) -> Result<(), BackplaneError> {
        let record = ConnectionRecord {
            id: id.clone(),
            node: self.backplane.node_id().clone(),
            hub: hub.clone(),
            user: user.cloned(),
            transport: transport.to_owned(),
            since_ms: crate::core::auth::unix_now() * 1000,
        };
        let limit = self
            .hooks
            .max_connections_per_user(hub)
            .unwrap_or(self.config.max_connections_per_user);
        let limit = Some(limit).filter(|l| *l > 0);
        let registered = self.backplane.register(&record, limit).await?;
        if registered.user_connections == 1 {
            self.firsts.lock().insert(id.clone());
        }
        Ok(())
    }

    /// Gives back a reservation whose connection never completed its handshake.
    pub async fn release(&self, id: &ConnectionId) {
        self.firsts.lock().remove(id);
        if let Err(e) = self.backplane.unregister(id).await {
            tracing::warn!(connection = %id, error = %e, "could not remove connection from the keyspace");
        }
    }

    /// Makes a reserved connection live on this node and joins its groups:
    /// those of its user, and any it was added to during its handshake (read
    /// after it is in the registry, so that no later addition is missed),
    /// the hub's on-connect groups and those its token names.
    /// Then runs the hub's connection hook on a task of its own.
    pub async fn connected(self: &Arc<Self>, handle: &Arc<ConnectionHandle>) -> Result<(), BackplaneError> {
        if self.firsts.lock().remove(&handle.id) {
            handle.mark_first_of_user();
        }
        let first_of_user = self.registry.add(handle);
        if self.drain.began() {
            // Its handshake finished during the drain: it reconnects elsewhere.
            handle.close(shutdown_close());
        }
        if first_of_user {
            if let Some(user) = handle.user() {
                self.backplane
                    .subscribe(Channel::User(handle.hub.clone(), user.clone()))
                    .await?;
            }
        }
        for group in self.backplane.connection_groups(&handle.hub, &handle.id).await? {
            self.join_local(&group, handle).await?;
        }
        // The hub's own on-connect groups, then those its token names (an
        // Azure client token's `asrs.s.gp`), with the same checks as a join.
        let claimed = handle
            .principal
            .iter()
            .flat_map(|p| p.groups.iter())
            .map(|g| GroupName::from(g.as_str()));
        let groups: Vec<GroupName> = self
            .hooks
            .groups_on_connect(handle)
            .into_iter()
            .chain(claimed)
            .collect();
        for group in groups {
            match self.add_to_group(&handle.hub, &group, &handle.id).await {
                Ok(_) => {}
                Err(NodeError::Backplane(e)) => return Err(e),
                Err(e) => {
                    tracing::warn!(connection = %handle.id, group = %group, error = %e, "on-connect group not joined")
                }
            }
        }
        tokio::spawn(self.hooks.connected(self.clone(), handle.clone()));
        if crate::core::upstream::configured(&self.config) {
            let (node, handle) = (self.clone(), handle.clone());
            tokio::spawn(async move {
                crate::core::upstream::event(&node.config, &node.metrics, &handle, "connected").await
            });
        }
        Ok(())
    }

    /// Forgets a connection locally and cluster-wide; if it was its user's
    /// last one anywhere (the keyspace says so in the same atomic step as the
    /// removal, so one node only), runs the hub's offline hook.
    pub async fn disconnected(self: &Arc<Self>, id: &ConnectionId) {
        let Some(removed) = self.registry.remove(id) else {
            return;
        };
        let hub = &removed.handle.hub;
        let mut channels: Vec<Channel> = removed
            .emptied_groups
            .into_iter()
            .map(|g| Channel::Group(hub.clone(), g))
            .collect();
        if let (true, Some(user)) = (removed.last_of_user, removed.handle.user()) {
            channels.push(Channel::User(hub.clone(), user.clone()));
        }
        for channel in channels {
            if let Err(e) = self.backplane.unsubscribe(channel).await {
                tracing::warn!(error = %e, "unsubscribe failed");
            }
        }
        let gone = match self.backplane.unregister(id).await {
            Ok(gone) => gone,
            Err(e) => {
                tracing::warn!(connection = %id, error = %e, "could not remove connection from the keyspace");
                None
            }
        };
        self.hooks.disconnected(self.clone(), removed.handle.clone()).await;
        if crate::core::upstream::configured(&self.config) {
            let (node, handle) = (self.clone(), removed.handle.clone());
            tokio::spawn(async move {
                crate::core::upstream::event(&node.config, &node.metrics, &handle, "disconnected").await
            });
        }
        if let Some(user) = gone {
            self.hooks.user_offline(self.clone(), hub.clone(), user).await;
        }
    }

    /// Runs the hub's offline hook if `user` has no connection left in `hub`.
    async fn user_offline_if_gone(self: &Arc<Self>, hub: &HubName, user: &UserId) {
        match self.backplane.user_connections(hub, user).await {
            Ok(left) if left.is_empty() => {
                self.hooks.user_offline(self.clone(), hub.clone(), user.clone()).await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(user = %user, error = %e, "cannot tell whether a user went offline"),
        }
    }

    /// A node died and its connections were swept. The sweeping node runs the
    /// offline hooks, then the node-down hooks (once cluster-wide); every
    /// node logs it.
    pub async fn on_node_down(self: &Arc<Self>, dead: &NodeId, swept_by: &NodeId, removed: Vec<ConnectionRecord>) {
        tracing::warn!(node = %dead, connections = removed.len(), "a node died; its connections left the cluster");
        if swept_by != self.backplane.node_id() {
            return;
        }
        let mut users: Vec<(HubName, UserId)> = removed.into_iter().filter_map(|r| Some((r.hub, r.user?))).collect();
        users.sort();
        users.dedup();
        for (hub, user) in users {
            self.user_offline_if_gone(&hub, &user).await;
        }
        self.hooks.node_down(self.clone(), dead.clone()).await;
    }

    /// Joins a local connection to a group; returns once the group's channel
    /// is subscribed, by this call or one before it (on the channel's lane).
    async fn join_local(&self, group: &GroupName, handle: &Arc<ConnectionHandle>) -> Result<(), BackplaneError> {
        let first = self.registry.join(group, handle);
        let channel = Channel::Group(handle.hub.clone(), group.clone());
        let _turn = self.lanes.turn(channel.clone()).await;
        if first {
            self.backplane.subscribe(channel).await?;
        }
        Ok(())
    }

    async fn leave_local(&self, hub: &HubName, group: &GroupName, id: &ConnectionId) -> Result<(), BackplaneError> {
        if self.registry.leave(hub, group, id) {
            let channel = Channel::Group(hub.clone(), group.clone());
            let _turn = self.lanes.turn(channel.clone()).await;
            self.backplane.unsubscribe(channel).await?;
        }
        Ok(())
    }

    /// Refuses a group name that is empty or too long (counted in `/metrics`).
    fn check_group_name(&self, hub: &HubName, group: &GroupName) -> Result<(), NodeError> {
        let chars = group.as_str().chars().count();
        if (1..=MAX_GROUP_NAME_CHARS).contains(&chars) {
            return Ok(());
        }
        self.metrics.refused(hub.as_str(), Limit::GroupNameLength);
        Err(NodeError::GroupName)
    }

    /// Refuses a new group for a connection already in
    /// `max_groups_per_connection` groups (counted in `/metrics`). The count is
    /// the backplane's — the groups the connection was added to, the same on
    /// every node — not the groups it is in through its user.
    async fn check_group_room(&self, hub: &HubName, group: &GroupName, id: &ConnectionId) -> Result<(), NodeError> {
        let limit = self.config.max_groups_per_connection;
        if limit == 0 {
            return Ok(());
        }
        let groups = self.backplane.connection_groups(hub, id).await?;
        if groups.len() < limit || groups.contains(group) {
            return Ok(());
        }
        self.metrics.refused(hub.as_str(), Limit::GroupsPerConnection);
        Err(NodeError::TooManyGroups { id: id.clone(), limit })
    }

    /// Adds a connection (on any node) to a group; `false` if no such connection.
    pub async fn add_to_group(&self, hub: &HubName, group: &GroupName, id: &ConnectionId) -> Result<bool, NodeError> {
        self.check_group_name(hub, group)?;
        if let Some(handle) = self.registry.get(id).filter(|h| h.hub == *hub) {
            self.check_group_room(hub, group, id).await?;
            self.join_local(group, &handle).await?;
            self.backplane.join_group(hub, group, id).await?;
            return Ok(true);
        }
        match self.backplane.connection(id).await? {
            Some(record) if record.hub == *hub => {
                self.check_group_room(hub, group, id).await?;
                self.backplane.join_group(hub, group, id).await?;
                let target = Target::Connection(id.clone());
                let group = group.clone();
                let body = |ack| ClusterBody::AddToGroup { target, group, ack };
                self.command(hub, [record.node], body).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Removes a connection (on any node) from a group; `false` if it was not a member.
    pub async fn remove_from_group(
        &self,
        hub: &HubName,
        group: &GroupName,
        id: &ConnectionId,
    ) -> Result<bool, NodeError> {
        self.check_group_name(hub, group)?;
        let was_member = self.backplane.leave_group(hub, group, id).await?;
        if self.registry.get(id).is_some() {
            self.leave_local(hub, group, id).await?;
        } else if was_member {
            let Some(record) = self.backplane.connection(id).await? else {
                return Ok(was_member); // gone meanwhile: no node to tell
            };
            let target = Target::Connection(id.clone());
            let group = group.clone();
            let body = |ack| ClusterBody::RemoveFromGroup { target, group, ack };
            self.command(hub, [record.node], body).await?;
        }
        Ok(was_member)
    }

    /// Adds a user's connections on every node to a group, and (per `ttl`) its future ones.
    pub async fn add_user_to_group(
        &self,
        hub: &HubName,
        user: &UserId,
        group: &GroupName,
        ttl: MembershipTtl,
    ) -> Result<(), NodeError> {
        self.check_group_name(hub, group)?;
        self.backplane.add_user_to_group(hub, user, group, ttl).await?;
        for handle in self.registry.resolve(hub, &Target::User(user.clone()), &[]) {
            self.join_local(group, &handle).await?;
        }
        let target = Target::User(user.clone());
        let group = group.clone();
        let nodes = self.nodes_of_user(hub, user).await?;
        self.command(hub, nodes, |ack| ClusterBody::AddToGroup { target, group, ack })
            .await
    }

    /// Removes a user's connections on every node, and its future ones, from a
    /// group; `false` if the user was not a member.
    pub async fn remove_user_from_group(
        &self,
        hub: &HubName,
        user: &UserId,
        group: &GroupName,
    ) -> Result<bool, NodeError> {
        self.check_group_name(hub, group)?;
        let was_member = self.backplane.remove_user_from_group(hub, user, group).await?;
        for handle in self.registry.resolve(hub, &Target::User(user.clone()), &[]) {
            self.leave_local(hub, group, &handle.id).await?;
        }
        let target = Target::User(user.clone());
        let group = group.clone();
        let nodes = self.nodes_of_user(hub, user).await?;
        let body = |ack| ClusterBody::RemoveFromGroup { target, group, ack };
        self.command(hub, nodes, body).await?;
        Ok(was_member)
    }

    /// Removes a user from every group of a hub, on every node.
    pub async fn remove_user_from_all_groups(&self, hub: &HubName, user: &UserId) -> Result<(), NodeError> {
        let groups = self.backplane.remove_user_from_all_groups(hub, user).await?;
        let nodes = self.nodes_of_user(hub, user).await?;
        for group in groups {
            for handle in self.registry.resolve(hub, &Target::User(user.clone()), &[]) {
                self.leave_local(hub, &group, &handle.id).await?;
            }
            let target = Target::User(user.clone());
            let body = |ack| ClusterBody::RemoveFromGroup { target, group, ack };
            self.command(hub, nodes.clone(), body).await?;
        }
        Ok(())
    }

    /// Removes a connection (on any node) from every group of its hub.
    pub async fn remove_from_all_groups(&self, hub: &HubName, id: &ConnectionId) -> Result<(), NodeError> {
        for group in self.backplane.connection_groups(hub, id).await? {
            self.remove_from_group(hub, &group, id).await?;
        }
        Ok(())
    }

    /// Closes the target's connections on every node, except some.
    pub async fn close(
        &self,
        hub: &HubName,
        target: Target,
        except: Vec<ConnectionId>,
        reason: Option<String>,
    ) -> Result<(), NodeError> {
        if let Target::Group(group) = &target {
            self.check_group_name(hub, group)?;
        }
        for handle in self.registry.resolve(hub, &target, &except) {
            handle.close(close_request(reason.clone()));
        }
        let nodes = match &target {
            Target::Connection(id) if self.registry.get(id).is_some() => return Ok(()),
            Target::Connection(id) => match self.backplane.connection(id).await? {
                Some(record) if record.hub == *hub => vec![record.node],
                _ => return Ok(()), // no such connection: nobody to close
            },
            // Every node of the hub may hold some: not awaited.
            _ => Vec::new(),
        };
        let body = |ack| ClusterBody::Close {
            target,
            except,
            reason,
            ack,
        };
        self.command(hub, nodes, body).await
    }

    /// The connections of a group, cluster-wide.
    pub async fn group_connections(
        &self,
        hub: &HubName,
        group: &GroupName,
    ) -> Result<Vec<ConnectionRecord>, NodeError> {
        self.check_group_name(hub, group)?;
        Ok(self.backplane.group_connections(hub, group).await?)
    }

    /// The record of a connection anywhere in the cluster.
    pub async fn connection_record(&self, id: &ConnectionId) -> Result<Option<ConnectionRecord>, NodeError> {
        Ok(self.backplane.connection(id).await?)
    }

    /// The connections of a user in a hub, cluster-wide.
    pub async fn user_connections(&self, hub: &HubName, user: &UserId) -> Result<Vec<ConnectionRecord>, NodeError> {
        Ok(self.backplane.user_connections(hub, user).await?)
    }

    /// Every live node with its number of connections to a hub, by node id.
    pub async fn node_connection_counts(&self, hub: &HubName) -> Result<Vec<(NodeId, usize)>, NodeError> {
        Ok(self.backplane.node_connection_counts(hub).await?)
    }

    /// The number of connections to a hub, cluster-wide.
    pub async fn hub_connection_count(&self, hub: &HubName) -> Result<usize, NodeError> {
        Ok(self.backplane.hub_connection_count(hub).await?)
    }

    /// The backplane itself, for integration tests that play another node's
    /// part in the keyspace; the node's own code outside the core goes
    /// through the methods above.
    #[doc(hidden)]
    pub fn backplane_for_tests(&self) -> &AnyBackplane {
        &self.backplane
    }

    /// This node's id in the cluster.
    pub fn id(&self) -> &NodeId {
        self.backplane.node_id()
    }

    /// Whether cluster operations work (for `/readyz`).
    pub fn cluster_ready(&self) -> bool {
        self.backplane.is_ready()
    }

    /// The metrics in Prometheus' text format, with the backplane's own.
    pub fn render_metrics(&self) -> String {
        self.metrics.render(&self.backplane)
    }

    /// Leaves the cluster (the last step of graceful shutdown): what is left
    /// of this node is removed from the keyspace.
    pub async fn leave_cluster(&self) {
        if let Err(e) = self.backplane.shutdown().await {
            tracing::warn!(error = %e, "could not leave the cluster cleanly; the others will sweep this node");
        }
    }

    /// Whether a user is a member of a group (for its future connections too).
    pub async fn user_in_group(&self, hub: &HubName, user: &UserId, group: &GroupName) -> Result<bool, NodeError> {
        self.check_group_name(hub, group)?;
        Ok(self.backplane.user_in_group(hub, user, group).await?)
    }

    /// Begins graceful shutdown: `/readyz` answers 503 and new connections
    /// are refused ([`Drain::hold`] gives nothing any more). The connections
    /// already here are asked to leave by [`Node::close_for_shutdown`]; one
    /// whose handshake completes after this is told at once by
    /// [`Node::connected`]: the drain begins before the registry is read, and
    /// a connection checks the drain after entering the registry, so every
    /// connection is told once either way.
    pub fn begin_shutdown(&self) {
        self.drain.begin();
    }

    /// Asks every connection to reconnect elsewhere (Close with
    /// `allowReconnect: true`) in batches of `shutdown_close_batch`: the next
    /// batch is asked once the previous one has left (its cluster cleanup
    /// done) or its share of the time left has passed, so that this node's
    /// Redis calls and the clients' reconnects to the other nodes come in
    /// bounded waves. Returns whether every connection left before `deadline`.
    /// Call after [`Node::begin_shutdown`].
    pub async fn close_for_shutdown(&self, deadline: tokio::time::Instant) -> bool {
        let all = self.registry.all();
        let batch = match self.config.shutdown_close_batch {
            0 => all.len().max(1),
            n => n,
        };
        // Holds without a registry entry: handshakes in progress, each told by `connected`.
        let handshaking = self.drain.live().saturating_sub(all.len());
        let mut unasked = all.len();
        let mut batches_left = all.len().div_ceil(batch);
        for chunk in all.chunks(batch) {
            for handle in chunk {
                handle.close(shutdown_close());
            }
            unasked -= chunk.len();
            tracing::info!(asked = chunk.len(), unasked, "shutdown: a batch asked to reconnect");
            let now = tokio::time::Instant::now();
            let share = deadline.saturating_duration_since(now) / u32::try_from(batches_left).unwrap_or(u32::MAX);
            batches_left -= 1;
            if !self.drain.wait_until(unasked + handshaking, now + share).await {
                tracing::debug!(
                    left = self.drain.live(),
                    "shutdown batch not gone in its share of the drain time"
                );
            }
        }
        self.drain.wait(deadline).await
    }
}

/// The close every client gets when its node shuts down.
fn shutdown_close() -> CloseRequest {
    CloseRequest {
        error: Some(crate::core::connection::SHUTDOWN_ERROR.into()),
        allow_reconnect: true,
        notify_client: true,
    }
}

/// The close a hub or the REST API asks for: not to reconnect.
pub(crate) fn close_request(reason: Option<String>) -> CloseRequest {
    CloseRequest {
        error: reason,
        allow_reconnect: false,
        notify_client: true,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::core::hub::HubSet;
    use crate::hubs::diagnostics::DiagnosticsHub;
    use hubwire_backplane::LocalBackplane;
    use hubwire_protocol::Protocol;

    fn node(max_groups: usize) -> Arc<Node> {
        let config = Config {
            jwt_secret: Some("s".into()),
            max_groups_per_connection: max_groups,
            ..Config::default()
        };
        let auth = Authenticator::from_config(&config).unwrap();
        let (backplane, _inbox) = LocalBackplane::single(NodeId::from("n1"));
        let hubs = HubSet::default().with(Arc::new(DiagnosticsHub));
        Arc::new(hubs.serve(config, auth, AnyBackplane::Local(backplane)))
    }

    async fn connection(node: &Arc<Node>, id: &str) -> Arc<ConnectionHandle> {
        let metrics = node.metrics.hub("diagnostics");
        let (handle, _queue) = ConnectionHandle::new(
            id.into(),
            "diagnostics".into(),
            None,
            Protocol::Json,
            "WebSockets",
            crate::core::connection::QueueLimits {
                records: 8,
                bytes: 1 << 20,
            },
            metrics,
        );
        node.reserve(&handle.id, &handle.hub, None, "WebSockets").await.unwrap();
        node.connected(&handle).await.unwrap();
        handle
    }

    fn refusals(node: &Node, limit: &str) -> String {
        let text = node.metrics.render(&node.backplane);
        let series = format!("hubwire_limit_refusals_total{{hub=\"diagnostics\",limit=\"{limit}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .unwrap_or("0")
            .to_owned()
    }

    #[tokio::test]
    async fn every_path_that_names_a_group_checks_its_length() {
        let node = node(128);
        let hub = HubName::from("diagnostics");
        let c = connection(&node, "c1").await;
        let user = UserId::from("u");
        for name in ["".to_owned(), "g".repeat(MAX_GROUP_NAME_CHARS + 1)] {
            let g = GroupName::from(name);
            let refused = |r: Result<(), NodeError>| matches!(r, Err(NodeError::GroupName));
            assert!(refused(node.add_to_group(&hub, &g, &c.id).await.map(drop)));
            assert!(refused(node.remove_from_group(&hub, &g, &c.id).await.map(drop)));
            assert!(refused(
                node.add_user_to_group(&hub, &user, &g, MembershipTtl::Forever).await
            ));
            assert!(refused(node.remove_user_from_group(&hub, &user, &g).await.map(drop)));
            assert!(refused(
                node.send(
                    &hub,
                    Target::Group(g.clone()),
                    vec![],
                    ("m", vec![]),
                    SendOrder::LocalFirst
                )
                .await
            ));
            assert!(refused(node.close(&hub, Target::Group(g.clone()), vec![], None).await));
            assert!(refused(node.group_connections(&hub, &g).await.map(drop)));
            assert!(refused(node.user_in_group(&hub, &user, &g).await.map(drop)));
        }
        assert_eq!(refusals(&node, "group_name_length"), "16");
        let longest = GroupName::from("g".repeat(MAX_GROUP_NAME_CHARS));
        assert!(node.add_to_group(&hub, &longest, &c.id).await.unwrap());
        let members = node.registry.resolve(&hub, &Target::Group(longest), &[]);
        assert_eq!(
            members.iter().map(|h| h.id.clone()).collect::<Vec<_>>(),
            vec![c.id.clone()]
        );
    }

    #[tokio::test]
    async fn a_connection_joins_at_most_max_groups_per_connection() {
        let node = node(3);
        let hub = HubName::from("diagnostics");
        let c = connection(&node, "c1").await;
        for g in ["a", "b", "c"] {
            assert!(node.add_to_group(&hub, &g.into(), &c.id).await.unwrap());
        }
        match node.add_to_group(&hub, &"d".into(), &c.id).await {
            Err(NodeError::TooManyGroups { limit: 3, .. }) => {}
            other => panic!("expected the group limit, got {other:?}"),
        }
        assert!(
            node.add_to_group(&hub, &"a".into(), &c.id).await.unwrap(),
            "a group it is in"
        );
        assert_eq!(refusals(&node, "groups_per_connection"), "1");
        node.remove_from_group(&hub, &"a".into(), &c.id).await.unwrap();
        assert!(node.add_to_group(&hub, &"d".into(), &c.id).await.unwrap(), "room again");
        let other = connection(&node, "c2").await;
        assert!(
            node.add_to_group(&hub, &"e".into(), &other.id).await.unwrap(),
            "the limit is per connection"
        );
    }
}
