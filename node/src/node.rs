//! The node: everything a connection, a hub or the REST API shares.
//!
//! [`Node`] is created once in `main`, before the HTTP server starts, and handed
//! to every worker behind an `Arc`. It owns the one send API of the node
//! ([`Node::send`]: a target in a hub, an `except` list, a method and its
//! arguments) and the group / close operations; each delivers to this node's own
//! connections through the [`Registry`] and to the rest of the cluster through
//! the backplane with a single publish.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::admission::Admission;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::connection::{CloseRequest, ConnectionHandle};
use crate::hubs::HubSet;
use crate::metrics::Metrics;
use crate::negotiate::Negotiations;
use crate::outbound::OutboundMessage;
use crate::registry::Registry;
use hubwire_backplane::{
    AnyBackplane, Backplane, BackplaneError, Channel, ClusterBody, ClusterMessage, ConnectionId, ConnectionRecord,
    GroupName, HubName, MembershipTtl, NodeId, Target, UserId,
};
use hubwire_protocol::Value;

/// Shared state of one node.
pub struct Node {
    /// The configuration it was started with.
    pub config: Config,
    /// Verifies user tokens.
    pub auth: Authenticator,
    /// Cross-node delivery and the shared keyspace.
    pub backplane: AnyBackplane,
    /// This node's connections.
    pub registry: Registry,
    /// The hubs served.
    pub hubs: HubSet,
    /// Negotiated connections waiting for their transport.
    pub negotiations: Negotiations,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// When the node started.
    pub started: Instant,
    /// Caps on WebSocket upgrades, checked before the 101.
    pub admission: Admission,
    shutting_down: AtomicBool,
    /// Connection departures whose cluster cleanup (unsubscribe, unregister,
    /// offline hook) has not finished; shutdown waits for them.
    departing: AtomicUsize,
}

