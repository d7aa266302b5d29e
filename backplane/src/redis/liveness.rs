//! Heartbeats, dead-node sweeps, and writing this node back after an outage.
//!
//! Each node refreshes its score in `<p>:{nodes}:live` every heartbeat
//! interval (Redis' clock, so node clocks do not matter) and, on the same beat,
//! looks for nodes whose score is older than the dead-node timeout. A sweep:
//!
//! 1. takes `<p>:sweep:<n>` (`SET NX PX`): one sweeper at a time;
//! 2. claims the node (`claim_node.lua`: moves it to `<p>:{nodes}:dead` if
//!    still stale), so exactly one sweep acts even if locks expire;
//! 3. removes its connections hub by hub (`sweep_hub.lua`), drops the claim,
//!    and tells every node (itself included) which connections went.
//!
//! The same beat renews the node's record leases (see `names`), one per hub it
//! holds connections in; records of a node nobody sweeps stop counting when
//! its leases expire.
//!
//! A sweep that dies half-way leaves its claim in the dead set; after a lock
//! TTL another node takes it over. A node that was swept while alive (it only
//! lost Redis for a while) learns it from its next heartbeat, waits for the
//! sweep lock to go, and writes its connections back: a resync. The same
//! resync runs after every reconnection and after any failed keyspace write.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::{ClientLike, EventInterface, KeysInterface, SetsInterface, SortedSetsInterface, Value};
use fred::types::{Expiration, SetOptions};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, MissedTickBehavior};

use super::keyspace::record;
use super::scripts::{array, int, opt_text, text, texts};
use super::stats::Counters;
use super::{codec, Shared};
use crate::message::{BackplaneEvent, ClusterBody, ClusterMessage, Target};
use crate::names::{ConnectionId, GroupName, HubName, NodeId};
use crate::{BackplaneError, ConnectionRecord};

impl Shared {
    /// One heartbeat; `true` if Redis did not know this node (it was swept, or
    /// Redis lost its data), which calls for a resync.
    pub(super) async fn heartbeat(&self) -> Result<bool, BackplaneError> {
        let keys = vec![self.names.live_nodes(), self.names.dead_nodes()];
        let reply = self
            .script(&self.scripts.heartbeat, keys, vec![self.config.node.to_string()])
            .await?;
        Ok(int(self.scripts.heartbeat.name(), reply)? == 1)
    }

    /// Renews this node's lease in every hub it holds connections in: one
    /// `PEXPIRE` per hub, pipelined; `true` if a lease had expired (others
    /// may have removed the node's records there), which calls for a resync.
    async fn renew_leases(&self) -> Result<bool, BackplaneError> {
        let hubs = self.memory.lock().hubs();
        if hubs.is_empty() {
            return Ok(false);
        }
        let ttl = i64::try_from(self.config.record_lease_ttl().as_millis()).unwrap_or(i64::MAX);
        let pipeline = self.client.pipeline();
        for hub in &hubs {
            let key = self.names.node_lease(hub, &self.config.node);
            // A pipelined command only queues here; its reply comes from `all`.
            self.call("PEXPIRE lease", pipeline.pexpire::<(), _>(key, ttl, None))
                .await?;
        }
        let renewed: Vec<i64> = self.call("PEXPIRE leases", pipeline.all()).await?;
        Ok(renewed.contains(&0))
    }

    fn millis(duration: Duration) -> String {
        duration.as_millis().to_string()
    }

    async fn sweep_dead_nodes(&self) -> Result<(), BackplaneError> {
        let keys = vec![self.names.live_nodes(), self.names.dead_nodes()];
        let args = vec![
            Self::millis(self.config.dead_node_timeout),
            Self::millis(self.config.sweep_lock_ttl()),
        ];
        let reply = self.script(&self.scripts.stale_nodes, keys, args).await?;
        for node in texts(self.scripts.stale_nodes.name(), reply)? {
            let node = NodeId::from(node);
            if node != self.config.node {
                self.sweep(&node).await?;
            }
        }
        Ok(())
    }

