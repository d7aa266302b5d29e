//! The broadcast outbox of the chat kind: a message is stored with the node
//! that stores it and no broadcast mark; that node broadcasts it, then marks
//! it ([`hubwire_store::Store::mark_broadcast`], batched, off the send's
//! path). What stays unmarked was stored by a node that failed to broadcast
//! it or died first, and is broadcast again:
//! - by a repeat send (same `clientMessageId`) that finds the mark missing,
//!   on any node — unless this node is broadcasting it or marking it
//!   ([`Outbox::claim`]);
//! - by the node that sweeps a dead node ([`Chat::take_over`]), which also
//!   announces the end of the typing indicators the dead node held.
//!
//! Either first takes the message in the store (marks it where it is still
//! unmarked, [`hubwire_store::Store::take_broadcast`]), so that of a repeat
//! and a sweep racing on two nodes one broadcasts it. A message broadcast
//! just before its node died, and not yet marked, is thus broadcast twice:
//! delivery is at least once, and clients tell messages apart by id (see
//! docs/decisions.md).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use hubwire_backplane::{HubName, NodeId, UserId};
use hubwire_store::{Message, MessageId};

use super::payload::message_fields;
use super::typing::TypingKey;
use super::Chat;
use crate::core::node::Node;

/// The `stored_by` of messages this hub stores on `node`: the node and
/// the hub (`<node>/<hub>`), so that the sweep of a dead node broadcasts a
/// message again only in the hub that stored it (hubs share the store).
pub fn stored_by(node: &NodeId, hub: &HubName) -> String {
    format!("{node}/{hub}")
}

/// Unmarked messages read per page of a dead node's sweep.
const SWEEP_PAGE: usize = 256;

/// The messages this node is broadcasting or marking (claimed, not yet
/// marked): a repeat of one of them is not broadcast again.
#[derive(Debug, Default)]
pub struct Outbox {
    claimed: Mutex<HashSet<MessageId>>,
}

impl Outbox {
    /// Claims the broadcast of `id`: false when this node already has it.
    pub fn claim(&self, id: MessageId) -> bool {
        self.claimed.lock().unwrap_or_else(PoisonError::into_inner).insert(id)
    }

    /// Gives up a claim (the broadcast failed, or the mark is committed).
    pub fn release(&self, id: MessageId) {
        self.claimed.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    }
}

/// How a call broadcasts a stored message, if it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Not by this call: broadcast (or being broadcast) already.
    No,
    /// A new message: broadcast it, then mark it.
    New,
    /// An unmarked message taken (marked) in the store by this call, of
    /// the nodes that may race for it: broadcast it, untake it on failure.
    Taken,
}

impl Claim {
    /// Whether the call broadcasts.
    pub fn broadcasts(self) -> bool {
        self != Claim::No
    }
}

impl Chat {
    /// Whether this call broadcasts `message` (as the store returned it): a
    /// new one always; a repeat when its mark is missing, this node is not
    /// already broadcasting or marking it, and it takes it in the store
    /// first (one of a repeat and a sweep on two nodes does). Follow a
    /// claim with [`Chat::broadcast_done`].
    pub(super) async fn claim_broadcast(&self, message: &Message, inserted: bool) -> Claim {
        if inserted {
            self.outbox.claim(message.id);
            return Claim::New;
        }
        if message.broadcast_at.is_some() || !self.outbox.claim(message.id) {
            return Claim::No;
        }
        match self.store.take_broadcast(&[message.id]).await {
            Ok(taken) if taken.contains(&message.id) => Claim::Taken,
            Ok(_) => {
                self.outbox.release(message.id);
                Claim::No
            }
            Err(e) => {
                tracing::warn!(message = %message.id, error = %e, "could not take an unmarked message's broadcast");
                self.outbox.release(message.id);
                Claim::No
            }
        }
    }

