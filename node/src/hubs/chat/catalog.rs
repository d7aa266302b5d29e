//! What the chat kind can run and send ([`CATALOG`]), with MISSION.md's
//! `/hubs/chat` names as the defaults: the built-in hub is the definition
//! that changes none of them.

use crate::core::definition::Layout;
use crate::hubs::definition::{event, Catalog, DefaultMethod, Operation};

/// The operations of the chat kind, in [`CATALOG`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Join a conversation's group; returns the messages after a cursor.
    JoinConversation,
    /// Leave a conversation's group.
    LeaveConversation,
    /// Persist a message, then broadcast it to the conversation.
    SendMessage,
    /// The same in the one-to-one conversation with a user.
    SendDirectMessage,
    /// Typing starts (or is refreshed).
    StartTyping,
    /// Typing stops.
    StopTyping,
    /// The caller has read up to a message.
    MarkAsRead,
    /// Who of some users is online.
    GetPresence,
    /// `"pong"`.
    Ping,
    /// The caller's conversations with their last message and unread count.
    GetConversations,
    /// The caller says it is online or not: `user_online` / `user_offline`
    /// to the presence audience.
    UpdatePresence,
}

impl Op {
    const ALL: [Op; 11] = [
        Op::JoinConversation,
        Op::LeaveConversation,
        Op::SendMessage,
        Op::SendDirectMessage,
        Op::StartTyping,
        Op::StopTyping,
        Op::MarkAsRead,
        Op::GetPresence,
        Op::Ping,
        Op::GetConversations,
        Op::UpdatePresence,
    ];

    /// The operation of catalog number `index`.
    pub fn of(index: usize) -> Option<Op> {
        Self::ALL.get(index).copied()
    }
}

/// The events of the chat kind, in [`CATALOG`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A message to the conversation (or the direct recipient).
    MessageReceived,
    /// A message to its sender's own connections.
    MessageSent,
    /// A refused send, to the caller (refusal style `event`).
    MessageError,
    /// A refused join or other conversation call, to the caller.
    ConversationError,
    /// Someone joined the conversation's group.
    UserJoinedConversation,
    /// Someone left it.
    UserLeftConversation,
    /// Someone started typing.
    TypingStarted,
    /// Someone stopped typing (stop, send, expiry, disconnect).
    TypingStopped,
    /// Someone read up to a message.
    MessageRead,
    /// A user's first connection in the cluster.
    UserOnline,
    /// A user's last connection in the cluster is gone.
    UserOffline,
}

/// Every field a message event can carry.
const MESSAGE_FIELDS: &[&str] = &[
    "id",
    "conversationId",
    "senderId",
    "senderName",
    "recipientId",
    "content",
    "attachments",
    "clientMessageId",
    "sentAt",
    "messageType",
];
/// MISSION's message: `{ id, conversationId, senderId, content, clientMessageId, sentAt }`.
const MESSAGE_DEFAULT: &[&str] = &[
    "id",
    "conversationId",
    "senderId",
    "content",
    "clientMessageId",
    "sentAt",
];
const TYPING_FIELDS: &[&str] = &["conversationId", "userId", "isTyping"];
const MEMBER_FIELDS: &[&str] = &["conversationId", "userId"];
/// `isOnline`: `true` in `user_online`, `false` in `user_offline`.
const PRESENCE_FIELDS: &[&str] = &["userId", "isOnline"];

/// The chat kind.
pub static CATALOG: Catalog = Catalog {
    operations: &[
        Operation {
            name: "join_conversation",
            params: &["conversationId", "afterMessageId?"],
        },
        Operation {
            name: "leave_conversation",
            params: &["conversationId"],
        },
        Operation {
            name: "send_message",
            params: &[
                "conversationId",
                "content",
                "clientMessageId?",
                "attachments?",
                "messageType?",
            ],
        },
        Operation {
            name: "send_direct_message",
            params: &[
                "recipientUserId",
                "content",
                "clientMessageId?",
                "attachments?",
                "messageType?",
            ],
        },
        Operation {
            name: "start_typing",
            params: &["conversationId"],
        },
        Operation {
            name: "stop_typing",
            params: &["conversationId"],
        },
        Operation {
            name: "mark_as_read",
            params: &["conversationId", "messageId"],
        },
        Operation {
            name: "get_presence",
            params: &["userIds"],
        },
        Operation {
            name: "ping",
            params: &[],
        },
        Operation {
            name: "get_conversations",
            params: &[],
        },
        Operation {
            name: "update_presence",
            params: &["isOnline"],
        },
    ],
    events: &[
        event(
            "message_received",
            MESSAGE_FIELDS,
            "ReceiveMessage",
            Layout::Object,
            MESSAGE_DEFAULT,
        ),
        event(
            "message_sent",
            MESSAGE_FIELDS,
            "MessageSent",
            Layout::Object,
            MESSAGE_DEFAULT,
        ),
        event(
            "message_error",
            &["error"],
            "MessageError",
            Layout::Positional,
            &["error"],
        ),
        event(
            "conversation_error",
            &["error"],
            "ConversationError",
            Layout::Positional,
            &["error"],
        ),
        event(
            "user_joined_conversation",
            MEMBER_FIELDS,
            "UserJoinedConversation",
            Layout::Positional,
            MEMBER_FIELDS,
        ),
        event(
            "user_left_conversation",
            MEMBER_FIELDS,
            "UserLeftConversation",
            Layout::Positional,
            MEMBER_FIELDS,
        ),
        event(
            "typing_started",
            TYPING_FIELDS,
            "TypingChanged",
            Layout::Positional,
            TYPING_FIELDS,
        ),
        event(
            "typing_stopped",
            TYPING_FIELDS,
            "TypingChanged",
            Layout::Positional,
            TYPING_FIELDS,
        ),
        event(
            "message_read",
            &["conversationId", "messageId", "userId", "readAt"],
            "MessageRead",
            Layout::Positional,
            &["conversationId", "messageId", "userId", "readAt"],
        ),
        event(
            "user_online",
            PRESENCE_FIELDS,
            "UserOnline",
            Layout::Positional,
            &["userId"],
        ),
        event(
            "user_offline",
            PRESENCE_FIELDS,
            "UserOffline",
            Layout::Positional,
            &["userId"],
        ),
    ],
    methods: &[
        DefaultMethod(
            "JoinConversation",
            "join_conversation",
            &["conversationId", "afterMessageId?"],
        ),
        DefaultMethod("LeaveConversation", "leave_conversation", &["conversationId"]),
        DefaultMethod(
            "SendMessage",
            "send_message",
            &["conversationId", "content", "clientMessageId?"],
        ),
        DefaultMethod(
            "SendDirectMessage",
            "send_direct_message",
            &["recipientUserId", "content", "clientMessageId?"],
        ),
        DefaultMethod("StartTyping", "start_typing", &["conversationId"]),
        DefaultMethod("StopTyping", "stop_typing", &["conversationId"]),
        DefaultMethod("MarkAsRead", "mark_as_read", &["conversationId", "messageId"]),
        DefaultMethod("GetPresence", "get_presence", &["userIds"]),
        DefaultMethod("Ping", "ping", &[]),
        DefaultMethod("GetConversations", "get_conversations", &[]),
    ],
};