    async fn sweep(&self, node: &NodeId) -> Result<(), BackplaneError> {
        let lock = self.names.sweep_lock(node);
        let me = self.config.node.to_string();
        let ttl = i64::try_from(self.config.sweep_lock_ttl().as_millis()).unwrap_or(i64::MAX);
        let set = self.client.set::<Option<String>, _, _>(
            &lock,
            me.as_str(),
            Some(Expiration::PX(ttl)),
            Some(SetOptions::NX),
            false,
        );
        if self.call("SET NX sweep lock", set).await?.is_none() {
            return Ok(()); // another node is sweeping it
        }
        let swept = self.sweep_locked(node).await;
        let unlocked = self.script(&self.scripts.unlock, vec![lock], vec![me]).await;
        swept.and(unlocked.map(|_| ()))
    }

    async fn sweep_locked(&self, node: &NodeId) -> Result<(), BackplaneError> {
        let keys = vec![self.names.live_nodes(), self.names.dead_nodes()];
        let timeout = Self::millis(self.config.dead_node_timeout);
        let args = vec![node.to_string(), timeout, Self::millis(self.config.sweep_lock_ttl())];
        let claimed = self.script(&self.scripts.claim_node, keys, args).await?;
        if int(self.scripts.claim_node.name(), claimed)? != 1 {
            return Ok(()); // it came back, or it was swept already
        }
        let removed = self.sweep_connections(node).await?;
        let dead = self.client.zrem::<(), _, _>(self.names.dead_nodes(), node.as_str());
        self.call("ZREM dead", dead).await?;
        Counters::bump(&self.counters.nodes_swept);
        tracing::warn!(node = %node, connections = removed.len(), "swept a dead node from the keyspace");
        self.announce_node_down(node, removed).await;
        Ok(())
    }

    /// Removes every connection `node` holds in the keyspace, hub by hub.
    async fn sweep_connections(&self, node: &NodeId) -> Result<Vec<ConnectionRecord>, BackplaneError> {
        let hubs: Vec<String> = self
            .call("SMEMBERS hubs", self.client.smembers(self.names.hubs()))
            .await?;
        let what = self.scripts.sweep_hub.name();
        let mut removed = Vec::new();
        for hub in hubs.into_iter().map(HubName::from) {
            let keys = vec![self.names.node_conns(&hub, node)];
            let reply = self
                .script(&self.scripts.sweep_hub, keys, vec![self.names.hub_base(&hub)])
                .await?;
            let mut values = array(what, reply)?.into_iter();
            while let Some(id) = values.next() {
                let mut next = || opt_text(what, values.next().unwrap_or(Value::Null));
                let (user, transport, since) = (next()?, next()?, next()?);
                let id = ConnectionId::from(text(what, id)?);
                removed.push(record(id, node.to_string(), hub.to_string(), user, transport, since));
            }
        }
        Ok(removed)
    }

    /// Tells this node and every other that `node`'s connections are gone.
    async fn announce_node_down(&self, node: &NodeId, removed: Vec<ConnectionRecord>) {
        let frame = codec::encode_node_down(&self.config.node, node, &removed);
        self.to_inbox(BackplaneEvent::NodeDown {
            node: node.clone(),
            swept_by: self.config.node.clone(),
            removed,
        })
        .await;
        if let Err(e) = self.send_frame(self.names.events(), frame).await {
            tracing::warn!(node = %node, error = %e, "could not tell the other nodes about a dead node");
        }
    }

    /// At start: connections a previous process with this node id left behind
    /// (it died and came back before anyone swept it) are swept now.
    pub(super) async fn sweep_previous_run(&self) -> Result<(), BackplaneError> {
        let node = self.config.node.clone();
        let removed = self.sweep_connections(&node).await?;
        if !removed.is_empty() {
            tracing::warn!(
                connections = removed.len(),
                "removed connections a previous run of this node left behind"
            );
            self.announce_node_down(&node, removed).await;
        }
        Ok(())
    }

