//! Graceful shutdown, driven by events: every connection holds a [`Hold`]
//! from the moment it is admitted until its cluster cleanup (unsubscribe,
//! unregister, offline hook) has finished. The drain counts the holds alive;
//! dropping one wakes whoever waits for the count to fall. Nothing polls.
//!
//! The count lets shutdown ask connections to reconnect in bounded batches
//! ([`Drain::wait_until`]): ask a batch, wait until as many holds are left as
//! connections not asked yet, ask the next (`shutdown_close_batch`).
//!
//! # Invariants
//! - Once [`Drain::begin`] ran, [`Drain::hold`] gives nothing: a connection
//!   admitted after that is refused, so the count only falls.
//! - [`Drain::wait_until`] returns as soon as at most `n` holds are alive, or
//!   at the deadline, whichever comes first.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The node's count of connections that shutdown must wait for.
#[derive(Default)]
pub struct Drain {
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    live: Mutex<Live>,
    /// Woken whenever a hold is dropped.
    changed: Notify,
}

#[derive(Default)]
struct Live {
    holds: usize,
    began: bool,
}

/// One connection that shutdown waits for, while alive.
pub struct Hold {
    state: Arc<State>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.state.live.lock().holds -= 1;
        self.state.changed.notify_waiters();
    }
}

impl Drain {
    /// A hold for a new connection; `None` once draining began (refuse it).
    pub fn hold(&self) -> Option<Hold> {
        let mut live = self.state.live.lock();
        if live.began {
            return None;
        }
        live.holds += 1;
        Some(Hold {
            state: self.state.clone(),
        })
    }

    /// Whether draining began.
    pub fn began(&self) -> bool {
        self.state.live.lock().began
    }

    /// Begins draining: no new holds from now on.
    pub fn begin(&self) {
        self.state.live.lock().began = true;
    }

    /// Holds alive now.
    pub fn live(&self) -> usize {
        self.state.live.lock().holds
    }

    /// Waits until every hold is dropped (true) or `deadline` passes (false).
    pub async fn wait(&self, deadline: Instant) -> bool {
        self.wait_until(0, deadline).await
    }

    /// Waits until at most `n` holds are alive (true) or `deadline` passes
    /// (false). Call after [`Drain::begin`], when the count only falls.
    pub async fn wait_until(&self, n: usize, deadline: Instant) -> bool {
        loop {
            let changed = self.state.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a drop between the two is not missed.
            changed.as_mut().enable();
            if self.live() <= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.live() <= n;
            }
        }
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
        assert_eq!(drain.live(), 2);
        drain.begin();
        assert!(drain.began());
        assert!(drain.hold().is_none(), "no hold once draining began");
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(!drain.wait(soon).await, "two holds still alive: the deadline passes");
        drop(first);
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(!drain.wait(soon).await, "one hold still alive");
        let later = Instant::now() + Duration::from_secs(60);
        assert!(drain.wait_until(1, later).await, "at most one alive: done at once");
        drop(second);
        assert!(drain.wait(later).await, "the last hold gone: done at once");
        assert_eq!(drain.live(), 0);
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_a_hold_is_dropped_elsewhere() {
        let drain = Arc::new(Drain::default());
        let holds: Vec<_> = (0..3).filter_map(|_| drain.hold()).collect();
        drain.begin();
        let waiter = {
            let drain = drain.clone();
            tokio::spawn(async move { drain.wait_until(1, Instant::now() + Duration::from_secs(60)).await })
        };
        tokio::task::yield_now().await;
        let mut holds = holds.into_iter();
        drop(holds.next());
        drop(holds.next());
        assert!(
            waiter.await.unwrap_or(false),
            "woken by the drops, long before the deadline"
        );
        assert_eq!(drain.live(), 1);
    }
}
