//! The built-in `diagnostics` hub: a small surface that exercises every part of
//! the protocol (results, errors, server-to-client streams) and every kind of
//! send, for tests, load tests and operators checking a deployment.
//!
//! Off unless `diagnostics_hub` is set. Sends that reach other users —
//! `SendToAll`, `SendToOthers`, and `SendToUser` / `SendToConnection` aimed at
//! anyone but the caller — need the `admin` role; group sends and
//! `SendToCaller` are open to every caller, and `JoinGroup` honours the
//! token's `channels` claim.
//!
//! `AskCaller(method, argument)` and `AskConnection(connectionId, method,
//! argument)` (admin for another connection, on any node) invoke a client
//! method and return what the client's handler returned — a client result;
//! the client's error, its disconnecting and the timeout come back as
//! `HubException`s.
//!
//! `Sum(stream)` consumes a client-to-server stream of numbers
//! (`connection.invoke("Sum", subject)`) and returns their sum: an integer
//! while every item is one, else a float; a non-number item fails it.

use std::time::Duration;

use std::borrow::Cow;
use std::sync::Arc;

use futures_util::future::{BoxFuture, LocalBoxFuture};
use futures_util::StreamExt;
use serde_json::json;

use crate::core::hub::{arg_str, arg_u64, Hub, HubCall, HubError, HubReply, MethodSpec};
use crate::core::node::{Node, SendOrder};
use hubwire_backplane::{ConnectionId, GroupName, HubName, Target, UserId};
use hubwire_protocol::Value;

/// The diagnostics hub (`/hubs/diagnostics`).
pub struct DiagnosticsHub;

const fn method(name: &'static str, params: usize) -> MethodSpec {
    MethodSpec::new(name, params)
}

const METHODS: &[MethodSpec] = &[
    method("Echo", 1),
    MethodSpec {
        name: Cow::Borrowed("Stream"),
        min_params: 2,
        params: 2,
        streaming: true,
        uploads: 0,
    },
    method("Fail", 1),
    method("WhoAmI", 0),
    method("JoinGroup", 1),
    method("LeaveGroup", 1),
    method("SendToAll", 2),
    method("SendToOthers", 2),
    method("SendToCaller", 2),
    method("SendToGroup", 3),
    method("SendToOthersInGroup", 3),
    method("SendToUser", 3),
    method("SendToConnection", 3),
    MethodSpec::with_uploads("Sum", 0, 1),
    method("AskCaller", 2),
    method("AskConnection", 3),
];

/// The largest stream `Stream(count, _)` produces.
const MAX_STREAM_ITEMS: u64 = 100_000;

impl Hub for DiagnosticsHub {
    fn name(&self) -> &str {
        "diagnostics"
    }

    fn methods(&self) -> &[MethodSpec] {
        METHODS
    }

