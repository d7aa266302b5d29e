//! The tables, as diesel sees them; the same for both back ends (the SQL is
//! in `store/migrations/`, written in the subset PostgreSQL and SQLite share).

diesel::table! {
    /// A conversation: its id (the app's own or generated), kind and creation time.
    conversations (id) {
        /// The conversation id.
        id -> Text,
        /// The kind ("direct", "group", "customer-support", ...).
        kind -> Text,
        /// Unix milliseconds.
        created_at -> BigInt,
    }
}

diesel::table! {
    /// Who takes part in a conversation.
    participants (conversation_id, user_id) {
        /// The conversation.
        conversation_id -> Text,
        /// The participant.
        user_id -> Text,
        /// Unix milliseconds.
        joined_at -> BigInt,
    }
}

diesel::table! {
    /// Messages, keyed by a time-ordered id.
    messages (id) {
        /// Time-ordered id (see [`crate::id`]).
        id -> BigInt,
        /// The conversation.
        conversation_id -> Text,
        /// The sender's user id.
        sender_id -> Text,
        /// The content, or its ciphertext when `key_id` is set.
        content -> Text,
        /// JSON text.
        attachments -> Nullable<Text>,
        /// The sender's idempotency key, unique per (conversation, sender).
        client_message_id -> Nullable<Text>,
        /// Unix milliseconds.
        sent_at -> BigInt,
        /// The encryption key of `content`; none: plain text.
        key_id -> Nullable<Text>,
        /// The app's message type; none: the hub definition's default.
        message_type -> Nullable<Text>,
        /// The node that stored it; none: no node (never swept).
        stored_by -> Nullable<Text>,
        /// When its broadcast was done (Unix ms); none until then (the outbox).
        broadcast_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// How far each participant has read.
    read_positions (conversation_id, user_id) {
        /// The conversation.
        conversation_id -> Text,
        /// The reader.
        user_id -> Text,
        /// The newest message read.
        last_read_id -> BigInt,
        /// Unix milliseconds.
        read_at -> BigInt,
    }
}

diesel::table! {
    /// Notifications of the notifications hub kind.
    notifications (id) {
        /// Time-ordered id (as message ids, [`crate::id`]).
        id -> BigInt,
        /// The hub's name.
        hub -> Text,
        /// `user`, `tenant`, `channel` or `all`.
        audience -> Text,
        /// The user id, tenant or channel; empty for `all`.
        audience_id -> Text,
        /// The notification's type.
        kind -> Text,
        /// Its title.
        title -> Text,
        /// Its body.
        body -> Nullable<Text>,
        /// JSON text.
        data -> Nullable<Text>,
        /// Unix milliseconds.
        created_at -> BigInt,
    }
}

diesel::table! {
    /// One user's state of one notification.
    notification_states (notification_id, user_id) {
        /// The notification.
        notification_id -> BigInt,
        /// The user.
        user_id -> Text,
        /// Unix milliseconds; none: not acknowledged.
        acknowledged_at -> Nullable<BigInt>,
        /// Unix milliseconds; none: not read.
        read_at -> Nullable<BigInt>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(notifications, notification_states);

diesel::table! {
    /// Who may join a room of a rooms hub (grants by the app's backend).
    room_members (hub, room_id, user_id) {
        /// The hub's name.
        hub -> Text,
        /// The room.
        room_id -> Text,
        /// The user granted.
        user_id -> Text,
        /// Unix milliseconds.
        granted_at -> BigInt,
    }
}

diesel::joinable!(participants -> conversations (conversation_id));
diesel::joinable!(messages -> conversations (conversation_id));
diesel::joinable!(read_positions -> conversations (conversation_id));
diesel::allow_tables_to_appear_in_same_query!(conversations, participants, messages, read_positions);
