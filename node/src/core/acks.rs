//! Cluster commands this node sent and awaits answers for.
//!
//! A group or close command for connections held by other nodes is numbered,
//! each of those nodes answers `ClusterBody::Ack` on the origin's node channel
//! once it applied it, and the origin returns when every one did, or fails with
//! [`Unanswered`] after its timeout.
//!
//! # Invariants
//! - A waiter's entry is removed when it returns, answered or not: a late
//!   answer finds nothing and is ignored.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use hubwire_backplane::{CommandId, NodeId};

/// Nodes did not answer a command within its timeout.
#[derive(Debug)]
pub struct Unanswered {
    /// The nodes that stayed silent, sorted.
    pub nodes: Vec<NodeId>,
    /// The timeout that ran out, in milliseconds.
    pub timeout_ms: u64,
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
    pub(crate) fn answered(&self, id: CommandId, from: &NodeId) {
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
    pub async fn wait(mut self, timeout: Duration) -> Result<(), Unanswered> {
        match tokio::time::timeout(timeout, &mut self.answered).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Unanswered {
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
