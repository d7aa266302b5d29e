//! Client results: the server invokes a client method with an invocation id
//! and awaits the client's Completion (the JS client's `connection.on(...)`
//! handler returning a value), from hub code ([`Node::invoke_client`]) and the
//! REST API (`POST /api/hubs/{hub}/connections/{id}/:invoke`).
//!
//! The invocation id is `{node id}|{random}`: unguessable, and naming the
//! node that awaits the answer. A connection held here gets the invocation
//! in its queue like any message; one held by another node gets it through
//! the backplane (a `Deliver` to the connection), and that node forwards the
//! client's Completion back in a [`ClusterBody::Reply`] on the invoking
//! node's channel — it keeps no state of its own for it.
//!
//! The caller always gets an answer: the client's result or error, or an
//! error when the connection is unknown, closes before answering (locally:
//! its close signal; elsewhere: its record leaves the keyspace, checked every
//! [`GONE_CHECK`], which also covers its node dying — the dead node's
//! connections are swept), or `client_result_timeout_secs` passes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::core::negotiations::random_id;
use crate::core::node::Node;
use crate::core::outbound::OutboundMessage;
use crate::core::result_waiters::Waiter;
use hubwire_backplane::{
    BackplaneError, ClusterBody, ClusterMessage, ConnectionId, Delivery, HubName, Keyspace, NodeId, Target,
};
use hubwire_protocol::{Completion, CompletionOutcome, HubMessage, Invocation, Protocol, Value};

/// How often an invocation awaiting a connection on another node checks
/// that the connection is still in the keyspace.
pub const GONE_CHECK: Duration = Duration::from_secs(1);

/// Why a client result did not come.
#[derive(Debug, thiserror::Error)]
pub enum ClientResultError {
    /// No such connection in the hub, anywhere in the cluster.
    #[error("Connection '{0}' does not exist.")]
    NotFound(ConnectionId),
    /// The connection closed (or its node died) before it answered.
    #[error("Connection '{0}' disconnected.")]
    Disconnected(ConnectionId),
    /// No answer within `client_result_timeout_secs`.
    #[error("The client did not answer '{method}' within {secs} s.")]
    Timeout {
        /// The client method invoked.
        method: String,
        /// The configured timeout.
        secs: u64,
    },
    /// The client answered with an error (its handler threw, or it has none
    /// for the method: "Client didn't provide a result.").
    #[error("{0}")]
    Client(String),
    /// The invocation could not be published to the connection's node.
    #[error(transparent)]
    Backplane(#[from] BackplaneError),
}

impl Node {
    /// Invokes `method(arguments)` on connection `connection` of `hub` and
    /// returns the client's result.
    pub async fn invoke_client(
        &self,
        hub: &HubName,
        connection: &ConnectionId,
        method: &str,
        arguments: Vec<Value>,
    ) -> Result<Value, ClientResultError> {
        let own = self.backplane.node_id().clone();
        let invocation_id = format!("{own}|{}", random_id());
        let (answer, answered) = oneshot::channel();
        self.client_results.wait(
            invocation_id.clone(),
            Waiter {
                connection: connection.clone(),
                answer,
            },
        );
        let _forget = self.client_results.forget_on_drop(&invocation_id);
        let message = OutboundMessage::new(HubMessage::Invocation(Invocation {
            invocation_id: Some(invocation_id.clone()),
            target: method.to_owned(),
            arguments,
            ..Invocation::default()
        }));
        let secs = self.config.client_result_timeout_secs;
        let deadline = tokio::time::sleep(Duration::from_secs(secs));
        tokio::pin!(deadline);
        let timeout = || ClientResultError::Timeout {
            method: method.to_owned(),
            secs,
        };
        let local = self.registry.get(connection).filter(|h| h.hub == *hub);
        let outcome = if let Some(handle) = local {
            let queued = message.encoded(handle.protocol).is_some_and(|r| handle.enqueue(r));
            if !queued {
                return Err(ClientResultError::Disconnected(connection.clone()));
            }
            tokio::select! {
                outcome = answered => outcome.map_err(|_| ClientResultError::Disconnected(connection.clone()))?,
                _ = handle.closed() => return Err(ClientResultError::Disconnected(connection.clone())),
                () = &mut deadline => return Err(timeout()),
            }
        } else {
            let held = self.backplane.connection(connection).await?;
            if held.is_none_or(|r| r.hub != *hub) {
                return Err(ClientResultError::NotFound(connection.clone()));
            }
            self.backplane
                .publish(ClusterMessage {
                    origin: own,
                    hub: hub.clone(),
                    body: ClusterBody::Deliver {
                        target: Target::Connection(connection.clone()),
                        except: Vec::new(),
                        payload: message.json().clone(),
                        trace: None,
                    },
                })
                .await?;
            tokio::pin!(answered);
            loop {
                tokio::select! {
                    outcome = &mut answered => break outcome.map_err(|_| ClientResultError::Disconnected(connection.clone()))?,
                    () = &mut deadline => return Err(timeout()),
                    () = tokio::time::sleep(GONE_CHECK) => {
                        // A Redis error is not the connection's absence: keep waiting.
                        if let Ok(None) = self.backplane.connection(connection).await {
                            return Err(ClientResultError::Disconnected(connection.clone()));
                        }
                    }
                }
            }
        };
        match outcome {
            CompletionOutcome::Result(value) => Ok(value),
            CompletionOutcome::Void => Ok(Value::Null),
            CompletionOutcome::Error(error) => Err(ClientResultError::Client(error)),
        }
    }

    /// A Completion from connection `from` of `hub` that answers no upload:
    /// if it answers a client result, hands it to the waiter here or sends it
    /// to the node that awaits it. Returns whether it was a client result.
    pub fn client_completion(self: &Arc<Self>, hub: &HubName, from: &ConnectionId, completion: Completion) -> bool {
        let Completion {
            invocation_id, outcome, ..
        } = completion;
        let Some(origin) = invocation_id.split_once('|').map(|(origin, _)| NodeId::from(origin)) else {
            return false;
        };
        let own = self.backplane.node_id();
        if origin == *own {
            return self.client_results.answer(&invocation_id, from, outcome);
        }
        let record = Protocol::Json.encode_to_bytes(&HubMessage::Completion(Completion {
            invocation_id,
            outcome,
            ..Completion::default()
        }));
        let message = ClusterMessage {
            origin: own.clone(),
            hub: hub.clone(),
            body: ClusterBody::Reply {
                to: origin,
                connection: from.clone(),
                payload: record,
            },
        };
        let node = self.clone();
        tokio::spawn(async move {
            if let Err(e) = node.backplane.publish(message).await {
                tracing::warn!(error = %e, "could not forward a client result");
            }
        });
        true
    }

    /// A client result another node forwarded (the inbox).
    pub(crate) fn client_result_reply(&self, connection: &ConnectionId, payload: &Bytes) {
        let decoded = Protocol::Json
            .next_record(payload, usize::MAX)
            .ok()
            .flatten()
            .and_then(|(record, _)| Protocol::Json.decode(record).ok().flatten());
        if let Some(HubMessage::Completion(completion)) = decoded {
            if !self
                .client_results
                .answer(&completion.invocation_id, connection, completion.outcome)
            {
                tracing::debug!(invocation = %completion.invocation_id, "a forwarded client result nobody awaits");
            }
        }
    }
}
