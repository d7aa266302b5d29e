//! The hub trait: named sets of methods clients invoke, and the set a node
//! serves. The built-in hubs are in [`crate::hubs`].
//!
//! A hub declares its methods (name, parameter counts, whether they stream) so
//! the dispatcher can answer unknown methods, wrong argument counts and
//! streaming-mode mismatches the way ASP.NET Core does, before the hub runs.
//! Method names match case-insensitively, as in ASP.NET Core. Names are
//! `Cow<'static, str>`: a hub written in Rust declares them as constants, a hub
//! made from a definition in the configuration owns them.
//!
//! A hub is served at a path: `/hubs/{name}` unless added with
//! [`HubSet::at`]; its name (the last segment of its path) names it in the
//! REST API, the keyspace and `anonymous_hubs`.
//!
//! [`HubCall`] carries the checks every hub applies the same way: joining a
//! group honours the token's `channels` claim, and [`HubCall::require_role`]
//! [`HubCall::require_admin`]
//! guards methods that reach other users.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::future::{BoxFuture, LocalBoxFuture};
use futures_util::stream::LocalBoxStream;

use crate::core::auth::Authenticator;
use crate::core::auth::{Principal, ADMIN_ROLE};
use crate::core::config::Config;
use crate::core::connection::ConnectionHandle;
use crate::core::metrics::Limit;
use crate::core::node::{Node, NodeHooks};
use crate::core::upload::{Upload, UploadError};
use hubwire_backplane::{AnyBackplane, GroupName, HubName, NodeId, UserId};
use hubwire_protocol::Value;

/// One method of a hub.
#[derive(Clone, Debug)]
pub struct MethodSpec {
    /// The canonical name.
    pub name: Cow<'static, str>,
    /// The fewest arguments it takes (the trailing ones beyond it are optional).
    pub min_params: usize,
    /// The most arguments it takes.
    pub params: usize,
    /// Whether it returns a stream (invoked with StreamInvocation).
    pub streaming: bool,
    /// Client-to-server streams it takes (`streamIds`), besides its arguments.
    pub uploads: usize,
}

impl MethodSpec {
    /// A non-streaming method taking exactly `params` arguments.
    pub const fn new(name: &'static str, params: usize) -> Self {
        Self {
            name: Cow::Borrowed(name),
            min_params: params,
            params,
            streaming: false,
            uploads: 0,
        }
    }

    /// A non-streaming method taking `params` arguments and `uploads`
    /// client-to-server streams ([`HubCall::upload`]).
    pub const fn with_uploads(name: &'static str, params: usize, uploads: usize) -> Self {
        Self {
            name: Cow::Borrowed(name),
            min_params: params,
            params,
            streaming: false,
            uploads,
        }
    }

    /// Whether `count` arguments fit the method.
    pub fn accepts(&self, count: usize) -> bool {
        (self.min_params..=self.params).contains(&count)
    }
}

/// What a hub method produced.
pub enum HubReply {
    /// A single result (`Value::Null` for methods that return nothing).
    Value(Value),
    /// A server-to-client stream of items.
    Stream(LocalBoxStream<'static, Result<Value, HubError>>),
}

/// Why a hub method failed.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// An error meant for the client (ASP.NET Core's `HubException`): its text
    /// is always sent.
    #[error("{0}")]
    Hub(String),
    /// The arguments do not fit the method; the text is sent only with
    /// detailed errors.
    #[error("{0}")]
    Binding(String),
    /// Anything else; the text is sent only with detailed errors.
    #[error("{0}")]
    Internal(String),
}

impl From<UploadError> for HubError {
    fn from(error: UploadError) -> Self {
        HubError::Hub(error.to_string())
    }
}

/// The context of one invocation.
#[derive(Clone)]
pub struct HubCall {
    /// The node, to send to others, manage groups, or read configuration.
    pub node: Arc<Node>,
    /// The calling connection.
    pub caller: Arc<ConnectionHandle>,
    /// The invocation's client-to-server streams, in `streamIds` order.
    pub(crate) uploads: Rc<RefCell<VecDeque<Upload>>>,
}

impl HubCall {
    /// A call by `caller` with no uploads (hub code calling hub code, tests).
    pub fn new(node: Arc<Node>, caller: Arc<ConnectionHandle>) -> Self {
        Self {
            node,
            caller,
            uploads: Rc::default(),
        }
    }

