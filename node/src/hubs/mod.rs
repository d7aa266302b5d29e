//! The built-in hubs, on top of [`crate::core`] (they implement
//! [`crate::core::hub::Hub`]). A new hub goes here, in a module of its own,
//! and into [`built_in`].
//!
//! # Layout
//! - [`definition`]: hub definitions (`[[hub]]` tables) checked against a
//!   kind's catalog and resolved, and the payload shaping they imply.
//! - [`chat`]: the chat kind (conversations, typing, receipts, presence).
//! - [`rooms`]: the rooms kind (rooms with presence, access granted by the
//!   backend).
//! - [`diagnostics`]: the diagnostics hub (tests and operations).

pub mod chat;
pub mod definition;
pub mod diagnostics;
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

/// The path of the built-in rooms hub.
pub const ROOMS_PATH: &str = "/hubs/rooms";

/// The hubs a node serves, and its chat hubs by name for the REST API.
#[derive(Clone, Default)]
pub struct BuiltIn {
    /// Every hub.
    pub hubs: HubSet,
    /// The hubs of the chat kind.
    pub chats: Vec<ChatHub>,
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

/// The tables of a configuration: its `[[hub]]` tables, and the built-in
/// `/hubs/chat` and `/hubs/rooms` unless one of them is at that path.
fn tables(config: &Config) -> Vec<HubTable> {
    let mut tables: Vec<HubTable> = config.hub.clone();
    if !tables.iter().any(|t| t.path.eq_ignore_ascii_case(CHAT_PATH)) {
        tables.insert(0, default_chat());
    }
    if !tables.iter().any(|t| t.path.eq_ignore_ascii_case(ROOMS_PATH)) {
        tables.insert(1, default_table(HubKind::Rooms, ROOMS_PATH));
    }
    tables
}

/// The definitions of a configuration, checked: its `[[hub]]` tables, and
/// the built-in `/hubs/chat` and `/hubs/rooms` unless one of them is at that
/// path.
pub fn definitions(config: &Config) -> Result<Vec<(HubKind, Definition)>, DefinitionError> {
    let tables = tables(config);
    let mut resolved: Vec<(HubKind, Definition)> = Vec::new();
    for table in &tables {
        let catalog = match table.kind {
            HubKind::Chat => &chat::catalog::CATALOG,
            HubKind::Rooms => {
                rooms::Settings::resolve(table)?;
                &rooms::catalog::CATALOG
            }
        };
        let def = Definition::resolve(table, catalog)?;
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
        }
    }
    Ok(built)
}
