//! Work queues keyed by backplane channel: the part of a cluster command that
//! awaits Redis (subscribing or unsubscribing the group's channel, then
//! answering the origin) runs on the lane of its channel, so that commands for
//! one channel apply in the order they arrived and a slow one delays no other.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus::IntGauge;
use tokio::sync::oneshot;

use hubwire_backplane::Channel;

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
    pub(crate) fn run(&self, channel: Channel, job: impl Future<Output = ()> + Send + 'static) {
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
