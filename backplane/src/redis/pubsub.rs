//! Publishing, subscriptions and the receive task.
//!
//! The node says which channels it wants ([`Shared::subscribe`],
//! [`unsubscribe`]); this module keeps those wishes, so that it can subscribe
//! them all again after a reconnection, and delays each unsubscribe so that a
//! group whose last local member leaves and another joins costs nothing.
//!
//! # Invariants
//! - A wish is recorded before Redis is asked, and survives a failure: the next
//!   resync subscribes it.
//! - A subscribe returns once Redis applied it (see `listen`): a message
//!   published anywhere after it returns reaches this node.
//! - A channel left and re-subscribed within the delay stays subscribed.
//! - In cluster mode every channel is a shard channel (`SSUBSCRIBE` /
//!   `SPUBLISH`), one per call since channels hash to different slots.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use fred::prelude::{ClientLike, HashesInterface, PubsubInterface, Value};
use fred::types::Message;
use tokio::sync::broadcast::{error::RecvError, Receiver};
use tokio::sync::mpsc::error::TrySendError;

use super::stats::Counters;
use super::{codec, Shared};
use crate::message::{BackplaneEvent, Channel, ClusterBody, ClusterMessage, Target};
use crate::BackplaneError;

/// Channels per `SUBSCRIBE` when many are subscribed again at once.
const RESUBSCRIBE_BATCH: usize = 500;

/// The node's wishes, by channel.
#[derive(Default)]
pub(super) struct Subscriptions {
    channels: HashMap<Channel, Wish>,
    next_token: u64,
}

enum Wish {
    Keep,
    /// Unsubscribe when the delay of this token has passed.
    Leave(u64),
}

impl Shared {
    pub(super) async fn publish(&self, msg: &ClusterMessage) -> Result<(), BackplaneError> {
        let hub = msg.hub.clone();
        let channel = match msg.body.target() {
            None => match &msg.body {
                ClusterBody::Ack { to, .. } | ClusterBody::Reply { to, .. } => Channel::Node(to.clone()),
                _ => return Ok(()),
            },
            Some(Target::All) => Channel::All(hub),
            Some(Target::Group(group)) => Channel::Group(hub, group.clone()),
            Some(Target::User(user)) => Channel::User(hub, user.clone()),
            Some(Target::Connection(id)) => {
                let node = self
                    .client
                    .hget::<Option<String>, _, _>(self.names.conn(&hub, id), "node");
                match self.call("HGET node", node).await? {
                    Some(node) if node != self.config.node.as_str() => Channel::Node(node.into()),
                    // No such connection, or it is this node's: nobody else to tell.
                    _ => return Ok(()),
                }
            }
        };
        self.send_frame(self.names.channel(&channel), codec::encode_message(msg))
            .await
    }

    /// Publishes one encoded frame on a channel.
    pub(super) async fn send_frame(&self, channel: String, frame: Bytes) -> Result<(), BackplaneError> {
        if self.config.cluster {
            self.call("SPUBLISH", self.client.spublish::<(), _, _>(channel, frame))
                .await?;
        } else {
            self.call("PUBLISH", self.client.publish::<(), _, _>(channel, frame))
                .await?;
        }
        Counters::bump(&self.counters.published);
        Ok(())
    }

    pub(super) async fn subscribe(&self, channel: Channel) -> Result<(), BackplaneError> {
        let name = self.names.channel(&channel);
        if self.subscriptions.lock().channels.insert(channel, Wish::Keep).is_some() {
            return Ok(()); // subscribed already (perhaps about to leave, which is now off)
        }
        let result = self.listen(vec![name]).await;
        self.write_failed(result)
    }

    /// Subscribes the channel of cluster events.
    pub(super) async fn subscribe_events(&self) -> Result<(), BackplaneError> {
        self.listen(vec![self.names.events()]).await
    }

    /// Subscribes every wished channel again (after a reconnection), those
    /// waiting for their unsubscribe delay included: a subscribe within the
    /// delay counts on them being subscribed.
    pub(super) async fn resubscribe_all(&self) -> Result<(), BackplaneError> {
        let mut names: Vec<String> = {
            let subscriptions = self.subscriptions.lock();
            subscriptions
                .channels
                .keys()
                .map(|channel| self.names.channel(channel))
                .collect()
        };
        names.push(self.names.events());
        if self.config.cluster {
            for name in names {
                self.listen(vec![name]).await?;
            }
        } else {
            for batch in names.chunks(RESUBSCRIBE_BATCH) {
                self.listen(batch.to_vec()).await?;
            }
        }
        Ok(())
    }

