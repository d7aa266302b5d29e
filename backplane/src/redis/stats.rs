//! Counters of the Redis backplane, for the node's `/metrics`.
//!
//! Relaxed atomics: each counter is independent and only ever grows.

use std::sync::atomic::{AtomicU64, Ordering};

/// The live counters, shared by the backplane's tasks.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) published: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) redis_errors: AtomicU64,
    pub(super) reconnects: AtomicU64,
    pub(super) decode_errors: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) resyncs: AtomicU64,
    pub(super) nodes_swept: AtomicU64,
    pub(super) inbox_full: AtomicU64,
}

/// A snapshot of the counters since the backplane started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedisStats {
    /// Messages published to other nodes.
    pub published: u64,
    /// Messages and events received from other nodes.
    pub received: u64,
    /// Redis calls that failed (including those refused while disconnected).
    pub redis_errors: u64,
    /// Times a Redis connection came back after a loss.
    pub reconnects: u64,
    /// Received frames that could not be decoded (and were dropped).
    pub decode_errors: u64,
    /// Received messages lost because the receive task lagged behind.
    pub dropped: u64,
    /// Times this node wrote its connections back into the keyspace.
    pub resyncs: u64,
    /// Dead nodes this node swept.
    pub nodes_swept: u64,
    /// Times a received event found the node's inbox full, so that the
    /// receive task waited (and fred's buffer filled behind it).
    pub inbox_full: u64,
}

impl Counters {
    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> RedisStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RedisStats {
            published: get(&self.published),
            received: get(&self.received),
            redis_errors: get(&self.redis_errors),
            reconnects: get(&self.reconnects),
            decode_errors: get(&self.decode_errors),
            dropped: get(&self.dropped),
            resyncs: get(&self.resyncs),
            nodes_swept: get(&self.nodes_swept),
            inbox_full: get(&self.inbox_full),
        }
    }
}
