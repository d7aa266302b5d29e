//! The built-in hubs, on top of [`crate::core`] (they implement
//! [`crate::core::hub::Hub`]). A new hub goes here, in a module of its own,
//! and into [`built_in`].
//!
//! # Layout
//! - [`definition`]: hub definitions (`[[hub]]` tables) checked against a
//!   kind's catalog and resolved, and the payload shaping they imply.
//! - [`chat`]: the chat kind (conversations, typing, receipts, presence).
//! - [`groups`]: the groups kind (groups joined on connect, subscribe /
//!   unsubscribe, relays to a group).
//! - [`notifications`]: the notifications kind (persisted notifications to
//!   users, tenants, channels, everyone; acknowledged / read state).
//! - [`rooms`]: the rooms kind (rooms with presence, access granted by the
//!   backend).
//! - [`limits`]: the call rates and input refusals the notifications,
//!   rooms and groups kinds share (`[hub.limits]`).
//! - [`diagnostics`]: the diagnostics hub (tests and operations).

pub mod chat;
pub mod definition;
pub mod diagnostics;
pub mod groups;
pub mod limits;
pub mod notifications;
pub mod rooms;

use std::sync::Arc;

use crate::core::config::Config;
use crate::core::definition::{HubKind, HubTable};
use crate::core::hub::HubSet;
use chat::ChatHub;
use definition::{Definition, DefinitionError};
use hubwire_store::Store;

/// The path of the built-in chat hub.
pub const CHAT_PATH: &str = "/hubs/chat";
/// The path of the built-in notifications hub.
pub const NOTIFICATIONS_PATH: &str = "/hubs/notifications";

/// The path of the built-in rooms hub.
pub const ROOMS_PATH: &str = "/hubs/rooms";

/// The hubs a node serves, and its chat hubs by name for the REST API.
#[derive(Clone, Default)]
pub struct BuiltIn {
    /// Every hub.
    pub hubs: HubSet,
    /// The hubs of the chat kind.
    pub chats: Vec<ChatHub>,
    /// The hubs of the notifications kind.
    pub notifications: Vec<notifications::NotificationsHub>,
    /// The hubs of the rooms kind.
    pub rooms: Vec<rooms::RoomsHub>,
}

impl BuiltIn {
    /// The chat hub named `name` (case-insensitively).
    pub fn chat(&self, name: &str) -> Option<&ChatHub> {
        self.chats
            .iter()
            .find(|c| c.definition().name.eq_ignore_ascii_case(name))
    }
}

/// The built-in hubs made from definitions: each is served unless a
/// `[[hub]]` table (of any kind) is at its path, which replaces it.
fn built_in_tables() -> Vec<HubTable> {
    vec![
        default_chat(),
        default_table(HubKind::Rooms, ROOMS_PATH),
        default_table(HubKind::Notifications, NOTIFICATIONS_PATH),
    ]
}

/// The tables of a configuration: its `[[hub]]` tables, and each built-in
/// hub ([`built_in_tables`]) unless one of them is at its path.
fn tables(config: &Config) -> Vec<HubTable> {
    let mut tables: Vec<HubTable> = config.hub.clone();
    for (i, builtin) in built_in_tables().into_iter().enumerate() {
        if !tables.iter().any(|t| t.path.eq_ignore_ascii_case(&builtin.path)) {
            tables.insert(i.min(tables.len()), builtin);
        }
    }
    tables
}

/// The definitions of a configuration, checked: its [`tables`].
pub fn definitions(config: &Config) -> Result<Vec<(HubKind, Definition)>, DefinitionError> {
    let tables = tables(config);
    let mut resolved: Vec<(HubKind, Definition)> = Vec::new();
    for table in &tables {
        let catalog = match table.kind {
            HubKind::Chat => &chat::catalog::CATALOG,
            HubKind::Groups => &groups::definition::NO_CATALOG,
            HubKind::Notifications => &notifications::catalog::CATALOG,
            HubKind::Rooms => {
                rooms::Settings::resolve(table)?;
                &rooms::catalog::CATALOG
            }
        };
        if table.kind != HubKind::Groups && table.groups.is_some() {
            return Err(DefinitionError {
                hub: table.path.clone(),
                field: "groups".into(),
                reason: "a setting of the groups kind only".into(),
            });
        }
        if table.kind == HubKind::Groups {
            groups::definition::GroupsDefinition::resolve(table)?;
        }
        if table.kind == HubKind::Notifications {
            notifications::Settings::resolve(table)?;
        } else if table.notifications.is_some() {
            return Err(DefinitionError {
                hub: table.path.clone(),
                field: "notifications".into(),
                reason: "only a hub of kind \"notifications\" has these settings".into(),
            });
        }
        let def = Definition::resolve(table, catalog)?;
        check_backend(config, table)?;
        let taken = resolved
            .iter()
            .find(|(_, d)| d.name.eq_ignore_ascii_case(&def.name) || d.path.eq_ignore_ascii_case(&def.path));
        let clash = match taken {
            Some((_, other)) => Some(format!(
                "its name '{}' is the name of the hub at {}",
                def.name, other.path
            )),
            None if config.diagnostics_hub && def.name.eq_ignore_ascii_case("diagnostics") => {
                Some("'diagnostics' is the diagnostics hub's name".into())
            }
            None => None,
        };
        if let Some(reason) = clash {
            return Err(DefinitionError {
                hub: def.path.clone(),
                field: "path".into(),
                reason: format!("{reason}: hub names (the last segment of the path) must differ"),
            });
        }
        resolved.push((table.kind, def));
    }
    Ok(resolved)
}