impl Node {
    /// A node with its parts; call [`Node::start`] before serving.
    pub fn new(config: Config, auth: Authenticator, backplane: AnyBackplane, hubs: HubSet) -> Self {
        let metrics = Metrics::new();
        Self {
            admission: Admission::new(&config, &metrics),
            config,
            auth,
            backplane,
            registry: Registry::default(),
            hubs,
            negotiations: Negotiations::default(),
            metrics,
            departing: AtomicUsize::new(0),
            started: Instant::now(),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Subscribes the channels every node listens to: its own, and `All` of each hub.
    pub async fn start(&self) -> Result<(), BackplaneError> {
        self.backplane
            .subscribe(Channel::Node(self.backplane.node_id().clone()))
            .await?;
        for hub in self.hubs.names() {
            self.backplane.subscribe(Channel::All(HubName::from(hub))).await?;
        }
        Ok(())
    }

    /// Whether graceful shutdown has begun (new connections are refused).
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Sends `method(arguments)` to `target` in `hub`, except some connections:
    /// to local recipients directly, to the rest of the cluster in one publish.
    pub async fn send(
        &self,
        hub: &HubName,
        target: Target,
        except: Vec<ConnectionId>,
        method: &str,
        arguments: Vec<Value>,
    ) -> Result<(), BackplaneError> {
        let message = OutboundMessage::invocation(method, arguments);
        self.deliver_local(hub, &target, &except, &message);
        if let Target::Connection(id) = &target {
            if self.registry.get(id).is_some() {
                return Ok(());
            }
        }
        self.publish(
            hub,
            ClusterBody::Deliver {
                target,
                except,
                payload: message.json().clone(),
            },
        )
        .await
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
    /// completed by [`Node::connected`].
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
            since_ms: crate::auth::unix_now() * 1000,
        };
        let limit = Some(self.config.max_connections_per_user).filter(|l| *l > 0);
        self.backplane.register(&record, limit).await.map(drop)
    }

    /// Gives back a reservation whose connection never completed its handshake.
    pub async fn release(&self, id: &ConnectionId) {
        if let Err(e) = self.backplane.unregister(id).await {
            tracing::warn!(connection = %id, error = %e, "could not remove connection from the keyspace");
        }
    }

    /// Makes a reserved connection live on this node and joins its groups:
    /// those of its user, and any it was added to during its handshake (read
    /// after it is in the registry, so that no later addition is missed).
    pub async fn connected(&self, handle: &Arc<ConnectionHandle>) -> Result<(), BackplaneError> {
        if self.registry.add(handle) {
            if let Some(user) = handle.user() {
                self.backplane
                    .subscribe(Channel::User(handle.hub.clone(), user.clone()))
                    .await?;
            }
        }
        for group in self.backplane.connection_groups(&handle.hub, &handle.id).await? {
            self.join_local(&group, handle).await?;
        }
        Ok(())
    }

    /// Forgets a connection locally and cluster-wide; if it was its user's
    /// last one anywhere, runs the hub's offline hook.
    pub async fn disconnected(self: &Arc<Self>, id: &ConnectionId) {
        // Counted before the registry forgets it, so that shutdown never sees
        // "no connections and nothing departing" while its keyspace entry lives.
        let _departing = Departing::new(&self.departing);
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
        if let Err(e) = self.backplane.unregister(id).await {
            tracing::warn!(connection = %id, error = %e, "could not remove connection from the keyspace");
        }
        if let (true, Some(user)) = (removed.last_of_user, removed.handle.user()) {
            self.user_offline_if_gone(hub, user).await;
        }
    }

    /// Runs the hub's offline hook if `user` has no connection left in `hub`.
    async fn user_offline_if_gone(self: &Arc<Self>, hub: &HubName, user: &UserId) {
        match self.backplane.user_connections(hub, user).await {
            Ok(left) if left.is_empty() => {
                if let Some(h) = self.hubs.get(hub.as_str()) {
                    h.on_user_offline(self.clone(), hub.clone(), user.clone()).await;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(user = %user, error = %e, "cannot tell whether a user went offline"),
        }
    }

    /// A node died and its connections were swept. The sweeping node runs the
    /// offline hooks (once cluster-wide); every node logs it.
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
    }

    async fn join_local(&self, group: &GroupName, handle: &Arc<ConnectionHandle>) -> Result<(), BackplaneError> {
        if self.registry.join(group, handle) {
            self.backplane
                .subscribe(Channel::Group(handle.hub.clone(), group.clone()))
                .await?;
        }
        Ok(())
    }

    async fn leave_local(&self, hub: &HubName, group: &GroupName, id: &ConnectionId) -> Result<(), BackplaneError> {
        if self.registry.leave(hub, group, id) {
            self.backplane
                .unsubscribe(Channel::Group(hub.clone(), group.clone()))
                .await?;
        }
        Ok(())
    }

    /// Adds a connection (on any node) to a group; `false` if no such connection.
    pub async fn add_to_group(
        &self,
        hub: &HubName,
        group: &GroupName,
        id: &ConnectionId,
    ) -> Result<bool, BackplaneError> {
        if let Some(handle) = self.registry.get(id).filter(|h| h.hub == *hub) {
            self.join_local(group, &handle).await?;
            self.backplane.join_group(hub, group, id).await?;
            return Ok(true);
        }
        match self.backplane.connection(id).await? {
            Some(record) if record.hub == *hub => {
                self.backplane.join_group(hub, group, id).await?;
                let target = Target::Connection(id.clone());
                let group = group.clone();
                self.publish(hub, ClusterBody::AddToGroup { target, group }).await?;
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
    ) -> Result<bool, BackplaneError> {
        let was_member = self.backplane.leave_group(hub, group, id).await?;
        if self.registry.get(id).is_some() {
            self.leave_local(hub, group, id).await?;
        } else if was_member {
            let target = Target::Connection(id.clone());
            let group = group.clone();
            self.publish(hub, ClusterBody::RemoveFromGroup { target, group })
                .await?;
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
    ) -> Result<(), BackplaneError> {
        self.backplane.add_user_to_group(hub, user, group, ttl).await?;
        for handle in self.registry.resolve(hub, &Target::User(user.clone()), &[]) {
            self.join_local(group, &handle).await?;
        }
        let target = Target::User(user.clone());
        let group = group.clone();
        self.publish(hub, ClusterBody::AddToGroup { target, group }).await
    }

    /// Removes a user's connections on every node, and its future ones, from a
    /// group; `false` if the user was not a member.
    pub async fn remove_user_from_group(
        &self,
        hub: &HubName,
        user: &UserId,
        group: &GroupName,
    ) -> Result<bool, BackplaneError> {
        let was_member = self.backplane.remove_user_from_group(hub, user, group).await?;
        for handle in self.registry.resolve(hub, &Target::User(user.clone()), &[]) {
            self.leave_local(hub, group, &handle.id).await?;
        }
        let target = Target::User(user.clone());
        let group = group.clone();
        self.publish(hub, ClusterBody::RemoveFromGroup { target, group })
            .await?;
        Ok(was_member)
    }

    /// Removes a user from every group of a hub, on every node.
    pub async fn remove_user_from_all_groups(&self, hub: &HubName, user: &UserId) -> Result<(), BackplaneError> {
        for group in self.backplane.remove_user_from_all_groups(hub, user).await? {
            for handle in self.registry.resolve(hub, &Target::User(user.clone()), &[]) {
                self.leave_local(hub, &group, &handle.id).await?;
            }
            let target = Target::User(user.clone());
            self.publish(hub, ClusterBody::RemoveFromGroup { target, group })
                .await?;
        }
        Ok(())
    }

    /// Removes a connection (on any node) from every group of its hub.
    pub async fn remove_from_all_groups(&self, hub: &HubName, id: &ConnectionId) -> Result<(), BackplaneError> {
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
    ) -> Result<(), BackplaneError> {
        for handle in self.registry.resolve(hub, &target, &except) {
            handle.close(close_request(reason.clone()));
        }
        self.publish(hub, ClusterBody::Close { target, except, reason }).await
    }

    /// Acts on a message another node published.
    pub async fn on_cluster_message(&self, message: ClusterMessage) {
        let hub = &message.hub;
        let result = match message.body {
            ClusterBody::Deliver {
                target,
                except,
                payload,
            } => {
                self.deliver_local(hub, &target, &except, &OutboundMessage::from_json_record(payload));
                Ok(())
            }
            ClusterBody::AddToGroup { target, group } => {
                let mut result = Ok(());
                for handle in self.registry.resolve(hub, &target, &[]) {
                    result = result.and(self.join_local(&group, &handle).await);
                }
                result
            }
            ClusterBody::RemoveFromGroup { target, group } => {
                let mut result = Ok(());
                for handle in self.registry.resolve(hub, &target, &[]) {
                    result = result.and(self.leave_local(hub, &group, &handle.id).await);
                }
                result
            }
            ClusterBody::Close { target, except, reason } => {
                for handle in self.registry.resolve(hub, &target, &except) {
                    handle.close(close_request(reason.clone()));
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "cluster message only partly applied");
        }
    }

    /// True when no connection is held and every departure's cluster cleanup
    /// has finished: what graceful shutdown waits for before leaving the cluster.
    pub fn is_drained(&self) -> bool {
        self.registry.is_empty() && self.departing.load(Ordering::Acquire) == 0
    }

    /// Begins graceful shutdown: refuse new connections, ask every client to
    /// reconnect elsewhere (Close with `allowReconnect: true`).
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
        for handle in self.registry.all() {
            handle.close(CloseRequest {
                error: Some("Server is shutting down.".into()),
                allow_reconnect: true,
                notify_client: true,
            });
        }
    }
}

/// Counts one departure in progress while alive.
struct Departing<'a>(&'a AtomicUsize);

impl<'a> Departing<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter)
    }
}

impl Drop for Departing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn close_request(reason: Option<String>) -> CloseRequest {
    CloseRequest {
        error: reason,
        allow_reconnect: false,
        notify_client: true,
    }
}