    /// Subscribes channels; returns once Redis has them. fred resolves a
    /// `SUBSCRIBE` as soon as it is written (its confirmation arrives out of
    /// band and is dropped), so a publish from another node right after could
    /// still miss this one: a `PING` on the same connection, answered after
    /// the `SUBSCRIBE` was applied, confirms it. (`SSUBSCRIBE` is answered.)
    async fn listen(&self, names: Vec<String>) -> Result<(), BackplaneError> {
        let s = &self.subscriber;
        if self.config.cluster {
            self.call_with(s.is_connected(), "SSUBSCRIBE", s.ssubscribe(names))
                .await
        } else {
            let confirmed = async {
                s.subscribe(names).await?;
                s.ping::<Value>(None).await.map(drop)
            };
            self.call_with(s.is_connected(), "SUBSCRIBE", confirmed).await
        }
    }

    async fn unlisten(&self, name: String) -> Result<(), BackplaneError> {
        let s = &self.subscriber;
        if self.config.cluster {
            self.call_with(s.is_connected(), "SUNSUBSCRIBE", s.sunsubscribe(name))
                .await
        } else {
            self.call_with(s.is_connected(), "UNSUBSCRIBE", s.unsubscribe(name))
                .await
        }
    }

    /// Handles one received frame. Waits while the node's inbox is full
    /// (counted): fred's buffer then fills behind it, and what overflows it is
    /// counted as lost by [`receive`].
    async fn on_frame(&self, value: Value) {
        let Some(frame) = value.into_bytes() else {
            Counters::bump(&self.counters.decode_errors);
            return;
        };
        let (origin, event) = match codec::decode(frame) {
            Ok(decoded) => decoded,
            Err(e) => {
                Counters::bump(&self.counters.decode_errors);
                tracing::warn!(error = %e, "dropped a backplane frame that does not decode");
                return;
            }
        };
        if origin == self.config.node {
            return;
        }
        Counters::bump(&self.counters.received);
        self.to_inbox(event).await;
    }

    /// Hands an event to the node's inbox, waiting while it is full.
    pub(super) async fn to_inbox(&self, event: BackplaneEvent) {
        let event = match self.inbox.try_send(event) {
            Ok(()) => return,
            // A closed inbox means the node is shutting down: nobody to deliver to.
            Err(TrySendError::Closed(_)) => return,
            Err(TrySendError::Full(event)) => event,
        };
        Counters::bump(&self.counters.inbox_full);
        // Closed while waiting: shutting down, as above.
        let _ = self.inbox.send(event).await;
    }
}

/// Asks to leave a channel: done after the unsubscribe delay, unless the node
/// subscribes it again meanwhile.
pub(super) fn unsubscribe(shared: &Arc<Shared>, channel: Channel) {
    let token = {
        let mut subscriptions = shared.subscriptions.lock();
        subscriptions.next_token += 1;
        let token = subscriptions.next_token;
        match subscriptions.channels.get_mut(&channel) {
            Some(wish @ Wish::Keep) => *wish = Wish::Leave(token),
            _ => return,
        }
        token
    };
    let weak = Arc::downgrade(shared);
    let delay = shared.config.unsubscribe_delay;
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let Some(shared) = weak.upgrade() else {
            return; // the backplane is gone, and its connections with it
        };
        let leave = {
            let mut subscriptions = shared.subscriptions.lock();
            let due = matches!(subscriptions.channels.get(&channel), Some(Wish::Leave(t)) if *t == token);
            if due {
                subscriptions.channels.remove(&channel);
            }
            due
        };
        if !leave {
            return;
        }
        let name = shared.names.channel(&channel);
        if let Err(e) = shared.unlisten(name.clone()).await {
            tracing::warn!(channel = %name, error = %e, "unsubscribe failed");
        }
        // A subscribe racing with this unsubscribe may have been sent first.
        if shared.subscriptions.lock().channels.contains_key(&channel) {
            let result = shared.listen(vec![name]).await;
            // A failure marks the keyspace for a resync, which subscribes it.
            let _ = shared.write_failed(result);
        }
    });
}

/// The receive task: decodes what fred hands over, drops this node's own
/// messages, and forwards the rest to the inbox.
pub(super) async fn receive(shared: Arc<Shared>, mut messages: Receiver<Message>) {
    loop {
        match messages.recv().await {
            Ok(message) => shared.on_frame(message.value).await,
            Err(RecvError::Lagged(lost)) => {
                shared
                    .counters
                    .dropped
                    .fetch_add(lost, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(lost, "the backplane receive task fell behind; messages were lost");
            }
            Err(RecvError::Closed) => return,
        }
    }
}
