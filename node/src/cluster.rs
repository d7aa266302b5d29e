//! What other nodes ask of this one, and the answers this node awaits.
//!
//! [`run_inbox`] is the one task reading the backplane's (bounded) inbox, and
//! it only delivers: a send is queued to local connections, a close is
//! signalled, a group command changes the local registry, an answer wakes its
//! waiter. Nothing on it awaits Redis or a hook, so a slow Redis call never
//! holds back the deliveries behind it. The rest of a group command —
//! subscribing or unsubscribing the group's channel, then answering the
//! origin — runs on the [`Lanes`] lane of that channel: commands for one
//! channel are applied in the order they arrived, and a slow one delays no
//! other channel. This node's own joins and leaves subscribe and unsubscribe
//! on the same lanes ([`Lanes::turn`]), so that a command never answers while
//! a subscribe of its channel is still under way. Node-down handling (user look-ups, offline hooks) runs on a
//! task of its own.
//!
//! [`Acks`] is the other side: a group or close command for connections held
//! by other nodes is numbered, each of those nodes answers
//! [`ClusterBody::Ack`] on the origin's node channel once it applied it, and
//! the origin returns when every one did, or fails with
//! [`NodeError::NotAcknowledged`] after `cluster_ack_timeout_ms`.
//!
//! # Invariants
//! - A node answers a command only once it applied it: for an add, once the
//!   group's channel is subscribed, so that a send published after the answer
//!   reaches the new member. A command it could not apply is not answered.
//! - A waiter's entry is removed when it returns, answered or not: a late
//!   answer finds nothing and is ignored.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus::IntGauge;
use tokio::sync::{mpsc, oneshot};

use crate::node::{Node, NodeError};
use crate::outbound::OutboundMessage;
use hubwire_backplane::{Backplane, BackplaneEvent, Channel, ClusterBody, ClusterMessage, CommandId, HubName, NodeId};

/// Reads the inbox until the backplane closes it, delivering each event.
pub async fn run_inbox(node: Arc<Node>, mut inbox: mpsc::Receiver<BackplaneEvent>) {
    while let Some(event) = inbox.recv().await {
        match event {
            BackplaneEvent::Message(message) => on_message(&node, message),
            BackplaneEvent::NodeDown {
                node: dead,
                swept_by,
                removed,
            } => {
                let node = node.clone();
                tokio::spawn(async move { node.on_node_down(&dead, &swept_by, removed).await });
            }
        }
    }
}

/// Applies what can be applied at once; queues the rest on a lane.
fn on_message(node: &Arc<Node>, message: ClusterMessage) {
    let ClusterMessage { origin, hub, body } = message;
    match body {
        ClusterBody::Deliver {
            target,
            except,
            payload,
        } => {
            node.deliver_local(&hub, &target, &except, &OutboundMessage::from_json_record(payload));
        }
        ClusterBody::AddToGroup { target, group, ack } => {
            let mut first = false;
            for handle in node.registry.resolve(&hub, &target, &[]) {
                first |= node.registry.join(&group, &handle);
            }
            let channel = Channel::Group(hub.clone(), group);
            let lane = channel.clone();
            let owner = node.clone();
            node.lanes.run(lane, async move {
                let node = owner;
                if first {
                    if let Err(e) = node.backplane.subscribe(channel).await {
                        // Not answered: the origin fails with a clear error
                        // rather than believe a member will be reached.
                        tracing::warn!(error = %e, "could not subscribe a group another node added to");
                        return;
                    }
                }
                answer(&node, hub, origin, ack).await;
            });
        }
        ClusterBody::RemoveFromGroup { target, group, ack } => {
            let mut emptied = false;
            for handle in node.registry.resolve(&hub, &target, &[]) {
                emptied |= node.registry.leave(&hub, &group, &handle.id);
            }
            let channel = Channel::Group(hub.clone(), group);
            let lane = channel.clone();
            let owner = node.clone();
            node.lanes.run(lane, async move {
                let node = owner;
                if emptied {
                    if let Err(e) = node.backplane.unsubscribe(channel).await {
                        // The connections left the registry: nothing local
                        // reaches them any more, whatever the subscription.
                        tracing::warn!(error = %e, "unsubscribe failed");
                    }
                }
                answer(&node, hub, origin, ack).await;
            });
        }
        ClusterBody::Close {
            target,
            except,
            reason,
            ack,
        } => {
            for handle in node.registry.resolve(&hub, &target, &except) {
                handle.close(crate::node::close_request(reason.clone()));
            }
            if ack.is_some() {
                let node = node.clone();
                tokio::spawn(async move { answer(&node, hub, origin, ack).await });
            }
        }
        ClusterBody::Ack { to, id } => {
            if to == *node.backplane.node_id() {
                node.acks.answered(id, &origin);
            }
        }
    }
}

/// Tells the origin of command `ack` (if it awaits one) that it was applied.
async fn answer(node: &Node, hub: HubName, origin: NodeId, ack: Option<CommandId>) {
    let Some(id) = ack else {
        return;
    };
    let message = ClusterMessage {
        origin: node.backplane.node_id().clone(),
        hub,
        body: ClusterBody::Ack { to: origin, id },
    };
    if let Err(e) = node.backplane.publish(message).await {
        tracing::warn!(error = %e, "could not acknowledge a cluster command");
    }
}

