//! A groups hub's table checked and resolved ([`GroupsDefinition`]): group
//! templates parsed once, placeholders checked against what fills them,
//! authorisation rules read, the method specs the dispatcher checks.

use std::borrow::Cow;
use std::collections::HashSet;

use crate::core::auth::Principal;
use crate::core::definition::{GroupAction, GroupMethodTable, HubTable};
use crate::core::hub::MethodSpec;
use crate::hubs::definition::{hub_name, Catalog, DefinitionError, Limits};

/// The generic catalog of the kind: nothing (its methods are in the
/// `groups` table); it lets the generic check resolve the hub's path and
/// name beside the other kinds'.
pub static NO_CATALOG: Catalog = Catalog {
    operations: &[],
    events: &[],
    methods: &[],
};

/// The placeholders the token fills, and the connection id.
pub const PRINCIPAL_PLACEHOLDERS: [&str; 4] = ["userId", "name", "tenant", "connectionId"];

/// A group-name template: literal text and `{placeholder}`s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Slot(String),
}

/// What fills a template's placeholders: the caller and the method's
/// arguments.
pub struct Fill<'a> {
    /// The caller's token, if any.
    pub principal: Option<&'a Principal>,
    /// The caller's connection id.
    pub connection: &'a str,
    /// Argument name -> its text.
    pub args: &'a [(&'a str, String)],
}

impl Template {
    /// Parses `text`; every placeholder must be one of `known`.
    pub fn parse(text: &str, known: &[&str]) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(format!("{text:?}: '}}' without '{{'"));
            }
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| format!("{text:?}: '{{' without '}}'"))?;
            let name = &after[..close];
            if !known.contains(&name) {
                return Err(format!(
                    "{text:?}: unknown placeholder {{{name}}} (known here: {})",
                    known.iter().map(|k| format!("{{{k}}}")).collect::<Vec<_>>().join(", ")
                ));
            }
            parts.push(Part::Slot(name.to_owned()));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if parts.is_empty() {
            return Err("a group template must not be empty".into());
        }
        Ok(Self { parts })
    }

    /// Whether the template has placeholder `name`.
    pub fn has(&self, name: &str) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Slot(s) if s == name))
    }

    /// The group name, or the first placeholder with no value (a token
    /// without `tenant`, an anonymous caller).
    pub fn render(&self, fill: &Fill<'_>) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Slot(name) => {
                    let value = match name.as_str() {
                        "connectionId" => Some(fill.connection),
                        "userId" => fill.principal.map(|p| p.user.as_str()),
                        "name" => fill.principal.and_then(|p| p.name.as_deref()),
                        "tenant" => fill.principal.and_then(|p| p.tenant.as_deref()),
                        arg => fill.args.iter().find(|(n, _)| *n == arg).map(|(_, v)| v.as_str()),
                    };
                    out.push_str(value.ok_or_else(|| name.clone())?);
                }
            }
        }
        Ok(out)
    }
}

/// Who may subscribe to (or relay to) a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allow {
    /// Any signed-in user.
    Any,
    /// A user whose token's `roles` holds this role.
    Role(String),
    /// A user whose token has a `channels` claim matching the group.
    Channels,
    /// A signed-in user the app's backend allows (the hub's
    /// `backend.authorize` hook, `crate::core::backend`), asked per call.
    Backend,
}

impl Allow {
    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "any" => Ok(Allow::Any),
            "channels" => Ok(Allow::Channels),
            "backend" => Ok(Allow::Backend),
            _ => match text.strip_prefix("role:") {
                Some(role) if !role.is_empty() => Ok(Allow::Role(role.to_owned())),
                _ => Err(format!(
                    "{text:?} is not a rule: \"any\", \"role:NAME\", \"channels\" or \"backend\""
                )),
            },
        }
    }

    /// Whether `principal` may reach `group` (for [`Allow::Backend`]: may
    /// be asked; the backend's answer decides).
    pub fn allows(&self, principal: Option<&Principal>, group: &str) -> bool {
        let Some(principal) = principal else {
            return false;
        };
        match self {
            Allow::Any => true,
            Allow::Role(role) => principal.has_role(role),
            Allow::Channels => !principal.channels.is_empty() && principal.may_join(group),
            Allow::Backend => true,
        }
    }
}

/// One method of a groups hub, resolved.
#[derive(Clone, Debug)]
pub struct GroupMethod {
    /// What the dispatcher checks.
    pub spec: MethodSpec,
    /// What it does, with its settings.
    pub action: Action,
}

