//! Hub definitions checked and resolved: a `[[hub]]` table
//! ([`crate::core::definition::HubTable`]) against the [`Catalog`] of its
//! kind — the operations a kind can run, the events it sends, and its default
//! names — into a [`Definition`] the kind's hub runs from.
//!
//! A definition that is wrong stops the node at start with a
//! [`DefinitionError`] naming the hub (by its path) and the field: an unknown
//! operation, event or field, an argument naming a parameter its operation
//! lacks, a required parameter with no argument position, a required argument
//! after an optional one, two methods on one name, a bad path or template.
//!
//! Payload shaping lives here too ([`BoundEvent::arguments`],
//! [`BoundEvent::object`]): a kind builds an event's fields under their
//! catalog names, and the definition lays them out as the app expects.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};

use crate::core::definition::{EventTable, HubTable, Layout, LimitsTable, MethodTable, PresenceAudience, RefusalStyle};
use crate::core::hub::{HubError, MethodSpec};
use crate::core::webhook::{self, WebhookConfig};

/// What a kind can run and send, and its default names.
pub struct Catalog {
    /// The operations clients' methods can run.
    pub operations: &'static [Operation],
    /// The events the kind sends.
    pub events: &'static [EventKind],
    /// The method table of a definition that gives none.
    pub methods: &'static [DefaultMethod],
}

/// One operation of a kind.
pub struct Operation {
    /// Its name in definitions (`send_message`).
    pub name: &'static str,
    /// Its parameters; a name ending in `?` is optional (may have no
    /// argument position).
    pub params: &'static [&'static str],
}

/// One event of a kind, with its default form.
pub struct EventKind {
    /// Its name in definitions (`message_received`).
    pub name: &'static str,
    /// Every field it can carry.
    pub fields: &'static [&'static str],
    /// The client method invoked by default.
    pub default_name: &'static str,
    /// The default layout.
    pub default_layout: Layout,
    /// The fields carried by default, in order.
    pub default_args: &'static [&'static str],
}

/// An [`EventKind`] of a catalog: name, fields, default client method,
/// layout and arguments.
pub const fn event(
    name: &'static str,
    fields: &'static [&'static str],
    default_name: &'static str,
    default_layout: Layout,
    default_args: &'static [&'static str],
) -> EventKind {
    EventKind {
        name,
        fields,
        default_name,
        default_layout,
        default_args,
    }
}

/// A method of the default table: name, operation, arguments (as in a
/// [`crate::core::definition::MethodTable`]).
pub struct DefaultMethod(pub &'static str, pub &'static str, pub &'static [&'static str]);

/// A definition that cannot be served: which hub, which field, why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hub definition {hub}: {field}: {reason}")]
pub struct DefinitionError {
    /// The hub, by its path.
    pub hub: String,
    /// The field of its table (`methods[2].operation`).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// A client method bound to an operation.
#[derive(Clone, Debug)]
pub struct BoundMethod {
    /// What the dispatcher checks (name, argument counts).
    pub spec: MethodSpec,
    /// The operation's number in the catalog.
    pub operation: usize,
    /// Per parameter of the operation, the argument position it reads (none:
    /// the parameter is absent).
    pub positions: Vec<Option<usize>>,
}

/// One invocation's arguments by operation parameter name (`?` stripped).
#[derive(Debug, Default)]
pub struct BoundArgs(Vec<(&'static str, Value)>);

impl BoundArgs {
    /// The argument bound to `param`, unless absent or `null`.
    pub fn get(&self, param: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(name, _)| *name == param)
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    }

    /// The argument bound to `param` as text, if given (a number is taken
    /// as its decimal text; any other value is a binding error).
    pub fn text(&self, param: &str) -> Result<Option<String>, HubError> {
        match self.get(param) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(HubError::Binding(format!(
                "argument '{param}' must be a string, got {other}"
            ))),
        }
    }

    /// [`BoundArgs::text`] of an argument the call needs (a binding error
    /// when it is missing).
    pub fn required_text(&self, param: &str) -> Result<String, HubError> {
        self.text(param)?
            .ok_or_else(|| HubError::Binding(format!("argument '{param}' is missing")))
    }
}

/// How clients receive one event.
#[derive(Clone, Debug)]
pub struct BoundEvent {
    /// The client method, or none when the event is not sent.
    pub name: Option<String>,
    /// Positional or one object.
    pub layout: Layout,
    /// The fields carried, in order.
    pub args: Vec<&'static str>,
    /// Field -> the app's name for it.
    pub renames: BTreeMap<String, String>,
    /// Field -> its value when the kind gives it none.
    pub defaults: BTreeMap<String, Value>,
}

impl BoundEvent {
    /// The invocation's arguments from the event's `fields` (catalog names):
    /// one per carried field, or one object of them.
    pub fn arguments(&self, fields: &Map<String, Value>) -> Vec<Value> {
        match self.layout {
            Layout::Positional => self.args.iter().map(|f| self.value(fields, f)).collect(),
            Layout::Object => vec![self.object(fields)],
        }
    }

