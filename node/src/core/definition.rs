//! Hub definitions as the configuration writes them: the `[[hub]]` tables of
//! the TOML file (or `HUBWIRE_HUB`, the same tables as a JSON array).
//!
//! A definition makes a hub of a built-in *kind* (chat) under an app's own
//! path and names, so that the app's SignalR client and backend keep working
//! unchanged. This module only holds what was written; `crate::hubs::definition`
//! checks it against the kind's operations and events and resolves the
//! defaults, and the node refuses to start when that fails. `docs/hubs.md`
//! documents the format with a complete example.
//!
//! What a table says:
//! - `kind` and `path` (the hub's REST name is the last segment of the path);
//! - `methods`: the client methods, each naming an operation of the kind and
//!   the operation parameter each argument position binds to (`?` after an
//!   optional one, `_` for an argument accepted and ignored); absent: the
//!   kind's default method table;
//! - `events`: per event of the kind, the app's event name, its argument
//!   layout (positional, or one object), which fields it carries and under
//!   which names; each event not listed keeps its default;
//! - `conversation_group`: the group-name template of conversations;
//! - `presence`: who hears that a user came online or went offline;
//! - `refusals`: a `HubException`, or an event to the caller, and its texts;
//! - `limits` (content length, id lengths, attachments, participants,
//!   typing expiry, catch-up size, connections per user, rates);
//! - `offline_hook`: where messages for users with no live connection are
//!   POSTed (`crate::hubs::chat::offline`);
//! - `backend`: the paths of the app's authentication and authorisation
//!   hooks under the node's `backend_url` (`crate::core::backend`).
//! - `groups`: the settings of a hub of the groups kind (groups joined on
//!   connect, subscribe / unsubscribe / relay / ping methods), its only
//!   settings (`crate::hubs::groups`).
//! - `notifications`: the notifications kind's retention, group templates
//!   and sizes (`crate::hubs::notifications`).
//! - `rooms`: the rooms kind's settings (group template, inactivity, access).

use std::collections::BTreeMap;

use serde::Deserialize;

/// The built-in kinds a definition can make a hub of.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HubKind {
    /// Conversations: messages persisted then broadcast, typing, receipts,
    /// presence (`crate::hubs::chat`).
    Chat,
    /// Subscriptions: groups joined on connect, subscribe / unsubscribe
    /// methods, relays of a client's call to a group (`crate::hubs::groups`).
    Groups,
    /// Notifications persisted then sent to a user, tenant, channel or
    /// everyone; acknowledged / read state synced to the user's sessions
    /// (`crate::hubs::notifications`).
    Notifications,
    /// Rooms with presence: join / leave / heartbeat, who is active, access
    /// granted by the backend (`crate::hubs::rooms`).
    Rooms,
}

/// One `[[hub]]` table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HubTable {
    /// The kind of hub.
    pub kind: HubKind,
    /// Where clients connect (`/hubs/messaging`, `/chathub`); its last segment
    /// is the hub's name in the REST API, the keyspace and `anonymous_hubs`.
    pub path: String,
    /// The client methods; absent: the kind's defaults.
    pub methods: Option<Vec<MethodTable>>,
    /// Per event of the kind (by its operation name, e.g. `message_received`),
    /// how the app's clients receive it; absent ones keep their defaults.
    #[serde(default)]
    pub events: BTreeMap<String, EventTable>,
    /// The group name of a conversation, with `{id}` for its id. Default
    /// `conversation_{id}`.
    pub conversation_group: Option<String>,
    /// Who hears `user_online` / `user_offline`. Default `conversations`.
    pub presence: Option<PresenceAudience>,
    /// How refusals reach the caller.
    #[serde(default)]
    pub refusals: RefusalTable,
    /// The limits of the hub.
    #[serde(default)]
    pub limits: LimitsTable,
    /// The offline-delivery hook; absent: none.
    pub offline_hook: Option<OfflineHookTable>,
    /// The app's backend hooks of this hub (authentication, authorisation:
    /// `crate::core::backend`); absent: none.
    pub backend: Option<BackendTable>,
    /// The settings of a `groups` hub (required for that kind, refused for
    /// others).
    pub groups: Option<GroupsTable>,
    /// The settings of a hub of the notifications kind; absent: defaults.
    pub notifications: Option<NotificationsTable>,
    /// The settings of a hub of the rooms kind; absent: its defaults.
    pub rooms: Option<RoomsTable>,
}

