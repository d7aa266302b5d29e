//! The notifications kind (seed 002's NotificationHub, MISSION's
//! `/hubs/notifications`): notifications persisted in the store, then sent
//! to their audience — a user (all their connections), a tenant (every
//! connection whose token has that `tenant` claim), a channel's subscribers,
//! or everyone of the hub; each user's acknowledged / read state stored and
//! synced to their other sessions on every node. One [`NotificationsHub`]
//! per definition (the built-in `/hubs/notifications` is the definition with
//! [`catalog::CATALOG`]'s defaults).
//!
//! # Layout
//! - [`catalog`]: the kind's operations and events, with the default names.
//! - [`settings`]: `[hub.notifications]` checked: retention, group
//!   templates, sizes.
//! - this module: the hub (methods, the tenant group joined at connect,
//!   channel subscriptions), [`NotificationsHub::create`] for the REST API,
//!   and the retention task.
//!
//! # Rules
//! - A notification is sent only after the store committed it; clients that
//!   were offline fetch their unread ones (`GetUnreadNotifications`, REST).
//! - Every connection with a `tenant` claim is in its tenant's group
//!   (`tenant_group`), joined at connect through the keyspace, so a tenant
//!   send is one group publish reaching every node.
//! - `SubscribeToChannel` is allowed as the token's `channels` claim says
//!   ([`crate::core::auth::Principal::may_join`]: no claim, any channel);
//!   else a `HubException`.
//! - Acknowledging or reading a notification that is not the caller's (or
//!   does not exist) is a `HubException`; the first acknowledgement / read
//!   counts, repeats answer the stored time.
//! - Every send goes through [`Notifications::emit`], laid out as the
//!   definition says; an event the definition turns off is not sent.
//! - Limits ([`crate::hubs::limits`]): acknowledgements and reads are
//!   rate-limited per user (`limits.acks_per_minute`), subscribes and
//!   unsubscribes too (`limits.subscriptions_per_minute`), checked after
//!   the arguments (a refused input takes no token) and before any work;
//!   channel names, tenants and types are at most
//!   `notifications.max_name_chars`, REST user ids
//!   `limits.max_user_id_chars`; a connection is in at most the node's
//!   `max_groups_per_connection` channels (its tenant group included).
//!   Refusals name the limit and are counted in
//!   `hubwire_limit_refusals_total`.

pub mod catalog;
pub mod settings;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::future::{BoxFuture, LocalBoxFuture};
use serde_json::{Map, Value};

use crate::core::connection::ConnectionHandle;
use crate::core::hub::{Hub, HubCall, HubError, HubReply, MethodSpec};
use crate::core::metrics::Limit;
use crate::core::node::{Node, NodeError, SendOrder};
use crate::hubs::chat::payload::iso8601;
use crate::hubs::definition::{BoundArgs, BoundEvent, Definition};
use crate::hubs::limits::{check_chars, check_rate, input_refused, CallRate};
use catalog::{Event, Op, CATALOG};
use hubwire_backplane::{ConnectionId, GroupName, HubName, Target, UserId};
use hubwire_store::{Audience, MessageId, NewNotification, Notification, Recipient, Store, StoreError};
pub use settings::Settings;

/// The longest notification-id text a refusal repeats (an id is at most 19
/// digits).
const MAX_ID_ECHO: usize = 32;

/// A hub of the notifications kind.
#[derive(Clone)]
pub struct NotificationsHub {
    inner: Arc<Notifications>,
}

/// What a notifications hub's calls, hooks and REST operations share.
pub struct Notifications {
    def: Definition,
    settings: Settings,
    specs: Vec<MethodSpec>,
    hub: HubName,
    store: Store,
    /// This node's connections' channel subscriptions (for the unread query).
    channels: Mutex<HashMap<ConnectionId, BTreeSet<String>>>,
}

/// Why a REST operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NotificationsError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cluster could not carry out the send.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// A notification breaks a rule (size, empty field).
    #[error("{0}")]
    Invalid(String),
}