    /// Field `f`: its value, else the definition's default, else `null`.
    fn value(&self, fields: &Map<String, Value>, f: &str) -> Value {
        match fields.get(f) {
            Some(value) if !value.is_null() => value.clone(),
            _ => self.defaults.get(f).cloned().unwrap_or(Value::Null),
        }
    }

    /// The carried fields as one object, under the app's names. An app name
    /// with dots is a field path: `user.id` puts the field at `id` of the
    /// object at `user` (made when absent), so that payloads may nest.
    pub fn object(&self, fields: &Map<String, Value>) -> Value {
        let mut object = Map::new();
        for f in &self.args {
            let key = self.renames.get(*f).map_or(*f, String::as_str);
            insert_at(&mut object, key, self.value(fields, f));
        }
        Value::Object(object)
    }
}

/// Puts `value` at field path `path` (segments between dots) of `object`,
/// making the objects on the way; a segment already holding a non-object is
/// replaced by an object.
fn insert_at(object: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            object.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            let slot = object
                .entry(head.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(inner) = slot {
                insert_at(inner, rest, value);
            }
        }
    }
}

/// How refusals reach the caller, with their texts.
#[derive(Clone, Debug)]
pub struct Refusals {
    /// Exception or event.
    pub style: RefusalStyle,
    /// Not a participant.
    pub not_participant: String,
    /// No such conversation.
    pub not_found: String,
    /// Content empty or too long.
    pub invalid_content: String,
    /// Too many messages: a template with `{limit}` and `{retry}`.
    pub rate_limited: String,
}

/// The default text of a send beyond the message rate.
pub const RATE_LIMITED_TEXT: &str = "Rate limit exceeded: {limit} messages per minute; retry in {retry} s.";

impl Refusals {
    /// The rate-limit text for `limit` per minute, retry in `retry_secs`.
    pub fn rate_limited_text(&self, limit: u32, retry_secs: u64) -> String {
        self.rate_limited
            .replace("{limit}", &limit.to_string())
            .replace("{retry}", &retry_secs.to_string())
    }
}

/// The limits of a hub.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The longest content, in characters.
    pub max_content_chars: usize,
    /// Seconds a typing indicator lasts.
    pub typing_timeout_secs: u64,
    /// The most messages one catch-up returns.
    pub catch_up_max: usize,
    /// Connections per user to this hub (0 = unlimited); none: the node's.
    pub max_connections_per_user: Option<usize>,
    /// Whether whitespace-only content is refused.
    pub refuse_blank_content: bool,
    /// Messages per user per minute, cluster-wide (0: no limit).
    pub messages_per_minute: u32,
    /// Typing notices per user per minute, cluster-wide (0: no limit).
    pub typing_per_minute: u32,
    /// The longest `clientMessageId`, in characters.
    pub max_client_message_id_chars: usize,
    /// The longest conversation id, in characters.
    pub max_conversation_id_chars: usize,
    /// The longest user id, in characters.
    pub max_user_id_chars: usize,
    /// The most attachments of a message.
    pub max_attachments: usize,
    /// The most bytes of a message's attachments (JSON).
    pub max_attachments_bytes: usize,
    /// The most participants of a conversation.
    pub max_participants: usize,
    /// Subscribes and unsubscribes per user per minute, cluster-wide (0: no
    /// limit): notifications channels, rooms, groups hubs' subscriptions.
    pub subscriptions_per_minute: u32,
    /// Room heartbeats per user per minute, cluster-wide (0: no limit).
    pub heartbeats_per_minute: u32,
    /// Notification acknowledgements and reads per user per minute (0: no limit).
    pub acks_per_minute: u32,
    /// Relays per user per minute, cluster-wide (0: no limit).
    pub relays_per_minute: u32,
    /// The longest argument filling a groups hub's template, in characters.
    pub max_argument_chars: usize,
    /// The most bytes of one relay's arguments, as JSON.
    pub max_relay_bytes: usize,
}