    /// Writes this node back into the keyspace: subscriptions, connections
    /// (from memory) and their groups (from the node's registry); removes what
    /// it should have removed.
    async fn resync(&self) -> Result<(), BackplaneError> {
        // Back in the live set first, so that the next heartbeat does not
        // find the node unknown and ask for this resync again.
        self.heartbeat().await?;
        self.heartbeat_ok.store(true, Ordering::Relaxed);
        self.wait_for_own_sweep().await?;
        self.resubscribe_all().await?;
        self.known_hubs.lock().clear();
        let snapshot = self.memory.lock().begin_resync();
        let membership = self.membership.get().map(|m| m.snapshot()).unwrap_or_default();
        let mut removed = Vec::new();
        let written = self.write_back(&snapshot, &membership.groups, &mut removed).await;
        let settled = self.memory.lock().end_resync(snapshot.generation, &removed)
            && self
                .membership
                .get()
                .is_none_or(|m| m.generation() == membership.generation);
        written?;
        if !settled {
            // Connections or groups moved meanwhile: one more pass makes sure it is all in.
            self.needs_resync.store(true, Ordering::Relaxed);
            self.wake.notify_one();
        }
        Counters::bump(&self.counters.resyncs);
        tracing::warn!(
            connections = snapshot.owned.len(),
            removed = removed.len(),
            "wrote this node back into the keyspace"
        );
        Ok(())
    }

    async fn write_back(
        &self,
        snapshot: &super::memory::Snapshot,
        groups_of: &HashMap<ConnectionId, Vec<GroupName>>,
        removed: &mut Vec<ConnectionId>,
    ) -> Result<(), BackplaneError> {
        for (hub, id) in &snapshot.stale {
            self.drop_record(hub, id).await?;
            removed.push(id.clone());
        }
        // The hubs first: a sweep of this node finds its connections through them.
        let hubs: Vec<String> = snapshot.owned.iter().map(|r| r.hub.to_string()).collect();
        if !hubs.is_empty() {
            self.call("SADD hubs", self.client.sadd::<(), _, _>(self.names.hubs(), hubs))
                .await?;
        }
        for record in &snapshot.owned {
            let groups = groups_of.get(&record.id).map(Vec::as_slice).unwrap_or_default();
            let persistent = self.write_record(record, None, Some(groups)).await?.groups;
            for group in persistent.into_iter().filter(|g| !groups.contains(g)) {
                // The user was added to this group while the node could not
                // hear it: the node joins the connection to it now.
                let body = ClusterBody::AddToGroup {
                    target: Target::Connection(record.id.clone()),
                    group,
                    ack: None,
                };
                let origin = self.config.node.clone();
                let msg = ClusterMessage {
                    origin,
                    hub: record.hub.clone(),
                    body,
                };
                self.to_inbox(BackplaneEvent::Message(msg)).await;
            }
        }
        Ok(())
    }

    /// Waits while another node sweeps this one (bounded by the lock TTL).
    async fn wait_for_own_sweep(&self) -> Result<(), BackplaneError> {
        let lock = self.names.sweep_lock(&self.config.node);
        let deadline = Instant::now() + self.config.sweep_lock_ttl() + self.config.command_timeout;
        let pause = (self.config.heartbeat_interval / 4).max(Duration::from_millis(20));
        while self
            .call("EXISTS sweep lock", self.client.exists::<u64, _>(&lock))
            .await?
            > 0
            && Instant::now() < deadline
        {
            tokio::time::sleep(pause).await;
        }
        Ok(())
    }

    /// Leaves the cluster: this node's connections, then its heartbeat.
    pub(super) async fn leave(&self) -> Result<(), BackplaneError> {
        let ids = self.memory.lock().ids();
        for id in ids {
            self.unregister(&id).await?;
        }
        let node = self.config.node.as_str();
        self.call("ZREM live", self.client.zrem::<(), _, _>(self.names.live_nodes(), node))
            .await
    }
}