fn hub_error(error: StoreError) -> HubError {
    match error {
        StoreError::Unavailable(_) | StoreError::Closed => {
            HubError::Hub("The notification store is not available right now. Try again.".into())
        }
        StoreError::Invalid(m) | StoreError::NotFound(m) | StoreError::Conflict(m) => HubError::Hub(m),
        other => HubError::Internal(other.to_string()),
    }
}

impl NotificationsHub {
    /// A notifications hub serving `def` with `settings`, persisting in `store`.
    pub fn new(def: Definition, settings: Settings, store: Store) -> Self {
        let specs = def.methods.iter().map(|m| m.spec.clone()).collect();
        let hub = HubName::from(def.name.as_str());
        Self {
            inner: Arc::new(Notifications {
                def,
                settings,
                specs,
                hub,
                store,
                channels: Mutex::default(),
            }),
        }
    }

    /// The definition it serves.
    pub fn definition(&self) -> &Definition {
        &self.inner.def
    }

    /// Its settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Starts the retention task (when `retention_days` is not 0): every
    /// `retention_interval_secs`, old notifications are deleted, one node
    /// at a time.
    pub fn start(&self) {
        let days = self.inner.settings.retention_days;
        if days == 0 {
            return;
        }
        let store = self.inner.store.clone();
        let hub = self.inner.def.name.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(store.retention_interval());
            loop {
                ticks.tick().await;
                match store.run_notification_retention(&hub, days, now_ms()).await {
                    Ok(Some(deleted)) => tracing::info!(hub, deleted, "notification retention run"),
                    Ok(None) => tracing::debug!(hub, "notification retention skipped: another node holds the lock"),
                    Err(e) => tracing::warn!(hub, error = %e, "notification retention run failed"),
                }
            }
        });
    }

    /// Stores `batch` and sends it: one notification as `notification_received`
    /// to its audience; several as one `notification_batch_received` per
    /// audience (in the batch's order). Returns them as the REST API shows
    /// them.
    pub async fn create(
        &self,
        node: &Node,
        batch: Vec<NewNotification>,
        as_batch: bool,
    ) -> Result<Vec<Value>, NotificationsError> {
        let this = &self.inner;
        for n in &batch {
            this.check(n).map_err(NotificationsError::Invalid)?;
        }
        let stored = this.store.create_notifications(&batch).await?;
        if as_batch {
            let mut audiences: Vec<(&Audience, Vec<Value>)> = Vec::new();
            for n in &stored {
                let item = this.object(n);
                match audiences.iter_mut().find(|(a, _)| **a == n.audience) {
                    Some((_, items)) => items.push(item),
                    None => audiences.push((&n.audience, vec![item])),
                }
            }
            for (audience, items) in audiences {
                let fields = one_field("notifications", Value::Array(items));
                this.emit(
                    node,
                    Event::NotificationBatchReceived,
                    this.target(audience),
                    vec![],
                    &fields,
                )
                .await?;
            }
        } else {
            for n in &stored {
                let fields = fields_of(n);
                this.emit(
                    node,
                    Event::NotificationReceived,
                    this.target(&n.audience),
                    vec![],
                    &fields,
                )
                .await?;
            }
        }
        Ok(stored.iter().map(rest_json).collect())
    }

    /// `user`'s notifications (of `tenant`'s too, when given), newest first,
    /// older than `before`; only the unread ones when `unread_only`.
    pub async fn of_user(
        &self,
        user: &str,
        tenant: Option<&str>,
        unread_only: bool,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Value>, NotificationsError> {
        let this = &self.inner;
        this.check_user(user).map_err(NotificationsError::Invalid)?;
        if let Some(tenant) = tenant {
            check_chars(
                "A tenant",
                tenant,
                this.settings.max_name_chars,
                "notifications.max_name_chars",
            )
            .map_err(NotificationsError::Invalid)?;
        }
        let recipient = Recipient {
            user,
            tenant,
            channels: &[],
        };
        let page = this
            .store
            .notifications_of(&this.def.name, recipient, unread_only, before, limit)
            .await?;
        Ok(page.iter().map(rest_json).collect())
    }

    /// The notifications addressed to `channel`, newest first, older than
    /// `before` (no user's state: `acknowledgedAt` and `readAt` are null).
    pub async fn of_channel(
        &self,
        channel: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Value>, NotificationsError> {
        let this = &self.inner;
        let page = this
            .store
            .channel_notifications(&this.def.name, channel, before, limit)
            .await?;
        Ok(page.iter().map(rest_json).collect())
    }
}

/// A notification as the REST API shows it: `{id, audience, userId | tenant
/// | channel, type, title, body, data, createdAt, acknowledgedAt, readAt}`.
pub fn rest_json(n: &Notification) -> Value {
    let mut fields = fields_of(n);
    fields.retain(|k, v| !v.is_null() || ["body", "data", "acknowledgedAt", "readAt"].contains(&k.as_str()));
    Value::Object(fields)
}

/// A notification's fields under their catalog names.
fn fields_of(n: &Notification) -> Map<String, Value> {
    let (audience, key, to) = match &n.audience {
        Audience::User(u) => ("user", "userId", Value::from(u.as_str())),
        Audience::Tenant(t) => ("tenant", "tenant", Value::from(t.as_str())),
        Audience::Channel(c) => ("channel", "channel", Value::from(c.as_str())),
        Audience::All => ("all", "", Value::Null),
    };
    let data = n
        .data
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or(Value::Null);
    let mut fields = Map::new();
    fields.insert("id".into(), Value::String(n.id.to_string()));
    fields.insert("type".into(), Value::from(n.kind.as_str()));
    fields.insert("title".into(), Value::from(n.title.as_str()));
    fields.insert("body".into(), n.body.as_deref().map_or(Value::Null, Value::from));
    fields.insert("data".into(), data);
    fields.insert("createdAt".into(), Value::String(iso8601(n.created_at)));
    fields.insert("audience".into(), Value::from(audience));
    for k in ["userId", "tenant", "channel"] {
        fields.insert(k.into(), if k == key { to.clone() } else { Value::Null });
    }
    let time = |t: Option<i64>| t.map_or(Value::Null, |t| Value::String(iso8601(t)));
    fields.insert("acknowledgedAt".into(), time(n.acknowledged_at));
    fields.insert("readAt".into(), time(n.read_at));
    fields
}

fn one_field(name: &str, value: Value) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert(name.into(), value);
    fields
}

