//! One connection as the rest of the node sees it: identity, bounded outbound
//! queue, and the signal that closes it.
//!
//! Senders never block: [`ConnectionHandle::enqueue`] fails at once on a full
//! queue (too many records, or too many bytes), which closes that (slow)
//! connection instead of slowing everyone else. The bytes waiting in every
//! queue are one node-wide gauge, given back when a record is taken or the
//! queue is dropped.
//!
//! The queue is a `VecDeque` in the handle that allocates only while records
//! wait (an idle connection holds none), rather than a channel that allocates
//! a block of slots per connection up front (memory per idle connection,
//! docs/benchmarks.md).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::core::auth::Principal;
use crate::core::metrics::{DisconnectReason, HubMetrics, SlowReason};
use hubwire_backplane::{ConnectionId, HubName, UserId};
use hubwire_protocol::Protocol;

/// The error text of a connection closed for bad input or for being too slow
/// (ASP.NET Core's).
pub const CLOSED_WITH_ERROR: &str = "Connection closed with an error.";

/// The error text of a connection closed because its token expired
/// (`close_on_token_expiry`).
pub const TOKEN_EXPIRED: &str = "Connection closed with an error: the access token expired.";

/// The error text of the Close every client gets when its node shuts down.
pub const SHUTDOWN_ERROR: &str = "Server is shutting down.";

/// Why and how a connection is being closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseRequest {
    /// Error text for the client's Close message (`None`: a clean close).
    pub error: Option<String>,
    /// Whether the client may reconnect (Close `allowReconnect`).
    pub allow_reconnect: bool,
    /// Whether a Close message is sent at all (not when the client left first).
    pub notify_client: bool,
}

impl CloseRequest {
    /// The `reason` label of `hubwire_disconnects_total` for this request.
    pub fn disconnect_reason(&self) -> DisconnectReason {
        match self.error.as_deref() {
            _ if !self.notify_client => DisconnectReason::ClientClosed,
            Some(TOKEN_EXPIRED) => DisconnectReason::TokenExpired,
            Some(SHUTDOWN_ERROR) => DisconnectReason::Shutdown,
            Some(CLOSED_WITH_ERROR) => DisconnectReason::Error,
            _ => DisconnectReason::Closed,
        }
    }

    /// The client went away; nothing is sent.
    pub fn client_left() -> Self {
        Self {
            error: None,
            allow_reconnect: false,
            notify_client: false,
        }
    }
    /// Closed by the server with an error text. Like ASP.NET Core, the client
    /// is allowed to reconnect (the error was this connection's, not the user's).
    pub fn error(text: impl Into<String>) -> Self {
        Self {
            error: Some(text.into()),
            allow_reconnect: true,
            notify_client: true,
        }
    }
}

/// One record waiting for a connection's writer.
pub struct Queued {
    /// The encoded record, in the connection's protocol.
    pub record: Bytes,
    /// When it was queued (for the delivery latency histogram).
    pub at: Instant,
}

/// A live connection, shared by the registry, hubs and the REST API.
pub struct ConnectionHandle {
    /// The connection id clients and the REST API see.
    pub id: ConnectionId,
    /// The hub it is connected to.
    pub hub: HubName,
    /// Who it belongs to (`None` for an anonymous hub).
    pub principal: Option<Principal>,
    /// The hub protocol negotiated in the handshake.
    pub protocol: Protocol,
    /// Transport name as SignalR spells it.
    pub transport: &'static str,
    /// This connection's hub's metrics.
    pub metrics: HubMetrics,
    outbox: Mutex<Outbox>,
    /// Signalled when a record is queued.
    ready: Notify,
    capacity: usize,
    capacity_bytes: usize,
    /// The first close request; `closing` wakes everyone waiting for it.
    close: Mutex<Option<CloseRequest>>,
    closing: Notify,
    /// See [`ConnectionHandle::is_first_of_user`].
    first_of_user: std::sync::atomic::AtomicBool,
}

/// Records waiting for the writer.
struct Outbox {
    records: VecDeque<Queued>,
    /// Bytes of `records`.
    bytes: usize,
    /// False once the writer is gone: nothing is queued any more.
    open: bool,
}

/// A queue keeps at most this many slots' worth of capacity once drained.
const KEPT_SLOTS: usize = 8;

/// The writer's end of a connection's queue. A stateful connection's
/// successive writers (one per socket) share it; the queue closes when it is
/// dropped.
pub struct QueueReceiver {
    handle: Arc<ConnectionHandle>,
}