    /// The invocation's next client-to-server stream (the first call gets
    /// the first of its `streamIds`); the dispatcher checked that there are
    /// as many as the method's [`MethodSpec::uploads`].
    pub fn upload(&self) -> Result<Upload, HubError> {
        self.uploads
            .borrow_mut()
            .pop_front()
            .ok_or_else(|| HubError::Internal("the method takes more streams than it declared".into()))
    }

    /// Adds the caller to `group`, as a hub's JoinGroup does: refused when the
    /// caller's token has a `channels` claim none of whose patterns matches,
    /// and when the node's group limits refuse it.
    pub async fn join_group(&self, group: &GroupName) -> Result<(), HubError> {
        let caller = &self.caller;
        if caller.principal.as_ref().is_some_and(|p| !p.may_join(group.as_str())) {
            self.node.metrics.refused(caller.hub.as_str(), Limit::ChannelsClaim);
            return Err(HubError::Hub(format!(
                "The token's channels claim does not allow joining group '{group}'."
            )));
        }
        self.node
            .add_to_group(&caller.hub, group, &caller.id)
            .await
            .map_err(|e| HubError::Hub(e.to_string()))?;
        Ok(())
    }

    /// Refuses `method` unless the caller's token has the `admin` role (the
    /// REST API's, [`ADMIN_ROLE`]); refusals are counted in `/metrics`.
    pub fn require_admin(&self, method: &str) -> Result<(), HubError> {
        if self.caller.principal.as_ref().is_some_and(|p| p.has_role(ADMIN_ROLE)) {
            return Ok(());
        }
        self.node.metrics.refused(self.caller.hub.as_str(), Limit::AdminRole);
        Err(HubError::Hub(format!(
            "'{method}' to other users or connections requires the '{ADMIN_ROLE}' role."
        )))
    }
}

/// A hub. Futures are not `Send`: they run on the connection's actix worker.
pub trait Hub: Send + Sync {
    /// The hub's name: the last segment of its path, as the REST API and the
    /// keyspace know it.
    fn name(&self) -> &str;
    /// Every method clients may invoke.
    fn methods(&self) -> &[MethodSpec];
    /// Runs method number `method` of [`Hub::methods`] (argument count
    /// already checked).
    fn invoke(
        &self,
        call: HubCall,
        method: usize,
        args: Vec<Value>,
    ) -> LocalBoxFuture<'static, Result<HubReply, HubError>>;

    /// Called once a connection is live (in the registry and the keyspace,
    /// its groups joined), on a task of its own so that the handshake does not
    /// wait. Does nothing by default.
    fn on_connected(&self, node: Arc<Node>, caller: Arc<ConnectionHandle>) -> BoxFuture<'static, ()> {
        let _ = (node, caller);
        Box::pin(async {})
    }

    /// Called when a connection has closed, after it left this node's
    /// registry and before the offline hook. Does nothing by default.
    fn on_disconnected(&self, node: Arc<Node>, caller: Arc<ConnectionHandle>) -> BoxFuture<'static, ()> {
        let _ = (node, caller);
        Box::pin(async {})
    }

    /// Called once cluster-wide when a user's last connection to this hub is
    /// gone — closed, or lost with its node. Does nothing by default.
    fn on_user_offline(&self, node: Arc<Node>, hub: HubName, user: UserId) -> BoxFuture<'static, ()> {
        let _ = (node, hub, user);
        Box::pin(async {})
    }

    /// Called on the node that swept node `dead` (once cluster-wide), after
    /// the offline hooks: the hub takes over what the dead node left
    /// undone. Does nothing by default.
    fn on_node_down(&self, node: Arc<Node>, dead: NodeId) -> BoxFuture<'static, ()> {
        let _ = (node, dead);
        Box::pin(async {})
    }

    /// Connections one user may hold to this hub, cluster-wide (0 =
    /// unlimited); none (the default): the node's `max_connections_per_user`.
    fn max_connections_per_user(&self) -> Option<usize> {
        None
    }

    /// The groups a connection joins as it goes live, before its handshake
    /// is answered (the groups kind's `on_connect`). None by default.
    fn groups_on_connect(&self, caller: &ConnectionHandle) -> Vec<GroupName> {
        let _ = caller;
        Vec::new()
    }

    /// Whether a connection of `principal` (none: anonymous) may connect,
    /// its token already verified; refused ones are answered 401. All by
    /// default.
    fn admits(&self, principal: Option<&Principal>) -> bool {
        let _ = principal;
        true
    }

    /// Looks a method up by name, case-insensitively: its number and spec.
    fn method(&self, name: &str) -> Option<(usize, &MethodSpec)> {
        self.methods()
            .iter()
            .enumerate()
            .find(|(_, m)| m.name.eq_ignore_ascii_case(name))
    }
}