fn now_ms() -> i64 {
    crate::hubs::chat::payload::now_ms()
}

impl Notifications {
    /// Refuses a user id beyond the hub's `limits.max_user_id_chars`.
    fn check_user(&self, user: &str) -> Result<(), String> {
        let max = self.def.limits.max_user_id_chars;
        check_chars("A user id", user, max, "limits.max_user_id_chars")
    }

    /// Refuses a notification beyond the settings' sizes or the user id limit.
    fn check(&self, n: &NewNotification) -> Result<(), String> {
        if let Audience::User(user) = &n.audience {
            self.check_user(user).map_err(|_| {
                format!(
                    "\"userId\" is longer than {} characters (limits.max_user_id_chars)",
                    self.def.limits.max_user_id_chars
                )
            })?;
        }
        self.settings.check(n)
    }

    fn event(&self, event: Event) -> &BoundEvent {
        &self.def.events[event as usize]
    }

    /// A notification as one object, as `notification_received` lays it out.
    fn object(&self, n: &Notification) -> Value {
        self.event(Event::NotificationReceived).object(&fields_of(n))
    }

    /// Who receives a notification for `audience`.
    fn target(&self, audience: &Audience) -> Target {
        match audience {
            Audience::User(u) => Target::User(UserId::from(u.as_str())),
            Audience::Tenant(t) => Target::Group(GroupName::from(self.settings.tenant_group_of(t))),
            Audience::Channel(c) => Target::Group(GroupName::from(self.settings.channel_group_of(c))),
            Audience::All => Target::All,
        }
    }