/// The backend hooks of a hub: paths under the node's `backend_url`
/// (`docs/hubs.md`, "The backend hooks").
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackendTable {
    /// The authentication hook's path (`/hubwire/authenticate`): requests
    /// without a valid JWT are authenticated by it. Absent: none.
    pub authenticate: Option<String>,
    /// Ask the authentication hook even when the request carries a valid
    /// JWT. Default `false`.
    pub authenticate_always: Option<bool>,
    /// The authorisation hook's path (`/hubwire/authorize`): joins and
    /// subscriptions are allowed only when it says so. Absent: none.
    pub authorize: Option<String>,
}

/// The `groups` sub-table of a hub of the groups kind (`docs/hubs.md`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupsTable {
    /// Group templates every connection joins when it connects
    /// (`vkey-{userId}`, `system-notifications`); placeholders from the
    /// token: `{userId}`, `{name}`, `{tenant}`, and `{connectionId}`.
    #[serde(default)]
    pub on_connect: Vec<String>,
    /// The client methods.
    #[serde(default)]
    pub methods: Vec<GroupMethodTable>,
    /// A role the token's `roles` must hold to connect at all (negotiate
    /// and connect answer 401 otherwise). Default: none, every signed-in
    /// user (and anonymous ones on an `anonymous_hubs` hub).
    pub connect_role: Option<String>,
}

/// What a method of a groups hub does.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GroupAction {
    /// Adds the caller to the method's group.
    Subscribe,
    /// Removes the caller from it.
    Unsubscribe,
    /// Sends the method's arguments as an event to its group.
    Relay,
    /// Answers `"pong"`.
    Ping,
}

/// One client method of a groups hub.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupMethodTable {
    /// The name clients invoke (matched case-insensitively).
    pub name: String,
    /// What it does.
    pub action: GroupAction,
    /// The group template (subscribe, unsubscribe, relay): the token's
    /// placeholders and the method's arguments (`video-{requestId}`).
    pub group: Option<String>,
    /// The name of the one argument of subscribe / unsubscribe (its
    /// placeholder in `group`). Default `id`.
    pub argument: Option<String>,
    /// The `HubException` text of an empty or missing argument. Default
    /// `{argument} is required`.
    pub required: Option<String>,
    /// Who may subscribe or relay: `any` (a signed-in user), `role:NAME`
    /// (the token's `roles` holds NAME), `channels` (the token's `channels`
    /// claim matches the group). Required for subscribe and relay.
    pub allow: Option<String>,
    /// The `HubException` text of a refusal by `allow`. Default `Access
    /// denied.`
    pub denied: Option<String>,
    /// The event a relay sends. Default: the method's name.
    pub event: Option<String>,
    /// A relay's arguments, by name, all required; the event carries them in
    /// this order.
    #[serde(default)]
    pub args: Vec<String>,
    /// Whether a relay skips the caller's own connection. Default `false`.
    pub except_caller: Option<bool>,
}

/// `[hub.notifications]`: what only the notifications kind has.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NotificationsTable {
    /// Days a notification is kept (0: forever). Default 30.
    pub retention_days: Option<u32>,
    /// The group of a tenant's connections, with `{id}` for the tenant.
    /// Default `tenant_{id}`.
    pub tenant_group: Option<String>,
    /// The group of a channel's subscribers, with `{id}` for the channel.
    /// Default `channel_{id}`.
    pub channel_group: Option<String>,
    /// The most notifications of one REST batch. Default 100.
    pub max_batch: Option<usize>,
    /// The most notifications `GetUnreadNotifications` returns. Default 100.
    pub max_unread: Option<usize>,
    /// The longest title, in characters. Default 256.
    pub max_title_chars: Option<usize>,
    /// The longest body, in characters. Default 4000.
    pub max_body_chars: Option<usize>,
    /// The most bytes of a notification's `data`, as JSON. Default 16384.
    pub max_data_bytes: Option<usize>,
    /// The longest channel name (`SubscribeToChannel`, REST `channel`),
    /// tenant (REST `tenant`) and notification `type`, in characters.
    /// Default 128.
    pub max_name_chars: Option<usize>,
}

/// The settings of a hub of the rooms kind (`[hub.rooms]`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoomsTable {
    /// The group name of a room, with `{id}` for its id (what the backend's
    /// REST group sends address). Default `room_{id}`.
    pub group: Option<String>,
    /// Seconds without a join or heartbeat after which a member is inactive
    /// (announced as left). Default 45.
    pub inactive_after_secs: Option<u64>,
    /// Whether the token's `channels` claim may grant rooms too: a pattern
    /// matching the room's group name lets the user join without a REST
    /// grant. Default `false` (REST grants only).
    pub claims_grant: Option<bool>,
    /// The `HubException` text of a join without access. Default
    /// `Access denied`.
    pub access_denied: Option<String>,
    /// The longest room id, in characters. Default 128.
    pub max_room_id_chars: Option<usize>,
}

