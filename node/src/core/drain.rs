//! Graceful shutdown, driven by events: every connection holds a [`Hold`]
//! from the moment it is admitted until its cluster cleanup (unsubscribe,
//! unregister, offline hook) has finished, and the drain completes when the
//! last one is dropped — the `shutdown_complete` channel of tokio's
//! mini-redis: each hold is a clone of one sender, and the receiver wakes
//! when every clone is gone. Nothing polls.
//!
//! # Invariants
//! - Once [`Drain::begin`] ran, [`Drain::hold`] gives nothing: a connection
//!   admitted after that is refused, so the set of holds only shrinks.
//! - [`Drain::wait`] returns as soon as the last hold is dropped, or at the
//!   deadline, whichever comes first.

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The node's count of connections that shutdown must wait for.
pub struct Drain {
    /// The original sender; `None` once draining began.
    sender: Mutex<Option<mpsc::Sender<()>>>,
    /// Wakes with `None` when every sender (every hold) is gone.
    done: tokio::sync::Mutex<mpsc::Receiver<()>>,
}

/// One connection that shutdown waits for, while alive.
pub struct Hold {
    _sender: mpsc::Sender<()>,
}

impl Default for Drain {
    fn default() -> Self {
        let (sender, done) = mpsc::channel(1);
        Self {
            sender: Mutex::new(Some(sender)),
            done: tokio::sync::Mutex::new(done),
        }
    }
}

impl Drain {
    /// A hold for a new connection; `None` once draining began (refuse it).
    pub fn hold(&self) -> Option<Hold> {
        self.sender.lock().as_ref().map(|s| Hold { _sender: s.clone() })
    }

    /// Whether draining began.
    pub fn began(&self) -> bool {
        self.sender.lock().is_none()
    }

    /// Begins draining: no new holds from now on.
    pub fn begin(&self) {
        self.sender.lock().take();
    }

    /// Waits until every hold is dropped (true) or `deadline` passes (false).
    /// Call after [`Drain::begin`]; before it, this waits for the deadline.
    pub async fn wait(&self, deadline: Instant) -> bool {
        let mut done = self.done.lock().await;
        // No hold ever sends: `recv` returns `None` once every sender is gone.
        tokio::time::timeout_at(deadline, done.recv()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_drain_ends_when_the_last_hold_is_dropped_and_refuses_new_holds() {
        let drain = Drain::default();
        let (first, second) = (drain.hold(), drain.hold());
        assert!(first.is_some() && second.is_some());
        drain.begin();
        assert!(drain.began());
        assert!(drain.hold().is_none(), "no hold once draining began");
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(!drain.wait(soon).await, "two holds still alive: the deadline passes");
        drop(first);
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(!drain.wait(soon).await, "one hold still alive");
        drop(second);
        let later = Instant::now() + Duration::from_secs(60);
        assert!(drain.wait(later).await, "the last hold gone: done at once");
    }
}
