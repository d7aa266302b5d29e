//! The groups kind's definitions: templates, rules, refusals at start, and a
//! configured hub replacing a built-in one at its path.

use super::definition::*;
use crate::core::auth::Principal;
use crate::core::config::Config;
use crate::core::definition::{HubKind, HubTable};
use crate::hubs::definitions;
use hubwire_backplane::UserId;

fn table(toml_text: &str) -> HubTable {
    toml::from_str(toml_text).unwrap()
}

fn resolve(toml_text: &str) -> Result<GroupsDefinition, crate::hubs::definition::DefinitionError> {
    GroupsDefinition::resolve(&table(toml_text))
}

fn principal(user: &str, roles: &[&str], channels: &[&str]) -> Principal {
    Principal {
        user: UserId::from(user),
        name: None,
        picture: None,
        tenant: None,
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        channels: channels.iter().map(|c| (*c).to_owned()).collect(),
        expires: u64::MAX,
        groups: Vec::new(),
    }
}

const VIDEO: &str = r#"
kind = "groups"
path = "/hubs/video-generation"
[groups]
on_connect = ["vkey-{userId}", "system-notifications", "tenant-{tenant}"]
[[groups.methods]]
name = "SubscribeToVideoGeneration"
action = "subscribe"
group = "video-{requestId}"
argument = "requestId"
required = "Request ID is required"
allow = "any"
[[groups.methods]]
name = "UnsubscribeFromVideoGeneration"
action = "unsubscribe"
group = "video-{requestId}"
argument = "requestId"
[[groups.methods]]
name = "UpdateNavigation"
action = "relay"
group = "vkey-{userId}"
event = "NavigationUpdated"
args = ["state"]
allow = "any"
except_caller = true
[[groups.methods]]
name = "Ping"
action = "ping"
"#;

#[test]
fn a_groups_definition_resolves_with_its_methods_and_templates() {
    let def = resolve(VIDEO).unwrap();
    assert_eq!(def.name, "video-generation");
    let specs: Vec<_> = def
        .methods
        .iter()
        .map(|m| (m.spec.name.to_string(), m.spec.min_params, m.spec.params))
        .collect();
    assert_eq!(
        specs,
        [
            ("SubscribeToVideoGeneration".to_owned(), 0, 1),
            ("UnsubscribeFromVideoGeneration".to_owned(), 0, 1),
            ("UpdateNavigation".to_owned(), 1, 1),
            ("Ping".to_owned(), 0, 0),
        ]
    );
    let alice = principal("alice", &[], &[]);
    let fill = Fill {
        principal: Some(&alice),
        connection: "c1",
        args: &[],
    };
    let joined: Vec<_> = def.on_connect.iter().map(|t| t.render(&fill)).collect();
    assert_eq!(
        joined,
        [
            Ok("vkey-alice".to_owned()),
            Ok("system-notifications".to_owned()),
            Err("tenant".to_owned())
        ]
    );
    let Action::Subscribe { group, required, .. } = &def.methods[0].action else {
        panic!("not a subscribe");
    };
    assert_eq!(required, "Request ID is required");
    let args = [("requestId", "r-1".to_owned())];
    let fill = Fill {
        principal: Some(&alice),
        connection: "c1",
        args: &args,
    };
    assert_eq!(group.render(&fill).unwrap(), "video-r-1");
    let Action::Relay {
        except_caller, event, ..
    } = &def.methods[2].action
    else {
        panic!("not a relay");
    };
    assert!(*except_caller);
    assert_eq!(event, "NavigationUpdated");
}

#[test]
fn templates_refuse_unknown_placeholders_and_unbalanced_braces() {
    assert!(Template::parse("video-{requestId}", &["requestId"]).is_ok());
    let unknown = Template::parse("video-{reqId}", &["requestId"]).unwrap_err();
    assert!(
        unknown.contains("{reqId}") && unknown.contains("{requestId}"),
        "{unknown}"
    );
    assert!(Template::parse("video-{requestId", &["requestId"]).is_err());
    assert!(Template::parse("video-}x", &["requestId"]).is_err());
    assert!(Template::parse("", &[]).is_err());
}

#[test]
fn rules_allow_signed_in_users_roles_and_channels() {
    let alice = principal("alice", &[], &[]);
    let admin = principal("root", &["admin"], &[]);
    let scoped = principal("bob", &[], &["video-b*"]);
    assert!(Allow::Any.allows(Some(&alice), "g"));
    assert!(!Allow::Any.allows(None, "g"));
    let role = Allow::Role("admin".into());
    assert!(role.allows(Some(&admin), "g"));
    assert!(!role.allows(Some(&alice), "g"));
    assert!(Allow::Channels.allows(Some(&scoped), "video-b1"));
    assert!(!Allow::Channels.allows(Some(&scoped), "video-a1"));
    // No channels claim at all: the channels rule refuses (it asks for one).
    assert!(!Allow::Channels.allows(Some(&alice), "video-a1"));
}

/// The error of `VIDEO` with `from` replaced by `to`.
fn refused(from: &str, to: &str) -> crate::hubs::definition::DefinitionError {
    assert!(VIDEO.contains(from), "{from}");
    resolve(&VIDEO.replacen(from, to, 1)).expect_err("must be refused")
}