/// The offline-delivery hook of a chat hub: each new message whose
/// recipient has no live connection to the hub anywhere in the cluster is
/// POSTed to `url`, signed (`crate::core::webhook`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OfflineHookTable {
    /// The receiver, an `http://` URL. Required.
    pub url: String,
    /// The HMAC-SHA256 key of `X-Hubwire-Signature`. Required, at least 16
    /// bytes.
    pub secret: String,
    /// Milliseconds one attempt may take. Default 5000.
    pub timeout_ms: Option<u64>,
    /// Attempts after a failed first one. Default 3.
    pub retries: Option<u32>,
    /// Milliseconds before the first retry, doubled before each next one.
    /// Default 1000.
    pub backoff_ms: Option<u64>,
    /// Messages that may wait for delivery; more are dropped (counted).
    /// Default 1000.
    pub queue: Option<usize>,
}

/// One client method of a definition.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MethodTable {
    /// The name clients invoke (matched case-insensitively).
    pub name: String,
    /// The operation of the kind it runs (`send_message`, ...).
    pub operation: String,
    /// Per argument position, the operation parameter it binds to; `?` after
    /// it marks an argument clients may leave out (only trailing ones), `_`
    /// one that is accepted and ignored.
    #[serde(default)]
    pub args: Vec<String>,
}

/// How the clients receive one event.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EventTable {
    /// The client method invoked. Default: the kind's name for the event.
    pub name: Option<String>,
    /// Positional arguments, or one object. Default: the kind's.
    pub layout: Option<Layout>,
    /// The event's fields it carries: the arguments in order (positional) or
    /// the object's properties. Default: the kind's.
    pub args: Option<Vec<String>>,
    /// Field name -> the name the app's payload uses for it (object layout,
    /// and the message objects methods return). Default: none renamed.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Field -> the value it carries when the operation gives it none (e.g.
    /// `messageType = "Text"` for a message sent without one). Default: none
    /// (`null`).
    #[serde(default)]
    pub defaults: BTreeMap<String, serde_json::Value>,
    /// Whether the event is sent at all. Default `true`.
    pub enabled: Option<bool>,
}

/// How an event's fields become arguments.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// One argument per field, in order.
    Positional,
    /// One argument: an object of the fields.
    Object,
}

/// Who hears that a user came online or went offline.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PresenceAudience {
    /// Every connection of the hub.
    Everyone,
    /// Every connection of the hub but the user's own.
    Others,
    /// The users who share a conversation with the user.
    Conversations,
}

/// How a refused call is answered.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RefusalStyle {
    /// The invocation fails with a `HubException` carrying the text.
    Exception,
    /// The invocation completes without a result and the caller gets an
    /// error event (`message_error` or `conversation_error`) with the text.
    Event,
}

/// The refusals of a definition and their texts.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RefusalTable {
    /// Exception or event. Default `exception`.
    pub style: Option<RefusalStyle>,
    /// The caller is not a participant of the conversation. Default
    /// `not a participant`.
    pub not_participant: Option<String>,
    /// The conversation does not exist. Default: the `not_participant` text.
    pub not_found: Option<String>,
    /// The content is empty or too long. Default `content must be 1 to N characters`.
    pub invalid_content: Option<String>,
    /// A send beyond `limits.messages_per_minute`; `{limit}` and `{retry}`
    /// (whole seconds until a send is allowed again) are filled in. Default
    /// `Rate limit exceeded: {limit} messages per minute; retry in {retry} s.`
    pub rate_limited: Option<String>,
}