/// The hubs a node serves, each at its path.
#[derive(Clone, Default)]
pub struct HubSet {
    hubs: Vec<(String, Arc<dyn Hub>)>,
}

impl HubSet {
    /// Adds a hub at `/hubs/{name}`.
    pub fn with(self, hub: Arc<dyn Hub>) -> Self {
        let path = format!("/hubs/{}", hub.name());
        self.at(path, hub)
    }
    /// Adds a hub at `path` (whose last segment is the hub's name).
    pub fn at(mut self, path: String, hub: Arc<dyn Hub>) -> Self {
        self.hubs.push((path, hub));
        self
    }
    /// A hub by name, case-insensitively.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Hub>> {
        self.hubs
            .iter()
            .find(|(_, h)| h.name().eq_ignore_ascii_case(name))
            .map(|(_, h)| h.clone())
    }
    /// The path of the hub named `name` (case-insensitively).
    pub fn path_of(&self, name: &str) -> Option<&str> {
        self.hubs
            .iter()
            .find(|(_, h)| h.name().eq_ignore_ascii_case(name))
            .map(|(p, _)| p.as_str())
    }
    /// The hub served at `path` (case-insensitively, a trailing `/` ignored).
    pub fn at_path(&self, path: &str) -> Option<Arc<dyn Hub>> {
        let path = path.strip_suffix('/').unwrap_or(path);
        self.hubs
            .iter()
            .find(|(p, _)| p.eq_ignore_ascii_case(path))
            .map(|(_, h)| h.clone())
    }
    /// Every hub's path.
    pub fn paths(&self) -> impl Iterator<Item = &str> + '_ {
        self.hubs.iter().map(|(p, _)| p.as_str())
    }
    /// A node serving these hubs: it knows their names and calls their
    /// hooks; call [`Node::start`] before serving.
    pub fn serve(&self, config: Config, auth: Authenticator, backplane: AnyBackplane) -> Node {
        let names = self.names().map(HubName::from).collect();
        Node::new(config, auth, backplane, names, Arc::new(self.clone()))
    }
    /// The names of every hub.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.hubs.iter().map(|(_, h)| h.name())
    }
}

/// Argument `i` as a string.
pub fn arg_str(args: &[Value], i: usize) -> Result<String, HubError> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(HubError::Binding(format!("argument {i} must be a string, got {other}"))),
        None => Err(HubError::Binding(format!("argument {i} is missing"))),
    }
}

/// Argument `i` as a non-negative integer.
pub fn arg_u64(args: &[Value], i: usize) -> Result<u64, HubError> {
    args.get(i)
        .and_then(Value::as_u64)
        .ok_or_else(|| HubError::Binding(format!("argument {i} must be a non-negative integer")))
}

impl NodeHooks for HubSet {
    fn max_connections_per_user(&self, hub: &HubName) -> Option<usize> {
        self.get(hub.as_str())?.max_connections_per_user()
    }

    fn admits(&self, hub: &HubName, principal: Option<&Principal>) -> bool {
        self.get(hub.as_str()).is_none_or(|h| h.admits(principal))
    }

    fn groups_on_connect(&self, handle: &ConnectionHandle) -> Vec<GroupName> {
        self.get(handle.hub.as_str())
            .map(|h| h.groups_on_connect(handle))
            .unwrap_or_default()
    }

    fn connected(&self, node: Arc<Node>, handle: Arc<ConnectionHandle>) -> BoxFuture<'static, ()> {
        match self.get(handle.hub.as_str()) {
            Some(h) => h.on_connected(node, handle),
            None => Box::pin(async {}),
        }
    }

    fn disconnected(&self, node: Arc<Node>, handle: Arc<ConnectionHandle>) -> BoxFuture<'static, ()> {
        match self.get(handle.hub.as_str()) {
            Some(h) => h.on_disconnected(node, handle),
            None => Box::pin(async {}),
        }
    }

    fn user_offline(&self, node: Arc<Node>, hub: HubName, user: UserId) -> BoxFuture<'static, ()> {
        match self.get(hub.as_str()) {
            Some(h) => h.on_user_offline(node, hub, user),
            None => Box::pin(async {}),
        }
    }

    fn node_down(&self, node: Arc<Node>, dead: NodeId) -> BoxFuture<'static, ()> {
        let hooks: Vec<_> = self
            .hubs
            .iter()
            .map(|(_, h)| h.on_node_down(node.clone(), dead.clone()))
            .collect();
        Box::pin(async move {
            for hook in hooks {
                hook.await;
            }
        })
    }
}
