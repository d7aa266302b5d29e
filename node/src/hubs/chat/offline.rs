//! The offline-delivery hook (seed 000's push step): each new message whose
//! recipient has no live connection to the hub anywhere in the cluster is
//! POSTed to the definition's `offline_hook.url` through a
//! [`Webhook`] (signed, timed out, retried, queued; `crate::core::webhook`).
//!
//! - Recipients: a direct message's recipient; for a conversation message,
//!   every participant but the sender (read from the store).
//! - Offline: the keyspace holds no connection of the recipient to this hub
//!   on any node (presence is cluster-wide). When the keyspace cannot
//!   answer, nothing is posted (logged): better a missed push than a push
//!   to a user who is reading the message.
//! - The check runs on a task of its own after the broadcast: a send is
//!   acknowledged without waiting for it, and the hook's queue never blocks.
//!   Checks running at once are bounded too (by the queue's size): beyond
//!   that a message is dropped and counted, as a full queue drops it.
//! - The body: `{"hub", "conversationId", "recipientId", "message"}`, the
//!   message as the definition shapes `message_received`'s object (the
//!   app's own field names).

use std::sync::Arc;

use serde_json::{json, Value};

use super::Chat;
use crate::core::node::Node;
use crate::core::webhook::Webhook;
use hubwire_backplane::{HubName, UserId};
use hubwire_store::Store;
use tokio::sync::Semaphore;

/// A chat hub's running hook, with what its checks need.
#[derive(Clone)]
pub struct OfflineHook {
    webhook: Arc<Webhook>,
    hub: HubName,
    store: Store,
    /// One permit per check running (`offline_hook.queue` of them).
    checks: Arc<Semaphore>,
}

/// One new message to check.
struct Delivery {
    conversation: String,
    sender: String,
    recipient: Option<String>,
    message: Value,
}

impl Chat {
    /// Starts the hook the definition configures (once; nothing without
    /// one), counting in `node`'s metrics. Called when the node is built,
    /// on its runtime.
    pub fn start_offline_hook(&self, node: &Node) {
        let Some(config) = self.def.offline_hook.clone() else {
            return;
        };
        let counters = node.metrics.webhook(self.hub.as_str(), "offline");
        let checks = Arc::new(Semaphore::new(config.queue));
        self.offline.get_or_init(|| OfflineHook {
            checks,
            webhook: Arc::new(Webhook::start(config, counters)),
            hub: self.hub.clone(),
            store: self.store.clone(),
        });
    }

    /// After a new message's broadcast: queues it for each recipient with
    /// no live connection (on a task; returns at once). Nothing without a
    /// hook. `fields` are the message's fields (catalog names).
    pub(super) fn offline_delivery(
        &self,
        node: &Arc<Node>,
        fields: &serde_json::Map<String, Value>,
        recipient: Option<&str>,
    ) {
        let Some(hook) = self.offline.get().cloned() else {
            return;
        };
        let text = |f: &str| fields.get(f).and_then(Value::as_str).unwrap_or_default().to_owned();
        let delivery = Delivery {
            conversation: text("conversationId"),
            sender: text("senderId"),
            recipient: recipient.map(str::to_owned),
            message: self.event(super::catalog::Event::MessageReceived).object(fields),
        };
        let Ok(permit) = hook.checks.clone().try_acquire_owned() else {
            hook.webhook.count_dropped();
            return;
        };
        let node = node.clone();
        tokio::spawn(async move {
            hook.check(&node, delivery).await;
            drop(permit);
        });
    }
}

impl OfflineHook {
    /// Queues `delivery` for each of its recipients who is offline.
    async fn check(&self, node: &Node, delivery: Delivery) {
        let recipients = match &delivery.recipient {
            Some(recipient) => vec![recipient.clone()],
            None => match self.store.get_conversation(&delivery.conversation).await {
                Ok(Some(conversation)) => conversation.participants,
                Ok(None) => Vec::new(),
                Err(e) => {
                    tracing::warn!(conversation = %delivery.conversation, error = %e, "offline hook: no participants; nothing posted");
                    Vec::new()
                }
            },
        };
        for recipient in recipients.into_iter().filter(|r| *r != delivery.sender) {
            match node
                .user_connections(&self.hub, &UserId::from(recipient.as_str()))
                .await
            {
                Ok(connections) if connections.is_empty() => {
                    let body = json!({
                        "hub": self.hub.as_str(),
                        "conversationId": delivery.conversation,
                        "recipientId": recipient,
                        "message": delivery.message,
                    });
                    self.webhook.offer(body.to_string().into_bytes());
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(user = %recipient, error = %e, "offline hook: presence unknown; nothing posted");
                }
            }
        }
    }
}
