//! What the notifications kind can run and send ([`CATALOG`]), with
//! MISSION.md's `/hubs/notifications` names (seed 002's NotificationHub) as
//! the defaults: the built-in hub is the definition that changes none.

use crate::core::definition::Layout;
use crate::hubs::definition::{event, Catalog, DefaultMethod, Operation};

/// The operations of the notifications kind, in [`CATALOG`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The caller acknowledged a notification (stored; the user's other
    /// sessions are told).
    AcknowledgeNotification,
    /// The caller read a notification (stored; the other sessions are told).
    MarkAsRead,
    /// Join a channel's group, as the token's `channels` claim allows.
    SubscribeToChannel,
    /// Leave a channel's group.
    UnsubscribeFromChannel,
    /// `"pong"`.
    Ping,
    /// The caller's unread notifications, newest first.
    GetUnreadNotifications,
}

impl Op {
    const ALL: [Op; 6] = [
        Op::AcknowledgeNotification,
        Op::MarkAsRead,
        Op::SubscribeToChannel,
        Op::UnsubscribeFromChannel,
        Op::Ping,
        Op::GetUnreadNotifications,
    ];

    /// The operation of catalog number `index`.
    pub fn of(index: usize) -> Option<Op> {
        Self::ALL.get(index).copied()
    }
}

/// The events of the notifications kind, in [`CATALOG`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// One notification to its audience. Its layout also shapes the items
    /// of a batch and of `GetUnreadNotifications`' answer.
    NotificationReceived,
    /// Several notifications at once (one REST batch) to each audience.
    NotificationBatchReceived,
    /// A notification was acknowledged in another session of the user.
    NotificationAcknowledged,
    /// A notification was read in another session of the user.
    NotificationRead,
}

/// Every field a notification carries (`audience` is `user`, `tenant`,
/// `channel` or `all`; `userId`, `tenant`, `channel` the one it names).
pub const NOTIFICATION_FIELDS: &[&str] = &[
    "id",
    "type",
    "title",
    "body",
    "data",
    "createdAt",
    "audience",
    "userId",
    "tenant",
    "channel",
    "acknowledgedAt",
    "readAt",
];
/// The default notification object.
const NOTIFICATION_DEFAULT: &[&str] = &["id", "type", "title", "body", "data", "createdAt"];

/// The notifications kind.
pub static CATALOG: Catalog = Catalog {
    operations: &[
        Operation {
            name: "acknowledge_notification",
            params: &["notificationId"],
        },
        Operation {
            name: "mark_as_read",
            params: &["notificationId"],
        },
        Operation {
            name: "subscribe_to_channel",
            params: &["channel"],
        },
        Operation {
            name: "unsubscribe_from_channel",
            params: &["channel"],
        },
        Operation {
            name: "ping",
            params: &[],
        },
        Operation {
            name: "get_unread_notifications",
            params: &["limit?"],
        },
    ],
    events: &[
        event(
            "notification_received",
            NOTIFICATION_FIELDS,
            "ReceiveNotification",
            Layout::Object,
            NOTIFICATION_DEFAULT,
        ),
        event(
            "notification_batch_received",
            &["notifications"],
            "ReceiveNotificationBatch",
            Layout::Positional,
            &["notifications"],
        ),
        event(
            "notification_acknowledged",
            &["id", "acknowledgedAt"],
            "NotificationAcknowledged",
            Layout::Positional,
            &["id"],
        ),
        event(
            "notification_read",
            &["id", "readAt"],
            "NotificationRead",
            Layout::Positional,
            &["id", "readAt"],
        ),
    ],
    methods: &[
        DefaultMethod(
            "AcknowledgeNotification",
            "acknowledge_notification",
            &["notificationId"],
        ),
        DefaultMethod("MarkAsRead", "mark_as_read", &["notificationId"]),
        DefaultMethod("SubscribeToChannel", "subscribe_to_channel", &["channel"]),
        DefaultMethod("UnsubscribeFromChannel", "unsubscribe_from_channel", &["channel"]),
        DefaultMethod("Ping", "ping", &[]),
        DefaultMethod("GetUnreadNotifications", "get_unread_notifications", &["limit?"]),
    ],
};
