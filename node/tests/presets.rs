//! The presets of `examples/` (one per seed app) parse as node configuration
//! and their hub definitions resolve against the chat kind, with the names
//! issue #9's table gives each app.

use std::collections::BTreeMap;

use hubwire_node::core::config::Config;
use hubwire_node::core::definition::HubKind;
use hubwire_node::hubs::chat::catalog::{Event, CATALOG};
use hubwire_node::hubs::definition::Definition;
use serde_json::{json, Map, Value};

fn preset(app: &str) -> Definition {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/{app}/hubwire.toml"));
    let text = std::fs::read_to_string(&file).expect("preset");
    let config: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    config.validate().expect("valid");
    let chats: Vec<_> = config.hub.iter().filter(|t| t.kind == HubKind::Chat).collect();
    assert_eq!(chats.len(), 1, "{app}: one chat hub");
    assert!(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../examples/{app}/README.md"))
            .exists(),
        "{app} has a README"
    );
    Definition::resolve(chats[0], &CATALOG).unwrap_or_else(|e| panic!("{app}: {e}"))
}

/// Method name -> (operation, min arguments, max arguments).
fn methods(def: &Definition) -> BTreeMap<String, (&'static str, usize, usize)> {
    def.methods
        .iter()
        .map(|m| {
            let op = CATALOG.operations[m.operation].name;
            (m.spec.name.to_string(), (op, m.spec.min_params, m.spec.params))
        })
        .collect()
}

fn event(def: &Definition, event: Event) -> (Option<&str>, Vec<&'static str>) {
    let bound = &def.events[event as usize];
    (bound.name.as_deref(), bound.args.clone())
}

fn message() -> Map<String, Value> {
    let fields = json!({
        "id": "1", "conversationId": "c1", "senderId": "alice", "senderName": "Alice",
        "recipientId": "bob", "content": "hi", "attachments": ["a.jpg"],
        "clientMessageId": null, "sentAt": "2024-05-01T12:00:00.000Z", "messageType": null,
    });
    fields.as_object().cloned().unwrap_or_default()
}

#[test]
fn pet_services_keeps_its_chat_hub() {
    let def = preset("pet-services");
    assert_eq!((def.path.as_str(), def.name.as_str()), ("/hubs/chat", "chat"));
    let methods = methods(&def);
    assert_eq!(methods["SendMessage"], ("send_direct_message", 2, 3));
    assert_eq!(methods["JoinConversation"], ("join_conversation", 1, 1));
    assert_eq!(methods["LeaveConversation"], ("leave_conversation", 1, 1));
    assert_eq!(methods["StartTyping"], ("start_typing", 1, 1));
    assert_eq!(methods["StopTyping"], ("stop_typing", 1, 1));
    let received = def.events[Event::MessageReceived as usize].object(&message());
    assert_eq!(
        received,
        json!({ "id": "1", "conversationId": "c1", "senderId": "alice", "recipientId": "bob",
                "content": "hi", "messageType": "Text", "timestamp": "2024-05-01T12:00:00.000Z" })
    );
    assert_eq!(
        event(&def, Event::TypingStarted),
        (Some("UserStartedTyping"), vec!["conversationId", "userId"])
    );
    assert_eq!(
        event(&def, Event::TypingStopped),
        (Some("UserStoppedTyping"), vec!["conversationId", "userId"])
    );
    assert_eq!(event(&def, Event::UserOnline), (Some("UserOnline"), vec!["userId"]));
    assert_eq!(def.refusals.invalid_content, "Invalid message content");
    assert_eq!(def.refusals.not_participant, "Access denied");
    assert!(!def.limits.content_ok("   "), "IsNullOrWhiteSpace");
    assert!(!def.limits.content_ok(&"x".repeat(4001)));
    assert!(def.limits.content_ok(&"x".repeat(4000)));
}