    /// Ends a claim. A new message's mark is written on success (in the
    /// background; the claim lasts until it is committed); a failed taken
    /// one is unmarked again, so that a repeat or a sweep broadcasts it.
    pub(super) fn broadcast_done(&self, id: MessageId, claim: Claim, ok: bool) {
        let (store, outbox) = (self.store.clone(), self.outbox.clone());
        match (claim, ok) {
            (Claim::No, _) => {}
            (Claim::New, false) => outbox.release(id),
            (Claim::Taken, true) => outbox.release(id),
            (Claim::New, true) => {
                tokio::spawn(async move {
                    if let Err(e) = store.mark_broadcast(id).await {
                        tracing::warn!(message = %id, error = %e, "could not mark a message broadcast");
                    }
                    outbox.release(id);
                });
            }
            (Claim::Taken, false) => {
                tokio::spawn(async move {
                    if let Err(e) = store.untake_broadcast(id).await {
                        tracing::warn!(message = %id, error = %e, "could not unmark a message whose broadcast failed");
                    }
                    outbox.release(id);
                });
            }
        }
    }

    /// Node `dead` died and this node swept it: announce the end of the
    /// typing indicators it held, and broadcast what it stored and did not
    /// mark broadcast.
    pub(super) async fn take_over(&self, node: &Arc<Node>, dead: &NodeId) {
        match node.take_typing_of(&self.hub, dead).await {
            Ok(held) => {
                for (conversation, user) in held {
                    let key: TypingKey = (conversation, user.as_str().to_owned());
                    // The same user typing there through this node goes on.
                    if !self.typing.holds(&key) {
                        self.announce_stopped(node, &key, vec![]).await;
                    }
                }
            }
            Err(e) => tracing::warn!(node = %dead, error = %e, "could not read a dead node's typing indicators"),
        }
        if let Err(e) = self.rebroadcast_of(node, dead).await {
            tracing::warn!(node = %dead, error = %e, "could not sweep a dead node's unbroadcast messages");
        }
    }

    /// Broadcasts every message `dead` stored and did not mark, oldest first.
    async fn rebroadcast_of(&self, node: &Arc<Node>, dead: &NodeId) -> Result<(), super::Failure> {
        let owner = stored_by(dead, &self.hub);
        let mut recipients: HashMap<String, Option<String>> = HashMap::new();
        let (mut after, mut count) = (None, 0usize);
        loop {
            let page = self.store.unbroadcast_of(&owner, after, SWEEP_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            let full = page.len() == SWEEP_PAGE;
            // Of this page, what no broadcast of this node holds, taken in the
            // store in one statement (a repeat on another node may take some).
            let candidates: Vec<Message> = page.into_iter().filter(|m| self.outbox.claim(m.id)).collect();
            let ids: Vec<MessageId> = candidates.iter().map(|m| m.id).collect();
            let taken: HashSet<MessageId> = match self.store.take_broadcast(&ids).await {
                Ok(taken) => taken.into_iter().collect(),
                Err(e) => {
                    ids.iter().for_each(|id| self.outbox.release(*id));
                    return Err(e.into());
                }
            };
            for message in candidates {
                if !taken.contains(&message.id) {
                    self.outbox.release(message.id);
                    continue;
                }
                let recipient = match recipients.get(&message.conversation_id) {
                    Some(known) => known.clone(),
                    None => {
                        let found = self.direct_recipient(&message).await.unwrap_or_else(|e| {
                            tracing::warn!(error = %e, "could not read a conversation; broadcasting to its group");
                            None
                        });
                        recipients.insert(message.conversation_id.clone(), found.clone());
                        found
                    }
                };
                let fields = message_fields(&message, None, recipient.as_deref());
                let sender = UserId::from(message.sender_id.as_str());
                let sent = self
                    .broadcast(node, &fields, recipient.as_deref(), &sender, vec![])
                    .await;
                if let Err(e) = &sent {
                    tracing::warn!(message = %message.id, error = %e, "could not broadcast a dead node's message");
                }
                self.broadcast_done(message.id, Claim::Taken, sent.is_ok());
                count += 1;
            }
            if !full {
                break;
            }
        }
        if count > 0 {
            tracing::warn!(node = %dead, messages = count, "broadcast what a dead node stored and did not broadcast");
        }
        Ok(())
    }

    /// The other participant of a direct conversation (a direct send goes to
    /// the recipient's connections); none for other kinds.
    async fn direct_recipient(&self, message: &Message) -> Result<Option<String>, super::Failure> {
        let conversation = self.store.get_conversation(&message.conversation_id).await?;
        Ok(conversation
            .filter(|c| c.kind == "direct")
            .and_then(|c| c.participants.into_iter().find(|p| *p != message.sender_id)))
    }
}