/// A value of a kind a limit bounds (the refusal names it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bounded {
    /// A `clientMessageId`.
    ClientMessageId,
    /// A conversation id.
    ConversationId,
    /// A user id.
    UserId,
}

impl Limits {
    /// The limits of `table` (`[hub.limits]`), defaults filled in; on error
    /// the field (`limits.max_content_chars`) and why.
    pub fn resolve(table: &LimitsTable) -> Result<Self, (String, String)> {
        let limits = Limits {
            max_content_chars: table.max_content_chars.unwrap_or(4000),
            typing_timeout_secs: table.typing_timeout_secs.unwrap_or(10),
            catch_up_max: table.catch_up_max.unwrap_or(500),
            max_connections_per_user: table.max_connections_per_user,
            refuse_blank_content: table.refuse_blank_content.unwrap_or(false),
            messages_per_minute: table.messages_per_minute.unwrap_or(60),
            typing_per_minute: table.typing_per_minute.unwrap_or(10),
            max_client_message_id_chars: table.max_client_message_id_chars.unwrap_or(128),
            max_conversation_id_chars: table.max_conversation_id_chars.unwrap_or(128),
            max_user_id_chars: table.max_user_id_chars.unwrap_or(128),
            max_attachments: table.max_attachments.unwrap_or(10),
            max_attachments_bytes: table.max_attachments_bytes.unwrap_or(16_384),
            max_participants: table.max_participants.unwrap_or(1000),
            subscriptions_per_minute: table.subscriptions_per_minute.unwrap_or(120),
            heartbeats_per_minute: table.heartbeats_per_minute.unwrap_or(120),
            acks_per_minute: table.acks_per_minute.unwrap_or(600),
            relays_per_minute: table.relays_per_minute.unwrap_or(600),
            max_argument_chars: table.max_argument_chars.unwrap_or(128),
            max_relay_bytes: table.max_relay_bytes.unwrap_or(16_384),
        };
        for (field, value) in [
            ("limits.max_content_chars", limits.max_content_chars),
            ("limits.max_client_message_id_chars", limits.max_client_message_id_chars),
            ("limits.max_conversation_id_chars", limits.max_conversation_id_chars),
            ("limits.max_user_id_chars", limits.max_user_id_chars),
            ("limits.max_attachments_bytes", limits.max_attachments_bytes),
            ("limits.max_participants", limits.max_participants),
            ("limits.catch_up_max", limits.catch_up_max),
            (
                "limits.typing_timeout_secs",
                usize::try_from(limits.typing_timeout_secs).unwrap_or(1),
            ),
            ("limits.max_argument_chars", limits.max_argument_chars),
            ("limits.max_relay_bytes", limits.max_relay_bytes),
        ] {
            if value == 0 {
                return Err((field.into(), "must be positive".into()));
            }
        }
        Ok(limits)
    }

    /// Refuses `value` when it is longer than its limit: the text names the
    /// value, the limit and its field.
    pub fn check_length(&self, kind: Bounded, value: &str) -> Result<(), String> {
        let (what, max, field) = match kind {
            Bounded::ClientMessageId => (
                "clientMessageId",
                self.max_client_message_id_chars,
                "max_client_message_id_chars",
            ),
            Bounded::ConversationId => (
                "conversation id",
                self.max_conversation_id_chars,
                "max_conversation_id_chars",
            ),
            Bounded::UserId => ("user id", self.max_user_id_chars, "max_user_id_chars"),
        };
        if value.chars().count() > max {
            return Err(format!("The {what} is longer than {max} characters (limits.{field})."));
        }
        Ok(())
    }

    /// Refuses `attachments` beyond `max_attachments` items or
    /// `max_attachments_bytes` bytes of JSON.
    pub fn check_attachments(&self, attachments: &Value) -> Result<(), String> {
        let count = match attachments {
            Value::Array(items) => items.len(),
            Value::Null => 0,
            _ => 1,
        };
        if count > self.max_attachments {
            return Err(format!(
                "A message may carry at most {} attachments (limits.max_attachments); this one has {count}.",
                self.max_attachments
            ));
        }
        let bytes = attachments.to_string().len();
        if bytes > self.max_attachments_bytes {
            return Err(format!(
                "The attachments are {bytes} bytes of JSON, more than {} (limits.max_attachments_bytes).",
                self.max_attachments_bytes
            ));
        }
        Ok(())
    }