#[test]
fn social_chat_keeps_its_chathub() {
    let def = preset("social-chat");
    assert_eq!((def.path.as_str(), def.name.as_str()), ("/chathub", "chathub"));
    assert_eq!(def.group_of("c1"), "c1");
    let methods = methods(&def);
    assert_eq!(methods["JoinConversationRoom"], ("join_conversation", 1, 1));
    assert_eq!(methods["LeaveConversationRoom"], ("leave_conversation", 1, 1));
    assert_eq!(methods["SendMessage"], ("send_message", 2, 2));
    assert_eq!(methods["UpdatePresence"], ("update_presence", 1, 1));
    let received = def.events[Event::MessageReceived as usize].object(&message());
    assert_eq!(
        received,
        json!({ "id": "1", "conversationId": "c1", "senderId": "alice", "content": "hi",
                "sentAt": "2024-05-01T12:00:00.000Z", "senderUserName": "Alice" })
    );
    assert_eq!(event(&def, Event::UserJoinedConversation).0, Some("UserJoined"));
    assert_eq!(event(&def, Event::UserLeftConversation).0, Some("UserLeft"));
    assert_eq!(
        event(&def, Event::UserOnline),
        (Some("PresenceUpdated"), vec!["userId", "isOnline"])
    );
    assert_eq!(
        event(&def, Event::UserOffline),
        (Some("PresenceUpdated"), vec!["userId", "isOnline"])
    );
    assert_eq!(
        event(&def, Event::MessageSent).0,
        None,
        "the sender hears ReceiveMessage"
    );
    assert_eq!(def.limits.max_connections_per_user, Some(5));
    assert_eq!(def.limits.messages_per_minute, 10, "the seed's rate limit");
}

#[test]
fn delivery_messaging_keeps_its_messaging_hub() {
    let def = preset("delivery-messaging");
    assert_eq!(
        (def.limits.messages_per_minute, def.limits.typing_per_minute),
        (60, 10),
        "the seed's rate limits"
    );
    assert_eq!((def.path.as_str(), def.name.as_str()), ("/hubs/messaging", "messaging"));
    assert_eq!(def.group_of("c1"), "conversation:c1");
    let methods = methods(&def);
    assert_eq!(methods["SendMessage"], ("send_message", 2, 3));
    assert_eq!(methods["MarkAsRead"], ("mark_as_read", 2, 2));
    assert_eq!(methods["Ping"], ("ping", 0, 0));
    for name in ["JoinConversation", "LeaveConversation", "StartTyping", "StopTyping"] {
        assert_eq!(methods[name].1, 1, "{name}");
    }
    let received = def.events[Event::MessageReceived as usize].object(&message());
    assert_eq!(
        received,
        json!({ "messageId": "1", "conversationId": "c1", "senderUserId": "alice", "body": "hi",
                "attachments": ["a.jpg"], "sentAt": "2024-05-01T12:00:00.000Z" })
    );
    let typing = (Some("OnTypingIndicator"), vec!["conversationId", "userId", "isTyping"]);
    assert_eq!(event(&def, Event::TypingStarted), typing);
    assert_eq!(event(&def, Event::TypingStopped), typing);
    assert_eq!(
        event(&def, Event::MessageRead),
        (
            Some("OnMessageRead"),
            vec!["conversationId", "messageId", "userId", "readAt"]
        )
    );
    assert_eq!(def.refusals.not_found, "Conversation not found");
    assert_eq!(
        def.refusals.not_participant,
        "You are not a participant in this conversation"
    );
}

#[test]
fn pet_services_offline_hook_resolves_once_uncommented() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pet-services/hubwire.toml");
    let text = std::fs::read_to_string(&file).expect("preset");
    let at = text.find("# [hub.offline_hook]").expect("the commented-out hook");
    let uncommented: String = text[at..]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let config: Config = toml::from_str(&format!("{}{uncommented}\n", &text[..at])).expect("parses");
    let def = Definition::resolve(&config.hub[0], &CATALOG).expect("resolves");
    let hook = def.offline_hook.expect("the hook");
    assert_eq!(hook.url.scheme(), "http");
    assert_eq!(hook.retries, 3);
    assert!(preset("pet-services").offline_hook.is_none(), "off as shipped");
}

