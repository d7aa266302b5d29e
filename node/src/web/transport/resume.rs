//! Stateful reconnect on the WebSocket transport (the JS client offers it on
//! WebSockets only): the parts of [`super::websocket`] that let a connection
//! outlive its socket. The protocol state itself is
//! [`crate::core::replay::Replay`]; this module wires it to sockets.
//!
//! A connection is stateful when its token was negotiated with
//! `useStatefulReconnect=true` (and `stateful_reconnect` is on) and its
//! handshake asked for hub protocol version 2 or later, as ASP.NET Core
//! decides. Then:
//! - the reader counts the client's trackable messages, skips the ones it
//!   resends after a reconnect, applies its Acks and answers its Sequence;
//! - the writer numbers what it sends into the replay buffer, acknowledges
//!   what the reader processed, and on a new socket starts with Sequence and
//!   the unacknowledged records;
//! - when the socket ends without a WebSocket Close frame, the connection
//!   stays registered and waits `stateful_reconnect_grace_secs` for the
//!   client's new `GET /hubs/{hub}?id=<same token>`, which is not a new
//!   connection: its socket is handed to the waiting one ([`hand_over`])
//!   and no handshake follows (the client sends none).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

use super::refusal::Refusal;
use crate::core::auth::Principal;
use crate::core::connection::{CloseRequest, ConnectionHandle, CLOSED_WITH_ERROR};
use crate::core::negotiations::ClaimError;
use crate::core::node::Node;
use crate::core::replay::{is_trackable, Received, Replay, Resumed};
use hubwire_backplane::{ConnectionId, HubName};
use hubwire_protocol::{Ack, HubMessage, Protocol, Sequence};

/// One stateful connection's replay state, shared by its reader and its
/// successive writers (same worker thread).
pub(super) struct Stateful {
    replay: RefCell<Replay>,
    /// The reader processed a trackable message: the writer acknowledges it.
    pub(super) ack_due: Notify,
    /// An Ack freed room in a full replay buffer.
    pub(super) room: Notify,
}

impl Stateful {
    /// Filters one message from the client: `Ok(Some)` to dispatch, `Ok(None)`
    /// when it was handled here or is a duplicate, `Err` to close.
    pub(super) fn take(&self, message: HubMessage) -> Result<Option<HubMessage>, CloseRequest> {
        let mut replay = self.replay.borrow_mut();
        match message {
            HubMessage::Ack(Ack { sequence_id }) => {
                if replay.acknowledged(sequence_id) {
                    self.room.notify_one();
                }
                Ok(None)
            }
            HubMessage::Sequence(Sequence { sequence_id }) => match replay.sequence(sequence_id) {
                Ok(()) => Ok(None),
                Err(gap) => {
                    tracing::debug!(error = %gap, "stateful reconnect cannot resume");
                    Err(CloseRequest::error(CLOSED_WITH_ERROR))
                }
            },
            message if is_trackable(&message) => match replay.received() {
                Received::Process => {
                    self.ack_due.notify_one();
                    Ok(Some(message))
                }
                Received::Skip => Ok(None),
            },
            message if replay.accepts_untracked() => Ok(Some(message)),
            _ => Ok(None),
        }
    }

    /// The socket was replaced: the client's next messages start with its Sequence.
    pub(super) fn disconnected(&self) {
        let mut replay = self.replay.borrow_mut();
        replay.disconnected();
        replay.reset_ack();
    }

    /// Whether the writer must wait for an Ack before it sends more.
    pub(super) fn is_full(&self) -> bool {
        self.replay.borrow().is_full()
    }

    /// Numbers records the writer is about to send (all trackable: the queue
    /// holds nothing else).
    pub(super) fn sending(&self, record: &Bytes) {
        self.replay.borrow_mut().sending(record.clone());
    }

    /// The Ack record to send, if the reader processed something new.
    pub(super) fn ack_record(&self, protocol: Protocol) -> Option<Bytes> {
        let sequence_id = self.replay.borrow_mut().ack_due()?;
        Some(protocol.encode_to_bytes(&HubMessage::Ack(Ack { sequence_id })))
    }

    /// What a new socket starts with: Sequence, then every unacknowledged
    /// record, in one buffer.
    pub(super) fn resend(&self, protocol: Protocol) -> BytesMut {
        let (sequence_id, records) = self.replay.borrow().resend();
        let mut frame = BytesMut::new();
        protocol.encode(&HubMessage::Sequence(Sequence { sequence_id }), &mut frame);
        for record in records {
            frame.extend_from_slice(&record);
        }
        frame
    }
}

