//! Stateful reconnect (hub protocol version 2, `Ack` and `Sequence`): what a
//! connection keeps so that its client can lose its socket and resume on the
//! same connection with nothing lost or doubled.
//!
//! Both peers number their *trackable* messages (Invocation, StreamItem,
//! Completion, StreamInvocation, CancelInvocation — [`is_trackable`]) from 1,
//! keep what they sent until the other side acknowledges it (`Ack` with the
//! highest id it processed), and after a reconnect send `Sequence` with the id
//! of the first message they resend, then resend every unacknowledged one; the
//! receiver skips ids it has already processed. This is the JS client's
//! `MessageBuffer` and ASP.NET Core's, seen from the server.
//!
//! [`Replay`] is one connection's state: the sent side is fed by the
//! connection's writer (every record it takes from the connection's queue is
//! trackable and goes into the buffer *before* it is written, so a write that
//! dies half-way is resent), the received side by its reader. Messages that
//! reach the connection while it has no socket — from this node or through
//! the backplane — wait in the connection's queue like any other, and the
//! next socket's writer sends them after the resend: the queue, not the
//! socket, is what senders see (the gap of dotnet/aspnetcore#55575 cannot
//! happen). The buffer is bounded in bytes (`stateful_reconnect_buffer_bytes`):
//! when full, the writer waits for an `Ack` before it sends more, the queue
//! fills behind it, and the slow-connection rules apply.
//!
//! [`Resumes`] is the node's table of connections that may be resumed, by
//! connection token: a reconnecting WebSocket request finds its connection
//! there and hands its socket over. A token this node does not know is
//! answered 404 by the transport, so that the client starts afresh (it
//! reconnected to another node).

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::core::negotiations::ClaimError;
use hubwire_backplane::{ConnectionId, HubName, UserId};
use hubwire_protocol::HubMessage;

/// Whether `message` is numbered and replayed (the protocol's "invocation
/// messages"); Ping, Close, Ack and Sequence are not.
pub fn is_trackable(message: &HubMessage) -> bool {
    matches!(
        message,
        HubMessage::Invocation(_)
            | HubMessage::StreamItem(_)
            | HubMessage::Completion(_)
            | HubMessage::StreamInvocation(_)
            | HubMessage::CancelInvocation(_)
    )
}

/// What the reader should do with a trackable message from the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// New: process it (and acknowledge it).
    Process,
    /// Already processed before a reconnect, or sent before the client's
    /// `Sequence`: skip it.
    Skip,
}

/// A client's `Sequence` that would skip messages this side never received.
#[derive(Debug, thiserror::Error)]
#[error("the client announced message {announced} next, but only {received} arrived")]
pub struct SequenceGap {
    /// The id the client announced.
    pub announced: i64,
    /// The highest id received.
    pub received: i64,
}

/// One stateful connection's replay buffer and sequence counters.
#[derive(Debug)]
pub struct Replay {
    limit: usize,
    /// Sent and not yet acknowledged, oldest first, with their ids.
    sent: VecDeque<(i64, Bytes)>,
    bytes: usize,
    /// The id the next sent trackable message gets.
    next_sent: i64,
    /// The id the next received trackable message has.
    next_received: i64,
    /// The highest id received and processed.
    latest_received: i64,
    /// The highest id this side has acknowledged to the client.
    acked_received: i64,
    /// After a reconnect, until the client's `Sequence`.
    wait_for_sequence: bool,
}

