//! The WebSocket transport: `GET /hubs/{hub}` upgraded to a WebSocket, with
//! `?id=<connectionToken>` after negotiate or without it (skipNegotiation).
//!
//! actix-http hands every `Upgrade: websocket` request to [`upgrade`] together
//! with the TCP socket itself (its HTTP/1 buffers are dropped there). From then
//! on hubwire reads and writes the socket directly ([`super::frame`]): reads
//! go through one buffer per worker thread and leave only unprocessed record
//! bytes behind, writes go out from the shared encoded record with a vectored
//! write. What an idle connection keeps is its small state, not buffers
//! (docs/decisions.md, "WebSocket framing on the socket").
//!
//! Each connection runs on the worker that accepted it as two parts: the reader
//! (the upgrade's own future: handshake, frames to hub messages, client
//! timeout) and the writer (a task: queue to frames, keep-alive pings, pongs,
//! the final Close). They meet only through the connection's queue, its close
//! signal and the pong slot.
//!
//! Before the 101 an upgrade passes admission (`crate::core::admission`: node-wide
//! and handshake caps), the checks of [`accept`], and takes its user's place
//! in the cluster (`Node::reserve`); refusals are plain HTTP responses
//! (`super::refusal`). A write that finds the socket full waits at most the
//! write timeout, and less once the connection is closing, so a client that
//! stops reading cannot hold a connection (docs/decisions.md, "Slow clients
//! and admission").

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_codec::{Framed, FramedParts};
use actix_http::{h1, ws::HandshakeError, HttpMessage as _, Request};
use actix_web::web;
use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{timeout, Instant};
use tracing::Instrument;

use super::frame::{self, Control, FrameReader, CLOSE_NORMAL, CLOSE_TOO_BIG, OP_BINARY, OP_CLOSE, OP_PONG, OP_TEXT};
use super::records::{closing_records, coalesce, dispatch_records, handshake_protocol, new_handle, Stop};
use super::refusal::{admission_refusal, handshake_refusal, Refusal};
use super::resume::Stateful;
use crate::core::admission::{HandshakePermit, SocketPermit};
use crate::core::auth::Principal;
use crate::core::connection::{CloseRequest, ConnectionHandle, QueueReceiver, Queued, CLOSED_WITH_ERROR};
use crate::core::dispatch::Dispatcher;
use crate::core::drain::Hold;
use crate::core::hub::{Hub, HubSet};
use crate::core::metrics::{DisconnectReason, RefusalReason, SlowReason};
use crate::core::negotiations::random_id;
use crate::core::node::Node;
use crate::web::state::{query_value, AppState};
use hubwire_backplane::{BackplaneError, ConnectionId, HubName};
use hubwire_protocol::{encode_handshake_response, parse_handshake_request, HubMessage, Protocol};

/// The transport's name as SignalR spells it.
pub const TRANSPORT: &str = "WebSockets";
/// Bytes read from a socket at a time, into the worker's shared buffer.
const READ_CHUNK: usize = 16 * 1024;
/// A record buffer grown past this is dropped once empty, not kept.
const KEEP_BUFFER: usize = 4 * 1024;
/// How long a closed connection waits for the client's side of the closing
/// handshake before the socket is dropped.
const LINGER: Duration = Duration::from_secs(2);
/// How long a write blocked on a full socket may still wait once the
/// connection is asked to close: the close wins over a client that does not read.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

