//! The WebSocket transport: `GET /hubs/{hub}` upgraded to a WebSocket, with
//! `?id=<connectionToken>` after negotiate or without it (skipNegotiation).
//!
//! Each connection runs two tasks on the actix worker that accepted it
//! (`MessageStream` is `!Send`): the reader (this module's [`run`]: handshake,
//! frames to hub messages, client timeout) and the writer (queue to frames,
//! keep-alive pings, the final Close message). They meet only through the
//! connection's queue and its close signal.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, Session};
use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, timeout, Instant};

use crate::auth::Principal;
use crate::connection::{closed, CloseRequest, ConnectionHandle, Queued};
use crate::dispatch::Dispatcher;
use crate::http::{authorize_connection, query_param, AppState};
use crate::hubs::Hub;
use crate::negotiate::{random_id, ClaimError};
use crate::node::Node;
use hubwire_backplane::{BackplaneError, ConnectionId, HubName};
use hubwire_protocol::{encode_handshake_response, parse_handshake_request, Close, FrameError, HubMessage, Protocol};

/// The transport's name as SignalR spells it.
pub const TRANSPORT: &str = "WebSockets";
/// The most bytes the writer puts in one frame when coalescing queued records.
const COALESCE_LIMIT: usize = 64 * 1024;
/// The error text of a connection closed for bad input.
const CLOSED_WITH_ERROR: &str = "Connection closed with an error.";

/// `GET /hubs/{hub}`: upgrades to a WebSocket and starts the connection.
pub async fn connect(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let node = state.node.clone();
    let Some(hub) = node.hubs.get(&path) else {
        return HttpResponse::NotFound().body("No hub with that name.");
    };
    let hub_name = HubName::from(hub.name());
    if node.is_shutting_down() {
        return HttpResponse::ServiceUnavailable().body("The server is shutting down.");
    }
    let principal = match authorize_connection(&req, &node, &hub_name) {
        Ok(principal) => principal,
        Err(refused) => return refused.response(),
    };
    let token = query_param(&req, "id");
    let id = match &token {
        Some(token) => match node.negotiations.claim(token, &hub_name) {
            Ok(id) => id,
            Err(ClaimError::NotFound) => return HttpResponse::NotFound().body("No Connection with that ID"),
            Err(ClaimError::InUse) => return HttpResponse::Conflict().body("Connection ID already in use"),
        },
        None => ConnectionId::from(random_id()),
    };
    let frame_limit = (node.config.max_message_size * 4).max(64 * 1024);
    let (response, session, stream) = match actix_ws::handle(&req, body) {
        Ok(parts) => parts,
        Err(e) => {
            if let Some(token) = &token {
                node.negotiations.release(token);
            }
            return HttpResponse::from_error(e);
        }
    };
    let stream = stream
        .max_frame_size(frame_limit)
        .aggregate_continuations()
        .max_continuation_size(frame_limit);
    let connection = Connection {
        node,
        hub,
        id,
        principal,
        session,
        stream,
    };
    actix_web::rt::spawn(async move {
        connection.run().await;
        if let Some(token) = token {
            state.node.negotiations.release(&token);
        }
    });
    response
}

struct Connection {
    node: Arc<Node>,
    hub: Arc<dyn Hub>,
    id: ConnectionId,
    principal: Option<Principal>,
    session: Session,
    stream: AggregatedMessageStream,
}

/// What the reader got from the socket.
enum Frame {
    Data(Bytes),
    Heartbeat,
    Gone,
    Broken,
}

impl Connection {
    async fn next_frame(&mut self) -> Frame {
        match self.stream.recv().await {
            Some(Ok(AggregatedMessage::Text(text))) => Frame::Data(text.into_bytes()),
            Some(Ok(AggregatedMessage::Binary(data))) => Frame::Data(data),
            Some(Ok(AggregatedMessage::Ping(data))) => {
                // A failed pong means the socket is gone; the next read says so.
                let _ = self.session.pong(&data).await;
                Frame::Heartbeat
            }
            Some(Ok(AggregatedMessage::Pong(_))) => Frame::Heartbeat,
            Some(Ok(AggregatedMessage::Close(_))) | None => Frame::Gone,
            Some(Err(e)) => {
                tracing::debug!(connection = %self.id, error = %e, "websocket protocol error");
                Frame::Broken
            }
        }
    }