/// One queued piece of a command.
type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Work queues keyed by channel, each run by a task of its own while it has
/// work: jobs of one channel run one after the other, in the order queued.
pub struct Lanes {
    inner: Arc<LanesInner>,
}

struct LanesInner {
    queued: Mutex<HashMap<Channel, VecDeque<Job>>>,
    /// Jobs queued or running (`hubwire_cluster_commands_pending`).
    pending: IntGauge,
}

/// This caller's turn on a lane: the lane's next job waits until it is dropped.
pub struct Turn {
    _done: oneshot::Sender<()>,
}

impl Lanes {
    /// Lanes counting their jobs in `pending`.
    pub fn new(pending: IntGauge) -> Self {
        let queued = Mutex::default();
        Self {
            inner: Arc::new(LanesInner { queued, pending }),
        }
    }

    /// Queues `job` on the lane of `channel`, starting the lane's task if idle.
    fn run(&self, channel: Channel, job: impl Future<Output = ()> + Send + 'static) {
        self.inner.pending.inc();
        let job: Job = Box::pin(job);
        let mut queued = self.inner.queued.lock();
        if let Some(lane) = queued.get_mut(&channel) {
            lane.push_back(job);
            return;
        }
        queued.insert(channel.clone(), VecDeque::new());
        drop(queued);
        tokio::spawn(drain(self.inner.clone(), channel, job));
    }

    /// Waits until every job queued before on the lane of `channel` is done;
    /// the lane then waits for the returned [`Turn`] to be dropped.
    pub async fn turn(&self, channel: Channel) -> Turn {
        let (started, start) = oneshot::channel();
        let (done, finished) = oneshot::channel::<()>();
        self.run(channel, async move {
            // A caller that gave up waiting is not told; its dropped `Turn`
            // releases the lane just the same.
            let _ = started.send(());
            let _ = finished.await;
        });
        // The lane's task owns the job and always runs it; an error would
        // mean it was dropped unrun, and then the lane is free anyway.
        let _ = start.await;
        Turn { _done: done }
    }
}

/// Runs a lane's jobs until it has none left, then retires it.
async fn drain(lanes: Arc<LanesInner>, channel: Channel, first: Job) {
    let mut job = first;
    loop {
        job.await;
        lanes.pending.dec();
        let mut queued = lanes.queued.lock();
        match queued.get_mut(&channel).and_then(VecDeque::pop_front) {
            Some(next) => job = next,
            None => {
                queued.remove(&channel);
                return;
            }
        }
    }
}

/// Commands this node sent and awaits answers for.
#[derive(Default)]
pub struct Acks {
    last: AtomicU64,
    pending: Mutex<HashMap<CommandId, Pending>>,
}

struct Pending {
    /// Nodes that have not answered yet.
    waiting: HashSet<NodeId>,
    done: Option<oneshot::Sender<()>>,
}

impl Acks {
    /// Numbers a command that `nodes` must answer; the entry lives until the
    /// returned [`Awaited`] is dropped.
    pub fn expect(&self, nodes: HashSet<NodeId>) -> Awaited<'_> {
        let id = self.last.fetch_add(1, Ordering::Relaxed) + 1;
        let (done, answered) = oneshot::channel();
        let pending = Pending {
            waiting: nodes,
            done: Some(done),
        };
        self.pending.lock().insert(id, pending);
        Awaited {
            acks: self,
            id,
            answered,
        }
    }

    /// `from` answered command `id`.
    fn answered(&self, id: CommandId, from: &NodeId) {
        let mut pending = self.pending.lock();
        let Some(entry) = pending.get_mut(&id) else {
            return; // answered late, after its waiter gave up
        };
        entry.waiting.remove(from);
        if entry.waiting.is_empty() {
            if let Some(done) = entry.done.take() {
                // The waiter may have just timed out; nobody left to wake.
                let _ = done.send(());
            }
        }
    }

    /// The nodes that have not answered command `id`, sorted.
    fn silent(&self, id: CommandId) -> Vec<NodeId> {
        let pending = self.pending.lock();
        let mut nodes: Vec<NodeId> = pending
            .get(&id)
            .map(|entry| entry.waiting.iter().cloned().collect())
            .unwrap_or_default();
        nodes.sort();
        nodes
    }
}

/// One command's wait for its answers.
pub struct Awaited<'a> {
    acks: &'a Acks,
    /// The command's id, to publish with it.
    pub id: CommandId,
    answered: oneshot::Receiver<()>,
}

impl Awaited<'_> {
    /// Waits until every node answered, or fails after `timeout`.
    pub async fn wait(mut self, timeout: Duration) -> Result<(), NodeError> {
        match tokio::time::timeout(timeout, &mut self.answered).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(NodeError::NotAcknowledged {
                nodes: self.acks.silent(self.id),
                timeout_ms: timeout.as_millis() as u64,
            }),
        }
    }
}

impl Drop for Awaited<'_> {
    fn drop(&mut self) {
        self.acks.pending.lock().remove(&self.id);
    }
}
