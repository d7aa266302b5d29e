//! The rooms kind: its defaults, its settings, the shopping-list preset's
//! payload shapes (nested field paths), and the deduplicated snapshot.

use serde_json::{json, Map, Value};

use super::*;
use crate::core::config::Config;
use crate::core::definition::HubKind;
use crate::hubs::definitions;

fn table(toml_text: &str) -> HubTable {
    toml::from_str(toml_text).unwrap()
}

fn entry(user: &str, joined_ms: i64, seen_ms: i64, name: Option<&str>) -> Entry {
    Entry {
        user: user.into(),
        name: name.map(Into::into),
        picture: None,
        joined_ms,
        seen_ms,
    }
}

#[test]
fn the_default_rooms_hub_has_missions_names() {
    let defs = definitions(&Config::default()).unwrap();
    let (_, def) = defs
        .iter()
        .find(|(kind, _)| *kind == HubKind::Rooms)
        .expect("a built-in rooms hub");
    assert_eq!(def.path, "/hubs/rooms");
    let methods: Vec<_> = def.methods.iter().map(|m| m.spec.name.to_string()).collect();
    assert_eq!(methods, ["JoinRoom", "LeaveRoom", "Heartbeat"]);
    let events: Vec<_> = def.events.iter().map(|e| e.name.clone().unwrap()).collect();
    assert_eq!(
        events,
        [
            "UserJoined",
            "UserLeft",
            "PresenceUpdate",
            "ActiveUser",
            "RoomAccessRevoked"
        ]
    );
    let settings = Settings::resolve(&table("kind = \"rooms\"\npath = \"/hubs/rooms\"")).unwrap();
    assert_eq!(settings.group_of("r1"), "room_r1");
    assert_eq!(settings.inactive_after, Duration::from_secs(45));
    assert_eq!(settings.access_denied, "Access denied");
    assert!(!settings.claims_grant);
}

#[test]
fn settings_are_checked_naming_the_field() {
    let bad_group = table("kind = \"rooms\"\npath = \"/hubs/r\"\n[rooms]\ngroup = \"list\"");
    let error = Settings::resolve(&bad_group).unwrap_err();
    assert_eq!(error.field, "rooms.group");
    let zero = table("kind = \"rooms\"\npath = \"/hubs/r\"\n[rooms]\ninactive_after_secs = 0");
    assert_eq!(Settings::resolve(&zero).unwrap_err().field, "rooms.inactive_after_secs");
    let config = Config {
        hub: vec![bad_group],
        ..Config::default()
    };
    assert_eq!(definitions(&config).unwrap_err().field, "rooms.group");
}

#[test]
fn the_shopping_list_preset_lays_events_out_as_seed_004() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/shopping-list/hubwire.toml");
    let config: Config = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let table = config.hub[0].clone();
    let def = Definition::resolve(&table, &CATALOG).unwrap();
    let settings = Settings::resolve(&table).unwrap();
    assert_eq!(settings.group_of("42"), "list_42");
    let methods: Vec<_> = def.methods.iter().map(|m| m.spec.name.to_string()).collect();
    assert_eq!(methods, ["JoinList", "LeaveList", "UpdatePresence"]);
    let mut fields = Map::new();
    for (k, v) in [
        ("eventType", json!("UserJoined")),
        ("roomId", json!("42")),
        ("userId", json!("u1")),
        ("displayName", json!("Ann")),
        ("avatarUrl", json!("https://a/p.png")),
        ("timestamp", json!("2026-01-01T00:00:00.000Z")),
        ("reason", json!("left")),
    ] {
        fields.insert(k.into(), v);
    }
    let joined = def.events[Event::UserJoined as usize].arguments(&fields);
    assert_eq!(
        joined,
        vec![json!({
            "eventType": "UserJoined",
            "listId": "42",
            "user": { "id": "u1", "displayName": "Ann", "avatarUrl": "https://a/p.png" },
            "timestamp": "2026-01-01T00:00:00.000Z",
        })]
    );
    let left = def.events[Event::UserLeft as usize].arguments(&fields);
    assert_eq!(
        left,
        vec![json!({
            "eventType": "UserJoined",
            "listId": "42",
            "userId": "u1",
            "displayName": "Ann",
            "timestamp": "2026-01-01T00:00:00.000Z",
        })]
    );
    let item = def.events[Event::ActiveUser as usize].object(&fields);
    let keys: Vec<_> = item.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["avatarUrl", "displayName", "id", "joinedAt"]);
    assert_eq!(item["id"], "u1");
    assert_eq!(item["joinedAt"], Value::Null);
}

#[test]
fn a_field_path_nests_objects_and_plain_names_stay_flat() {
    let renames = [("a", "user.id"), ("b", "user.profile.name"), ("c", "when")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let bound = BoundEvent {
        name: Some("E".into()),
        layout: crate::core::definition::Layout::Object,
        args: vec!["a", "b", "c"],
        renames,
        defaults: Default::default(),
    };
    let mut fields = Map::new();
    fields.insert("a".into(), json!("u1"));
    fields.insert("b".into(), json!("Ann"));
    fields.insert("c".into(), json!(5));
    assert_eq!(
        bound.object(&fields),
        json!({ "user": { "id": "u1", "profile": { "name": "Ann" } }, "when": 5 })
    );
}

#[test]
fn the_snapshot_is_one_entry_per_fresh_user_earliest_join_first() {
    let entries = vec![
        entry("bob", 300, 900, Some("Bob")),
        entry("ann", 200, 950, None),
        entry("ann", 100, 400, Some("Ann")),
        entry("stale", 50, 10, Some("Stale")),
    ];
    let users = snapshot(entries.into_iter(), |e| e.seen_ms > 100);
    let names: Vec<_> = users.iter().map(|e| e.user.as_str()).collect();
    assert_eq!(names, ["ann", "bob"], "one per user, the stale one out");
    assert_eq!(users[0].joined_ms, 100, "a user's earliest join");
    assert_eq!(users[0].seen_ms, 950, "and latest heartbeat");
    assert_eq!(users[0].name.as_deref(), Some("Ann"), "a name any entry has");
}