    /// Reads the handshake; on success returns the protocol and any bytes that
    /// followed it in the same frame, on failure the error text for the client.
    async fn handshake(&mut self) -> Result<(Protocol, BytesMut), Option<String>> {
        let unexpected = || Some("An unexpected error occurred during connection handshake.".to_owned());
        let limit = self.node.config.max_message_size;
        let handshake_timeout = self.node.config.handshake_timeout();
        let mut buf = BytesMut::new();
        let read = async {
            loop {
                match self.next_frame().await {
                    Frame::Data(data) => buf.extend_from_slice(&data),
                    Frame::Heartbeat => continue,
                    Frame::Gone => return Err(None),
                    Frame::Broken => return Err(unexpected()),
                }
                match parse_handshake_request(&buf) {
                    Ok(Some((request, consumed))) => {
                        let _ = buf.split_to(consumed);
                        return Ok(request);
                    }
                    Ok(None) if buf.len() <= limit => continue,
                    Ok(None) | Err(_) => return Err(unexpected()),
                }
            }
        };
        let request = match timeout(handshake_timeout, read).await {
            Ok(result) => result?,
            Err(_) => return Err(Some("Handshake was canceled.".into())),
        };
        let Some(protocol) = Protocol::from_name(&request.protocol) else {
            return Err(Some(format!("The protocol '{}' is not supported.", request.protocol)));
        };
        if request.version > protocol.version() {
            return Err(Some(format!(
                "The server does not support version {} of the '{}' protocol.",
                request.version, request.protocol
            )));
        }
        Ok((protocol, buf))
    }

    async fn run(mut self) {
        let (protocol, mut buf) = match self.handshake().await {
            Ok(done) => done,
            Err(error) => {
                if let Some(error) = error {
                    tracing::debug!(connection = %self.id, %error, "handshake failed");
                    let _ = self.session.text(utf8(encode_handshake_response(Some(&error)))).await;
                }
                // Closing an already closed session fails harmlessly.
                let _ = self.session.close(Some(CloseCode::Normal.into())).await;
                return;
            }
        };
        let node = self.node.clone();
        let (handle, queue) = ConnectionHandle::new(
            self.id.clone(),
            HubName::from(self.hub.name()),
            self.principal.take(),
            protocol,
            TRANSPORT,
            node.config.outbound_queue,
            node.metrics.hub(self.hub.name()),
        );
        // Cluster operations are boxed: their futures (Redis calls) are large and
        // would otherwise stay part of this long-lived connection future.
        if let Err(e) = Box::pin(node.connected(&handle)).await {
            let error = match e {
                BackplaneError::UserLimit { limit } => {
                    format!("The user already has the maximum of {limit} connections.")
                }
                BackplaneError::Unavailable(_) => "The server cannot register connections right now.".to_owned(),
            };
            let _ = self.session.text(utf8(encode_handshake_response(Some(&error)))).await;
            let _ = self.session.close(Some(CloseCode::Normal.into())).await;
            Box::pin(node.disconnected(&self.id)).await;
            return;
        }
        if self.session.text(utf8(encode_handshake_response(None))).await.is_err() {
            Box::pin(node.disconnected(&self.id)).await;
            return;
        }
        handle.metrics.connections.inc();
        handle.metrics.connections_opened.inc();
        let writer = actix_web::rt::spawn(write(
            self.session.clone(),
            queue,
            handle.clone(),
            node.config.keep_alive(),
        ));
        let dispatcher = Dispatcher::new(node.clone(), self.hub.clone(), handle.clone());
        let reason = self.read(&handle, &dispatcher, &mut buf).await;
        handle.close(reason);
        drop(dispatcher);
        // The writer ends once it has sent the Close message; a panic in it is logged by the runtime.
        let _ = writer.await;
        handle.metrics.connections.dec();
        Box::pin(node.disconnected(&self.id)).await;
    }

