//! What Server-Sent Events and Long Polling share (the SignalR transport
//! spec's "half-transports"): the client's records arrive in `POST`s, the
//! server's leave through an SSE stream ([`super::sse`]) or through polls
//! ([`super::long_polling`]).
//!
//! A connection is opened by its first `GET {hub}?id=<connectionToken>`
//! (after negotiate; the id is required): the same checks as a WebSocket
//! upgrade ([`super::accept`]), then a task of its own on that worker — the
//! [`run`] of the connection — passes admission (the same node-wide caps as
//! WebSockets), takes its user's place in the cluster, and puts the
//! [`Session`] in this node's table, the [`Sessions`]. Every later request
//! finds the session there by its token; a token this node does not know
//! (never negotiated, ended — or negotiated on another node: these
//! transports need sticky sessions) is answered 404 at once.
//!
//! The task is the connection's reader and writer: it reads the handshake
//! and then the records from the `POST` bodies (streamed to it in chunks,
//! with back-pressure, one `POST` at a time: a second one at once is 409),
//! dispatches them, and moves what the connection's queue holds into the
//! session's [`Outlet`], at most [`COALESCE_LIMIT`] bytes at a time. The SSE
//! stream or the current poll takes from the outlet. A client that does not
//! take leaves its records in the connection's bounded queue, which closes it
//! as slow as it does a WebSocket; a long poller that does not come back for
//! `long_poll_disconnect_secs` is closed; an SSE client silent (no `POST`, so
//! no Ping) for `client_timeout_secs` is closed.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};

use super::accept::{self, Checked};
use super::records::{closing_records, coalesce, dispatch_records, handshake_protocol, new_handle};
use super::refusal::{admission_refusal, Refusal};
use super::session::{Flag, Inbound, Outlet, Polls, Posting, Session};
pub use super::session::{Kind, Sessions};
use crate::core::connection::{CloseRequest, ConnectionHandle, QueueReceiver, CLOSED_WITH_ERROR};
use crate::core::dispatch::Dispatcher;
use crate::core::metrics::DisconnectReason;
use crate::core::metrics::RefusalReason;
use crate::core::node::Node;
use crate::web::state::{authenticate, query_value, AppState, RequestAuth};
use hubwire_backplane::{BackplaneError, ConnectionId, HubName};
use hubwire_protocol::{encode_handshake_response, parse_handshake_request, HubMessage, Protocol};

/// How often a connection's task checks its timers (client timeout, keep-alive, poller gone).
const TICK: Duration = Duration::from_secs(1);
/// Chunks of `POST` bodies that may wait for the connection's task.
const INBOUND_CHUNKS: usize = 4;

/// The `no-cache` headers of every long-polling and SSE response (ASP.NET Core's).
pub(super) fn no_cache(response: &mut actix_web::HttpResponseBuilder) {
    response
        .insert_header(("cache-control", "no-cache, no-store"))
        .insert_header(("pragma", "no-cache"))
        .insert_header(("expires", "Thu, 01 Jan 1970 00:00:00 GMT"));
}

/// A plain-text response with `status`.
pub(super) fn text(status: u16, body: &'static str) -> HttpResponse {
    Refusal::new(status, "", body).response()
}

/// The session of a request after the first: by its token (400 without one,
/// 404 unknown here), for the same hub (404) and user (401, 403).
pub(super) async fn find(req: &HttpRequest, state: &AppState) -> Result<Arc<Session>, Refusal> {
    let Some(token) = query_value(req.query_string(), "id").filter(|t| !t.is_empty()) else {
        return Err(Refusal::new(400, "Bad Request", "Connection ID required"));
    };
    let hub = state.hubs.at_path(req.path()).map(|h| HubName::from(h.name()));
    let session = state
        .sessions
        .get(&token)
        .filter(|s| hub.as_ref() == Some(&s.hub))
        .ok_or_else(|| Refusal::new(404, "Not Found", "No Connection with that ID"))?;
    check_user(req, &state.node, &session).await?;
    Ok(session)
}