impl Replay {
    /// An empty buffer holding at most `limit` bytes before the writer waits.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            sent: VecDeque::new(),
            bytes: 0,
            next_sent: 1,
            next_received: 1,
            latest_received: 0,
            acked_received: 0,
            wait_for_sequence: false,
        }
    }

    /// Whether the buffer holds its limit: send nothing more until an `Ack`.
    pub fn is_full(&self) -> bool {
        self.bytes >= self.limit
    }

    /// Bytes waiting for the client's acknowledgement.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// Records a trackable record the writer is about to send.
    pub fn sending(&mut self, record: Bytes) {
        self.bytes += record.len();
        self.sent.push_back((self.next_sent, record));
        self.next_sent += 1;
    }

    /// The client's `Ack`: forgets every record up to `sequence_id`. Returns
    /// whether anything was freed.
    pub fn acknowledged(&mut self, sequence_id: i64) -> bool {
        let mut freed = false;
        while let Some((id, record)) = self.sent.front() {
            if *id > sequence_id {
                break;
            }
            self.bytes -= record.len();
            self.sent.pop_front();
            freed = true;
        }
        freed
    }

    /// What a new socket starts with: the `Sequence` id (the first record
    /// resent, or the next new one) and the records to resend, in order.
    pub fn resend(&self) -> (i64, Vec<Bytes>) {
        let first = self.sent.front().map_or(self.next_sent, |(id, _)| *id);
        (first, self.sent.iter().map(|(_, r)| r.clone()).collect())
    }

    /// The socket was lost: until the client's `Sequence`, what arrives is
    /// not counted.
    pub fn disconnected(&mut self) {
        self.wait_for_sequence = true;
    }

    /// Whether a message that is not trackable is to be handled: everything
    /// but what comes before the client's `Sequence` after a reconnect.
    pub fn accepts_untracked(&self) -> bool {
        !self.wait_for_sequence
    }

    /// Counts a trackable message from the client.
    pub fn received(&mut self) -> Received {
        if self.wait_for_sequence {
            return Received::Skip;
        }
        let id = self.next_received;
        self.next_received += 1;
        if id <= self.latest_received {
            return Received::Skip;
        }
        self.latest_received = id;
        Received::Process
    }

    /// The client's `Sequence`: the id of the next message it sends. An id
    /// beyond what was received means messages were lost: `Err`, and the
    /// connection closes (as the JS client does in the other direction).
    pub fn sequence(&mut self, sequence_id: i64) -> Result<(), SequenceGap> {
        self.wait_for_sequence = false;
        if sequence_id > self.latest_received + 1 || sequence_id < 1 {
            return Err(SequenceGap {
                announced: sequence_id,
                received: self.latest_received,
            });
        }
        self.next_received = sequence_id;
        Ok(())
    }

    /// The id to acknowledge, if there is a new one since the last `Ack` sent.
    pub fn ack_due(&mut self) -> Option<i64> {
        (self.latest_received > self.acked_received).then(|| {
            self.acked_received = self.latest_received;
            self.latest_received
        })
    }

    /// Forgets which id was acknowledged last (a new socket acknowledges again).
    pub fn reset_ack(&mut self) {
        self.acked_received = 0;
    }
}

/// A socket handed over to a connection that waits for it.
#[derive(Debug)]
pub struct Resumed {
    /// The new socket, its 101 already sent.
    pub socket: std::net::TcpStream,
    /// Bytes the client sent right after its request.
    pub early: Vec<u8>,
}

struct Slot {
    id: ConnectionId,
    hub: HubName,
    user: Option<UserId>,
    sockets: mpsc::Sender<Resumed>,
}

/// The node's resumable connections by connection token.
#[derive(Default)]
pub struct Resumes {
    slots: Mutex<HashMap<String, Slot>>,
}

impl Resumes {
    /// Makes a stateful connection resumable under `token`; its new sockets
    /// arrive on the receiver. Dropping the receiver does not remove the
    /// entry: [`Resumes::remove`] does, when the connection ends.
    pub fn register(
        &self,
        token: &str,
        id: ConnectionId,
        hub: HubName,
        user: Option<UserId>,
    ) -> mpsc::Receiver<Resumed> {
        let (sockets, receiver) = mpsc::channel(1);
        self.slots
            .lock()
            .insert(token.to_owned(), Slot { id, hub, user, sockets });
        receiver
    }

    /// The connection a reconnecting request with `token` resumes, if it is
    /// this node's, of `hub` and `user`'s; `None` when the token is not a
    /// resumable connection here.
    pub fn find(&self, token: &str, hub: &HubName, user: Option<&UserId>) -> Option<Result<ConnectionId, ClaimError>> {
        let slots = self.slots.lock();
        let slot = slots.get(token).filter(|s| s.hub == *hub)?;
        if slot.user.as_ref() != user {
            return Some(Err(ClaimError::WrongUser));
        }
        Some(Ok(slot.id.clone()))
    }

    /// Hands `resumed` to the connection of `token`; gives it back when that
    /// connection is gone (or already has a socket waiting).
    pub fn hand_over(&self, token: &str, resumed: Resumed) -> Result<(), Resumed> {
        let sockets = match self.slots.lock().get(token) {
            Some(slot) => slot.sockets.clone(),
            None => return Err(resumed),
        };
        sockets.try_send(resumed).map_err(|e| match e {
            mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => r,
        })
    }