    /// Refuses a conversation of more than `max_participants` participants.
    pub fn check_participants(&self, count: usize) -> Result<(), String> {
        if count > self.max_participants {
            return Err(format!(
                "A conversation may have at most {} participants (limits.max_participants); this would have {count}.",
                self.max_participants
            ));
        }
        Ok(())
    }

    /// Whether `content` may be sent: 1 to `max_content_chars` characters
    /// (and not only whitespace, when the definition says so).
    pub fn content_ok(&self, content: &str) -> bool {
        let chars = content.chars().count();
        chars > 0 && chars <= self.max_content_chars && !(self.refuse_blank_content && content.trim().is_empty())
    }
}

/// A checked definition with every default filled in.
#[derive(Clone, Debug)]
pub struct Definition {
    /// Where clients connect.
    pub path: String,
    /// The last segment of the path.
    pub name: String,
    /// The client methods.
    pub methods: Vec<BoundMethod>,
    /// Per event of the catalog (same order), how it is sent.
    pub events: Vec<BoundEvent>,
    /// The group-name template of conversations (with `{id}`).
    pub conversation_group: String,
    /// Who hears presence changes.
    pub presence: PresenceAudience,
    /// Refusals.
    pub refusals: Refusals,
    /// Limits.
    pub limits: Limits,
    /// The offline-delivery hook, if any.
    pub offline_hook: Option<WebhookConfig>,
}

/// The placeholder of the conversation id in a group template.
pub const ID_PLACEHOLDER: &str = "{id}";

impl Definition {
    /// Checks `table` against `catalog` and fills in the defaults.
    pub fn resolve(table: &HubTable, catalog: &Catalog) -> Result<Self, DefinitionError> {
        let error = |field: String, reason: String| DefinitionError {
            hub: table.path.clone(),
            field,
            reason,
        };
        let name = hub_name(&table.path).map_err(|reason| error("path".into(), reason))?;
        let written: Vec<MethodTable> = match &table.methods {
            Some(methods) => methods.clone(),
            None => catalog
                .methods
                .iter()
                .map(|DefaultMethod(name, operation, args)| MethodTable {
                    name: (*name).to_owned(),
                    operation: (*operation).to_owned(),
                    args: args.iter().map(|a| (*a).to_owned()).collect(),
                })
                .collect(),
        };
        let mut methods = Vec::new();
        let mut names = HashSet::new();
        for (
            i,
            MethodTable {
                name: method,
                operation,
                args,
            },
        ) in written.iter().enumerate()
        {
            let at = |field: &str| format!("methods[{i}].{field}");
            if method.is_empty() {
                return Err(error(at("name"), "a method needs a name".into()));
            }
            if !names.insert(method.to_ascii_lowercase()) {
                return Err(error(
                    at("name"),
                    format!("two methods named '{method}' (names match case-insensitively)"),
                ));
            }
            let (index, op) = catalog
                .operations
                .iter()
                .enumerate()
                .find(|(_, o)| o.name == operation)
                .ok_or_else(|| {
                    let known: Vec<_> = catalog.operations.iter().map(|o| o.name).collect();
                    error(
                        at("operation"),
                        format!("unknown operation '{operation}' (known: {})", known.join(", ")),
                    )
                })?;
            let positions = bind_positions(op, args).map_err(|(field, reason)| error(at(&field), reason))?;
            let min_params = args.iter().take_while(|a| !a.ends_with('?')).count();
            methods.push(BoundMethod {
                spec: MethodSpec {
                    name: Cow::Owned(method.clone()),
                    min_params,
                    params: args.len(),
                    streaming: false,
                    uploads: 0,
                },
                operation: index,
                positions,
            });
        }
        for key in table.events.keys() {
            if !catalog.events.iter().any(|e| e.name == key) {
                let known: Vec<_> = catalog.events.iter().map(|e| e.name).collect();
                return Err(error(
                    format!("events.{key}"),
                    format!("unknown event (known: {})", known.join(", ")),
                ));
            }
        }
        let events = catalog
            .events
            .iter()
            .map(|kind| bind_event(kind, table.events.get(kind.name)).map_err(|(f, r)| error(f, r)))
            .collect::<Result<Vec<_>, _>>()?;
        let conversation_group = table
            .conversation_group
            .clone()
            .unwrap_or_else(|| format!("conversation_{ID_PLACEHOLDER}"));
        if !conversation_group.contains(ID_PLACEHOLDER) {
            return Err(error(
                "conversation_group".into(),
                format!("{conversation_group:?} has no {ID_PLACEHOLDER} for the conversation id"),
            ));
        }
        let limits = Limits::resolve(&table.limits).map_err(|(field, reason)| error(field, reason))?;
        let written = &table.refusals;
        let not_participant = written
            .not_participant
            .clone()
            .unwrap_or_else(|| "not a participant".into());
        let refusals = Refusals {
            style: written.style.unwrap_or(RefusalStyle::Exception),
            not_found: written.not_found.clone().unwrap_or_else(|| not_participant.clone()),
            not_participant,
            invalid_content: written
                .invalid_content
                .clone()
                .unwrap_or_else(|| format!("content must be 1 to {} characters", limits.max_content_chars)),
            rate_limited: written
                .rate_limited
                .clone()
                .unwrap_or_else(|| RATE_LIMITED_TEXT.to_owned()),
        };
        let offline_hook = match &table.offline_hook {
            None => None,
            Some(hook) => {
                let url = webhook::check_url(&hook.url).map_err(|r| error("offline_hook.url".into(), r))?;
                if hook.secret.len() < 16 {
                    return Err(error(
                        "offline_hook.secret".into(),
                        format!("{} bytes is too short: at least 16", hook.secret.len()),
                    ));
                }
                let timeout_ms = hook.timeout_ms.unwrap_or(5000);
                let queue = hook.queue.unwrap_or(1000);
                if timeout_ms == 0 || queue == 0 {
                    let field = if timeout_ms == 0 { "timeout_ms" } else { "queue" };
                    return Err(error(format!("offline_hook.{field}"), "must be positive".into()));
                }
                Some(WebhookConfig {
                    url,
                    secret: hook.secret.clone(),
                    timeout: std::time::Duration::from_millis(timeout_ms),
                    retries: hook.retries.unwrap_or(3),
                    backoff: std::time::Duration::from_millis(hook.backoff_ms.unwrap_or(1000)),
                    queue,
                })
            }
        };
        Ok(Self {
            offline_hook,
            path: table.path.clone(),
            name,
            methods,
            events,
            conversation_group,
            presence: table.presence.unwrap_or(PresenceAudience::Conversations),
            refusals,
            limits,
        })
    }

