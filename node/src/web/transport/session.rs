//! The state one SSE or long-polling connection shares between its task and
//! its HTTP requests ([`super::sessions`]), and this node's table of them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use super::records::COALESCE_LIMIT;
use hubwire_backplane::{HubName, UserId};

/// Which half-transport carries the server's records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Server-Sent Events: one streamed response, text only.
    Sse,
    /// Long Polling: one response per poll.
    LongPolling,
}

impl Kind {
    /// The transport's name as SignalR spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sse => "ServerSentEvents",
            Self::LongPolling => "LongPolling",
        }
    }
}

/// The SSE and long-polling connections of this node, by connection token.
#[derive(Default)]
pub struct Sessions {
    by_token: Mutex<HashMap<String, Arc<Session>>>,
}

impl Sessions {
    /// The session of `token`, if this node has it.
    pub(super) fn get(&self, token: &str) -> Option<Arc<Session>> {
        self.by_token.lock().get(token).cloned()
    }

    /// Sessions on this node (ended long-polling ones included until their
    /// last poll is answered).
    pub fn len(&self) -> usize {
        self.by_token.lock().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn insert(&self, session: &Arc<Session>) {
        self.by_token.lock().insert(session.token.clone(), session.clone());
    }

    pub(super) fn remove(&self, token: &str) {
        self.by_token.lock().remove(token);
    }
}

/// A one-way signal that can be awaited by anyone, before or after it is set.
#[derive(Default)]
pub(super) struct Flag {
    set: AtomicBool,
    notify: Notify,
}

impl Flag {
    pub(super) fn set(&self) {
        self.set.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(super) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    pub(super) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// What a connection has to send, waiting for the SSE stream or a poll.
#[derive(Default)]
pub(super) struct Outlet {
    state: Mutex<OutletState>,
    /// Something to take, or the end.
    filled: Notify,
    /// Taken: there is room again (the task is its only waiter).
    pub(super) drained: Notify,
    /// A taker saw the end.
    pub(super) end_taken: Flag,
}

#[derive(Default)]
struct OutletState {
    buf: BytesMut,
    ended: bool,
    last_push: Option<Instant>,
}

/// What a taker gets from the outlet.
pub(super) enum Take {
    /// Bytes of whole records.
    Data(Bytes),
    /// The connection ended and everything was taken.
    End,
}

impl Outlet {
    pub(super) fn push(&self, bytes: &[u8]) {
        let mut state = self.state.lock();
        state.buf.extend_from_slice(bytes);
        state.last_push = Some(Instant::now());
        drop(state);
        self.filled.notify_waiters();
    }

    pub(super) fn has_room(&self) -> bool {
        self.state.lock().buf.len() < COALESCE_LIMIT
    }

    /// How long since the last push (`None`: nothing pushed yet).
    pub(super) fn idle(&self) -> Option<Duration> {
        self.state.lock().last_push.map(|at| at.elapsed())
    }

    pub(super) fn end(&self) {
        self.state.lock().ended = true;
        self.filled.notify_waiters();
    }

    /// Waits for bytes or the end. Cancel-safe: nothing is taken unless it returns.
    pub(super) async fn take(&self) -> Take {
        loop {
            let notified = self.filled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.state.lock();
                if !state.buf.is_empty() {
                    let data = state.buf.split().freeze();
                    if state.buf.capacity() > COALESCE_LIMIT {
                        state.buf = BytesMut::new();
                    }
                    drop(state);
                    self.drained.notify_one();
                    return Take::Data(data);
                }
                if state.ended {
                    drop(state);
                    self.end_taken.set();
                    return Take::End;
                }
            }
            notified.await;
        }
    }
}

/// Long Polling: the polls of one connection.
pub(super) struct Polls {
    /// One poll waits at a time; a newer one supersedes it (204).
    pub(super) slot: tokio::sync::Mutex<()>,
    /// The newest poll's number.
    pub(super) generation: AtomicU64,
    /// Wakes a waiting poll when a newer one arrives.
    pub(super) superseded: Notify,
    outstanding: AtomicUsize,
    last_end: Mutex<Instant>,
}

impl Polls {
    pub(super) fn new() -> Self {
        Self {
            slot: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            superseded: Notify::new(),
            outstanding: AtomicUsize::new(0),
            last_end: Mutex::new(Instant::now()),
        }
    }

    /// Counts a poll as outstanding until the guard is dropped.
    pub(super) fn begin(&self) -> Outstanding<'_> {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        Outstanding(self)
    }

    /// How long no poll has been outstanding.
    pub(super) fn gone_for(&self) -> Duration {
        if self.outstanding.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        self.last_end.lock().elapsed()
    }
}

/// A poll in progress ([`Polls::begin`]).
pub(super) struct Outstanding<'a>(&'a Polls);

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        *self.0.last_end.lock() = Instant::now();
        self.0.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Part of a `POST` body, or its end (answered once everything before it is dispatched).
pub(super) enum Inbound {
    Chunk(Bytes),
    End(oneshot::Sender<()>),
}

/// One SSE or long-polling connection as its HTTP requests see it.
pub struct Session {
    pub(super) kind: Kind,
    pub(super) token: String,
    pub(super) hub: HubName,
    pub(super) user: Option<UserId>,
    pub(super) inbound: mpsc::Sender<Inbound>,
    /// A `POST` is being read (a second at once is refused with 409).
    pub(super) posting: AtomicBool,
    pub(super) outlet: Outlet,
    /// The client ended the connection (DELETE, or the SSE stream went away).
    pub(super) stop: Flag,
    pub(super) polls: Polls,
}

/// Frees the `POST` slot when the request ends.
pub(super) struct Posting<'a>(pub(super) &'a AtomicBool);

impl Drop for Posting<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_outlet_hands_over_everything_pushed_then_the_end() {
        let outlet = Outlet::default();
        outlet.push(b"a");
        outlet.push(b"bc");
        assert!(matches!(outlet.take().await, Take::Data(d) if &d[..] == b"abc"));
        assert!(outlet.has_room());
        outlet.end();
        assert!(!outlet.end_taken.is_set());
        assert!(matches!(outlet.take().await, Take::End));
        assert!(outlet.end_taken.is_set());
    }

    #[tokio::test]
    async fn a_poll_counts_as_outstanding_until_it_ends() {
        let polls = Polls::new();
        let poll = polls.begin();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(polls.gone_for(), Duration::ZERO);
        drop(poll);
        assert!(
            polls.gone_for() < Duration::from_millis(20),
            "the clock restarts when the poll ends"
        );
    }
}