thread_local! {
    /// The read buffer every connection of this worker thread shares: bytes
    /// are parsed out of it before the reader awaits again.
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// A WebSocket request that may become a connection.
struct Accepted {
    hub: Arc<dyn Hub>,
    id: ConnectionId,
    principal: Option<Principal>,
    /// The negotiate token it claimed, released when the connection ends.
    token: Option<String>,
    /// Graceful shutdown waits for this connection while it is alive.
    hold: Hold,
    accept_key: [u8; 28],
    /// A stateful connection's new socket (`super::resume`): handed over to
    /// the connection, which is already live.
    resume: bool,
}

/// Checks the request as the connect endpoint must: path, WebSocket headers,
/// then what every transport checks ([`super::accept`]), the key, the
/// negotiated id.
async fn accept(
    node: &Node,
    hubs: &HubSet,
    req: &Request,
    peer: Option<std::net::IpAddr>,
) -> Result<Accepted, Refusal> {
    if hubs.at_path(req.path()).is_none() && !req.path().starts_with("/hubs/") {
        return Err(Refusal::new(404, "Not Found", ""));
    }
    actix_http::ws::verify_handshake(req.head()).map_err(handshake_refusal)?;
    let query = req.uri().query().unwrap_or("");
    let headers = &req.head().headers;
    let checked = super::accept::check(node, hubs, req.path(), headers, query, peer, TRANSPORT).await?;
    let key = req
        .head()
        .headers
        .get(actix_http::header::SEC_WEBSOCKET_KEY)
        .map(|k| actix_http::ws::hash_key(k.as_bytes()))
        .ok_or_else(|| handshake_refusal(HandshakeError::BadWebsocketKey))?;
    let token = query_value(query, "id");
    let resumed = token
        .as_deref()
        .and_then(|token| super::resume::find(node, token, &checked.hub_name, checked.principal.as_ref()));
    let resume = resumed.is_some();
    let id = match (&token, resumed) {
        (_, Some(resumed)) => resumed?,
        (Some(token), None) => super::accept::claim(node, token, &checked)?,
        (None, None) => ConnectionId::from(random_id()),
    };
    Ok(Accepted {
        hub: checked.hub,
        id,
        principal: checked.principal,
        token,
        hold: checked.hold,
        accept_key: key,
        resume,
    })
}

/// The upgrade service: every `Upgrade: websocket` request comes here with its
/// socket; the future runs on the worker that accepted the socket.
pub async fn upgrade(state: web::Data<AppState>, req: Request, framed: Framed<TcpStream, h1::Codec>) {
    let node = state.node.clone();
    // actix's HTTP/1 codec and write buffer are of no further use; only bytes
    // the client sent right after its request (usually none) are kept.
    let FramedParts {
        io: stream,
        read_buf,
        write_buf,
        codec,
        ..
    } = framed.into_parts();
    drop((write_buf, codec));
    // A copy: the buffer itself shares its 8 KiB allocation with the request
    // head, and an unmoved local would keep it for the connection's life.
    let early = BytesMut::from(&read_buf[..]);
    drop(read_buf);
    // The connect span (`GET {hub path}`, for the connection's life) when tracing is on.
    let mut connect_span = crate::core::telemetry::enabled()
        .then(|| {
            let parent = req
                .headers()
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .and_then(crate::core::telemetry::TraceContext::parse);
            let name = format!("GET {}", req.path());
            let mut span = crate::core::telemetry::span(name, crate::core::telemetry::Kind::Server, parent)?;
            span.set("http.request.method", "GET");
            span.set("url.path", req.path());
            span.set("signalr.transport", "websockets");
            Some(span)
        })
        .flatten();
    // The connection's own work (its registration in the keyspace, joining
    // its user's groups, its removal) runs in the connect span's context, so
    // that its store calls and Redis commands are children of it.
    let context = connect_span.as_ref().map(crate::core::telemetry::Span::context);
    // Boxed: the checks and the 101 are a passing phase, and their state would
    // otherwise stay part of actix's per-socket task for the connection's life
    // (memory per connection).
    let opened = crate::core::telemetry::within(context, open(&node, &state.hubs, req, stream));
    let Some(Opened {
        accepted,
        socket: _socket,
        handshake,
        stream,
    }) = Box::pin(opened).await
    else {
        return;
    };
    if accepted.resume {
        super::resume::hand_over(&node, accepted.token.as_deref(), stream, early);
        return;
    }
    let token = accepted.token.clone();
    // Boxed: the connection's future is large and lives as long as it does;
    // boxing keeps actix's per-socket task small.
    // The connection's fields on every log line it causes (docs/configuration.md, `log_format`).
    let span = tracing::info_span!(
        "connection",
        connection = %accepted.id,
        hub = accepted.hub.name(),
        user = accepted.principal.as_ref().map(|p| p.user.as_str()),
    );
    if let Some(connect_span) = connect_span.as_mut() {
        connect_span.set("http.response.status_code", 101u16);
        connect_span.set("rpc.service", accepted.hub.name().to_owned());
    }
    let running = run(node.clone(), accepted, handshake, stream, early).instrument(span);
    Box::pin(crate::core::telemetry::within(context, running)).await;
    drop(connect_span);
    if let Some(token) = token {
        node.negotiations.release(&token);
    }
}

/// A socket that got its 101: what [`run`] needs, and the node-wide place it holds.
struct Opened<'a> {
    accepted: Accepted,
    socket: SocketPermit<'a>,
    handshake: HandshakePermit<'a>,
    stream: TcpStream,
}