/// A stateful connection: its state and where its next socket arrives.
pub(super) struct Resumable {
    pub(super) state: Rc<Stateful>,
    pub(super) sockets: mpsc::Receiver<Resumed>,
    token: String,
}

impl Resumable {
    /// The stateful part of a connection that completed its handshake with
    /// `version`, if it is stateful; then it is resumable under its token.
    pub(super) fn new(node: &Node, handle: &ConnectionHandle, token: Option<&str>, version: u32) -> Option<Self> {
        let token = token?;
        if !node.config.stateful_reconnect || version < 2 || !node.negotiations.is_stateful(token) {
            return None;
        }
        let sockets = node
            .resumes
            .register(token, handle.id.clone(), handle.hub.clone(), handle.user().cloned());
        Some(Self {
            state: Rc::new(Stateful {
                replay: RefCell::new(Replay::new(node.config.stateful_reconnect_buffer_bytes)),
                ack_due: Notify::new(),
                room: Notify::new(),
            }),
            sockets,
            token: token.to_owned(),
        })
    }

    /// Whether a connection whose reader ended with `reason` waits for a new
    /// socket: only when the socket just went away (no Close frame, no close
    /// asked for, no shutdown under way).
    pub(super) fn may_wait(
        &self,
        node: &Node,
        handle: &ConnectionHandle,
        reason: &CloseRequest,
        close_frame: bool,
    ) -> bool {
        *reason == CloseRequest::client_left()
            && !close_frame
            && handle.close_request().is_none()
            && !node.drain.began()
    }

    /// Waits for the client's new socket, at most the grace window, and not
    /// past a close of the connection.
    pub(super) async fn wait(&mut self, node: &Node, handle: &ConnectionHandle) -> Option<Resumed> {
        let grace = Duration::from_secs(node.config.stateful_reconnect_grace_secs);
        tracing::debug!(connection = %handle.id, "socket lost; waiting for the client to reconnect");
        node.metrics.stateful_reconnect_waiting.inc();
        let socket = tokio::select! {
            socket = self.sockets.recv() => socket,
            _ = handle.closed() => None,
            () = tokio::time::sleep(grace) => None,
        };
        node.metrics.stateful_reconnect_waiting.dec();
        if socket.is_some() {
            node.metrics.stateful_reconnects.inc();
        }
        socket
    }

    /// The connection ended: it cannot be resumed any more.
    pub(super) fn end(self, node: &Node) {
        node.resumes.remove(&self.token);
    }
}

/// The connection a reconnecting request resumes (`Some(Ok)`), a refusal, or
/// `None` when `token` is no resumable connection of this node (then it is
/// claimed as a fresh one, and unknown tokens are 404).
pub(super) fn find(
    node: &Node,
    token: &str,
    hub: &HubName,
    principal: Option<&Principal>,
) -> Option<Result<ConnectionId, Refusal>> {
    let found = node.resumes.find(token, hub, principal.map(|p| &p.user))?;
    Some(found.map_err(|e| match e {
        ClaimError::WrongUser => {
            node.metrics.request_refused("user_mismatch");
            Refusal::new(403, "Forbidden", "The connection was negotiated by another user.")
        }
        ClaimError::NotFound | ClaimError::InUse => Refusal::new(404, "Not Found", "No Connection with that ID"),
    }))
}

/// Hands a reconnected socket (its 101 sent) to its waiting connection. If
/// that connection ended meanwhile, the socket is dropped: the client's one
/// reconnect attempt fails and it starts a new connection.
pub(super) fn hand_over(node: &Arc<Node>, token: Option<&str>, stream: TcpStream, early: BytesMut) {
    let Some(token) = token else { return };
    let Ok(socket) = stream.into_std() else { return };
    let resumed = Resumed {
        socket,
        early: early.to_vec(),
    };
    if node.resumes.hand_over(token, resumed).is_err() {
        tracing::debug!("a reconnected socket found its connection gone");
    }
}

/// Ends both directions of a socket whose write failed, so that its reader
/// notices at once and the connection waits for the client's new socket.
pub(super) fn cut(stream: &TcpStream) {
    let _ = rustix::net::shutdown(stream, rustix::net::Shutdown::Both);
}