    /// The connection of `token` has ended: it cannot be resumed any more.
    pub fn remove(&self, token: &str) {
        self.slots.lock().remove(token);
    }

    /// Resumable connections on this node.
    pub fn len(&self) -> usize {
        self.slots.lock().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(n: u8, len: usize) -> Bytes {
        Bytes::from(vec![n; len])
    }

    #[test]
    fn unacknowledged_records_are_resent_from_the_first_one() {
        let mut replay = Replay::new(100);
        for n in 1..=4 {
            replay.sending(record(n, 10));
        }
        assert_eq!(replay.buffered_bytes(), 40);
        assert!(replay.acknowledged(2));
        assert!(!replay.acknowledged(2), "nothing more to free");
        let (first, records) = replay.resend();
        assert_eq!(first, 3);
        assert_eq!(records, vec![record(3, 10), record(4, 10)]);
        assert!(replay.acknowledged(4));
        assert_eq!(replay.resend(), (5, vec![]), "all acknowledged: the next new id");
        assert_eq!(replay.buffered_bytes(), 0);
    }

    #[test]
    fn the_buffer_is_full_at_its_limit_in_bytes_until_acknowledged() {
        let mut replay = Replay::new(25);
        replay.sending(record(1, 10));
        replay.sending(record(2, 10));
        assert!(!replay.is_full());
        replay.sending(record(3, 10));
        assert!(replay.is_full());
        replay.acknowledged(1);
        assert!(!replay.is_full());
    }

    #[test]
    fn messages_resent_by_the_client_are_processed_once() {
        let mut replay = Replay::new(100);
        for _ in 0..3 {
            assert_eq!(replay.received(), Received::Process);
        }
        assert_eq!(replay.ack_due(), Some(3));
        assert_eq!(replay.ack_due(), None, "acknowledged already");
        replay.disconnected();
        assert_eq!(replay.received(), Received::Skip, "before the client's Sequence");
        assert!(!replay.accepts_untracked());
        // The client did not see our Ack of 3 and resends from 2.
        replay.sequence(2).unwrap();
        assert_eq!(replay.received(), Received::Skip, "2 again");
        assert_eq!(replay.received(), Received::Skip, "3 again");
        assert_eq!(replay.received(), Received::Process, "4 is new");
        assert_eq!(replay.ack_due(), Some(4));
    }

    #[test]
    fn a_sequence_beyond_what_was_received_is_refused() {
        let mut replay = Replay::new(100);
        assert_eq!(replay.received(), Received::Process);
        replay.disconnected();
        assert!(replay.sequence(3).is_err(), "message 2 would be lost");
        let mut replay = Replay::new(100);
        replay.disconnected();
        assert!(replay.sequence(1).is_ok(), "nothing received, nothing lost");
    }

    #[test]
    fn a_resumable_connection_is_found_by_token_hub_and_user_and_takes_one_socket() {
        let resumes = Resumes::default();
        let hub = HubName::from("diagnostics");
        let alice = UserId::from("alice");
        let mut sockets = resumes.register("t1", ConnectionId::from("c1"), hub.clone(), Some(alice.clone()));
        assert_eq!(
            resumes.find("t1", &hub, Some(&alice)),
            Some(Ok(ConnectionId::from("c1")))
        );
        assert_eq!(
            resumes.find("t1", &hub, Some(&UserId::from("bob"))),
            Some(Err(ClaimError::WrongUser))
        );
        assert!(resumes.find("t1", &HubName::from("chat"), Some(&alice)).is_none());
        assert!(resumes.find("t2", &hub, Some(&alice)).is_none());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = || std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let resumed = Resumed {
            socket: socket(),
            early: vec![1],
        };
        resumes.hand_over("t1", resumed).unwrap();
        assert!(
            resumes
                .hand_over(
                    "t1",
                    Resumed {
                        socket: socket(),
                        early: vec![]
                    }
                )
                .is_err(),
            "one socket waits at a time"
        );
        assert_eq!(sockets.try_recv().unwrap().early, vec![1]);
        resumes.remove("t1");
        assert!(resumes.is_empty());
        assert!(resumes
            .hand_over(
                "t1",
                Resumed {
                    socket: socket(),
                    early: vec![]
                }
            )
            .is_err());
    }
}