/// The heartbeat task.
pub(super) async fn heartbeats(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.heartbeat_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let beat = async {
            let unknown = shared.heartbeat().await?;
            Ok::<_, BackplaneError>(shared.renew_leases().await? || unknown)
        };
        match beat.await {
            Ok(unknown) => {
                if !shared.heartbeat_ok.swap(true, Ordering::Relaxed) {
                    tracing::warn!("Redis heartbeat works again");
                }
                if unknown {
                    tracing::warn!(
                        "Redis did not know this node (swept, its leases expired, or its data was lost): writing it back"
                    );
                    shared.needs_resync.store(true, Ordering::Relaxed);
                    shared.wake.notify_one();
                }
            }
            Err(e) => {
                if shared.heartbeat_ok.swap(false, Ordering::Relaxed) {
                    tracing::error!(error = %e, "Redis heartbeat failed: cluster operations are unavailable");
                }
            }
        }
    }
}

/// The maintenance task: resyncs when needed, sweeps dead nodes on every beat.
pub(super) async fn maintenance(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.heartbeat_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let beat = tokio::select! {
            _ = tick.tick() => true,
            () = shared.wake.notified() => false,
        };
        if shared.client.is_connected() && shared.needs_resync.load(Ordering::Relaxed) {
            // `resyncing` before clearing `needs_resync`: readiness never
            // sees both false while the write-back is under way.
            shared.resyncing.store(true, Ordering::Relaxed);
            shared.needs_resync.store(false, Ordering::Relaxed);
            if let Err(e) = shared.resync().await {
                shared.needs_resync.store(true, Ordering::Relaxed);
                tracing::warn!(error = %e, "could not write this node back into the keyspace yet");
            }
            shared.resyncing.store(false, Ordering::Relaxed);
        }
        if beat && shared.heartbeat_ok.load(Ordering::Relaxed) {
            if let Err(e) = shared.sweep_dead_nodes().await {
                tracing::debug!(error = %e, "dead-node sweep failed; the next beat retries");
            }
        }
    }
}

/// Watches both Redis connections: logs a loss once (further failed attempts
/// at debug level), and after a reconnection asks for a resync (which also
/// subscribes every channel again).
pub(super) async fn watch_connections(shared: Arc<Shared>) {
    let mut commands_up = shared.client.reconnect_rx();
    let mut pubsub_up = shared.subscriber.reconnect_rx();
    let mut commands_err = shared.client.error_rx();
    let mut pubsub_err = shared.subscriber.error_rx();
    // Whether each connection ("commands", "pub/sub") is known to be down.
    let mut down = [false, false];
    loop {
        let (which, up, error) = tokio::select! {
            r = commands_up.recv() => (0, Some(r.map(|s| s.to_string())), None),
            r = pubsub_up.recv() => (1, Some(r.map(|s| s.to_string())), None),
            r = commands_err.recv() => (0, None, Some(r.map(|(e, _)| e.to_string()))),
            r = pubsub_err.recv() => (1, None, Some(r.map(|(e, _)| e.to_string()))),
        };
        let connection = ["commands", "pub/sub"][which];
        match (up, error) {
            (Some(Ok(server)), _) => {
                down[which] = false;
                Counters::bump(&shared.counters.reconnects);
                tracing::warn!(connection, server = %server, "reconnected to Redis");
                shared.needs_resync.store(true, Ordering::Relaxed);
                shared.wake.notify_one();
            }
            (_, Some(Ok(error))) => {
                Counters::bump(&shared.counters.redis_errors);
                if std::mem::replace(&mut down[which], true) {
                    tracing::debug!(connection, error = %error, "Redis still unreachable");
                } else {
                    tracing::error!(connection, error = %error, "lost the Redis connection; fred reconnects");
                }
            }
            (Some(Err(RecvError::Closed)), _) | (_, Some(Err(RecvError::Closed))) => return,
            _ => {}
        }
    }
}
