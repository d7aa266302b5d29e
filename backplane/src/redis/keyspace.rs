//! Connections, groups and users in the keyspace, one Lua script per change.
//!
//! Every registration or removal of this node's own connections goes to
//! [`Memory`] first (see its invariants); group changes are the node's
//! registry's to remember. A write that fails marks the keyspace for a resync.
//!
//! [`Memory`]: super::memory::Memory

use std::sync::atomic::Ordering;

use fred::prelude::{HashesInterface, KeysInterface, SetsInterface, SortedSetsInterface, Value};

use super::scripts::{array, int, opt_text, text, texts};
use super::Shared;
use crate::names::{ConnectionId, GroupName, HubName, NodeId, UserId};
use crate::{BackplaneError, ConnectionRecord, MembershipTtl, Registered};

const RECORD_FIELDS: [&str; 5] = ["node", "hub", "user", "transport", "since"];

impl Shared {
    pub(super) async fn register(
        &self,
        record: &ConnectionRecord,
        max_per_user: Option<usize>,
    ) -> Result<Registered, BackplaneError> {
        self.note_hub(&record.hub).await?;
        let held = self.memory.lock().holds_in(&record.hub);
        match self.write_record(record, max_per_user, None).await {
            Ok(Written {
                groups,
                lease_lost,
                user_connections,
            }) => {
                let mut memory = self.memory.lock();
                // No lease although this node held connections in the hub
                // before and after: it expired, and others may have removed
                // those records. (A lease is also missing, harmlessly, for the
                // first connection in a hub, or after the last one left.)
                if lease_lost && held && memory.holds_in(&record.hub) {
                    self.needs_resync.store(true, Ordering::Relaxed);
                    self.wake.notify_one();
                }
                memory.insert(record.clone());
                Ok(Registered {
                    groups,
                    user_connections,
                })
            }
            Err(e @ BackplaneError::Unavailable(_)) => {
                // The script may have run before the reply was lost: the node
                // refuses the connection, so make sure Redis forgets it too.
                self.memory.lock().mark_stale(record.hub.clone(), record.id.clone());
                self.write_failed(Err(e))
            }
            Err(e) => Err(e),
        }
    }

    /// Runs `register.lua`: a new connection (`restore: None`, limit checked)
    /// or one written back after an outage, in exactly `restore`'s groups;
    /// sets this node's lease in the hub.
    pub(super) async fn write_record(
        &self,
        record: &ConnectionRecord,
        max_per_user: Option<usize>,
        restore: Option<&[GroupName]>,
    ) -> Result<Written, BackplaneError> {
        let mut args = vec![
            self.names.hub_base(&record.hub),
            record.id.to_string(),
            record.node.to_string(),
            record.hub.to_string(),
            if record.user.is_some() { "1" } else { "0" }.to_owned(),
            record.user.as_ref().map(UserId::to_string).unwrap_or_default(),
            record.transport.clone(),
            record.since_ms.to_string(),
            max_per_user.map(|limit| limit.to_string()).unwrap_or_default(),
            if restore.is_some() { "restore" } else { "new" }.to_owned(),
            self.config.record_lease_ttl().as_millis().to_string(),
        ];
        args.extend(restore.unwrap_or_default().iter().map(GroupName::to_string));
        let keys = vec![self.names.conn(&record.hub, &record.id)];
        let what = self.scripts.register.name();
        let mut reply = array(what, self.script(&self.scripts.register, keys, args).await?)?.into_iter();
        let status = reply.next().map(|status| int(what, status)).transpose()?;
        match (status, max_per_user) {
            (Some(1), _) => {
                let lease_lost = reply.next().map(|lost| int(what, lost)).transpose()? == Some(1);
                let count = reply.next().map(|n| int(what, n)).transpose()?.unwrap_or(0);
                let groups = reply
                    .map(|g| text(what, g).map(GroupName::from))
                    .collect::<Result<_, _>>()?;
                Ok(Written {
                    groups,
                    lease_lost,
                    user_connections: usize::try_from(count).unwrap_or(0),
                })
            }
            (Some(0), Some(limit)) => Err(BackplaneError::UserLimit { limit }),
            (other, _) => Err(BackplaneError::Unavailable(format!(
                "unexpected status from {what}: {other:?}"
            ))),
        }
    }