/// Admission, the connect endpoint's checks, the per-user place and the 101.
/// `None` once the socket was refused (the refusal written, what it claimed
/// given back).
async fn open<'a>(node: &'a Node, hubs: &HubSet, req: Request, stream: TcpStream) -> Option<Opened<'a>> {
    let limit = WriteLimit::new(node);
    // Admission first: it is the cheapest check, and a refused socket claims nothing.
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    let admitted = node.admission.admit(peer);
    let accepted = match admitted {
        Ok(permits) => accept(node, hubs, &req, peer).await.map(|accepted| (permits, accepted)),
        Err(reason) => {
            node.metrics.connections_refused.count(reason);
            Err(admission_refusal(reason))
        }
    };
    drop(req);
    let ((socket, handshake), accepted) = match accepted {
        Ok(accepted) => accepted,
        Err(refusal) => {
            let _ = write_all(&stream, &refusal.bytes(), limit).await;
            return None;
        }
    };
    // The per-user place is taken before the 101, so that a user at its
    // limit is refused with a status instead of holding sockets in handshakes.
    let user = accepted.principal.as_ref().map(|p| &p.user);
    let hub_name = HubName::from(accepted.hub.name());
    // A resumed connection holds its place already.
    let reserved = if accepted.resume {
        Ok(())
    } else {
        Box::pin(node.reserve(&accepted.id, &hub_name, user, TRANSPORT)).await
    };
    match reserved {
        Ok(()) => {
            let mut response = Vec::with_capacity(160);
            response.extend_from_slice(
                b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ",
            );
            response.extend_from_slice(&accepted.accept_key);
            response.extend_from_slice(b"\r\n\r\n");
            if write_all(&stream, &response, limit).await.is_ok() {
                return Some(Opened {
                    accepted,
                    socket,
                    handshake,
                    stream,
                });
            }
            if accepted.resume {
                return None;
            }
            Box::pin(node.release(&accepted.id)).await;
        }
        Err(e) => {
            let reason = match e {
                BackplaneError::UserLimit { .. } => RefusalReason::UserLimit,
                BackplaneError::Unavailable(_) => RefusalReason::Backplane,
            };
            node.metrics.connections_refused.count(reason);
            let _ = write_all(&stream, &admission_refusal(reason).bytes(), limit).await;
        }
    }
    if let Some(token) = &accepted.token {
        node.negotiations.release(token);
    }
    None
}

/// What the reader and the writer of one connection share.
#[derive(Default)]
struct Shared {
    /// A Ping's payload waiting for its Pong.
    pong: RefCell<Option<Vec<u8>>>,
    pong_due: Notify,
    /// The client closed its side (Close frame or end of stream).
    peer_closed: Cell<bool>,
    /// The client sent a Close frame (a stateful connection then ends instead
    /// of waiting for a new socket).
    close_frame: Cell<bool>,
    /// The status of our Close frame when it is not 1000: the client's own
    /// code echoed, or why its stream was refused (1002, 1007, 1009).
    close_code: Cell<Option<u16>>,
}

impl Shared {
    fn close_code(&self) -> u16 {
        self.close_code.get().unwrap_or(CLOSE_NORMAL)
    }
}

/// What the reader got from the socket.
enum Event {
    /// Bytes were read (record bytes may be waiting in the buffer).
    Data,
    /// The client closed the connection.
    Gone,
    /// The client broke the WebSocket protocol.
    Broken,
}

/// The reading half of a connection.
struct Reader {
    stream: Rc<TcpStream>,
    shared: Rc<Shared>,
    frames: FrameReader,
    /// Record bytes not processed yet.
    buf: BytesMut,
    /// Bytes that came with the HTTP request, fed before the socket is read.
    early: BytesMut,
    id: ConnectionId,
}

impl Reader {
    fn new(node: &Node, stream: Rc<TcpStream>, shared: Rc<Shared>, early: BytesMut, id: ConnectionId) -> Self {
        let frame_limit = (node.config.max_message_size * 4).max(64 * 1024);
        Self {
            stream,
            shared,
            frames: FrameReader::new(frame_limit),
            buf: BytesMut::new(),
            early,
            id,
        }
    }

    async fn next(&mut self) -> Event {
        if !self.early.is_empty() {
            let early = std::mem::take(&mut self.early);
            return self.consume(&early);
        }
        let stream = self.stream.clone();
        loop {
            match read_some(&stream, |bytes| self.consume(bytes)).await {
                Some(Some(event)) => return event,
                Some(None) => continue,
                None => return self.gone(),
            }
        }
    }