    /// The group of conversation `id`.
    pub fn group_of(&self, id: &str) -> String {
        self.conversation_group.replace(ID_PLACEHOLDER, id)
    }

    /// Method number `method` of an invocation (`Hub::invoke`'s index), its
    /// kind's operation (`op_of`: the kind's `Op::of`) and `args` bound to
    /// the operation's parameters; an internal error for a number the
    /// definition lacks.
    pub fn call<Op>(
        &self,
        catalog: &Catalog,
        method: usize,
        args: Vec<Value>,
        op_of: fn(usize) -> Option<Op>,
    ) -> Result<(&BoundMethod, Op, BoundArgs), HubError> {
        let bound = self.methods.get(method);
        let Some((bound, op)) = bound.and_then(|b| Some((b, op_of(b.operation)?))) else {
            return Err(HubError::Internal(format!("no method number {method}")));
        };
        Ok((bound, op, self.bind(catalog, bound, args)))
    }

    /// Binds an invocation's arguments of method `method` to its operation's
    /// parameters.
    pub fn bind(&self, catalog: &Catalog, method: &BoundMethod, mut args: Vec<Value>) -> BoundArgs {
        let op = &catalog.operations[method.operation];
        let bound = op
            .params
            .iter()
            .zip(&method.positions)
            .filter_map(|(param, at)| {
                let value = at.and_then(|at| args.get_mut(at)).map(Value::take)?;
                Some((param.trim_end_matches('?'), value))
            })
            .collect();
        BoundArgs(bound)
    }
}

