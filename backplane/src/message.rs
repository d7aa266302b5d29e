//! What crosses nodes: routing metadata plus opaque payload bytes.

use bytes::Bytes;

use crate::names::{ConnectionId, GroupName, HubName, NodeId, UserId};
use crate::ConnectionRecord;

/// Who a send or a command is for, within one hub.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every connection of the hub.
    All,
    /// The members of a group.
    Group(GroupName),
    /// Every connection of a user.
    User(UserId),
    /// One connection.
    Connection(ConnectionId),
}

/// A subscription: what a node listens to. One channel per hub for `All`, one per
/// group and user with local members, and one per node for anything addressed to
/// a connection (the keyspace says which node holds it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Sends to everyone in a hub.
    All(HubName),
    /// Sends and commands for a group.
    Group(HubName, GroupName),
    /// Sends and commands for a user.
    User(HubName, UserId),
    /// Anything addressed to the connections of one node, and the answers
    /// ([`ClusterBody::Ack`]) to the commands it published.
    Node(NodeId),
}

/// What a node asks the other nodes to do.
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterBody {
    /// Deliver `payload` (the node's own serialized invocation) to the target's
    /// local connections, except those listed.
    Deliver {
        /// Who receives it.
        target: Target,
        /// Connections that must not receive it.
        except: Vec<ConnectionId>,
        /// Opaque to the backplane.
        payload: Bytes,
        /// The W3C `traceparent` of the span that sent it, so that the
        /// receiving nodes continue the trace; `None` when tracing is off.
        trace: Option<String>,
    },
    /// Add the target's local connections (a connection or a user's) to a group.
    AddToGroup {
        /// `Connection` or `User`.
        target: Target,
        /// The group.
        group: GroupName,
        /// When set, the receiving node answers [`ClusterBody::Ack`] once it
        /// applied the command (subscribed the group's channel).
        ack: Option<CommandId>,
    },
    /// Remove the target's local connections from a group.
    RemoveFromGroup {
        /// `Connection` or `User`.
        target: Target,
        /// The group.
        group: GroupName,
        /// When set, the receiving node answers [`ClusterBody::Ack`] once applied.
        ack: Option<CommandId>,
    },
    /// Close the target's local connections.
    Close {
        /// Who is closed.
        target: Target,
        /// Connections that stay open.
        except: Vec<ConnectionId>,
        /// Sent to the client in the Close message.
        reason: Option<String>,
        /// When set, the receiving node answers [`ClusterBody::Ack`] once applied.
        ack: Option<CommandId>,
    },
    /// "I applied your command `id`": published by the node that applied it
    /// on the node channel of the command's origin, `to`.
    Ack {
        /// The node that published the command.
        to: NodeId,
        /// The command's id, as the origin numbered it.
        id: CommandId,
    },
    /// A client's answer to a server-to-client invocation another node made
    /// (a client result): published by the node holding the connection on
    /// the node channel of the invoking node, `to`.
    Reply {
        /// The node that invoked the client.
        to: NodeId,
        /// The connection that answered.
        connection: ConnectionId,
        /// The client's Completion as a JSON hub protocol record.
        payload: Bytes,
    },
}

/// The number an origin node gives a command it awaits an answer to; unique
/// per origin node (a counter), never 0 (the codec's "no ack").
pub type CommandId = u64;

impl ClusterBody {
    /// The target the body acts on; `None` for an [`ClusterBody::Ack`] or a
    /// [`ClusterBody::Reply`], which go to a node, not to connections.
    pub fn target(&self) -> Option<&Target> {
        match self {
            ClusterBody::Deliver { target, .. }
            | ClusterBody::AddToGroup { target, .. }
            | ClusterBody::RemoveFromGroup { target, .. }
            | ClusterBody::Close { target, .. } => Some(target),
            ClusterBody::Ack { .. } | ClusterBody::Reply { .. } => None,
        }
    }
}

/// One message between nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterMessage {
    /// The node that published it (never delivered back to it).
    pub origin: NodeId,
    /// The hub it concerns.
    pub hub: HubName,
    /// What to do.
    pub body: ClusterBody,
}

/// What arrives in a node's inbox.
#[derive(Clone, Debug, PartialEq)]
pub enum BackplaneEvent {
    /// A message another node published on a channel this node subscribes to.
    Message(ClusterMessage),
    /// A node stopped heartbeating and its connections were removed from the
    /// keyspace. Every live node receives this once per dead node, so that it
    /// can, for example, mark the removed connections' users offline.
    NodeDown {
        /// The node that died.
        node: NodeId,
        /// The node that swept it: the one place where cluster-wide
        /// consequences (a user going offline) are acted on, exactly once.
        swept_by: NodeId,
        /// The connections it held, as the keyspace recorded them.
        removed: Vec<ConnectionRecord>,
    },
}