    /// Records `hub` in `<p>:hubs` once per process (and again after a resync).
    async fn note_hub(&self, hub: &HubName) -> Result<(), BackplaneError> {
        if self.known_hubs.lock().contains(hub) {
            return Ok(());
        }
        let added = self.client.sadd::<(), _, _>(self.names.hubs(), hub.as_str());
        self.call("SADD hubs", added).await?;
        self.known_hubs.lock().insert(hub.clone());
        Ok(())
    }

    /// Forgets a connection; its user when that was the user's last.
    pub(super) async fn unregister(&self, id: &ConnectionId) -> Result<Option<UserId>, BackplaneError> {
        let owned = self.memory.lock().remove(id);
        let hub = match owned {
            Some(hub) => hub,
            None => match self.connection(id).await? {
                Some(record) => record.hub,
                None => return Ok(None),
            },
        };
        let result = self.drop_record(&hub, id).await;
        if result.is_err() {
            self.memory.lock().mark_stale(hub, id.clone());
        }
        self.write_failed(result)
    }

    /// Runs `unregister.lua`: the connection's user if it was their last.
    pub(super) async fn drop_record(&self, hub: &HubName, id: &ConnectionId) -> Result<Option<UserId>, BackplaneError> {
        let keys = vec![self.names.conn(hub, id)];
        let args = vec![self.names.hub_base(hub), id.to_string()];
        let what = self.scripts.unregister.name();
        let reply = array(what, self.script(&self.scripts.unregister, keys, args).await?)?;
        let user = reply.into_iter().nth(1).map(|u| text(what, u)).transpose()?;
        Ok(user.filter(|u| !u.is_empty()).map(UserId::from))
    }

    pub(super) async fn connection(&self, id: &ConnectionId) -> Result<Option<ConnectionRecord>, BackplaneError> {
        let hubs: Vec<String> = self
            .call("SMEMBERS hubs", self.client.smembers(self.names.hubs()))
            .await?;
        for hub in hubs.into_iter().map(HubName::from) {
            let fields = self.client.hmget(self.names.conn(&hub, id), RECORD_FIELDS.to_vec());
            let mut values = array("HMGET", self.call("HMGET", fields).await?)?.into_iter();
            let mut next = || opt_text("HMGET", values.next().unwrap_or(Value::Null));
            let (node, hub, user, transport, since) = (next()?, next()?, next()?, next()?, next()?);
            if let (Some(node), Some(hub)) = (node, hub) {
                let record = record(id.clone(), node, hub, user, transport, since);
                let lease = self
                    .client
                    .exists::<u64, _>(self.names.node_lease(&record.hub, &record.node));
                // A record whose node's lease expired no longer counts.
                return Ok((self.call("EXISTS lease", lease).await? > 0).then_some(record));
            }
        }
        Ok(None)
    }

    pub(super) async fn join_group(
        &self,
        hub: &HubName,
        group: &GroupName,
        id: &ConnectionId,
    ) -> Result<(), BackplaneError> {
        let keys = vec![self.names.conn(hub, id)];
        let args = vec![self.names.hub_base(hub), id.to_string(), group.to_string()];
        let result = self.script(&self.scripts.join_group, keys, args).await;
        self.write_failed(result).map(|_| ())
    }

    pub(super) async fn leave_group(
        &self,
        hub: &HubName,
        group: &GroupName,
        id: &ConnectionId,
    ) -> Result<bool, BackplaneError> {
        let keys = vec![self.names.group_conns(hub, group)];
        let args = vec![self.names.hub_base(hub), id.to_string(), group.to_string()];
        let result = self.script(&self.scripts.leave_group, keys, args).await;
        let what = self.scripts.leave_group.name();
        Ok(int(what, self.write_failed(result)?)? == 1)
    }

    /// The records of the connections in a set of a hub (a group's, a user's).
    pub(super) async fn records(&self, hub: &HubName, set: String) -> Result<Vec<ConnectionRecord>, BackplaneError> {
        let what = self.scripts.records.name();
        let reply = self
            .script(&self.scripts.records, vec![set], vec![self.names.hub_base(hub)])
            .await?;
        let values = array(what, reply)?;
        let mut out = Vec::with_capacity(values.len() / 6);
        let mut values = values.into_iter();
        while let Some(id) = values.next() {
            let mut next = || opt_text(what, values.next().unwrap_or(Value::Null));
            let (node, hub, user, transport, since) = (next()?, next()?, next()?, next()?, next()?);
            let id = ConnectionId::from(text(what, id)?);
            out.push(record(
                id,
                node.unwrap_or_default(),
                hub.unwrap_or_default(),
                user,
                transport,
                since,
            ));
        }
        Ok(out)
    }