/// The name of the hub at `path`: its last segment. Refuses paths that are
/// not absolute, end in `/`, have empty segments or characters a URL path
/// would escape, or collide with the node's own routes.
pub fn hub_name(path: &str) -> Result<String, String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("{path:?} must start with '/'"));
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
    };
    if !segments.iter().all(|s| plain(s)) {
        return Err(format!(
            "{path:?} must be segments of letters, digits, '-', '_', '.' or '~' between single '/'"
        ));
    }
    let first = segments[0].to_ascii_lowercase();
    let reserved = ["api", "client", "healthz", "readyz", "metrics"];
    if reserved.contains(&first.as_str()) || (first == "hubs" && segments.len() != 2) {
        return Err(format!(
            "{path:?} collides with the node's own routes (/api, /client, /healthz, /readyz, /metrics, /hubs/<name>/...)"
        ));
    }
    Ok(segments[segments.len() - 1].to_owned())
}

/// The argument position of each parameter of `op`, from a method's `args`;
/// on error the field (relative to the method) and why.
fn bind_positions(op: &Operation, args: &[String]) -> Result<Vec<Option<usize>>, (String, String)> {
    let mut positions = vec![None; op.params.len()];
    let mut optional_seen = false;
    for (at, arg) in args.iter().enumerate() {
        let optional = arg.ends_with('?');
        let param = arg.trim_end_matches('?');
        if optional_seen && !optional {
            return Err((
                format!("args[{at}]"),
                format!("required argument '{param}' after an optional one: optional arguments come last"),
            ));
        }
        optional_seen |= optional;
        if param == "_" {
            continue;
        }
        let Some(index) = op.params.iter().position(|p| p.trim_end_matches('?') == param) else {
            let known: Vec<_> = op.params.iter().map(|p| p.trim_end_matches('?')).collect();
            return Err((
                format!("args[{at}]"),
                format!(
                    "operation '{}' has no parameter '{param}' (its parameters: {})",
                    op.name,
                    known.join(", ")
                ),
            ));
        };
        if positions[index].is_some() {
            return Err((format!("args[{at}]"), format!("parameter '{param}' bound twice")));
        }
        if optional && !op.params[index].ends_with('?') {
            return Err((
                format!("args[{at}]"),
                format!(
                    "parameter '{param}' of operation '{}' is required: it cannot be optional",
                    op.name
                ),
            ));
        }
        positions[index] = Some(at);
    }
    for (param, at) in op.params.iter().zip(&positions) {
        if at.is_none() && !param.ends_with('?') {
            return Err((
                "args".into(),
                format!(
                    "operation '{}' needs parameter '{param}', which no argument binds",
                    op.name
                ),
            ));
        }
    }
    Ok(positions)
}

/// An event of the catalog with what the table says of it; on error the
/// field and why.
fn bind_event(kind: &EventKind, table: Option<&EventTable>) -> Result<BoundEvent, (String, String)> {
    let field_of = |f: &str| -> Result<&'static str, String> {
        kind.fields.iter().copied().find(|k| *k == f).ok_or_else(|| {
            format!(
                "event '{}' has no field '{f}' (its fields: {})",
                kind.name,
                kind.fields.join(", ")
            )
        })
    };
    let at = |field: &str| format!("events.{}.{field}", kind.name);
    let args = match table.and_then(|t| t.args.as_ref()) {
        Some(args) => args
            .iter()
            .enumerate()
            .map(|(i, f)| field_of(f).map_err(|r| (at(&format!("args[{i}]")), r)))
            .collect::<Result<Vec<_>, _>>()?,
        None => kind.default_args.to_vec(),
    };
    let mut renames = BTreeMap::new();
    if let Some(table) = table {
        for (field, app_name) in &table.fields {
            field_of(field).map_err(|r| (at(&format!("fields.{field}")), r))?;
            renames.insert(field.clone(), app_name.clone());
        }
    }
    let mut defaults = BTreeMap::new();
    if let Some(table) = table {
        for (field, value) in &table.defaults {
            field_of(field).map_err(|r| (at(&format!("defaults.{field}")), r))?;
            defaults.insert(field.clone(), value.clone());
        }
    }
    let enabled = table.and_then(|t| t.enabled).unwrap_or(true);
    let name = table
        .and_then(|t| t.name.clone())
        .unwrap_or_else(|| kind.default_name.to_owned());
    if enabled && name.is_empty() {
        return Err((at("name"), "an event needs a name (or enabled = false)".into()));
    }
    Ok(BoundEvent {
        name: enabled.then_some(name),
        layout: table.and_then(|t| t.layout).unwrap_or(kind.default_layout),
        args,
        renames,
        defaults,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