/// The request must be authenticated as the session's user.
pub(super) async fn check_user(req: &HttpRequest, node: &Node, session: &Session) -> Result<(), Refusal> {
    let request = RequestAuth {
        headers: req.headers(),
        query: req.query_string(),
        peer: req.peer_addr().map(|a| a.ip()),
        transport: Some(session.kind.name()),
    };
    let principal = authenticate(&request, node, &session.hub)
        .await
        .map_err(accept::refusal)?;
    if principal.as_ref().map(|p| &p.user) != session.user.as_ref() {
        node.metrics.request_refused("user_mismatch");
        return Err(Refusal::new(
            403,
            "Forbidden",
            "The connection was negotiated by another user.",
        ));
    }
    Ok(())
}

/// Opens the connection of `token` with its first `GET`: the checks of every
/// transport, then [`run`] on a task of its own, which answers once the
/// connection passed admission and is in the table (or was refused).
pub(super) async fn open(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    token: String,
    kind: Kind,
) -> Result<Arc<Session>, HttpResponse> {
    let node = &state.node;
    let peer = req.peer_addr().map(|a| a.ip());
    let checked = accept::check(
        node,
        &state.hubs,
        req.path(),
        req.headers(),
        req.query_string(),
        peer,
        kind.name(),
    )
    .await
    .map_err(|r| r.response())?;
    let id = accept::claim(node, &token, &checked).map_err(|r| r.response())?;
    let (inbound, inbound_rx) = mpsc::channel(INBOUND_CHUNKS);
    let session = Arc::new(Session {
        kind,
        token,
        hub: checked.hub_name.clone(),
        user: checked.principal.as_ref().map(|p| p.user.clone()),
        inbound,
        posting: AtomicBool::new(false),
        outlet: Outlet::default(),
        stop: Flag::default(),
        polls: Polls::new(),
    });
    let (ready, ready_rx) = oneshot::channel();
    let opening = Opening {
        node: node.clone(),
        sessions: state.sessions.clone(),
        session: session.clone(),
        checked,
        id,
        peer: req.peer_addr().map(|a| a.ip()),
        ready,
    };
    // On this worker: the dispatcher is the worker's, as a WebSocket's is.
    actix_web::rt::spawn(run(opening, inbound_rx));
    match ready_rx.await {
        Ok(Ok(())) => Ok(session),
        Ok(Err(refusal)) => Err(refusal.response()),
        Err(_) => Err(text(500, "The connection could not be opened.")),
    }
}

/// `POST {hub}?id=`: the client's records. Answered 200 once they are
/// dispatched; 409 while another `POST` of the connection is in progress.
pub async fn post(req: HttpRequest, mut body: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let session = match find(&req, &state).await {
        Ok(session) => session,
        Err(refusal) => return refusal.response(),
    };
    if session.posting.swap(true, Ordering::AcqRel) {
        return text(409, "Another send is in progress.");
    }
    let _posting = Posting(&session.posting);
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            return text(400, "The request body could not be read.");
        };
        if session.inbound.send(Inbound::Chunk(chunk)).await.is_err() {
            return text(404, "No Connection with that ID");
        }
    }
    let (done, done_rx) = oneshot::channel();
    if session.inbound.send(Inbound::End(done)).await.is_err() {
        return text(404, "No Connection with that ID");
    }
    match done_rx.await {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").finish(),
        Err(_) => text(404, "No Connection with that ID"),
    }
}

/// `DELETE {hub}?id=`: a long-polling client ends its connection (202); the
/// SSE transport has no DELETE (400), as in ASP.NET Core.
pub async fn delete(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let session = match find(&req, &state).await {
        Ok(session) => session,
        Err(refusal) => return refusal.response(),
    };
    if session.kind != Kind::LongPolling {
        return text(400, "Cannot terminate this connection using the DELETE endpoint.");
    }
    session.stop.set();
    HttpResponse::Accepted().content_type("text/plain").finish()
}

/// What [`run`] starts from.
struct Opening {
    node: Arc<Node>,
    sessions: Arc<Sessions>,
    session: Arc<Session>,
    checked: Checked,
    id: ConnectionId,
    peer: Option<IpAddr>,
    ready: oneshot::Sender<Result<(), Refusal>>,
}