    /// Tells everyone connected to the hub: `UserOffline(userId)`.
    fn on_user_offline(&self, node: Arc<Node>, hub: HubName, user: UserId) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let arguments = vec![Value::from(user.as_str())];
            if let Err(e) = node
                .send(
                    &hub,
                    Target::All,
                    vec![],
                    ("UserOffline", arguments),
                    SendOrder::LocalFirst,
                )
                .await
            {
                tracing::warn!(user = %user, error = %e, "could not announce a user going offline");
            }
        })
    }

    fn invoke(
        &self,
        call: HubCall,
        method: usize,
        args: Vec<Value>,
    ) -> LocalBoxFuture<'static, Result<HubReply, HubError>> {
        let method: &'static str = match METHODS.get(method) {
            Some(spec) => &spec.name,
            None => "",
        };
        Box::pin(async move {
            let hub = call.caller.hub.clone();
            let me = call.caller.id.clone();
            let send = |target: Target, except: Vec<ConnectionId>, at: usize| {
                let node = call.node.clone();
                let hub = hub.clone();
                let method = arg_str(&args, at);
                let payload = args.get(at + 1).cloned().unwrap_or(Value::Null);
                async move {
                    node.send(&hub, target, except, (&method?, vec![payload]), SendOrder::LocalFirst)
                        .await
                        .map_err(|e| HubError::Hub(e.to_string()))?;
                    Ok(HubReply::Value(Value::Null))
                }
            };
            match method {
                "Echo" => Ok(HubReply::Value(args.into_iter().next().unwrap_or(Value::Null))),
                "Fail" => Err(HubError::Hub(arg_str(&args, 0)?)),
                "WhoAmI" => {
                    let c = &call.caller;
                    Ok(HubReply::Value(json!({
                        "connectionId": c.id.as_str(),
                        "userId": c.user().map(UserId::as_str),
                        "userName": c.principal.as_ref().and_then(|p| p.name.clone()),
                        "hub": c.hub.as_str(),
                        "transport": c.transport,
                        "protocol": c.protocol.name(),
                        "node": call.node.node_id().as_str(),
                    })))
                }
                "Stream" => {
                    let count = arg_u64(&args, 0)?.min(MAX_STREAM_ITEMS);
                    let interval = Duration::from_millis(arg_u64(&args, 1)?);
                    let items = futures_util::stream::iter(0..count).then(move |i| async move {
                        if !interval.is_zero() {
                            tokio::time::sleep(interval).await;
                        }
                        Ok(Value::from(i))
                    });
                    Ok(HubReply::Stream(items.boxed_local()))
                }
                "JoinGroup" => {
                    call.join_group(&GroupName::from(arg_str(&args, 0)?)).await?;
                    Ok(HubReply::Value(Value::Null))
                }
                "LeaveGroup" => {
                    let group = GroupName::from(arg_str(&args, 0)?);
                    call.node
                        .remove_from_group(&hub, &group, &me)
                        .await
                        .map_err(|e| HubError::Hub(e.to_string()))?;
                    Ok(HubReply::Value(Value::Null))
                }
                "SendToAll" => {
                    call.require_admin(method)?;
                    send(Target::All, vec![], 0).await
                }
                "SendToOthers" => {
                    call.require_admin(method)?;
                    send(Target::All, vec![me.clone()], 0).await
                }
                "SendToCaller" => send(Target::Connection(me.clone()), vec![], 0).await,
                "SendToGroup" => send(Target::Group(arg_str(&args, 0)?.into()), vec![], 1).await,
                "SendToOthersInGroup" => send(Target::Group(arg_str(&args, 0)?.into()), vec![me.clone()], 1).await,
                "SendToUser" => {
                    let user = UserId::from(arg_str(&args, 0)?);
                    if call.caller.user() != Some(&user) {
                        call.require_admin(method)?;
                    }
                    send(Target::User(user), vec![], 1).await
                }
                "SendToConnection" => {
                    let id = ConnectionId::from(arg_str(&args, 0)?);
                    if id != me {
                        call.require_admin(method)?;
                    }
                    send(Target::Connection(id), vec![], 1).await
                }
                "Sum" => sum(call.upload()?).await.map(HubReply::Value),
                "AskCaller" => ask(&call, me.clone(), arg_str(&args, 0)?, args.get(1).cloned()).await,
                "AskConnection" => {
                    let id = ConnectionId::from(arg_str(&args, 0)?);
                    if id != me {
                        call.require_admin(method)?;
                    }
                    ask(&call, id, arg_str(&args, 1)?, args.get(2).cloned()).await
                }
                other => Err(HubError::Internal(format!(
                    "method {other} is declared but not implemented"
                ))),
            }
        })
    }
}

/// Adds up an uploaded stream of numbers.
async fn sum(mut items: crate::core::upload::Upload) -> Result<Value, HubError> {
    let mut int: Option<i64> = Some(0);
    let mut float = 0f64;
    while let Some(item) = items.next().await {
        let item = item?;
        let Some(x) = item.as_f64() else {
            return Err(HubError::Hub(format!("Sum takes numbers, not {item}.")));
        };
        float += x;
        int = int.zip(item.as_i64()).and_then(|(a, b)| a.checked_add(b));
    }
    Ok(int.map_or_else(|| Value::from(float), Value::from))
}

/// Invokes `method(argument)` on connection `id` and returns the client's result.
async fn ask(call: &HubCall, id: ConnectionId, method: String, argument: Option<Value>) -> Result<HubReply, HubError> {
    let arguments = argument.into_iter().collect();
    call.node
        .invoke_client(&call.caller.hub, &id, &method, arguments)
        .await
        .map(HubReply::Value)
        .map_err(|e| HubError::Hub(e.to_string()))
}