/// A definition's `backend` hooks need the node's `backend_url` and must
/// be paths under it.
fn check_backend(config: &Config, table: &HubTable) -> Result<(), DefinitionError> {
    let Some(backend) = &table.backend else {
        return Ok(());
    };
    let error = |field: &str, reason: String| DefinitionError {
        hub: table.path.clone(),
        field: format!("backend.{field}"),
        reason,
    };
    for (field, path) in [
        ("authenticate", &backend.authenticate),
        ("authorize", &backend.authorize),
    ] {
        let Some(path) = path else { continue };
        let Some(base) = config.backend_url.as_deref().and_then(|u| url::Url::parse(u).ok()) else {
            return Err(error(
                field,
                "a hook needs the node's backend_url (HUBWIRE_BACKEND_URL)".into(),
            ));
        };
        crate::core::backend::hook_url(&base, path).map_err(|reason| error(field, reason))?;
    }
    Ok(())
}

/// The built-in chat hub's table: MISSION.md's names, all defaults.
fn default_chat() -> HubTable {
    default_table(HubKind::Chat, CHAT_PATH)
}

/// A built-in hub's table: MISSION.md's names, all defaults.
fn default_table(kind: HubKind, path: &str) -> HubTable {
    HubTable {
        kind,
        path: path.into(),
        methods: None,
        events: Default::default(),
        conversation_group: None,
        presence: None,
        refusals: Default::default(),
        limits: Default::default(),
        offline_hook: None,
        backend: None,
        groups: None,
        notifications: None,
        rooms: None,
    }
}

/// The hubs a node with `config` serves, its chat hubs persisting in `store`;
/// an error when a hub definition is wrong.
pub fn built_in(config: &Config, store: &Store) -> Result<BuiltIn, DefinitionError> {
    let mut built = BuiltIn::default();
    if config.diagnostics_hub {
        built.hubs = built.hubs.with(Arc::new(diagnostics::DiagnosticsHub));
    }
    let tables = tables(config);
    for (kind, def) in definitions(config)? {
        match kind {
            HubKind::Rooms => {
                let table = tables.iter().find(|t| t.path == def.path);
                let settings = match table {
                    Some(table) => rooms::Settings::resolve(table)?,
                    None => rooms::Settings::resolve(&default_table(HubKind::Rooms, &def.path))?,
                };
                let path = def.path.clone();
                let hub = rooms::RoomsHub::new(def, settings, store.clone());
                built.hubs = std::mem::take(&mut built.hubs).at(path, Arc::new(hub.clone()));
                built.rooms.push(hub);
            }
            HubKind::Chat => {
                let path = def.path.clone();
                let hub = ChatHub::new(def, store.clone());
                built.hubs = std::mem::take(&mut built.hubs).at(path, Arc::new(hub.clone()));
                built.chats.push(hub);
            }
            HubKind::Groups => {
                let table = config.hub.iter().find(|t| t.path.eq_ignore_ascii_case(&def.path));
                let resolved = match table {
                    Some(table) => groups::definition::GroupsDefinition::resolve(table)?,
                    None => continue, // every groups hub comes from the configuration
                };
                let hub = groups::GroupsHub::new(resolved);
                built.hubs = std::mem::take(&mut built.hubs).at(def.path.clone(), Arc::new(hub));
            }
            HubKind::Notifications => {
                let table = config.hub.iter().find(|t| t.path.eq_ignore_ascii_case(&def.path));
                let table = table.cloned().unwrap_or_else(|| default_table(kind, &def.path));
                let settings = notifications::Settings::resolve(&table)?;
                let path = def.path.clone();
                let hub = notifications::NotificationsHub::new(def, settings, store.clone());
                built.hubs = std::mem::take(&mut built.hubs).at(path, Arc::new(hub.clone()));
                built.notifications.push(hub);
            }
        }
    }
    Ok(built)
}