/// One SSE or long-polling connection, from admission to the end.
async fn run(opening: Opening, mut inbound: mpsc::Receiver<Inbound>) {
    let Opening {
        node,
        sessions,
        session,
        checked,
        id,
        peer,
        ready,
    } = opening;
    let Checked {
        hub,
        hub_name,
        principal,
        hold,
    } = checked;
    let kind = session.kind;
    let token = session.token.clone();
    let (_socket, handshake) = match node.admission.admit(peer) {
        Ok(permits) => permits,
        Err(reason) => {
            node.metrics.connections_refused.count(reason);
            let _ = ready.send(Err(admission_refusal(reason)));
            node.negotiations.release(&token);
            return;
        }
    };
    let user = principal.as_ref().map(|p| &p.user);
    if let Err(e) = Box::pin(node.reserve(&id, &hub_name, user, kind.name())).await {
        let reason = match e {
            BackplaneError::UserLimit { .. } => RefusalReason::UserLimit,
            BackplaneError::Unavailable(_) => RefusalReason::Backplane,
        };
        node.metrics.connections_refused.count(reason);
        let _ = ready.send(Err(admission_refusal(reason)));
        node.negotiations.release(&token);
        return;
    }
    sessions.insert(&session);
    let end = |sessions: &Sessions, node: &Node, token: &str| {
        sessions.remove(token);
        node.negotiations.release(token);
    };
    if ready.send(Ok(())).is_err() {
        Box::pin(node.release(&id)).await;
        end(&sessions, &node, &token);
        return;
    }
    let mut buf = BytesMut::new();
    let handshake_result = read_handshake(&node, &session, &mut inbound, &mut buf).await;
    drop(handshake);
    let protocol = match handshake_result {
        Ok(protocol) if kind == Kind::Sse && protocol.is_binary() => Err(Some(format!(
            "Cannot use the '{}' protocol on the current transport. The transport does not support 'Binary' transfer format.",
            protocol.name()
        ))),
        other => other,
    };
    let protocol = match protocol {
        Ok(protocol) => protocol,
        Err(error) => {
            if let Some(error) = error {
                tracing::debug!(connection = %id, %error, "handshake failed");
                session.outlet.push(&encode_handshake_response(Some(&error)));
            }
            session.outlet.end();
            Box::pin(node.release(&id)).await;
            drop(hold);
            linger(&node, &session).await;
            end(&sessions, &node, &token);
            return;
        }
    };
    let (handle, mut queue) = new_handle(&node, id.clone(), &hub_name, principal, protocol, kind.name());
    // Before the connection is live, so that it is the first thing the client reads.
    session.outlet.push(&encode_handshake_response(None));
    if let Err(e) = Box::pin(node.connected(&handle)).await {
        tracing::debug!(connection = %id, error = %e, "could not make the connection live");
        handle.close(CloseRequest::error("The server cannot register connections right now."));
    }
    let open = node.metrics.open(hub_name.as_str(), kind.name(), protocol.name());
    if node.config.close_on_token_expiry {
        node.close_at_expiry(&handle);
    }
    let dispatcher = Dispatcher::new(node.clone(), hub.clone(), handle.clone());
    let reason = serve(&node, &session, &handle, &mut queue, &dispatcher, &mut inbound, buf).await;
    handle.close(reason.clone());
    let request = handle.close_request().unwrap_or(reason);
    let mut last = BytesMut::new();
    closing_records(request, protocol, &queue, &mut last);
    if !last.is_empty() {
        session.outlet.push(&last);
    }
    session.outlet.end();
    drop(queue);
    drop(dispatcher);
    drop(inbound);
    // The first close request, so `reason` when nothing else closed it first.
    open.closed(
        handle
            .close_request()
            .map_or(DisconnectReason::ClientClosed, |r| r.disconnect_reason()),
    );
    Box::pin(node.disconnected(&id)).await;
    // The connection is gone from the cluster: a drain need not wait for the linger.
    drop(hold);
    linger(&node, &session).await;
    end(&sessions, &node, &token);
}

