//! What the rooms kind can run and send ([`CATALOG`]), with MISSION.md's
//! `/hubs/rooms` names as the defaults.
//!
//! Every event carries `eventType`, the app's name of the event (what seed
//! 004's payloads repeat), when its layout lists it. `active_user` is not
//! sent on its own: it is the shape of one item of `presence_update`'s
//! `activeUsers` (its `name` is unused).

use crate::core::definition::Layout;
use crate::hubs::definition::{self, Catalog, DefaultMethod, EventKind, Operation};

/// The operations of the rooms kind, in [`CATALOG`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Join a room (access checked): its group, `user_joined` to the
    /// others, a `presence_update` snapshot to the caller.
    JoinRoom,
    /// Leave a room: `user_left` to the others when it was the user's last
    /// active connection there.
    LeaveRoom,
    /// The caller is still there (access checked again).
    Heartbeat,
}

impl Op {
    const ALL: [Op; 3] = [Op::JoinRoom, Op::LeaveRoom, Op::Heartbeat];

    /// The operation of catalog number `index`.
    pub fn of(index: usize) -> Option<Op> {
        Self::ALL.get(index).copied()
    }
}

/// The events of the rooms kind, in [`CATALOG`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A user became active in the room (to the others).
    UserJoined,
    /// A user is no longer active there (left, went silent, disconnected,
    /// revoked), to the others; once per user, not per connection.
    UserLeft,
    /// The active users of the room, to a joiner.
    PresenceUpdate,
    /// The shape of one active user in `presence_update` (not sent).
    ActiveUser,
    /// The user's access to the room was revoked (to the user).
    AccessRevoked,
}

/// The fields of `user_joined` and `user_left`. `reason` (`user_left`
/// only): `left`, `inactive`, `disconnected` or `revoked`.
const MEMBER_FIELDS: &[&str] = &[
    "eventType",
    "roomId",
    "userId",
    "displayName",
    "avatarUrl",
    "timestamp",
    "reason",
];

/// An event kind of this catalog: every rooms event is an object by default.
const fn event(
    name: &'static str,
    fields: &'static [&'static str],
    default_name: &'static str,
    default_args: &'static [&'static str],
) -> EventKind {
    definition::event(name, fields, default_name, Layout::Object, default_args)
}

/// The rooms kind.
pub static CATALOG: Catalog = Catalog {
    operations: &[
        Operation {
            name: "join_room",
            params: &["roomId"],
        },
        Operation {
            name: "leave_room",
            params: &["roomId"],
        },
        Operation {
            name: "heartbeat",
            params: &["roomId"],
        },
    ],
    events: &[
        event(
            "user_joined",
            MEMBER_FIELDS,
            "UserJoined",
            &["roomId", "userId", "displayName", "avatarUrl", "timestamp"],
        ),
        event(
            "user_left",
            MEMBER_FIELDS,
            "UserLeft",
            &["roomId", "userId", "displayName", "timestamp", "reason"],
        ),
        event(
            "presence_update",
            &["eventType", "roomId", "activeUsers", "timestamp"],
            "PresenceUpdate",
            &["roomId", "activeUsers", "timestamp"],
        ),
        event(
            "active_user",
            &["userId", "displayName", "avatarUrl", "joinedAt", "lastSeenAt"],
            "ActiveUser",
            &["userId", "displayName", "avatarUrl", "joinedAt"],
        ),
        event(
            "access_revoked",
            &["eventType", "roomId", "userId", "timestamp"],
            "RoomAccessRevoked",
            &["roomId", "userId", "timestamp"],
        ),
    ],
    methods: &[
        DefaultMethod("JoinRoom", "join_room", &["roomId"]),
        DefaultMethod("LeaveRoom", "leave_room", &["roomId"]),
        DefaultMethod("Heartbeat", "heartbeat", &["roomId"]),
    ],
};