impl QueueReceiver {
    /// The next record, waiting for one if none is queued. Cancel-safe.
    pub async fn recv(&self) -> Queued {
        loop {
            if let Some(queued) = self.try_recv() {
                return queued;
            }
            self.handle.ready.notified().await;
        }
    }

    /// The next record if one is queued.
    pub fn try_recv(&self) -> Option<Queued> {
        let mut outbox = self.handle.outbox.lock();
        let queued = outbox.records.pop_front()?;
        outbox.bytes -= queued.record.len();
        self.handle.metrics.queued_bytes.sub(gauge_value(queued.record.len()));
        if outbox.records.is_empty() && outbox.records.capacity() > KEPT_SLOTS {
            outbox.records.shrink_to(KEPT_SLOTS);
        }
        Some(queued)
    }
}

impl Drop for QueueReceiver {
    fn drop(&mut self) {
        let mut outbox = self.handle.outbox.lock();
        outbox.open = false;
        outbox.records = VecDeque::new();
        self.handle.metrics.queued_bytes.sub(gauge_value(outbox.bytes));
        outbox.bytes = 0;
    }
}

impl ConnectionHandle {
    /// A handle plus the receiving end of its queue, for the writer: at most
    /// `limits.records` records and `limits.bytes` bytes may wait.
    pub fn new(
        id: ConnectionId,
        hub: HubName,
        principal: Option<Principal>,
        protocol: Protocol,
        transport: &'static str,
        limits: QueueLimits,
        metrics: HubMetrics,
    ) -> (Arc<Self>, QueueReceiver) {
        let handle = Arc::new(Self {
            id,
            hub,
            principal,
            protocol,
            transport,
            metrics,
            outbox: Mutex::new(Outbox {
                records: VecDeque::new(),
                bytes: 0,
                open: true,
            }),
            ready: Notify::new(),
            capacity: limits.records.max(1),
            capacity_bytes: limits.bytes,
            close: Mutex::new(None),
            closing: Notify::new(),
            first_of_user: std::sync::atomic::AtomicBool::new(false),
        });
        let receiver = QueueReceiver { handle: handle.clone() };
        (handle, receiver)
    }