/// A method's action with what it needs.
#[derive(Clone, Debug)]
pub enum Action {
    /// Join `group` (rendered with `argument`), if `allow` allows.
    Subscribe {
        /// The group template.
        group: Template,
        /// The argument's name.
        argument: String,
        /// The text of an empty or missing argument.
        required: String,
        /// Who may.
        allow: Allow,
        /// The text of a refusal.
        denied: String,
    },
    /// Leave `group` (rendered with `argument`).
    Unsubscribe {
        /// The group template.
        group: Template,
        /// The argument's name.
        argument: String,
        /// The text of an empty or missing argument.
        required: String,
    },
    /// Send `event(args...)` to `group`.
    Relay {
        /// The group template.
        group: Template,
        /// The arguments' names, in order.
        args: Vec<String>,
        /// The event (client method) sent.
        event: String,
        /// Who may.
        allow: Allow,
        /// The text of a refusal.
        denied: String,
        /// Whether the caller's connection is skipped.
        except_caller: bool,
    },
    /// `"pong"`.
    Ping,
}

/// A checked groups hub definition.
#[derive(Clone, Debug)]
pub struct GroupsDefinition {
    /// Where clients connect.
    pub path: String,
    /// The last segment of the path.
    pub name: String,
    /// Joined on connect.
    pub on_connect: Vec<Template>,
    /// The client methods.
    pub methods: Vec<GroupMethod>,
    /// The role a token needs to connect, if any.
    pub connect_role: Option<String>,
    /// Its `[hub.limits]` (those a groups hub takes: call rates, argument
    /// and relay sizes), defaults filled in.
    pub limits: Limits,
}

/// The default text of a refusal by `allow`.
pub const DENIED_TEXT: &str = "Access denied.";

impl GroupsDefinition {
    /// Checks `table` (of kind `groups`) and fills in the defaults.
    pub fn resolve(table: &HubTable) -> Result<Self, DefinitionError> {
        let error = |field: String, reason: String| DefinitionError {
            hub: table.path.clone(),
            field,
            reason,
        };
        let name = hub_name(&table.path).map_err(|r| error("path".into(), r))?;
        let chat_only = [
            ("methods", table.methods.is_some()),
            ("events", !table.events.is_empty()),
            ("conversation_group", table.conversation_group.is_some()),
            ("presence", table.presence.is_some()),
            ("refusals", table.refusals != Default::default()),
            ("limits", table.limits.without_groups_limits() != Default::default()),
            ("offline_hook", table.offline_hook.is_some()),
        ];
        if let Some((field, _)) = chat_only.iter().find(|(_, set)| *set) {
            return Err(error(
                (*field).into(),
                "a chat setting: a groups hub's settings go in its `groups` table (of `limits`, only subscriptions_per_minute, relays_per_minute, max_argument_chars and max_relay_bytes apply)".into(),
            ));
        }
        let Some(groups) = &table.groups else {
            return Err(error(
                "groups".into(),
                "a hub of kind groups needs a `groups` table".into(),
            ));
        };
        let on_connect = groups
            .on_connect
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Template::parse(t, &PRINCIPAL_PLACEHOLDERS).map_err(|r| error(format!("groups.on_connect[{i}]"), r))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut names = HashSet::new();
        let mut methods = Vec::new();
        for (i, m) in groups.methods.iter().enumerate() {
            let at = |field: &str| format!("groups.methods[{i}].{field}");
            if m.name.is_empty() {
                return Err(error(at("name"), "a method needs a name".into()));
            }
            if !names.insert(m.name.to_ascii_lowercase()) {
                return Err(error(
                    at("name"),
                    format!("two methods named '{}' (names match case-insensitively)", m.name),
                ));
            }
            let method = resolve_method(m).map_err(|(field, reason)| error(at(&field), reason))?;
            let asks_backend = matches!(
                &method.action,
                Action::Subscribe {
                    allow: Allow::Backend,
                    ..
                } | Action::Relay {
                    allow: Allow::Backend,
                    ..
                }
            );
            let hooked = table.backend.as_ref().is_some_and(|b| b.authorize.is_some());
            if asks_backend && !hooked {
                return Err(error(
                    at("allow"),
                    "\"backend\" needs the hub's `backend.authorize` hook (a path under the node's backend_url)".into(),
                ));
            }
            methods.push(method);
        }
        if groups.connect_role.as_deref() == Some("") {
            return Err(error("groups.connect_role".into(), "must not be empty".into()));
        }
        let limits = Limits::resolve(&table.limits).map_err(|(field, reason)| error(field, reason))?;
        Ok(Self {
            path: table.path.clone(),
            name,
            on_connect,
            methods,
            connect_role: groups.connect_role.clone(),
            limits,
        })
    }
}

