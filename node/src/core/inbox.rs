//! What other nodes ask of this one.
//!
//! [`run_inbox`] is the one task reading the backplane's (bounded) inbox, and
//! it only delivers: a send is queued to local connections, a close is
//! signalled, a group command changes the local registry, an answer wakes its
//! waiter. Nothing on it awaits Redis or a hook, so a slow Redis call never
//! holds back the deliveries behind it. The rest of a group command —
//! subscribing or unsubscribing the group's channel, then answering the
//! origin — runs on the [`Lanes`](crate::core::lanes::Lanes) lane of that channel: commands for one
//! channel are applied in the order they arrived, and a slow one delays no
//! other channel. This node's own joins and leaves subscribe and unsubscribe
//! on the same lanes, so that a command never answers while a subscribe of
//! its channel is still under way. Node-down handling (user look-ups, offline
//! hooks) runs on a task of its own. The answers this node awaits are
//! [`crate::core::acks`]'s.
//!
//! # Invariants
//! - A node answers a command only once it applied it: for an add, once the
//!   group's channel is subscribed, so that a send published after the answer
//!   reaches the new member. A command it could not apply is not answered.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::core::node::{close_request, Node};
use crate::core::outbound::OutboundMessage;
use hubwire_backplane::{BackplaneEvent, Channel, ClusterBody, ClusterMessage, CommandId, Delivery, HubName, NodeId};

/// Reads the inbox until the backplane closes it, delivering each event.
pub async fn run_inbox(node: Arc<Node>, mut inbox: mpsc::Receiver<BackplaneEvent>) {
    while let Some(event) = inbox.recv().await {
        node.metrics
            .inbox_pending
            .set(i64::try_from(inbox.len()).unwrap_or(i64::MAX));
        match event {
            BackplaneEvent::Message(message) => on_message(&node, message),
            BackplaneEvent::NodeDown {
                node: dead,
                swept_by,
                removed,
            } => {
                let node = node.clone();
                tokio::spawn(async move { node.on_node_down(&dead, &swept_by, removed).await });
            }
        }
    }
}

/// Applies what can be applied at once; queues the rest on a lane.
fn on_message(node: &Arc<Node>, message: ClusterMessage) {
    let ClusterMessage { origin, hub, body } = message;
    match body {
        ClusterBody::Deliver {
            target,
            except,
            payload,
            trace,
        } => {
            let mut span = crate::core::telemetry::delivery(hub.as_str(), trace.as_deref());
            let delivered = node.deliver_local(&hub, &target, &except, &OutboundMessage::from_json_record(payload));
            if let Some(span) = span.as_mut() {
                span.set("hubwire.recipients", delivered as u64);
            }
        }
        ClusterBody::AddToGroup { target, group, ack } => {
            let mut first = false;
            for handle in node.registry.resolve(&hub, &target, &[]) {
                first |= node.registry.join(&group, &handle);
            }
            let channel = Channel::Group(hub.clone(), group);
            let lane = channel.clone();
            let owner = node.clone();
            node.lanes.run(lane, async move {
                let node = owner;
                if first {
                    if let Err(e) = node.backplane.subscribe(channel).await {
                        // Not answered: the origin fails with a clear error
                        // rather than believe a member will be reached.
                        tracing::warn!(error = %e, "could not subscribe a group another node added to");
                        return;
                    }
                }
                answer(&node, hub, origin, ack).await;
            });
        }
        ClusterBody::RemoveFromGroup { target, group, ack } => {
            let mut emptied = false;
            for handle in node.registry.resolve(&hub, &target, &[]) {
                emptied |= node.registry.leave(&hub, &group, &handle.id);
            }
            let channel = Channel::Group(hub.clone(), group);
            let lane = channel.clone();
            let owner = node.clone();
            node.lanes.run(lane, async move {
                let node = owner;
                if emptied {
                    if let Err(e) = node.backplane.unsubscribe(channel).await {
                        // The connections left the registry: nothing local
                        // reaches them any more, whatever the subscription.
                        tracing::warn!(error = %e, "unsubscribe failed");
                    }
                }
                answer(&node, hub, origin, ack).await;
            });
        }
        ClusterBody::Close {
            target,
            except,
            reason,
            ack,
        } => {
            for handle in node.registry.resolve(&hub, &target, &except) {
                handle.close(close_request(reason.clone()));
            }
            if ack.is_some() {
                let node = node.clone();
                tokio::spawn(async move { answer(&node, hub, origin, ack).await });
            }
        }
        ClusterBody::Ack { to, id } => {
            if to == *node.backplane.node_id() {
                node.acks.answered(id, &origin);
            }
        }
        ClusterBody::Reply {
            to,
            connection,
            payload,
        } => {
            if to == *node.backplane.node_id() {
                node.client_result_reply(&connection, &payload);
            }
        }
    }
}

/// Tells the origin of command `ack` (if it awaits one) that it was applied.
async fn answer(node: &Node, hub: HubName, origin: NodeId, ack: Option<CommandId>) {
    let Some(id) = ack else {
        return;
    };
    let message = ClusterMessage {
        origin: node.backplane.node_id().clone(),
        hub,
        body: ClusterBody::Ack { to: origin, id },
    };
    if let Err(e) = node.backplane.publish(message).await {
        tracing::warn!(error = %e, "could not acknowledge a cluster command");
    }
}