    /// Whether the keyspace counted this connection as its user's first in
    /// the hub cluster-wide (set when it went live, see `Node::reserve`).
    pub fn is_first_of_user(&self) -> bool {
        self.first_of_user.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn mark_first_of_user(&self) {
        self.first_of_user.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The user id, if authenticated.
    pub fn user(&self) -> Option<&UserId> {
        self.principal.as_ref().map(|p| &p.user)
    }

    /// Queues one encoded record (already in this connection's protocol).
    /// Returns `false` when the connection is closing or was too slow, in which
    /// case it is being closed.
    pub fn enqueue(&self, record: Bytes) -> bool {
        let mut outbox = self.outbox.lock();
        if !outbox.open {
            return false;
        }
        let full = if outbox.records.len() >= self.capacity {
            Some(SlowReason::QueueRecords)
        } else if !outbox.records.is_empty() && outbox.bytes + record.len() > self.capacity_bytes {
            Some(SlowReason::QueueBytes)
        } else {
            None
        };
        if let Some(reason) = full {
            drop(outbox);
            self.close_slow(reason);
            return false;
        }
        outbox.bytes += record.len();
        self.metrics.queued_bytes.add(gauge_value(record.len()));
        outbox.records.push_back(Queued {
            record,
            at: Instant::now(),
        });
        drop(outbox);
        self.ready.notify_one();
        self.metrics.messages_out.inc();
        true
    }

    /// Closes a connection that cannot keep up, counted by `reason`.
    pub fn close_slow(&self, reason: SlowReason) {
        if self.close(CloseRequest::error(CLOSED_WITH_ERROR)) {
            self.metrics.slow_closed.get(reason).inc();
            tracing::warn!(connection = %self.id, reason = reason.label(), "closing slow connection");
        }
    }

    /// Asks the connection to close; the first request wins. Returns whether
    /// this call was the first.
    pub fn close(&self, request: CloseRequest) -> bool {
        {
            let mut close = self.close.lock();
            if close.is_some() {
                return false;
            }
            *close = Some(request);
        }
        self.closing.notify_waiters();
        true
    }

    /// The close request, once there is one.
    pub fn close_request(&self) -> Option<CloseRequest> {
        self.close.lock().clone()
    }

    /// Waits until a close is requested and returns the request. Cancel-safe;
    /// any number of tasks may wait.
    pub async fn closed(&self) -> CloseRequest {
        loop {
            let notified = self.closing.notified();
            tokio::pin!(notified);
            // Registered before the check, so a close between the two is not missed.
            notified.as_mut().enable();
            if let Some(request) = self.close_request() {
                return request;
            }
            notified.await;
        }
    }
}

/// How much may wait in one connection's queue.
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    /// Records.
    pub records: usize,
    /// Bytes of those records.
    pub bytes: usize,
}

/// A byte count as a gauge value (saturating: a queue never holds `i64::MAX` bytes).
fn gauge_value(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn handle(records: usize) -> (Arc<ConnectionHandle>, QueueReceiver, HubMetrics) {
        handle_with(QueueLimits {
            records,
            bytes: 1 << 20,
        })
    }

    fn handle_with(limits: QueueLimits) -> (Arc<ConnectionHandle>, QueueReceiver, HubMetrics) {
        let metrics = crate::core::metrics::Metrics::new().hub("diagnostics");
        let (h, rx) = ConnectionHandle::new(
            ConnectionId::from("c1"),
            HubName::from("diagnostics"),
            None,
            Protocol::Json,
            "WebSockets",
            limits,
            metrics.clone(),
        );
        (h, rx, metrics)
    }

    #[test]
    fn a_full_queue_closes_the_slow_connection_once_and_counts_it() {
        let (h, rx, metrics) = handle(2);
        assert!(h.enqueue(Bytes::from_static(b"a")));
        assert!(h.enqueue(Bytes::from_static(b"b")));
        assert!(!h.enqueue(Bytes::from_static(b"c")), "third record does not fit");
        assert!(!h.enqueue(Bytes::from_static(b"d")));
        assert_eq!(metrics.slow_closed.get(SlowReason::QueueRecords).get(), 1);
        assert_eq!(metrics.messages_out.get(), 2);
        let request = h.close_request().unwrap();
        assert!(request.allow_reconnect);
        assert_eq!(request.error.as_deref(), Some("Connection closed with an error."));
        assert_eq!(rx.try_recv().unwrap().record, Bytes::from_static(b"a"));
    }

    #[test]
    fn a_queue_over_its_bytes_closes_the_slow_connection_and_gives_its_bytes_back() {
        let (h, rx, metrics) = handle_with(QueueLimits {
            records: 100,
            bytes: 10,
        });
        let baseline = metrics.queued_bytes.get();
        assert!(
            h.enqueue(Bytes::from(vec![0; 30])),
            "one large record fits an empty queue"
        );
        assert_eq!(metrics.queued_bytes.get() - baseline, 30);
        assert_eq!(rx.try_recv().unwrap().record.len(), 30);
        assert_eq!(metrics.queued_bytes.get(), baseline, "taken by the writer");
        assert!(h.enqueue(Bytes::from(vec![1; 6])));
        assert!(!h.enqueue(Bytes::from(vec![2; 6])), "12 bytes would wait");
        assert_eq!(metrics.slow_closed.get(SlowReason::QueueBytes).get(), 1);
        assert_eq!(metrics.slow_closed.get(SlowReason::QueueRecords).get(), 0);
        assert!(h.close_request().unwrap().allow_reconnect);
        assert_eq!(metrics.queued_bytes.get() - baseline, 6);
        drop(rx);
        assert_eq!(
            metrics.queued_bytes.get(),
            baseline,
            "what was left is given back with the queue"
        );
    }

    #[tokio::test]
    async fn records_arrive_in_order_and_nothing_is_queued_after_the_writer_ends() {
        let (h, rx, _) = handle(100);
        let writer = tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..50 {
                got.push(rx.recv().await.record);
            }
            (got, rx)
        });
        for i in 0..50u8 {
            assert!(h.enqueue(Bytes::from(vec![i])));
            if i % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let (got, rx) = writer.await.unwrap();
        assert_eq!(got, (0..50u8).map(|i| Bytes::from(vec![i])).collect::<Vec<_>>());
        assert!(
            h.outbox.lock().records.capacity() <= KEPT_SLOTS,
            "drained queue gave back its memory"
        );
        drop(rx);
        assert!(
            !h.enqueue(Bytes::from_static(b"late")),
            "refused once the writer is gone"
        );
    }

    #[tokio::test]
    async fn the_first_close_request_wins_and_wakes_every_waiter() {
        let (h, _rx, _) = handle(1);
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let h = h.clone();
                tokio::spawn(async move { h.closed().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(h.close(CloseRequest::error("first")));
        assert!(!h.close(CloseRequest::client_left()));
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap().error.as_deref(), Some("first"));
        }
        assert_eq!(h.closed().await.error.as_deref(), Some("first"), "after the fact too");
    }
}