    /// How many connections each node of the live set holds in `hub`, by
    /// node id; a node whose lease expired holds none.
    pub(super) async fn node_counts(&self, hub: &HubName) -> Result<Vec<(NodeId, usize)>, BackplaneError> {
        let live = self
            .client
            .zrange::<Vec<String>, _, _, _>(self.names.live_nodes(), 0, -1, None, false, None, false);
        let mut nodes: Vec<String> = self.call("ZRANGE live", live).await?;
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        nodes.sort();
        let what = self.scripts.node_counts.name();
        let mut args = vec![self.names.hub_base(hub)];
        args.extend(nodes.iter().cloned());
        let reply = self
            .script(&self.scripts.node_counts, vec![self.names.hub_conns(hub)], args)
            .await?;
        let counts = array(what, reply)?;
        if counts.len() != nodes.len() {
            return Err(BackplaneError::Unavailable(format!(
                "{what}: one count per node expected"
            )));
        }
        nodes
            .into_iter()
            .zip(counts)
            .map(|(node, count)| {
                let count = usize::try_from(int(what, count)?).unwrap_or(0);
                Ok((NodeId::from(node), count))
            })
            .collect()
    }

    pub(super) async fn add_user_to_group(
        &self,
        hub: &HubName,
        user: &UserId,
        group: &GroupName,
        ttl: MembershipTtl,
    ) -> Result<(), BackplaneError> {
        let (mode, ms) = match ttl {
            MembershipTtl::Forever => ("forever", 0),
            MembershipTtl::CurrentConnectionsOnly => ("current", 0),
            MembershipTtl::For(d) => ("ttl", d.as_millis()),
        };
        let keys = vec![self.names.user_groups(hub, user)];
        let args = vec![
            self.names.hub_base(hub),
            user.to_string(),
            group.to_string(),
            mode.to_owned(),
            ms.to_string(),
        ];
        let result = self.script(&self.scripts.add_user_to_group, keys, args).await;
        self.write_failed(result).map(|_| ())
    }

    pub(super) async fn remove_user_from_group(
        &self,
        hub: &HubName,
        user: &UserId,
        group: &GroupName,
    ) -> Result<bool, BackplaneError> {
        let keys = vec![self.names.user_groups(hub, user)];
        let args = vec![self.names.hub_base(hub), user.to_string(), group.to_string()];
        let result = self.script(&self.scripts.remove_user_from_group, keys, args).await;
        let what = self.scripts.remove_user_from_group.name();
        Ok(int(what, self.write_failed(result)?)? == 1)
    }

    pub(super) async fn remove_user_from_all_groups(
        &self,
        hub: &HubName,
        user: &UserId,
    ) -> Result<Vec<GroupName>, BackplaneError> {
        let keys = vec![self.names.user_groups(hub, user)];
        let args = vec![self.names.hub_base(hub), user.to_string()];
        let result = self.script(&self.scripts.remove_user_from_all_groups, keys, args).await;
        let what = self.scripts.remove_user_from_all_groups.name();
        Ok(texts(what, self.write_failed(result)?)?
            .into_iter()
            .map(GroupName::from)
            .collect())
    }

    pub(super) async fn user_in_group(
        &self,
        hub: &HubName,
        user: &UserId,
        group: &GroupName,
    ) -> Result<bool, BackplaneError> {
        let keys = vec![self.names.user_groups(hub, user)];
        let args = vec![self.names.hub_base(hub), user.to_string(), group.to_string()];
        let reply = self.script(&self.scripts.user_in_group, keys, args).await?;
        Ok(int(self.scripts.user_in_group.name(), reply)? == 1)
    }
}

/// What `register.lua` did.
pub(super) struct Written {
    /// The user's live persistent groups, which the connection joined.
    pub(super) groups: Vec<GroupName>,
    /// This node's lease in the hub had expired: its other records there may
    /// be gone.
    pub(super) lease_lost: bool,
    /// The user's connections that count, this one included.
    pub(super) user_connections: usize,
}

/// A record from the hash fields as stored (`since` unparsable counts as 0).
pub(super) fn record(
    id: ConnectionId,
    node: String,
    hub: String,
    user: Option<String>,
    transport: Option<String>,
    since: Option<String>,
) -> ConnectionRecord {
    ConnectionRecord {
        id,
        node: NodeId::from(node),
        hub: HubName::from(hub),
        user: user.map(UserId::from),
        transport: transport.unwrap_or_default(),
        since_ms: since.and_then(|s| s.parse().ok()).unwrap_or(0),
    }
}