/// The limits of a definition.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsTable {
    /// The longest message content, in characters. Default 4000.
    pub max_content_chars: Option<usize>,
    /// Seconds a typing indicator lasts without a refresh. Default 10.
    pub typing_timeout_secs: Option<u64>,
    /// The most missed messages one join returns. Default 500.
    pub catch_up_max: Option<usize>,
    /// Whether content of only whitespace is refused as invalid (seed 000's
    /// `IsNullOrWhiteSpace`). Default `false`.
    pub refuse_blank_content: Option<bool>,
    /// Connections one user may hold to this hub, cluster-wide (0 =
    /// unlimited). Default: the node's `max_connections_per_user`.
    pub max_connections_per_user: Option<usize>,
    /// Messages (sends and direct sends) one user may send per minute, on
    /// all their connections in the cluster (a token bucket: a burst of this
    /// many, refilled evenly over a minute); beyond it a send is refused
    /// with `refusals.rate_limited`. 0 turns the limit off. Default 60.
    pub messages_per_minute: Option<u32>,
    /// Typing notices (`StartTyping`) one user may send per minute, held the
    /// same way; beyond it they are dropped silently. 0 turns the limit off.
    /// Default 10.
    pub typing_per_minute: Option<u32>,
    /// The longest `clientMessageId`, in characters. Default 128.
    pub max_client_message_id_chars: Option<usize>,
    /// The longest conversation id (methods' arguments, the REST API), in
    /// characters. Default 128.
    pub max_conversation_id_chars: Option<usize>,
    /// The longest user id (the token's `sub`, a direct message's recipient,
    /// REST participants and senders), in characters. Default 128.
    pub max_user_id_chars: Option<usize>,
    /// The most attachments of one message (a JSON array's items; any other
    /// JSON value counts as one). Default 10.
    pub max_attachments: Option<usize>,
    /// The most bytes of one message's attachments, as JSON. Default 16384.
    pub max_attachments_bytes: Option<usize>,
    /// The most participants of a conversation the REST API creates or adds
    /// to. Default 1000.
    pub max_participants: Option<usize>,
    /// Subscribes and unsubscribes one user may make per minute, cluster-wide
    /// (a token bucket, as `messages_per_minute`): notifications channels,
    /// rooms' joins and leaves, groups hubs' subscribe and unsubscribe
    /// methods. 0 turns the limit off. Default 120.
    pub subscriptions_per_minute: Option<u32>,
    /// Room heartbeats one user may send per minute, cluster-wide. 0 turns
    /// the limit off. Default 120.
    pub heartbeats_per_minute: Option<u32>,
    /// Notification acknowledgements and reads one user may make per minute,
    /// cluster-wide. 0 turns the limit off. Default 600.
    pub acks_per_minute: Option<u32>,
    /// Relays (a groups hub's `relay` methods) one user may make per minute,
    /// cluster-wide. 0 turns the limit off. Default 600.
    pub relays_per_minute: Option<u32>,
    /// The longest argument that fills a group template of a groups hub
    /// (`video-{requestId}`), in characters. Default 128.
    pub max_argument_chars: Option<usize>,
    /// The most bytes of one relay's arguments, as JSON (groups hubs).
    /// Default 16384.
    pub max_relay_bytes: Option<usize>,
}

impl LimitsTable {
    /// The table without the limits a groups hub takes: what is left is
    /// refused on one (chat settings).
    pub fn without_groups_limits(&self) -> Self {
        Self {
            subscriptions_per_minute: None,
            relays_per_minute: None,
            max_argument_chars: None,
            max_relay_bytes: None,
            ..self.clone()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_table_reads_from_toml_and_unknown_keys_are_refused() {
        let table: HubTable = toml::from_str(
            r#"
            kind = "chat"
            path = "/hubs/messaging"
            conversation_group = "conversation:{id}"
            presence = "others"
            methods = [{ name = "SendMessage", operation = "send_message", args = ["conversationId", "content", "attachments?"] }]
            [events.message_received]
            name = "OnMessageReceived"
            fields = { id = "messageId" }
            [refusals]
            style = "exception"
            [limits]
            max_content_chars = 10
            messages_per_minute = 5
            "#,
        )
        .unwrap();
        assert_eq!(table.kind, HubKind::Chat);
        assert_eq!(table.presence, Some(PresenceAudience::Others));
        assert_eq!(table.methods.unwrap()[0].args.len(), 3);
        assert_eq!(table.events["message_received"].fields["id"], "messageId");
        assert_eq!(table.limits.max_content_chars, Some(10));
        assert_eq!(table.limits.messages_per_minute, Some(5));
        assert_eq!(table.limits.typing_per_minute, None);
        let unknown = toml::from_str::<HubTable>("kind = \"chat\"\npath = \"/x\"\ncolour = 1");
        assert!(unknown.unwrap_err().to_string().contains("colour"));
        let kind = toml::from_str::<HubTable>("kind = \"teleport\"\npath = \"/x\"");
        assert!(kind.unwrap_err().to_string().contains("teleport"));
        let notifications: HubTable = toml::from_str(
            "kind = \"notifications\"\npath = \"/n\"\n[notifications]\nretention_days = 7\ntenant_group = \"t:{id}\"",
        )
        .unwrap();
        assert_eq!(notifications.kind, HubKind::Notifications);
        let settings = notifications.notifications.unwrap();
        assert_eq!(settings.retention_days, Some(7));
        assert_eq!(settings.tenant_group.as_deref(), Some("t:{id}"));
        let rooms: HubTable =
            toml::from_str("kind = \"rooms\"\npath = \"/x\"\n[rooms]\ngroup = \"list_{id}\"\ninactive_after_secs = 2")
                .unwrap();
        assert_eq!(rooms.kind, HubKind::Rooms);
        assert_eq!(rooms.rooms.unwrap().inactive_after_secs, Some(2));
    }
}