    fn gone(&self) -> Event {
        self.shared.peer_closed.set(true);
        Event::Gone
    }

    /// Parses bytes from the socket: data payload into `buf`, control frames handled.
    fn consume(&mut self, mut input: &[u8]) -> Event {
        while !input.is_empty() {
            match self.frames.feed(input, &mut self.buf) {
                Ok((used, control)) => {
                    input = &input[used..];
                    match control {
                        Some(Control::Ping(payload)) => {
                            *self.shared.pong.borrow_mut() = Some(payload);
                            self.shared.pong_due.notify_one();
                        }
                        Some(Control::Close(code)) => {
                            // Echoed, as RFC 6455 §5.5.1 suggests.
                            self.shared.close_code.set(code);
                            self.shared.close_frame.set(true);
                            return self.gone();
                        }
                        Some(Control::Pong) | None => {}
                    }
                }
                Err(e) => {
                    tracing::debug!(connection = %self.id, error = %e, "websocket protocol error");
                    self.shared.close_code.set(Some(e.close_code()));
                    return Event::Broken;
                }
            }
        }
        Event::Data
    }

    /// Forgets a large record buffer once it is empty (memory per idle connection).
    fn trim(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > KEEP_BUFFER {
            self.buf = BytesMut::new();
        }
    }

    /// Reads the handshake; on success returns the protocol and the version
    /// asked for (any records that followed it stay in `buf`), on failure the
    /// error text for the client.
    async fn handshake(&mut self, node: &Node) -> Result<(Protocol, u32), Option<String>> {
        let unexpected = || Some("An unexpected error occurred during connection handshake.".to_owned());
        let limit = node.config.max_handshake_size;
        let read = async {
            loop {
                match parse_handshake_request(&self.buf) {
                    Ok(Some((request, consumed))) => {
                        let _ = self.buf.split_to(consumed);
                        return Ok(request);
                    }
                    Ok(None) if self.buf.len() <= limit => {}
                    Ok(None) | Err(_) => return Err(unexpected()),
                }
                match self.next().await {
                    Event::Data => {}
                    Event::Gone => return Err(None),
                    Event::Broken => return Err(unexpected()),
                }
            }
        };
        let request = match timeout(node.config.handshake_timeout(), read).await {
            Ok(result) => result?,
            Err(_) => return Err(Some("Handshake was canceled.".into())),
        };
        handshake_protocol(&request)
            .map(|protocol| (protocol, request.version))
            .map_err(Some)
    }

    /// Reads hub messages until the connection must close; returns why.
    /// A stateful connection's Acks and Sequences are handled on the way,
    /// and messages its client resent are skipped.
    async fn read(
        &mut self,
        node: &Node,
        handle: &Arc<ConnectionHandle>,
        dispatcher: &Dispatcher,
        stateful: Option<&Stateful>,
    ) -> CloseRequest {
        let limit = node.config.max_message_size;
        let client_timeout = node.config.client_timeout();
        let closing = handle.closed();
        tokio::pin!(closing);
        // One timer for the connection's life, re-armed only when it fires
        // (not one registered and cancelled per read).
        let mut last_read = Instant::now();
        let silence = tokio::time::sleep(client_timeout);
        tokio::pin!(silence);
        loop {
            // Records that arrived with the handshake, or in the last read.
            if let Err(stop) = dispatch_records(&mut self.buf, limit, handle, dispatcher, stateful).await {
                if let Stop::TooBig = stop {
                    self.shared.close_code.set(Some(CLOSE_TOO_BIG));
                }
                return stop.request();
            }
            self.trim();
            let event = tokio::select! {
                request = &mut closing => return request,
                () = &mut silence => {
                    let due = last_read + client_timeout;
                    if Instant::now() < due {
                        silence.as_mut().reset(due);
                        continue;
                    }
                    tracing::debug!(connection = %self.id, "client timeout elapsed");
                    return CloseRequest::error(CLOSED_WITH_ERROR);
                }
                event = self.next() => event,
            };
            last_read = Instant::now();
            match event {
                Event::Data => {}
                Event::Gone => return CloseRequest::client_left(),
                Event::Broken => return CloseRequest::error(CLOSED_WITH_ERROR),
            }
        }
    }
}

