//! The groups kind: subscriptions. A connection joins the definition's
//! `on_connect` groups when it connects (`vkey-{userId}`,
//! `system-notifications`); its methods subscribe to and unsubscribe from
//! groups made from a template and an argument (`video-{requestId}`), relay
//! the caller's arguments as an event to a group (`UpdateNavigation(state)`
//! → `NavigationUpdated(state)` to `vkey-{userId}`), or answer a ping. What
//! the app's backend publishes goes through the REST API's group, user and
//! batch sends: those events need no declaration.
//!
//! # Layout
//! - [`definition`]: the `groups` table checked and resolved: templates,
//!   authorisation rules, method specs.
//! - this file: [`GroupsHub`], the hub that runs a [`GroupsDefinition`].
//!
//! # Rules
//! - On-connect groups are joined before the connection is live (before its
//!   handshake is answered): an event published to them right after the
//!   client's `start()` resolved reaches it. A template whose placeholder
//!   the token does not fill (no `tenant`, an anonymous caller) is skipped.
//! - A subscribe or unsubscribe whose argument is missing, `null`, empty or
//!   only whitespace is refused with the definition's `required` text; a
//!   subscribe or relay the `allow` rule refuses with its `denied` text. Both
//!   are `HubException`s, always shown to the client.
//! - `connect_role`: only tokens with that role connect (negotiate and
//!   connect answer 401 to others).
//! - Joining honours the token's `channels` claim whatever the rule
//!   ([`HubCall::join_group`]), and the node's group limits
//!   (`max_groups_per_connection`).
//! - Limits ([`crate::hubs::limits`]), checked before the rule: an argument
//!   filling a template is at most `limits.max_argument_chars`, a relay's
//!   arguments at most `limits.max_relay_bytes` of JSON; subscribes and
//!   unsubscribes (`limits.subscriptions_per_minute`) and relays
//!   (`limits.relays_per_minute`) are rate-limited per user. Refusals are
//!   `HubException`s naming the limit, counted in
//!   `hubwire_limit_refusals_total`.
//!
//! # The backend rule
//! `allow = "backend"` asks the app's backend (the hub's `backend.authorize`
//! hook, `crate::core::backend`: `{hub, userId, method, group, arguments}`
//! with the group already rendered), after the group name is made and
//! before the join or relay (`Inner::check`); a denial, or a backend that
//! cannot answer within its timeout, refuses with `denied`. A definition
//! with the rule but no hook stops the node at start.

pub mod definition;

use std::sync::Arc;

use futures_util::future::LocalBoxFuture;

use definition::Allow;
use serde_json::Value;

use crate::core::auth::Principal;
use crate::core::connection::ConnectionHandle;
use crate::core::hub::{Hub, HubCall, HubError, HubReply, MethodSpec};
use crate::core::metrics::Limit;
use crate::core::node::SendOrder;
use crate::hubs::limits::{check_rate, input_refused, CallRate};
use definition::{Action, Fill, GroupsDefinition};
use hubwire_backplane::{GroupName, HubName, Target};

/// A hub of the groups kind.
#[derive(Clone)]
pub struct GroupsHub {
    inner: Arc<Inner>,
}

struct Inner {
    def: GroupsDefinition,
    specs: Vec<MethodSpec>,
    hub: HubName,
}

impl GroupsHub {
    /// A groups hub serving `def`.
    pub fn new(def: GroupsDefinition) -> Self {
        let specs = def.methods.iter().map(|m| m.spec.clone()).collect();
        let hub = HubName::from(def.name.as_str());
        Self {
            inner: Arc::new(Inner { def, specs, hub }),
        }
    }

    /// The definition it serves.
    pub fn definition(&self) -> &GroupsDefinition {
        &self.inner.def
    }
}

/// The argument as text: a string or a number; `None` when missing, `null`
/// or blank; a binding error for anything else.
fn argument_text(value: Option<&Value>) -> Result<Option<String>, HubError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(HubError::Binding(format!("the argument must be a string, got {other}"))),
    }
}