/// Seed 003 (AI gateway): eight hubs of the groups kind with the seed's
/// paths, methods and group templates.
#[test]
fn the_ai_gateway_preset_has_seed_003s_hubs_and_groups() {
    use hubwire_node::core::definition::HubKind;
    use hubwire_node::hubs::groups::definition::{Action, Allow, GroupsDefinition};
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ai-gateway/hubwire.toml");
    let config: Config = toml::from_str(&std::fs::read_to_string(&file).expect("preset")).expect("parses");
    config.validate().expect("valid");
    assert!(file.with_file_name("README.md").exists());
    let defs: Vec<GroupsDefinition> = config
        .hub
        .iter()
        .map(|t| {
            assert_eq!(t.kind, HubKind::Groups, "{}", t.path);
            GroupsDefinition::resolve(t).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let paths: Vec<_> = defs.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/hubs/video-generation",
            "/hubs/image-generation",
            "/hubs/tasks",
            "/hubs/spend-notifications",
            "/hubs/notifications",
            "/hubs/webhooks",
            "/hubs/navigation-state",
            "/hubs/admin-notifications",
        ]
    );
    let video = &defs[0];
    let Action::Subscribe {
        required,
        allow,
        argument,
        ..
    } = &video.methods[0].action
    else {
        panic!("SubscribeToVideoGeneration subscribes");
    };
    assert_eq!(video.methods[0].spec.name, "SubscribeToVideoGeneration");
    assert_eq!(
        (required.as_str(), argument.as_str()),
        ("Request ID is required", "requestId")
    );
    // CanUserAccessTaskAsync: the gateway's authorisation hook.
    assert_eq!(*allow, Allow::Backend);
    assert_eq!(video.methods[1].spec.name, "UnsubscribeFromVideoGeneration");
    // Virtual keys and the master key are signed in by the gateway.
    assert_eq!(config.backend_url.as_deref(), Some("http://127.0.0.1:5000"));
    for table in &config.hub {
        let backend = table
            .backend
            .as_ref()
            .unwrap_or_else(|| panic!("{}: backend hooks", table.path));
        assert_eq!(
            backend.authenticate.as_deref(),
            Some("/hubwire/authenticate"),
            "{}",
            table.path
        );
    }
    assert_eq!(defs[3].on_connect.len(), 1);
    assert_eq!(defs[7].connect_role.as_deref(), Some("admin"));
    let Action::Relay {
        event, except_caller, ..
    } = &defs[6].methods[0].action
    else {
        panic!("UpdateNavigation relays");
    };
    assert_eq!((event.as_str(), *except_caller), ("NavigationUpdated", false));
    // The whole configuration resolves (no name clashes; the built-in chat
    // and rooms hubs kept, the built-in notifications hub replaced).
    let all = hubwire_node::hubs::definitions(&config).expect("resolves");
    assert_eq!(all.len(), 10);
}

#[test]
fn delivery_messaging_keeps_its_notification_hub() {
    use hubwire_node::hubs::notifications::{catalog, Settings};
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/delivery-messaging/hubwire.toml");
    let config: Config = toml::from_str(&std::fs::read_to_string(&file).expect("preset")).expect("parses");
    let table = config
        .hub
        .iter()
        .find(|t| t.kind == HubKind::Notifications)
        .expect("the NotificationHub");
    let def = Definition::resolve(table, &catalog::CATALOG).expect("resolves");
    assert_eq!(
        (def.path.as_str(), def.name.as_str()),
        ("/hubs/notifications", "notifications")
    );
    let names: Vec<_> = def.methods.iter().map(|m| m.spec.name.to_string()).collect();
    assert_eq!(
        names,
        [
            "AcknowledgeNotification",
            "MarkAsRead",
            "SubscribeToChannel",
            "UnsubscribeFromChannel",
            "Ping",
            "GetUnreadNotifications"
        ]
    );
    let events: Vec<_> = def.events.iter().map(|e| e.name.as_deref()).collect();
    assert_eq!(
        events,
        [
            Some("ReceiveNotification"),
            Some("ReceiveNotificationBatch"),
            Some("NotificationAcknowledged"),
            Some("NotificationRead")
        ]
    );
    let settings = Settings::resolve(table).expect("settings");
    assert_eq!(settings.retention_days, 30);
    assert_eq!(settings.tenant_group_of("listo"), "tenant:listo");
    assert_eq!(settings.channel_group_of("orders"), "channel:orders");
}