#[test]
fn wrong_definitions_are_refused_naming_the_field() {
    let backend = refused("allow = \"any\"", "allow = \"backend\"");
    assert_eq!(backend.field, "groups.methods[0].allow");
    assert!(backend.reason.contains("backend.authorize"), "{}", backend.reason);
    let missing_allow = refused("allow = \"any\"\n", "");
    assert_eq!(missing_allow.field, "groups.methods[0].allow");
    let bad_rule = refused("allow = \"any\"", "allow = \"everyone\"");
    assert!(bad_rule.reason.contains("not a rule"), "{}", bad_rule.reason);
    let no_arg = refused("group = \"video-{requestId}\"", "group = \"video\"");
    assert_eq!(no_arg.field, "groups.methods[0].group");
    let unknown = refused("\"tenant-{tenant}\"", "\"org-{org}\"");
    assert_eq!(unknown.field, "groups.on_connect[2]");
    let twice = refused("name = \"Ping\"", "name = \"updatenavigation\"");
    assert_eq!(twice.field, "groups.methods[3].name");
    let ping_group = refused("action = \"ping\"", "action = \"ping\"\ngroup = \"x\"");
    assert_eq!(ping_group.field, "groups.methods[3].group");
    let chat_setting = resolve("kind = \"groups\"\npath = \"/hubs/x\"\npresence = \"everyone\"\n[groups]").unwrap_err();
    assert_eq!(chat_setting.field, "presence");
    let no_table = resolve("kind = \"groups\"\npath = \"/hubs/x\"").unwrap_err();
    assert_eq!(no_table.field, "groups");
    let chat_limit =
        resolve("kind = \"groups\"\npath = \"/hubs/x\"\n[groups]\n[limits]\nmax_content_chars = 5").unwrap_err();
    assert_eq!(chat_limit.field, "limits");
    assert!(chat_limit.reason.contains("relays_per_minute"), "{}", chat_limit.reason);
}

#[test]
fn a_groups_hub_takes_the_call_limits_with_their_defaults() {
    let def = resolve(VIDEO).unwrap();
    assert_eq!(def.limits.subscriptions_per_minute, 120);
    assert_eq!(def.limits.relays_per_minute, 600);
    assert_eq!(def.limits.max_argument_chars, 128);
    assert_eq!(def.limits.max_relay_bytes, 16_384);
    let set = resolve(&format!(
        "{VIDEO}\n[limits]\nsubscriptions_per_minute = 3\nrelays_per_minute = 4\nmax_argument_chars = 5\nmax_relay_bytes = 6"
    ))
    .unwrap();
    assert_eq!(
        (
            set.limits.subscriptions_per_minute,
            set.limits.relays_per_minute,
            set.limits.max_argument_chars,
            set.limits.max_relay_bytes
        ),
        (3, 4, 5, 6)
    );
    let zero = resolve(&format!("{VIDEO}\n[limits]\nmax_argument_chars = 0")).unwrap_err();
    assert_eq!(zero.field, "limits.max_argument_chars");
}

#[tokio::test]
async fn a_configured_hub_of_any_kind_replaces_the_built_in_at_its_path() {
    let mut config: Config = toml::from_str(
        r#"
        [[hub]]
        kind = "groups"
        path = "/hubs/chat"
        [hub.groups]
        methods = [{ name = "Ping", action = "ping" }]
        "#,
    )
    .unwrap();
    let defs = definitions(&config).unwrap();
    assert_eq!(
        defs.len(),
        3,
        "the groups hub, and the built-in rooms and notifications hubs"
    );
    assert_eq!((defs[0].0, defs[0].1.path.as_str()), (HubKind::Groups, "/hubs/chat"));
    assert!(
        defs.iter().all(|(k, _)| *k != HubKind::Chat),
        "no built-in chat hub: replaced"
    );
    let dir = std::env::temp_dir().join(format!("hubwire-groups-test-{}", std::process::id()));
    config.data_dir = dir.clone();
    let store = hubwire_store::Store::open(&config.store()).await.unwrap();
    let built = crate::hubs::built_in(&config, &store).unwrap();
    assert!(built.chats.is_empty(), "the built-in chat hub is replaced");
    let hub = built.hubs.at_path("/hubs/chat").unwrap();
    assert_eq!(hub.methods().len(), 1);
    assert!(hub.method("JoinConversation").is_none());
    assert!(hub.method("ping").is_some());

    drop(store);
    let _ = std::fs::remove_dir_all(dir);

    let mixed: Config = toml::from_str("[[hub]]\nkind = \"chat\"\npath = \"/hubs/x\"\n[hub.groups]\n").unwrap();
    assert_eq!(definitions(&mixed).unwrap_err().field, "groups");
}

#[test]
fn the_example_of_docs_hubs_md_for_the_groups_kind_resolves() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/hubs.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let section = &doc[doc.find("## The groups kind").unwrap()..];
    let start = section.find("```toml\n").unwrap() + "```toml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let config: Config = toml::from_str(example).unwrap();
    let def = GroupsDefinition::resolve(&config.hub[0]).unwrap();
    assert_eq!(def.methods.len(), 4);
    assert_eq!(def.on_connect.len(), 2);
}
