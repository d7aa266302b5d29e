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

/// The histogram of Redis calls (one per backplane).
pub(super) fn round_trips() -> prometheus::Histogram {
    let opts = prometheus::HistogramOpts::new(
        "hubwire_redis_duration_seconds",
        "Seconds one Redis call took (command, script or publish), failures included",
    )
    .buckets(vec![
        0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    ]);
    // The options are constants; they cannot be invalid.
    prometheus::Histogram::with_opts(opts).unwrap_or_else(|e| panic!("histogram: {e}"))
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