/// After the end: a long-polling session stays in the table until a poll has
/// taken what was left and its 204 (or `long_poll_disconnect_secs`), so that
/// the client's next poll learns the connection is over rather than unknown.
async fn linger(node: &Node, session: &Session) {
    if session.kind == Kind::LongPolling && !session.stop.is_set() {
        let _ = timeout(node.config.long_poll_disconnect(), async {
            tokio::select! {
                () = session.outlet.end_taken.wait() => {}
                () = session.stop.wait() => {}
            }
        })
        .await;
    }
}

/// Reads the handshake request from the `POST`s; the protocol, or the error
/// text for the client (`None`: the client went away).
async fn read_handshake(
    node: &Node,
    session: &Session,
    inbound: &mut mpsc::Receiver<Inbound>,
    buf: &mut BytesMut,
) -> Result<Protocol, Option<String>> {
    let unexpected = || Some("An unexpected error occurred during connection handshake.".to_owned());
    let limit = node.config.max_handshake_size;
    let read = async {
        loop {
            match parse_handshake_request(buf) {
                Ok(Some((request, consumed))) => {
                    let _ = buf.split_to(consumed);
                    return Ok(request);
                }
                Ok(None) if buf.len() <= limit => {}
                Ok(None) | Err(_) => return Err(unexpected()),
            }
            tokio::select! {
                next = inbound.recv() => match next {
                    Some(Inbound::Chunk(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Inbound::End(done)) => { let _ = done.send(()); }
                    None => return Err(None),
                },
                () = session.stop.wait() => return Err(None),
            }
        }
    };
    let request = match timeout(node.config.handshake_timeout(), read).await {
        Ok(result) => result?,
        Err(_) => return Err(Some("Handshake was canceled.".into())),
    };
    handshake_protocol(&request).map_err(Some)
}

/// A live connection until it must close; returns why.
async fn serve(
    node: &Node,
    session: &Session,
    handle: &Arc<ConnectionHandle>,
    queue: &mut QueueReceiver,
    dispatcher: &Dispatcher,
    inbound: &mut mpsc::Receiver<Inbound>,
    mut buf: BytesMut,
) -> CloseRequest {
    let limit = node.config.max_message_size;
    // Records that came with the handshake.
    if let Err(stop) = dispatch_records(&mut buf, limit, handle, dispatcher, None).await {
        return stop.request();
    }
    let closing = handle.closed();
    tokio::pin!(closing);
    let tick = tokio::time::sleep(TICK);
    tokio::pin!(tick);
    let mut last_heard = Instant::now();
    let ping = handle.protocol.encode_to_bytes(&HubMessage::Ping);
    loop {
        let room = session.outlet.has_room();
        tokio::select! {
            biased;
            request = &mut closing => return request,
            () = session.stop.wait() => return CloseRequest::client_left(),
            next = inbound.recv() => {
                last_heard = Instant::now();
                match next {
                    Some(Inbound::Chunk(chunk)) => {
                        buf.extend_from_slice(&chunk);
                        if let Err(stop) = dispatch_records(&mut buf, limit, handle, dispatcher, None).await {
                            return stop.request();
                        }
                    }
                    Some(Inbound::End(done)) => { let _ = done.send(()); }
                    None => return CloseRequest::client_left(),
                }
            }
            first = queue.recv(), if room => {
                let mut out = BytesMut::new();
                coalesce(first, queue, &mut out, &handle.metrics.delivery, |_| {});
                session.outlet.push(&out);
            }
            () = session.outlet.drained.notified(), if !room => {}
            () = &mut tick => {
                tick.as_mut().reset(Instant::now() + TICK);
                match session.kind {
                    Kind::Sse => {
                        if last_heard.elapsed() >= node.config.client_timeout() {
                            tracing::debug!(connection = %handle.id, "client timeout elapsed");
                            return CloseRequest::error(CLOSED_WITH_ERROR);
                        }
                        if session.outlet.idle().is_none_or(|idle| idle >= node.config.keep_alive()) {
                            session.outlet.push(&ping);
                        }
                    }
                    // The poll is the keep-alive (the client sends no Pings).
                    Kind::LongPolling => {
                        if session.polls.gone_for() >= node.config.long_poll_disconnect() {
                            tracing::debug!(connection = %handle.id, "long poller did not come back");
                            return CloseRequest::client_left();
                        }
                    }
                }
            }
        }
    }
}
