//! Hub records in and out, the same on every transport: the handshake's
//! checks, the client's records to the dispatcher, and the queue's records
//! coalesced into one write.

use std::sync::Arc;

use bytes::BytesMut;
use prometheus::Histogram;

use super::resume::Stateful;
use crate::core::connection::{CloseRequest, ConnectionHandle, QueueLimits, QueueReceiver, Queued, CLOSED_WITH_ERROR};
use crate::core::dispatch::Dispatcher;
use crate::core::node::Node;
use hubwire_backplane::{ConnectionId, HubName};
use hubwire_protocol::{Close, FrameError, HandshakeRequest, HubMessage, Protocol};

/// The most bytes one write (a WebSocket frame, an SSE event, a poll's
/// answer) coalesces from the queue.
pub(super) const COALESCE_LIMIT: usize = 64 * 1024;

/// The protocol a handshake request asks for, or the error text the client
/// gets (ASP.NET Core's).
pub(super) fn handshake_protocol(request: &HandshakeRequest) -> Result<Protocol, String> {
    let Some(protocol) = Protocol::from_name(&request.protocol) else {
        return Err(format!("The protocol '{}' is not supported.", request.protocol));
    };
    if request.version > protocol.version() {
        return Err(format!(
            "The server does not support version {} of the '{}' protocol.",
            request.version, request.protocol
        ));
    }
    Ok(protocol)
}

/// Why reading a client's records stopped.
pub(super) enum Stop {
    /// The connection closes for this reason.
    Close(CloseRequest),
    /// A record longer than `max_message_size` (a WebSocket answers 1009).
    TooBig,
}

impl Stop {
    /// The close request it amounts to.
    pub(super) fn request(self) -> CloseRequest {
        match self {
            Self::Close(request) => request,
            Self::TooBig => CloseRequest::error(CLOSED_WITH_ERROR),
        }
    }
}

/// Dispatches every complete record at the start of `buf` (records longer
/// than `limit` are refused), leaving a partial one in place.
pub(super) async fn dispatch_records(
    buf: &mut BytesMut,
    limit: usize,
    handle: &ConnectionHandle,
    dispatcher: &Dispatcher,
    stateful: Option<&Stateful>,
) -> Result<(), Stop> {
    let protocol = handle.protocol;
    loop {
        let (message, consumed) = match protocol.next_record(buf, limit) {
            Ok(Some((payload, consumed))) => (protocol.decode(payload), consumed),
            Ok(None) => return Ok(()),
            Err(FrameError::TooLarge { .. }) => return Err(Stop::TooBig),
            Err(FrameError::InvalidLengthPrefix) => return Err(Stop::Close(CloseRequest::error(CLOSED_WITH_ERROR))),
        };
        let _ = buf.split_to(consumed);
        handle.metrics.bytes_in.inc_by(consumed as u64);
        match message {
            Ok(Some(message)) => {
                handle.metrics.messages_in.inc();
                let message = match stateful {
                    Some(stateful) => match stateful.take(message).map_err(Stop::Close)? {
                        Some(message) => message,
                        None => continue,
                    },
                    None => message,
                };
                dispatcher.handle(message).await.map_err(Stop::Close)?;
            }
            Ok(None) => {} // an unknown message type: ignored, as ASP.NET Core does
            Err(e) => {
                tracing::debug!(connection = %handle.id, error = %e, "invalid hub message");
                return Err(Stop::Close(CloseRequest::error(CLOSED_WITH_ERROR)));
            }
        }
    }
}

/// A connection's handle and queue, with the node's queue limits.
pub(super) fn new_handle(
    node: &Node,
    id: ConnectionId,
    hub: &HubName,
    principal: Option<crate::core::auth::Principal>,
    protocol: Protocol,
    transport: &'static str,
) -> (Arc<ConnectionHandle>, QueueReceiver) {
    ConnectionHandle::new(
        id,
        hub.clone(),
        principal,
        protocol,
        transport,
        QueueLimits {
            records: node.config.outbound_queue,
            bytes: node.config.outbound_queue_bytes,
        },
        node.metrics.hub(hub.as_str()),
    )
}

/// Appends `first` and what else waits in `queue` to `out`, up to
/// [`COALESCE_LIMIT`] bytes, observing each record's delivery latency and
/// handing each to `sending` first (a stateful connection numbers them).
pub(super) fn coalesce(
    first: Queued,
    queue: &QueueReceiver,
    out: &mut BytesMut,
    delivery: &Histogram,
    mut sending: impl FnMut(&Queued),
) {
    sending(&first);
    out.extend_from_slice(&first.record);
    delivery.observe(first.at.elapsed().as_secs_f64());
    while out.len() < COALESCE_LIMIT {
        let Some(queued) = queue.try_recv() else { break };
        sending(&queued);
        out.extend_from_slice(&queued.record);
        delivery.observe(queued.at.elapsed().as_secs_f64());
    }
}

/// Appends everything still queued and, if the client is to be told, the
/// Close message of `request` to `out`: what a closing connection sends last.
pub(super) fn closing_records(request: CloseRequest, protocol: Protocol, queue: &QueueReceiver, out: &mut BytesMut) {
    if !request.notify_client {
        return;
    }
    while let Some(queued) = queue.try_recv() {
        out.extend_from_slice(&queued.record);
    }
    let close = HubMessage::Close(Close {
        error: request.error,
        allow_reconnect: request.allow_reconnect,
    });
    protocol.encode(&close, out);
}