    /// Reads hub messages until the connection must close; returns why.
    async fn read(
        &mut self,
        handle: &Arc<ConnectionHandle>,
        dispatcher: &Dispatcher,
        buf: &mut BytesMut,
    ) -> CloseRequest {
        let protocol = handle.protocol;
        let limit = self.node.config.max_message_size;
        let client_timeout = self.node.config.client_timeout();
        let mut close_signal = handle.close_signal();
        let mut deadline = Instant::now() + client_timeout;
        loop {
            // Records that arrived with the handshake, or in the last frame.
            loop {
                let (message, consumed) = match protocol.next_record(buf, limit) {
                    Ok(Some((payload, consumed))) => (protocol.decode(payload), consumed),
                    Ok(None) => break,
                    Err(FrameError::TooLarge { .. }) | Err(FrameError::InvalidLengthPrefix) => {
                        return CloseRequest::error(CLOSED_WITH_ERROR);
                    }
                };
                let _ = buf.split_to(consumed);
                match message {
                    Ok(Some(message)) => {
                        handle.metrics.messages_in.inc();
                        if let Err(reason) = dispatcher.handle(message).await {
                            return reason;
                        }
                    }
                    Ok(None) => {} // an unknown message type: ignored, as ASP.NET Core does
                    Err(e) => {
                        tracing::debug!(connection = %self.id, error = %e, "invalid hub message");
                        return CloseRequest::error(CLOSED_WITH_ERROR);
                    }
                }
            }
            let frame = tokio::select! {
                request = closed(&mut close_signal) => return request,
                _ = sleep_until(deadline) => {
                    tracing::debug!(connection = %self.id, "client timeout elapsed");
                    return CloseRequest::error(CLOSED_WITH_ERROR);
                }
                frame = self.next_frame() => frame,
            };
            deadline = Instant::now() + client_timeout;
            match frame {
                Frame::Data(data) => buf.extend_from_slice(&data),
                Frame::Heartbeat => {}
                Frame::Gone => return CloseRequest::client_left(),
                Frame::Broken => return CloseRequest::error(CLOSED_WITH_ERROR),
            }
        }
    }
}

fn utf8(bytes: Bytes) -> bytestring::ByteString {
    // Handshake responses are JSON text we encoded ourselves.
    bytestring::ByteString::try_from(bytes).unwrap_or_default()
}

/// Sends one frame in the connection's format; `false` once the socket is gone.
async fn send_frame(session: &mut Session, protocol: Protocol, frame: Bytes) -> bool {
    let sent = if protocol.is_binary() {
        session.binary(frame).await
    } else {
        match bytestring::ByteString::try_from(frame) {
            Ok(text) => session.text(text).await,
            // JSON records are UTF-8 by construction; a broken one ends the connection.
            Err(_) => return false,
        }
    };
    sent.is_ok()
}

/// The writer: drains the queue, coalescing what waits into one frame; pings
/// when idle; on close, flushes what is queued and sends the Close message.
///
/// Per message it touches no timer and allocates nothing of its own: a lone
/// record goes out as the very `Bytes` every recipient shares, and the
/// keep-alive timer is re-armed only when it fires (profile in
/// docs/benchmarks.md).
async fn write(
    mut session: Session,
    mut queue: mpsc::Receiver<Queued>,
    handle: Arc<ConnectionHandle>,
    keep_alive: Duration,
) {
    let protocol = handle.protocol;
    let mut close_signal: watch::Receiver<Option<CloseRequest>> = handle.close_signal();
    let closing = closed(&mut close_signal);
    tokio::pin!(closing);
    let ping = tokio::time::sleep(keep_alive);
    tokio::pin!(ping);
    let mut frame = BytesMut::new();
    let mut last_sent = Instant::now();
    loop {
        tokio::select! {
            biased;
            request = &mut closing => {
                if request.notify_client {
                    while let Ok(queued) = queue.try_recv() {
                        frame.extend_from_slice(&queued.record);
                    }
                    let close = HubMessage::Close(Close { error: request.error, allow_reconnect: request.allow_reconnect });
                    protocol.encode(&close, &mut frame);
                    send_frame(&mut session, protocol, frame.split().freeze()).await;
                }
                let _ = session.close(Some(CloseCode::Normal.into())).await;
                return;
            }
            queued = queue.recv() => {
                let Some(first) = queued else { return };
                let delivery = &handle.metrics.delivery;
                let out = match queue.try_recv() {
                    Err(_) => {
                        delivery.observe(first.at.elapsed().as_secs_f64());
                        first.record
                    }
                    Ok(second) => {
                        for queued in [first, second] {
                            frame.extend_from_slice(&queued.record);
                            delivery.observe(queued.at.elapsed().as_secs_f64());
                        }
                        while frame.len() < COALESCE_LIMIT {
                            let Ok(queued) = queue.try_recv() else { break };
                            frame.extend_from_slice(&queued.record);
                            delivery.observe(queued.at.elapsed().as_secs_f64());
                        }
                        frame.split().freeze()
                    }
                };
                if !send_frame(&mut session, protocol, out).await {
                    handle.close(CloseRequest::client_left());
                }
                last_sent = Instant::now();
            }
            () = &mut ping => {
                let due = last_sent + keep_alive;
                if Instant::now() < due {
                    ping.as_mut().reset(due);
                    continue;
                }
                if !send_frame(&mut session, protocol, protocol.encode_to_bytes(&HubMessage::Ping)).await {
                    handle.close(CloseRequest::client_left());
                }
                last_sent = Instant::now();
                ping.as_mut().reset(last_sent + keep_alive);
            }
        }
    }
}