/// The text a relay argument fills a placeholder with.
fn placeholder_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Inner {
    /// Refuses (counted) an argument filling a group template beyond
    /// `limits.max_argument_chars`.
    fn check_argument(&self, call: &HubCall, name: &str, value: &str) -> Result<(), HubError> {
        let max = self.def.limits.max_argument_chars;
        if value.chars().count() <= max {
            return Ok(());
        }
        let text = format!("The argument '{name}' is longer than {max} characters (limits.max_argument_chars).");
        Err(input_refused(&call.node, &self.hub, Limit::GroupsInput, text))
    }

    /// Refuses (counted) a relay whose arguments are more than
    /// `limits.max_relay_bytes` bytes of JSON.
    fn check_relay_size(&self, call: &HubCall, args: &[Value]) -> Result<(), HubError> {
        let max = self.def.limits.max_relay_bytes;
        let bytes: usize = args.iter().map(|a| a.to_string().len()).sum();
        if bytes <= max {
            return Ok(());
        }
        let text =
            format!("The relay's arguments are {bytes} bytes of JSON, more than {max} (limits.max_relay_bytes).");
        Err(input_refused(&call.node, &self.hub, Limit::GroupsInput, text))
    }

    /// Refuses with `denied` unless `allow` lets the caller reach `group`
    /// (asking the app's backend for [`Allow::Backend`]: a denial, or a
    /// backend that cannot answer, refuses).
    async fn check(
        &self,
        call: &HubCall,
        method: &str,
        allow: &Allow,
        group: &str,
        args: &[Value],
        denied: &str,
    ) -> Result<(), HubError> {
        let principal = call.caller.principal.as_ref();
        if !allow.allows(principal, group) {
            return Err(HubError::Hub(denied.to_owned()));
        }
        let (Allow::Backend, Some(principal)) = (allow, principal) else {
            return Ok(());
        };
        let asked = call
            .node
            .backend
            .authorize(self.hub.as_str(), &principal.user, method, group, args)
            .await;
        match asked {
            Ok(true) => Ok(()),
            Ok(false) => Err(HubError::Hub(denied.to_owned())),
            Err(e) => {
                tracing::warn!(hub = %self.hub, group, error = %e, "authorisation backend unavailable: refusing");
                Err(HubError::Hub(denied.to_owned()))
            }
        }
    }

    /// The group a subscribe or unsubscribe names: its argument read (the
    /// `required` refusal when absent or empty), checked and rate-limited,
    /// then `group` filled with it; `None` when the template cannot be
    /// filled (a placeholder the caller's token lacks).
    async fn subscription_group(
        &self,
        call: &HubCall,
        group: &definition::Template,
        argument: &str,
        required: &str,
        args: &[Value],
    ) -> Result<Option<String>, HubError> {
        let value = argument_text(args.first())?.ok_or_else(|| HubError::Hub(required.to_owned()))?;
        self.check_argument(call, argument, &value)?;
        check_rate(call, &self.def.limits, CallRate::Subscriptions).await?;
        let fill_args = [(argument, value)];
        let fill = Fill {
            principal: call.caller.principal.as_ref(),
            connection: call.caller.id.as_str(),
            args: &fill_args,
        };
        Ok(group.render(&fill).ok())
    }

    async fn run(&self, call: &HubCall, method: &str, action: &Action, args: Vec<Value>) -> Result<Value, HubError> {
        let principal = call.caller.principal.as_ref();
        let connection = call.caller.id.as_str();
        match action {
            Action::Ping => Ok(Value::from("pong")),
            Action::Subscribe {
                group,
                argument,
                required,
                allow,
                denied,
            } => {
                let name = self.subscription_group(call, group, argument, required, &args).await?;
                let name = name.ok_or_else(|| HubError::Hub(denied.clone()))?;
                self.check(call, method, allow, &name, &args, denied).await?;
                call.join_group(&GroupName::from(name)).await?;
                Ok(Value::Null)
            }
            Action::Unsubscribe {
                group,
                argument,
                required,
            } => {
                // A group the caller could not be in (an unfilled placeholder): nothing to leave.
                if let Some(name) = self.subscription_group(call, group, argument, required, &args).await? {
                    call.node
                        .remove_from_group(&self.hub, &GroupName::from(name), &call.caller.id)
                        .await
                        .map_err(|e| HubError::Hub(e.to_string()))?;
                }
                Ok(Value::Null)
            }
            Action::Relay {
                group,
                args: names,
                event,
                allow,
                denied,
                except_caller,
            } => {
                let fill_args: Vec<(&str, String)> = names
                    .iter()
                    .map(String::as_str)
                    .zip(args.iter().map(placeholder_text))
                    .collect();
                for (name, value) in fill_args.iter().filter(|(name, _)| group.has(name)) {
                    self.check_argument(call, name, value)?;
                }
                self.check_relay_size(call, &args)?;
                check_rate(call, &self.def.limits, CallRate::Relays).await?;
                let fill = Fill {
                    principal,
                    connection,
                    args: &fill_args,
                };
                let name = group.render(&fill).map_err(|_| HubError::Hub(denied.clone()))?;
                self.check(call, method, allow, &name, &args, denied).await?;
                let except = if *except_caller {
                    vec![call.caller.id.clone()]
                } else {
                    vec![]
                };
                call.node
                    .send(
                        &self.hub,
                        Target::Group(GroupName::from(name)),
                        except,
                        (event, args),
                        SendOrder::LocalFirst,
                    )
                    .await
                    .map_err(|e| HubError::Hub(e.to_string()))?;
                Ok(Value::Null)
            }
        }
    }
}

impl Hub for GroupsHub {
    fn name(&self) -> &str {
        &self.inner.def.name
    }

    fn methods(&self) -> &[MethodSpec] {
        &self.inner.specs
    }

    fn invoke(
        &self,
        call: HubCall,
        method: usize,
        args: Vec<Value>,
    ) -> LocalBoxFuture<'static, Result<HubReply, HubError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let Some(m) = inner.def.methods.get(method) else {
                return Err(HubError::Internal(format!("no method number {method}")));
            };
            inner
                .run(&call, &m.spec.name, &m.action, args)
                .await
                .map(HubReply::Value)
        })
    }

    fn admits(&self, principal: Option<&Principal>) -> bool {
        match &self.inner.def.connect_role {
            None => true,
            Some(role) => principal.is_some_and(|p| p.has_role(role)),
        }
    }

    fn groups_on_connect(&self, caller: &ConnectionHandle) -> Vec<GroupName> {
        let fill = Fill {
            principal: caller.principal.as_ref(),
            connection: caller.id.as_str(),
            args: &[],
        };
        self.inner
            .def
            .on_connect
            .iter()
            .filter_map(|t| match t.render(&fill) {
                Ok(name) => Some(GroupName::from(name)),
                Err(missing) => {
                    tracing::debug!(hub = %self.inner.hub, placeholder = %missing, "on-connect group skipped: the token does not fill it");
                    None
                }
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
