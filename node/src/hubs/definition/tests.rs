//! Definitions: the defaults are MISSION.md's names, every kind of mistake
//! is refused naming the hub and the field, payloads take the app's shape.

use serde_json::{json, Map, Value};

use super::*;
use crate::core::config::Config;
use crate::core::definition::HubKind;
use crate::hubs::chat::catalog::{Event, Op, CATALOG};
use crate::hubs::definitions;

fn table(toml_text: &str) -> HubTable {
    toml::from_str(toml_text).unwrap()
}

fn resolve(toml_text: &str) -> Result<Definition, DefinitionError> {
    Definition::resolve(&table(toml_text), &CATALOG)
}

/// The error of a definition that must be refused.
fn refused(toml_text: &str) -> DefinitionError {
    resolve(toml_text).expect_err("the definition must be refused")
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn the_default_definition_has_missions_names() {
    let def = resolve("kind = \"chat\"\npath = \"/hubs/chat\"").unwrap();
    assert_eq!(def.name, "chat");
    let methods: Vec<_> = def
        .methods
        .iter()
        .map(|m| (m.spec.name.to_string(), m.spec.min_params, m.spec.params))
        .collect();
    let expected = [
        ("JoinConversation", 1, 2),
        ("LeaveConversation", 1, 1),
        ("SendMessage", 2, 3),
        ("SendDirectMessage", 2, 3),
        ("StartTyping", 1, 1),
        ("StopTyping", 1, 1),
        ("MarkAsRead", 2, 2),
        ("GetPresence", 1, 1),
        ("Ping", 0, 0),
        ("GetConversations", 0, 0),
    ];
    let expected: Vec<_> = expected.iter().map(|(n, a, b)| ((*n).to_owned(), *a, *b)).collect();
    assert_eq!(methods, expected);
    let events: Vec<_> = def.events.iter().map(|e| e.name.clone().unwrap()).collect();
    assert_eq!(
        events,
        [
            "ReceiveMessage",
            "MessageSent",
            "MessageError",
            "ConversationError",
            "UserJoinedConversation",
            "UserLeftConversation",
            "TypingChanged",
            "TypingChanged",
            "MessageRead",
            "UserOnline",
            "UserOffline"
        ]
    );
    assert_eq!(def.group_of("42"), "conversation_42");
    assert_eq!(def.presence, PresenceAudience::Conversations);
    assert_eq!(def.refusals.style, RefusalStyle::Exception);
    assert_eq!(def.refusals.not_participant, "not a participant");
    assert_eq!(def.limits.max_content_chars, 4000);
    assert_eq!(def.limits.typing_timeout_secs, 10);
}

#[test]
fn the_kinds_operations_and_events_are_in_catalog_order() {
    let names: Vec<_> = CATALOG.operations.iter().map(|o| o.name).collect();
    let ops: Vec<_> = (0..names.len()).map(|i| Op::of(i).unwrap()).collect();
    assert_eq!(ops[0], Op::JoinConversation);
    assert_eq!(ops[2], Op::SendMessage);
    assert_eq!(ops[8], Op::Ping);
    assert_eq!(names[8], "ping");
    assert_eq!(Op::of(names.len()), None);
    assert_eq!(CATALOG.events[Event::TypingStopped as usize].name, "typing_stopped");
    assert_eq!(CATALOG.events[Event::UserOffline as usize].name, "user_offline");
    assert_eq!(CATALOG.events.len(), Event::UserOffline as usize + 1);
}

#[test]
fn an_unknown_operation_is_refused_naming_hub_and_field() {
    let error = refused(
        r#"kind = "chat"
        path = "/hubs/messaging"
        methods = [{ name = "Send", operation = "send_messages", args = ["conversationId", "content"] }]"#,
    );
    assert_eq!(error.hub, "/hubs/messaging");
    assert_eq!(error.field, "methods[0].operation");
    let text = error.to_string();
    assert!(
        text.contains("/hubs/messaging") && text.contains("methods[0].operation"),
        "{text}"
    );
    assert!(
        text.contains("unknown operation 'send_messages'") && text.contains("send_message,"),
        "{text}"
    );
}

#[test]
fn an_argument_naming_no_parameter_of_its_operation_is_refused() {
    let error = refused(
        r#"kind = "chat"
        path = "/chathub"
        methods = [{ name = "Join", operation = "join_conversation", args = ["conversationId", "roomId?"] }]"#,
    );
    assert_eq!(error.field, "methods[0].args[1]");
    assert!(error.reason.contains("no parameter 'roomId'"), "{}", error.reason);
}

#[test]
fn two_methods_on_one_name_are_refused_whatever_their_case() {
    let error = refused(
        r#"kind = "chat"
        path = "/chathub"
        methods = [
            { name = "Ping", operation = "ping" },
            { name = "ping", operation = "ping" },
        ]"#,
    );
    assert_eq!(error.field, "methods[1].name");
    assert!(error.reason.contains("two methods named 'ping'"), "{}", error.reason);
}

#[test]
fn missing_required_parameters_and_misplaced_optional_ones_are_refused() {
    let missing = refused(
        r#"kind = "chat"
        path = "/chathub"
        methods = [{ name = "SendMessage", operation = "send_message", args = ["conversationId"] }]"#,
    );
    assert_eq!(missing.field, "methods[0].args");
    assert!(
        missing.reason.contains("needs parameter 'content'"),
        "{}",
        missing.reason
    );
    let order = refused(
        r#"kind = "chat"
        path = "/chathub"
        methods = [{ name = "Join", operation = "join_conversation", args = ["afterMessageId?", "conversationId"] }]"#,
    );
    assert_eq!(order.field, "methods[0].args[1]");
    let required = refused(
        r#"kind = "chat"
        path = "/chathub"
        methods = [{ name = "Join", operation = "join_conversation", args = ["conversationId?"] }]"#,
    );
    assert!(required.reason.contains("is required"), "{}", required.reason);
}

#[test]
fn unknown_events_fields_paths_and_templates_are_refused() {
    let event = refused("kind = \"chat\"\npath = \"/c\"\n[events.message_deleted]\nname = \"X\"");
    assert_eq!(event.field, "events.message_deleted");
    let field = refused("kind = \"chat\"\npath = \"/c\"\n[events.message_received]\nargs = [\"id\", \"body\"]");
    assert_eq!(field.field, "events.message_received.args[1]");
    assert!(field.reason.contains("no field 'body'"), "{}", field.reason);
    let rename = refused("kind = \"chat\"\npath = \"/c\"\n[events.message_received]\nfields = { text = \"body\" }");
    assert_eq!(rename.field, "events.message_received.fields.text");
    for path in ["hubs/chat", "/hubs/chat/", "/a//b", "/api/chat", "/hubs/a/b", "/we ird"] {
        let error = refused(&format!("kind = \"chat\"\npath = \"{path}\""));
        assert_eq!(error.field, "path", "{path}");
    }
    let template = refused("kind = \"chat\"\npath = \"/c\"\nconversation_group = \"conversation\"");
    assert_eq!(template.field, "conversation_group");
}

#[test]
fn an_apps_own_names_positions_and_payload_fields_are_kept() {
    let def = resolve(
        r#"kind = "chat"
        path = "/hubs/messaging"
        conversation_group = "conversation:{id}"
        methods = [
            { name = "SendMessage", operation = "send_message", args = ["conversationId", "content", "attachments?"] },
            { name = "SendToUser", operation = "send_direct_message", args = ["recipientUserId", "content", "_?"] },
        ]
        [events.message_received]
        name = "OnMessageReceived"
        args = ["id", "conversationId", "senderId", "content", "attachments", "sentAt"]
        fields = { id = "messageId", senderId = "senderUserId", content = "body" }
        [events.typing_started]
        name = "UserStartedTyping"
        args = ["conversationId", "userId"]
        [events.message_read]
        enabled = false"#,
    )
    .unwrap();
    assert_eq!(def.name, "messaging");
    assert_eq!(def.group_of("7"), "conversation:7");
    let send = &def.methods[0];
    assert_eq!((send.spec.min_params, send.spec.params), (2, 3));
    let args = def.bind(
        &CATALOG,
        send,
        vec![json!("c1"), json!("hello"), json!([{ "url": "u" }])],
    );
    assert_eq!(args.get("conversationId"), Some(&json!("c1")));
    assert_eq!(args.get("attachments"), Some(&json!([{ "url": "u" }])));
    assert_eq!(args.get("clientMessageId"), None);
    let direct = &def.methods[1];
    let args = def.bind(&CATALOG, direct, vec![json!("bob"), json!("hi"), json!("Text")]);
    assert_eq!(args.get("recipientUserId"), Some(&json!("bob")));
    assert_eq!(args.get("clientMessageId"), None, "the ignored argument binds nothing");

    let fields = object(json!({
        "id": "1", "conversationId": "c1", "senderId": "alice", "senderName": "Alice",
        "recipientId": null, "content": "hello", "attachments": [], "clientMessageId": "k", "sentAt": "t",
    }));
    let received = &def.events[Event::MessageReceived as usize];
    assert_eq!(received.name.as_deref(), Some("OnMessageReceived"));
    assert_eq!(
        received.arguments(&fields),
        vec![json!({
            "messageId": "1", "conversationId": "c1", "senderUserId": "alice",
            "body": "hello", "attachments": [], "sentAt": "t",
        })]
    );
    let sent = &def.events[Event::MessageSent as usize];
    assert_eq!(
        sent.name.as_deref(),
        Some("MessageSent"),
        "unlisted events keep their defaults"
    );
    assert_eq!(object(sent.object(&fields)).len(), 6);
    let typing = &def.events[Event::TypingStarted as usize];
    let typing_fields = object(json!({ "conversationId": "c1", "userId": "bob", "isTyping": true }));
    assert_eq!(typing.arguments(&typing_fields), vec![json!("c1"), json!("bob")]);
    let stopped = &def.events[Event::TypingStopped as usize];
    assert_eq!(
        stopped.arguments(&typing_fields),
        vec![json!("c1"), json!("bob"), json!(true)]
    );
    assert_eq!(def.events[Event::MessageRead as usize].name, None, "turned off");
}

#[test]
fn refusals_can_be_events_with_the_apps_texts() {
    let def = resolve(
        r#"kind = "chat"
        path = "/hubs/chat"
        [refusals]
        style = "event"
        not_participant = "Access denied"
        invalid_content = "Invalid message content"
        [limits]
        max_content_chars = 10"#,
    )
    .unwrap();
    assert_eq!(def.refusals.style, RefusalStyle::Event);
    assert_eq!(
        def.refusals.not_found, "Access denied",
        "defaults to the not-participant text"
    );
    assert_eq!(def.refusals.invalid_content, "Invalid message content");
    assert_eq!(def.limits.max_content_chars, 10);
}

#[test]
fn the_configurations_hubs_replace_the_built_in_chat_at_its_path_and_names_differ() {
    let config: Config = toml::from_str(
        r#"
        [[hub]]
        kind = "chat"
        path = "/chathub"
        "#,
    )
    .unwrap();
    let defs = definitions(&config).unwrap();
    let paths: Vec<_> = defs.iter().map(|(_, d)| d.path.as_str()).collect();
    assert_eq!(paths, ["/hubs/chat", "/hubs/rooms", "/hubs/notifications", "/chathub"]);

    let replaced: Config = toml::from_str(
        r#"
        [[hub]]
        kind = "chat"
        path = "/hubs/chat"
        conversation_group = "{id}"
        "#,
    )
    .unwrap();
    let defs = definitions(&replaced).unwrap();
    assert_eq!(
        defs.len(),
        3,
        "the chat hub replaced, the built-in rooms and notifications hubs kept"
    );
    assert_eq!(defs[0].1.group_of("x"), "x");

    let notifications: Config = toml::from_str(
        r#"
        [[hub]]
        kind = "notifications"
        path = "/hubs/notifications"
        methods = [{ name = "Ack", operation = "acknowledge_notification", args = ["notificationId"] }]
        [hub.notifications]
        retention_days = 7
        "#,
    )
    .unwrap();
    let defs = definitions(&notifications).unwrap();
    assert_eq!(defs.len(), 3, "chat and rooms built in, notifications configured");
    let notified: Vec<_> = defs.iter().filter(|(k, _)| *k == HubKind::Notifications).collect();
    assert_eq!(notified.len(), 1, "the configured one replaced the built-in");
    assert_eq!(notified[0].1.methods[0].spec.name, "Ack");

    let misplaced: Config = toml::from_str(
        r#"
        [[hub]]
        kind = "chat"
        path = "/hubs/chat"
        [hub.notifications]
        retention_days = 7
        "#,
    )
    .unwrap();
    let error = definitions(&misplaced).unwrap_err();
    assert_eq!(error.field, "notifications");

    let wrong_op: Config = toml::from_str(
        r#"
        [[hub]]
        kind = "notifications"
        path = "/hubs/alerts"
        methods = [{ name = "Send", operation = "send_message", args = ["conversationId", "content"] }]
        "#,
    )
    .unwrap();
    let error = definitions(&wrong_op).unwrap_err();
    assert!(error.reason.contains("acknowledge_notification"), "{}", error.reason);

    let clash: Config = toml::from_str(
        r#"
        [[hub]]
        kind = "chat"
        path = "/app/chat"
        "#,
    )
    .unwrap();
    let error = definitions(&clash).unwrap_err();
    assert_eq!((error.hub.as_str(), error.field.as_str()), ("/app/chat", "path"));
    assert!(error.reason.contains("/hubs/chat"), "{}", error.reason);
}

#[test]
fn hub_definitions_come_from_the_environment_as_json() {
    let mut config = Config::default();
    config
        .apply_env(|name| {
            (name == "HUBWIRE_HUB").then(|| r#"[{"kind": "chat", "path": "/chathub", "presence": "everyone"}]"#.into())
        })
        .unwrap();
    assert_eq!(config.hub.len(), 1);
    assert_eq!(config.hub[0].presence, Some(PresenceAudience::Everyone));
    let error = Config::default()
        .apply_env(|name| (name == "HUBWIRE_HUB").then(|| "[{\"kind\": 1}]".into()))
        .unwrap_err();
    assert!(error.to_string().contains("HUBWIRE_HUB"), "{error}");
}

#[test]
fn the_example_of_docs_hubs_md_is_a_valid_definition() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/hubs.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let start = doc.find("```toml\n").unwrap() + "```toml\n".len();
    let example = &doc[start..start + doc[start..].find("```").unwrap()];
    let config: Config = toml::from_str(example).unwrap();
    let defs = definitions(&config).unwrap();
    let (_, messaging) = defs.iter().find(|(_, d)| d.name == "messaging").unwrap();
    assert_eq!(messaging.group_of("9"), "conversation:9");
    assert_eq!(messaging.methods.len(), 7);
    let typing = &messaging.events[Event::TypingStopped as usize];
    assert_eq!(typing.name.as_deref(), Some("OnTypingIndicator"));
    assert_eq!(messaging.events[Event::MessageSent as usize].name, None);
    assert_eq!(messaging.refusals.not_found, "Conversation not found");
}

#[test]
fn an_event_default_fills_a_field_the_kind_leaves_empty_and_an_unknown_one_is_refused() {
    let def = resolve(
        "kind = \"chat\"\npath = \"/hubs/pets\"\n[events.message_received]\nargs = [\"id\", \"messageType\"]\ndefaults = { messageType = \"Text\" }",
    )
    .unwrap();
    let event = &def.events[0];
    let mut fields = serde_json::Map::new();
    fields.insert("id".into(), serde_json::json!("1"));
    assert_eq!(
        event.object(&fields),
        serde_json::json!({ "id": "1", "messageType": "Text" })
    );
    fields.insert("messageType".into(), serde_json::json!("Image"));
    assert_eq!(
        event.object(&fields),
        serde_json::json!({ "id": "1", "messageType": "Image" })
    );
    let error = resolve("kind = \"chat\"\npath = \"/hubs/pets\"\n[events.message_received]\ndefaults = { colour = 1 }")
        .unwrap_err();
    assert_eq!(error.field, "events.message_received.defaults.colour");
}

#[test]
fn input_limits_have_defaults_and_refusals_name_the_limit() {
    let def = resolve("kind = \"chat\"\npath = \"/hubs/chat\"").unwrap();
    let l = &def.limits;
    assert_eq!(
        (
            l.max_client_message_id_chars,
            l.max_conversation_id_chars,
            l.max_user_id_chars
        ),
        (128, 128, 128)
    );
    assert_eq!(
        (l.max_attachments, l.max_attachments_bytes, l.max_participants),
        (10, 16_384, 1000)
    );
    assert!(
        l.check_length(Bounded::ClientMessageId, &"é".repeat(128)).is_ok(),
        "characters, not bytes"
    );
    let long = l.check_length(Bounded::ClientMessageId, &"x".repeat(129)).unwrap_err();
    assert!(long.contains("limits.max_client_message_id_chars"), "{long}");
    let user = l.check_length(Bounded::UserId, &"u".repeat(129)).unwrap_err();
    assert!(user.contains("limits.max_user_id_chars"), "{user}");
    let many = l.check_attachments(&json!((0..11).collect::<Vec<_>>())).unwrap_err();
    assert!(many.contains("limits.max_attachments"), "{many}");
    let big = l.check_attachments(&json!(["x".repeat(16_384)])).unwrap_err();
    assert!(big.contains("limits.max_attachments_bytes"), "{big}");
    assert!(l.check_attachments(&json!({ "url": "u" })).is_ok());
    assert!(l
        .check_participants(1001)
        .unwrap_err()
        .contains("limits.max_participants"));
    let small = resolve("kind = \"chat\"\npath = \"/x\"\n[limits]\nmax_conversation_id_chars = 4").unwrap();
    assert!(small.limits.check_length(Bounded::ConversationId, "abcde").is_err());
    let zero = refused("kind = \"chat\"\npath = \"/x\"\n[limits]\nmax_user_id_chars = 0");
    assert_eq!(zero.field, "limits.max_user_id_chars");
}

#[test]
fn the_call_limits_of_the_newer_kinds_have_defaults_and_are_read() {
    let def = resolve("kind = \"rooms\"\npath = \"/x\"").unwrap();
    let l = &def.limits;
    assert_eq!(
        (
            l.subscriptions_per_minute,
            l.heartbeats_per_minute,
            l.acks_per_minute,
            l.relays_per_minute
        ),
        (120, 120, 600, 600)
    );
    assert_eq!((l.max_argument_chars, l.max_relay_bytes), (128, 16_384));
    let set = resolve(
        "kind = \"notifications\"\npath = \"/x\"\n[limits]\nsubscriptions_per_minute = 5\nheartbeats_per_minute = 0\nacks_per_minute = 7\nrelays_per_minute = 9\nmax_argument_chars = 3\nmax_relay_bytes = 100",
    )
    .unwrap();
    let l = &set.limits;
    assert_eq!(
        (
            l.subscriptions_per_minute,
            l.heartbeats_per_minute,
            l.acks_per_minute,
            l.relays_per_minute
        ),
        (5, 0, 7, 9),
        "0 turns a rate off"
    );
    assert_eq!((l.max_argument_chars, l.max_relay_bytes), (3, 100));
    let zero = refused("kind = \"rooms\"\npath = \"/x\"\n[limits]\nmax_relay_bytes = 0");
    assert_eq!(zero.field, "limits.max_relay_bytes");
    let unknown = toml::from_str::<HubTable>("kind = \"rooms\"\npath = \"/x\"\n[limits]\nheartbeats_per_hour = 1");
    assert!(unknown.is_err(), "an unknown limit is refused");
}

#[test]
fn an_offline_hook_needs_an_http_url_and_a_long_enough_secret() {
    let base = "kind = \"chat\"\npath = \"/x\"\n[offline_hook]\n";
    let def = resolve(&format!(
        "{base}url = \"http://127.0.0.1:9/push\"\nsecret = \"0123456789abcdef\""
    ))
    .unwrap();
    let hook = def.offline_hook.unwrap();
    assert_eq!(hook.timeout, std::time::Duration::from_millis(5000));
    assert_eq!((hook.retries, hook.queue), (3, 1000));
    assert_eq!(hook.backoff, std::time::Duration::from_millis(1000));
    assert!(resolve("kind = \"chat\"\npath = \"/x\"")
        .unwrap()
        .offline_hook
        .is_none());
    let https = refused(&format!(
        "{base}url = \"https://push.example\"\nsecret = \"0123456789abcdef\""
    ));
    assert_eq!(https.field, "offline_hook.url");
    let short = refused(&format!("{base}url = \"http://h/\"\nsecret = \"short\""));
    assert_eq!(short.field, "offline_hook.secret");
    let queue = refused(&format!(
        "{base}url = \"http://h/\"\nsecret = \"0123456789abcdef\"\nqueue = 0"
    ));
    assert_eq!(queue.field, "offline_hook.queue");
}

#[test]
fn backend_hooks_need_the_backend_url_and_paths_under_it() {
    let hooked = |backend: &str| table(&format!("kind = \"chat\"\npath = \"/chathub\"\n[backend]\n{backend}\n"));
    let mut config = Config {
        hub: vec![hooked("authenticate = \"/hubwire/authenticate\"")],
        ..Config::default()
    };
    let error = definitions(&config).expect_err("no backend_url");
    assert_eq!(error.field, "backend.authenticate");
    assert!(error.reason.contains("backend_url"), "{}", error.reason);
    config.backend_url = Some("http://app:5000/api".into());
    assert!(definitions(&config).is_ok());
    let metrics = crate::core::metrics::Metrics::new();
    let backend = crate::core::backend::Backend::from_config(&config, &metrics);
    assert_eq!(backend.authenticates("chathub"), Some(false));
    assert!(!backend.authorizes("chathub"), "no authorize hook named");
    config.hub = vec![hooked("authorize = \"hubwire/authorize\"")];
    let error = definitions(&config).expect_err("a relative path");
    assert_eq!(error.field, "backend.authorize");
    let typo = toml::from_str::<HubTable>("kind = \"chat\"\npath = \"/x\"\n[backend]\nauthenticat = \"/x\"\n");
    assert!(typo.unwrap_err().to_string().contains("authenticat"));
}