/// One accepted WebSocket, from the SignalR handshake to the end.
/// Its place in the cluster is reserved ([`Node::reserve`]); `handshake` is
/// its place among the handshakes in progress, given back once the handshake ends.
/// A stateful connection (`super::resume`) outlives its socket: when the
/// socket drops it waits for the next one, and carries on with it.
async fn run(node: Arc<Node>, accepted: Accepted, handshake: HandshakePermit<'_>, stream: TcpStream, early: BytesMut) {
    // Shared with the writer task (same worker thread).
    let mut stream = Rc::new(stream);
    let mut shared = Rc::new(Shared::default());
    let Accepted {
        hub,
        id,
        principal,
        token,
        hold: _hold,
        ..
    } = accepted;
    let mut reader = Reader::new(&node, stream.clone(), shared.clone(), early, id.clone());
    let limit = WriteLimit::new(&node);
    let handshake_result = reader.handshake(&node).await;
    drop(handshake);
    let (protocol, version) = match handshake_result {
        Ok(protocol) => protocol,
        Err(error) => {
            if let Some(error) = &error {
                tracing::debug!(connection = %id, %error, "handshake failed");
            }
            refuse_handshake(&stream, error.as_deref(), shared.close_code(), limit).await;
            node.metrics.handshake_failed(hub.name());
            node.metrics.websocket_closed(shared.close_code());
            drop(reader);
            Box::pin(node.release(&id)).await;
            linger(stream, &shared).await;
            return;
        }
    };
    let (handle, queue) = new_handle(
        &node,
        id.clone(),
        &HubName::from(hub.name()),
        principal,
        protocol,
        TRANSPORT,
    );
    // Cluster operations are boxed: their futures (Redis calls) are large and
    // would otherwise stay part of this long-lived connection future.
    let answered = match Box::pin(node.connected(&handle)).await {
        Ok(()) => write_frame(&stream, OP_TEXT, &encode_handshake_response(None), limit)
            .await
            .is_ok(),
        Err(e) => {
            tracing::debug!(connection = %id, error = %e, "could not make the connection live");
            let error = "The server cannot register connections right now.";
            refuse_handshake(&stream, Some(error), CLOSE_NORMAL, limit).await;
            node.metrics.websocket_closed(CLOSE_NORMAL);
            false
        }
    };
    if !answered {
        Box::pin(node.disconnected(&id)).await;
        drop(reader);
        linger(stream, &shared).await;
        return;
    }
    let open = node.metrics.open(hub.name(), TRANSPORT, protocol.name());
    tracing::debug!(protocol = protocol.name(), "connected");
    if node.config.close_on_token_expiry {
        node.close_at_expiry(&handle);
    }
    let dispatcher = Dispatcher::new(node.clone(), hub.clone(), handle.clone());
    let mut resumable = super::resume::Resumable::new(&node, &handle, token.as_deref(), version);
    let queue = Rc::new(queue);
    let mut resumed = false;
    let (reason, writer) = loop {
        // The writer is a task of its own rather than the other half of a `join!`:
        // a joined pair polls both halves on every wake-up of either, which cost
        // the invocation-heavy chat mix ~30 % more server CPU (docs/decisions.md).
        let writer = actix_web::rt::spawn(write(
            stream.clone(),
            shared.clone(),
            queue.clone(),
            handle.clone(),
            Timing {
                keep_alive: node.config.keep_alive(),
                write_timeout: node.config.write_timeout(),
            },
            resumable.as_ref().map(|r| (r.state.clone(), resumed)),
        ));
        let Some(stateful) = resumable.as_mut() else {
            break (reader.read(&node, &handle, &dispatcher, None).await, Some(writer));
        };
        let next = tokio::select! {
            reason = reader.read(&node, &handle, &dispatcher, Some(&stateful.state)) => {
                if !stateful.may_wait(&node, &handle, &reason, shared.close_frame.get()) {
                    break (reason, Some(writer));
                }
                writer.abort();
                node.metrics.websocket_closed(shared.close_code());
                match Box::pin(stateful.wait(&node, &handle)).await {
                    Some(socket) => socket,
                    None => break (reason, None),
                }
            }
            Some(socket) = stateful.sockets.recv() => {
                // The client reconnected before this node noticed its old socket was gone.
                writer.abort();
                node.metrics.websocket_closed(shared.close_code());
                socket
            }
        };
        let Ok(socket) = TcpStream::from_std(next.socket) else {
            break (CloseRequest::client_left(), None);
        };
        stream = Rc::new(socket);
        shared = Rc::new(Shared::default());
        reader = Reader::new(
            &node,
            stream.clone(),
            shared.clone(),
            BytesMut::from(&next.early[..]),
            id.clone(),
        );
        stateful.state.disconnected();
        resumed = true;
    };
    handle.close(reason);
    // The writer ends once it has sent the Close frame, each of its blocked
    // waits cut to CLOSE_GRACE by the close request; this bound is the
    // backstop, so that nothing can keep the connection (and its user's
    // place) forever. A panic in the writer is logged by the runtime.
    if let Some(mut writer) = writer {
        if Box::pin(timeout(node.config.write_timeout() + CLOSE_GRACE, &mut writer))
            .await
            .is_err()
        {
            writer.abort();
        }
        node.metrics.websocket_closed(shared.close_code());
    }
    if let Some(stateful) = resumable {
        stateful.end(&node);
    }
    drop(dispatcher);
    drop(reader);
    drop(queue);
    // The first close request, so `reason` when nothing else closed it first.
    let request = handle.close_request();
    let reason = request
        .as_ref()
        .map_or(DisconnectReason::ClientClosed, CloseRequest::disconnect_reason);
    tracing::debug!(reason = reason.label(), "disconnected");
    open.closed(reason);
    Box::pin(node.disconnected(&id)).await;
    linger(stream, &shared).await;
}