/// One method; on error its field and why.
fn resolve_method(m: &GroupMethodTable) -> Result<GroupMethod, (String, String)> {
    let unused = |field: &str, set: bool| -> Result<(), (String, String)> {
        if set {
            return Err((field.into(), format!("not a setting of a {:?} method", m.action)));
        }
        Ok(())
    };
    let allow = |m: &GroupMethodTable| -> Result<Allow, (String, String)> {
        let text = m.allow.as_deref().ok_or_else(|| {
            (
                "allow".to_owned(),
                "required: \"any\", \"role:NAME\" or \"channels\"".to_owned(),
            )
        })?;
        Allow::parse(text).map_err(|r| ("allow".to_owned(), r))
    };
    let template = |known: &[&str]| -> Result<Template, (String, String)> {
        let text = m
            .group
            .as_deref()
            .ok_or_else(|| ("group".to_owned(), "required".to_owned()))?;
        Template::parse(text, known).map_err(|r| ("group".to_owned(), r))
    };
    let spec = |min: usize, max: usize| MethodSpec {
        name: Cow::Owned(m.name.clone()),
        min_params: min,
        params: max,
        streaming: false,
        uploads: 0,
    };
    let denied = m.denied.clone().unwrap_or_else(|| DENIED_TEXT.to_owned());
    match m.action {
        GroupAction::Subscribe | GroupAction::Unsubscribe => {
            unused("event", m.event.is_some())?;
            unused("args", !m.args.is_empty())?;
            unused("except_caller", m.except_caller.is_some())?;
            let argument = m.argument.clone().unwrap_or_else(|| "id".to_owned());
            if PRINCIPAL_PLACEHOLDERS.contains(&argument.as_str()) || argument.is_empty() {
                return Err((
                    "argument".into(),
                    format!("{argument:?} is taken by the token's placeholders"),
                ));
            }
            let mut known = PRINCIPAL_PLACEHOLDERS.to_vec();
            known.push(&argument);
            let group = template(&known)?;
            if !group.has(&argument) {
                return Err((
                    "group".into(),
                    format!("the template has no {{{argument}}} for the method's argument"),
                ));
            }
            let required = m.required.clone().unwrap_or_else(|| format!("{argument} is required"));
            let action = if m.action == GroupAction::Subscribe {
                Action::Subscribe {
                    group,
                    argument,
                    required,
                    allow: allow(m)?,
                    denied,
                }
            } else {
                unused("allow", m.allow.is_some())?;
                unused("denied", m.denied.is_some())?;
                Action::Unsubscribe {
                    group,
                    argument,
                    required,
                }
            };
            // The argument is optional to the dispatcher: a missing one gets
            // the definition's `required` text, as an empty one does.
            Ok(GroupMethod {
                spec: spec(0, 1),
                action,
            })
        }
        GroupAction::Relay => {
            unused("argument", m.argument.is_some())?;
            unused("required", m.required.is_some())?;
            let mut known = PRINCIPAL_PLACEHOLDERS.to_vec();
            for (i, a) in m.args.iter().enumerate() {
                if a.is_empty() || known.contains(&a.as_str()) {
                    return Err((
                        format!("args[{i}]"),
                        format!("{a:?} is empty, repeated or a token placeholder"),
                    ));
                }
                known.push(a);
            }
            let group = template(&known)?;
            let event = m.event.clone().unwrap_or_else(|| m.name.clone());
            if event.is_empty() {
                return Err(("event".into(), "an event needs a name".into()));
            }
            Ok(GroupMethod {
                spec: spec(m.args.len(), m.args.len()),
                action: Action::Relay {
                    group,
                    args: m.args.clone(),
                    event,
                    allow: allow(m)?,
                    denied,
                    except_caller: m.except_caller.unwrap_or(false),
                },
            })
        }
        GroupAction::Ping => {
            for (field, set) in [
                ("group", m.group.is_some()),
                ("argument", m.argument.is_some()),
                ("required", m.required.is_some()),
                ("allow", m.allow.is_some()),
                ("denied", m.denied.is_some()),
                ("event", m.event.is_some()),
                ("args", !m.args.is_empty()),
                ("except_caller", m.except_caller.is_some()),
            ] {
                unused(field, set)?;
            }
            Ok(GroupMethod {
                spec: spec(0, 0),
                action: Action::Ping,
            })
        }
    }
}
