//! One connection as the rest of the node sees it: identity, bounded outbound
//! queue, and the signal that closes it.
//!
//! Senders never block: [`ConnectionHandle::enqueue`] uses `try_send`, and a
//! full queue closes that (slow) connection instead of slowing everyone else.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::auth::Principal;
use crate::metrics::HubMetrics;
use hubwire_backplane::{ConnectionId, HubName, UserId};
use hubwire_protocol::Protocol;

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
    queue: mpsc::Sender<Queued>,
    close: watch::Sender<Option<CloseRequest>>,
}

impl ConnectionHandle {
    /// A handle plus the receiving ends its writer and reader use.
    pub fn new(
        id: ConnectionId,
        hub: HubName,
        principal: Option<Principal>,
        protocol: Protocol,
        transport: &'static str,
        capacity: usize,
        metrics: HubMetrics,
    ) -> (Arc<Self>, mpsc::Receiver<Queued>) {
        let (queue, rx) = mpsc::channel(capacity.max(1));
        let (close, _) = watch::channel(None);
        let handle = Arc::new(Self {
            id,
            hub,
            principal,
            protocol,
            transport,
            metrics,
            queue,
            close,
        });
        (handle, rx)
    }

    /// The user id, if authenticated.
    pub fn user(&self) -> Option<&UserId> {
        self.principal.as_ref().map(|p| &p.user)
    }

    /// Queues one encoded record (already in this connection's protocol).
    /// Returns `false` when the connection is closing or was too slow, in which
    /// case it is being closed.
    pub fn enqueue(&self, record: Bytes) -> bool {
        match self.queue.try_send(Queued {
            record,
            at: Instant::now(),
        }) {
            Ok(()) => {
                self.metrics.messages_out.inc();
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.close(CloseRequest::error("Connection closed with an error.")) {
                    self.metrics.slow_closed.inc();
                    tracing::warn!(connection = %self.id, "outbound queue full: closing slow connection");
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Asks the connection to close; the first request wins. Returns whether
    /// this call was the first.
    pub fn close(&self, request: CloseRequest) -> bool {
        self.close.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(request);
            true
        })
    }

    /// A receiver that resolves once the connection is asked to close.
    pub fn close_signal(&self) -> watch::Receiver<Option<CloseRequest>> {
        self.close.subscribe()
    }
}

/// Waits until a close is requested and returns the request.
pub async fn closed(signal: &mut watch::Receiver<Option<CloseRequest>>) -> CloseRequest {
    match signal.wait_for(Option::is_some).await {
        Ok(request) => request.clone().unwrap_or_else(CloseRequest::client_left),
        // The handle is gone: nobody can ask any more, treat as closed.
        Err(_) => CloseRequest::client_left(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn handle(capacity: usize) -> (Arc<ConnectionHandle>, mpsc::Receiver<Queued>, HubMetrics) {
        let metrics = crate::metrics::Metrics::new().hub("diagnostics");
        let (h, rx) = ConnectionHandle::new(
            ConnectionId::from("c1"),
            HubName::from("diagnostics"),
            None,
            Protocol::Json,
            "WebSockets",
            capacity,
            metrics.clone(),
        );
        (h, rx, metrics)
    }

    #[test]
    fn a_full_queue_closes_the_slow_connection_once_and_counts_it() {
        let (h, mut rx, metrics) = handle(2);
        assert!(h.enqueue(Bytes::from_static(b"a")));
        assert!(h.enqueue(Bytes::from_static(b"b")));
        assert!(!h.enqueue(Bytes::from_static(b"c")), "third record does not fit");
        assert!(!h.enqueue(Bytes::from_static(b"d")));
        assert_eq!(metrics.slow_closed.get(), 1);
        assert_eq!(metrics.messages_out.get(), 2);
        let request = h.close_signal().borrow().clone().unwrap();
        assert!(request.allow_reconnect);
        assert_eq!(request.error.as_deref(), Some("Connection closed with an error."));
        assert_eq!(rx.try_recv().unwrap().record, Bytes::from_static(b"a"));
    }

    #[tokio::test]
    async fn the_first_close_request_wins() {
        let (h, _rx, _) = handle(1);
        let mut signal = h.close_signal();
        assert!(h.close(CloseRequest::error("first")));
        assert!(!h.close(CloseRequest::client_left()));
        assert_eq!(closed(&mut signal).await.error.as_deref(), Some("first"));
    }
}