/// Ends a connection whose handshake failed: the handshake response with the
/// error, if there is one for the client, then a Close frame with `code`.
async fn refuse_handshake(stream: &TcpStream, error: Option<&str>, code: u16, limit: WriteLimit<'_>) {
    if let Some(error) = error {
        let _ = write_frame(stream, OP_TEXT, &encode_handshake_response(Some(error)), limit).await;
    }
    let _ = write_close(stream, code, limit).await;
}

/// After our Close frame: end our side of the stream and give the client a
/// moment to end its side, so that what we sent last is not lost to a reset.
async fn linger(stream: Rc<TcpStream>, shared: &Shared) {
    // The reader and writer are gone by now, so the socket is ours alone.
    let Ok(mut stream) = Rc::try_unwrap(stream) else {
        return;
    };
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
    if shared.peer_closed.get() {
        return;
    }
    // Whatever still arrives is discarded, until the client ends its side.
    let _ = timeout(LINGER, async { while read_some(&stream, |_| ()).await.is_some() {} }).await;
}

/// Waits until `stream` is readable and reads what is there into the worker's
/// shared buffer, handing it to `parse` before anything else can run. `None`
/// once the stream has ended or failed; `Some(None)` if the readiness was
/// spurious and nothing was read.
async fn read_some<R>(stream: &TcpStream, parse: impl FnOnce(&[u8]) -> R) -> Option<Option<R>> {
    stream.readable().await.ok()?;
    READ_BUF.with_borrow_mut(|chunk| match stream.try_read(chunk) {
        Ok(0) => None,
        Ok(n) => Some(Some(parse(&chunk[..n]))),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Some(None),
        Err(_) => None,
    })
}

/// How long a write may wait for room in a full socket.
#[derive(Clone, Copy)]
struct WriteLimit<'a> {
    /// The longest wait without progress (`write_timeout_secs`); past it the
    /// write fails with `TimedOut`.
    patience: Duration,
    /// Once this connection is asked to close, a wait lasts at most
    /// [`CLOSE_GRACE`] and then fails with `ConnectionAborted`.
    closing: Option<&'a ConnectionHandle>,
}