    /// Sends `event` with `fields` to `target` (but not to `except`), laid
    /// out as the definition says; nothing when the event is off.
    async fn emit(
        &self,
        node: &Node,
        event: Event,
        target: Target,
        except: Vec<ConnectionId>,
        fields: &Map<String, Value>,
    ) -> Result<(), NodeError> {
        let bound = self.event(event);
        let Some(name) = &bound.name else {
            return Ok(());
        };
        let arguments = bound.arguments(fields);
        node.send(&self.hub, target, except, (name, arguments), SendOrder::LocalFirst)
            .await
    }

    /// The channels `id` subscribed to on this node.
    fn channels_of(&self, id: &ConnectionId) -> Vec<String> {
        let channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        channels
            .get(id)
            .map(|c| c.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Joins the caller's tenant group.
    async fn connected(&self, node: &Node, caller: &ConnectionHandle) {
        let Some(tenant) = caller.principal.as_ref().and_then(|p| p.tenant.as_deref()) else {
            return;
        };
        let group = GroupName::from(self.settings.tenant_group_of(tenant));
        if let Err(e) = node.add_to_group(&self.hub, &group, &caller.id).await {
            tracing::warn!(tenant, error = %e, "could not add a connection to its tenant's group");
        }
    }

    async fn run(&self, call: &HubCall, op: Op, args: &BoundArgs) -> Result<Value, HubError> {
        match op {
            Op::Ping => Ok(Value::from("pong")),
            Op::AcknowledgeNotification | Op::MarkAsRead => self.change_state(call, op, args).await,
            Op::SubscribeToChannel => self.subscribe(call, args).await,
            Op::UnsubscribeFromChannel => self.unsubscribe(call, args).await,
            Op::GetUnreadNotifications => self.unread(call, args).await,
        }
    }

    /// The caller as a recipient: user, tenant, subscribed channels.
    fn recipient<'a>(&self, call: &'a HubCall, channels: &'a [String]) -> Result<Recipient<'a>, HubError> {
        let principal = call
            .caller
            .principal
            .as_ref()
            .ok_or_else(|| HubError::Hub("This hub needs a signed-in user.".into()))?;
        Ok(Recipient {
            user: principal.user.as_str(),
            tenant: principal.tenant.as_deref(),
            channels,
        })
    }

    /// `acknowledge_notification(id)` / `mark_as_read(id)`: stored, then
    /// `notification_acknowledged(id)` / `notification_read(id, readAt)` to
    /// the user's other connections on every node.
    async fn change_state(&self, call: &HubCall, op: Op, args: &BoundArgs) -> Result<Value, HubError> {
        let text = text(args, "notificationId")?;
        let id: MessageId = text.parse().map_err(|_| {
            // Not an id this hub issued; a long text is not echoed back.
            HubError::Hub(match text.chars().count() {
                0..=MAX_ID_ECHO => format!("no notification '{text}' for this user"),
                _ => "no such notification for this user: an id is decimal text".into(),
            })
        })?;
        check_rate(call, &self.def.limits, CallRate::Acks).await?;
        let channels = self.channels_of(&call.caller.id);
        let recipient = self.recipient(call, &channels)?;
        let user = UserId::from(recipient.user);
        let (stored, event) = if op == Op::MarkAsRead {
            let n = self.store.read_notification(&self.def.name, id, recipient).await;
            (n, Event::NotificationRead)
        } else {
            let n = self.store.acknowledge_notification(&self.def.name, id, recipient).await;
            (n, Event::NotificationAcknowledged)
        };
        let stored = stored.map_err(hub_error)?;
        let fields = fields_of(&stored);
        self.emit(
            &call.node,
            event,
            Target::User(user),
            vec![call.caller.id.clone()],
            &fields,
        )
        .await
        .map_err(|e| HubError::Hub(e.to_string()))?;
        Ok(Value::Null)
    }

    async fn subscribe(&self, call: &HubCall, args: &BoundArgs) -> Result<Value, HubError> {
        let channel = self.channel_arg(call, args)?;
        check_rate(call, &self.def.limits, CallRate::Subscriptions).await?;
        let allowed = call.caller.principal.as_ref().is_some_and(|p| p.may_join(&channel));
        if !allowed {
            return Err(HubError::Hub(format!(
                "You may not subscribe to channel '{channel}' (the token's channels claim does not allow it)."
            )));
        }
        let group = GroupName::from(self.settings.channel_group_of(&channel));
        call.node
            .add_to_group(&self.hub, &group, &call.caller.id)
            .await
            .map_err(|e| HubError::Hub(e.to_string()))?;
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        channels.entry(call.caller.id.clone()).or_default().insert(channel);
        Ok(Value::Null)
    }

    async fn unsubscribe(&self, call: &HubCall, args: &BoundArgs) -> Result<Value, HubError> {
        let channel = self.channel_arg(call, args)?;
        check_rate(call, &self.def.limits, CallRate::Subscriptions).await?;
        let group = GroupName::from(self.settings.channel_group_of(&channel));
        call.node
            .remove_from_group(&self.hub, &group, &call.caller.id)
            .await
            .map_err(|e| HubError::Hub(e.to_string()))?;
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(set) = channels.get_mut(&call.caller.id) {
            set.remove(&channel);
        }
        Ok(Value::Null)
    }

    /// The `channel` argument, refused (counted) beyond `max_name_chars`.
    fn channel_arg(&self, call: &HubCall, args: &BoundArgs) -> Result<String, HubError> {
        let channel = text(args, "channel")?;
        self.settings
            .check_channel(&channel)
            .map_err(|text| input_refused(&call.node, &self.hub, Limit::NotificationsInput, text))?;
        Ok(channel)
    }

    /// `get_unread_notifications(limit?)`: the caller's unread notifications
    /// (theirs, their tenant's, everyone's and those of the channels this
    /// connection subscribed to), newest first, at most `max_unread`.
    async fn unread(&self, call: &HubCall, args: &BoundArgs) -> Result<Value, HubError> {
        let most = self.settings.max_unread;
        let limit = match args.get("limit") {
            None => most,
            Some(v) => v
                .as_u64()
                .filter(|n| *n > 0)
                .map(|n| usize::try_from(n).unwrap_or(most).min(most))
                .ok_or_else(|| HubError::Binding("argument 'limit' must be a positive number".into()))?,
        };
        let channels = self.channels_of(&call.caller.id);
        let recipient = self.recipient(call, &channels)?;
        let page = self
            .store
            .notifications_of(&self.def.name, recipient, true, None, limit)
            .await
            .map_err(hub_error)?;
        Ok(Value::Array(page.iter().map(|n| self.object(n)).collect()))
    }
}

/// Argument `param` as text (a number is taken as its decimal text).
fn text(args: &BoundArgs, param: &str) -> Result<String, HubError> {
    args.required_text(param)
}

impl Hub for NotificationsHub {
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
        let called = inner
            .def
            .call(&CATALOG, method, args, Op::of)
            .map(|(_, op, args)| (op, args));
        Box::pin(async move {
            let (op, args) = called?;
            inner.run(&call, op, &args).await.map(HubReply::Value)
        })
    }

    fn max_connections_per_user(&self) -> Option<usize> {
        self.inner.def.limits.max_connections_per_user
    }

    fn on_connected(&self, node: Arc<Node>, caller: Arc<ConnectionHandle>) -> BoxFuture<'static, ()> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.connected(&node, &caller).await })
    }

    fn on_disconnected(&self, _node: Arc<Node>, caller: Arc<ConnectionHandle>) -> BoxFuture<'static, ()> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let mut channels = inner.channels.lock().unwrap_or_else(PoisonError::into_inner);
            channels.remove(&caller.id);
        })
    }
}