impl WriteLimit<'_> {
    /// The limit of writes outside the writer (responses before and during
    /// the handshake): the write timeout alone.
    fn new(node: &Node) -> Self {
        Self {
            patience: node.config.write_timeout(),
            closing: None,
        }
    }

    /// Waits until `stream` has room, within the limit.
    async fn writable(self, stream: &TcpStream) -> io::Result<()> {
        let cut_short = async {
            match self.closing {
                Some(handle) => {
                    handle.closed().await;
                    tokio::time::sleep(CLOSE_GRACE).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            room = timeout(self.patience, stream.writable()) => {
                room.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
            }
            () = cut_short => Err(io::ErrorKind::ConnectionAborted.into()),
        }
    }
}

/// Writes all of `bytes`.
async fn write_all(stream: &TcpStream, bytes: &[u8], limit: WriteLimit<'_>) -> io::Result<()> {
    write_vectored(stream, &[], bytes, limit).await
}

/// Writes `head` then `body`, as few system calls as the socket allows. The
/// limit (and its timer) comes in only when the socket is full, not per write.
async fn write_vectored(stream: &TcpStream, mut head: &[u8], mut body: &[u8], limit: WriteLimit<'_>) -> io::Result<()> {
    while !head.is_empty() || !body.is_empty() {
        match stream.try_write_vectored(&[IoSlice::new(head), IoSlice::new(body)]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(mut n) => {
                let from_head = n.min(head.len());
                head = &head[from_head..];
                n -= from_head;
                body = &body[n..];
            }
            // Boxed: waiting for room is the rare case, and its timers would
            // otherwise be part of every writer's state (memory per connection).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Box::pin(limit.writable(stream)).await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends one unfragmented frame.
async fn write_frame(stream: &TcpStream, opcode: u8, payload: &[u8], limit: WriteLimit<'_>) -> io::Result<()> {
    let (head, len) = frame::header(opcode, payload.len());
    write_vectored(stream, &head[..len], payload, limit).await
}

/// Sends a Close frame with status `code`.
async fn write_close(stream: &TcpStream, code: u16, limit: WriteLimit<'_>) -> io::Result<()> {
    write_frame(stream, OP_CLOSE, &code.to_be_bytes(), limit).await
}

/// The writer: drains the queue, coalescing what waits into one frame; pings
/// when idle; answers Pings; on close, flushes what is queued and sends the
/// Close message and frame. A write that waits longer than `write_timeout`
/// for room closes the connection as slow; once a close is requested, a
/// blocked write gives up after [`CLOSE_GRACE`]. After a failed write the
/// socket may hold part of a frame, so nothing more is written to it.
///
/// Per message it touches no timer and allocates nothing of its own: a lone
/// record goes out from the very `Bytes` every recipient shares, and the
/// keep-alive timer is re-armed only when it fires (profile in
/// docs/benchmarks.md).
async fn write(
    stream: Rc<TcpStream>,
    shared: Rc<Shared>,
    queue: Rc<QueueReceiver>,
    handle: Arc<ConnectionHandle>,
    Timing {
        keep_alive,
        write_timeout,
    }: Timing,
    stateful: Option<(Rc<Stateful>, bool)>,
) {
    let stream = &*stream;
    let limit = WriteLimit {
        patience: write_timeout,
        closing: Some(&*handle),
    };
    let protocol = handle.protocol;
    let opcode = if protocol.is_binary() { OP_BINARY } else { OP_TEXT };
    let closing = handle.closed();
    tokio::pin!(closing);
    let ping = tokio::time::sleep(keep_alive);
    tokio::pin!(ping);
    let mut frame = BytesMut::new();
    let (stateful, resumed) = match stateful {
        Some((stateful, resumed)) => (Some(stateful), resumed),
        None => (None, false),
    };
    let stateful = stateful.as_deref();
    if let (Some(state), true) = (stateful, resumed) {
        // A resumed socket starts with Sequence and what the client did not acknowledge.
        if write_frame(stream, opcode, &state.resend(protocol), limit)
            .await
            .is_err()
        {
            super::resume::cut(stream);
            return;
        }
    }
    let mut last_sent = Instant::now();
    loop {
        let full = stateful.is_some_and(Stateful::is_full);
        let sent = tokio::select! {
            biased;
            request = &mut closing => {
                if request.notify_client {
                    closing_records(request, protocol, &queue, &mut frame);
                    if write_frame(stream, opcode, &frame, limit).await.is_err() {
                        return;
                    }
                    handle.metrics.bytes_out.inc_by(frame.len() as u64);
                }
                // Whether the client gets it is up to the client now.
                let _ = write_close(stream, shared.close_code(), limit).await;
                return;
            }
            () = shared.pong_due.notified() => {
                let payload = shared.pong.borrow_mut().take();
                match payload {
                    Some(payload) => write_frame(stream, OP_PONG, &payload, limit).await,
                    None => continue,
                }
            }
            () = async { stateful.unwrap_or_else(|| unreachable!()).ack_due.notified().await }, if stateful.is_some() => {
                match stateful.and_then(|s| s.ack_record(protocol)) {
                    Some(ack) => write_frame(stream, opcode, &ack, limit).await,
                    None => continue,
                }
            }
            () = async { stateful.unwrap_or_else(|| unreachable!()).room.notified().await }, if full => continue,
            first = queue.recv(), if !full => {
                let delivery = &handle.metrics.delivery;
                // Numbered before they are written: a write that dies half-way is resent.
                let sending = |queued: &Queued| {
                    if let Some(state) = stateful {
                        state.sending(&queued.record);
                    }
                };
                sending(&first);
                match queue.try_recv() {
                    None => {
                        delivery.observe(first.at.elapsed().as_secs_f64());
                        handle.metrics.bytes_out.inc_by(first.record.len() as u64);
                        write_frame(stream, opcode, &first.record, limit).await
                    }
                    Some(second) => {
                        frame.extend_from_slice(&first.record);
                        delivery.observe(first.at.elapsed().as_secs_f64());
                        coalesce(second, &queue, &mut frame, delivery, sending);
                        handle.metrics.bytes_out.inc_by(frame.len() as u64);
                        let sent = write_frame(stream, opcode, &frame, limit).await;
                        frame.clear();
                        if frame.capacity() > KEEP_BUFFER {
                            frame = BytesMut::new();
                        }
                        sent
                    }
                }
            }
            () = &mut ping => {
                let due = last_sent + keep_alive;
                if Instant::now() < due {
                    ping.as_mut().reset(due);
                    continue;
                }
                let ping_record = ping_record(protocol);
                handle.metrics.bytes_out.inc_by(ping_record.len() as u64);
                let sent = write_frame(stream, opcode, &ping_record, limit).await;
                ping.as_mut().reset(Instant::now() + keep_alive);
                sent
            }
        };
        if let Err(e) = sent {
            if e.kind() == io::ErrorKind::TimedOut {
                handle.close_slow(SlowReason::WriteTimeout);
            } else if stateful.is_some() && handle.close_request().is_none() {
                // The socket is gone, not the connection: its reader notices and
                // the connection waits for the client's new socket.
                super::resume::cut(stream);
            } else {
                handle.close(CloseRequest::client_left());
            }
            return;
        }
        last_sent = Instant::now();
    }
}

/// The writer's timers.
struct Timing {
    keep_alive: Duration,
    write_timeout: Duration,
}

/// The SignalR Ping record in `protocol`.
fn ping_record(protocol: Protocol) -> Bytes {
    protocol.encode_to_bytes(&HubMessage::Ping)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn upgrade_request(uri: &str) -> Request {
        actix_http::test::TestRequest::default()
            .uri(uri)
            .insert_header(("upgrade", "websocket"))
            .insert_header(("connection", "Upgrade"))
            .insert_header(("sec-websocket-version", "13"))
            .insert_header(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="))
            .finish()
    }

    #[actix_web::test]
    async fn upgrades_are_checked_like_the_connect_endpoint() {
        let dir = std::env::temp_dir().join(format!("hubwire-ws-accept-test-{}", std::process::id()));
        let config = crate::core::config::Config {
            jwt_secret: Some("websocket-unit-test-secret-32-bytes".into()),
            data_dir: dir,
            diagnostics_hub: true,
            ..crate::core::config::Config::default()
        };
        let AppState { node, hubs, .. } = crate::build(config).await.unwrap();
        let (node, hubs) = (&node, &hubs);
        let status = |uri: String| async move {
            accept(node, hubs, &upgrade_request(&uri), None)
                .await
                .err()
                .map(|r| r.status)
        };
        assert_eq!(status("/other".into()).await, Some(404));
        assert_eq!(status("/hubs/nope".into()).await, Some(404));
        assert_eq!(status("/hubs/diagnostics".into()).await, Some(401), "no token");
        assert_eq!(status("/hubs/diagnostics?access_token=garbage".into()).await, Some(401));
        let token = node.auth.issue(&crate::core::auth::Claims::new("alice", 60)).unwrap();
        let with_token = format!("/hubs/diagnostics?access_token={token}");
        let accepted = accept(node, hubs, &upgrade_request(&with_token), None)
            .await
            .ok()
            .unwrap();
        // RFC 6455's own example key and answer.
        assert_eq!(&accepted.accept_key, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(accepted.principal.unwrap().user.as_str(), "alice");
        assert_eq!(status(format!("{with_token}&id=unknown")).await, Some(404));
        let plain = actix_http::test::TestRequest::with_uri(&with_token).finish();
        assert_eq!(
            accept(node, hubs, &plain, None).await.err().map(|r| r.status),
            Some(400)
        );

        node.begin_shutdown();
        assert_eq!(status(with_token).await, Some(503));
    }
}
