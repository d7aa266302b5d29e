//! Identifier newtypes. Each wraps an `Arc<str>` so that cloning one into many
//! maps and messages costs a reference count, not an allocation.

use std::fmt;
use std::sync::Arc;

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Wraps a string.
            pub fn new(value: impl Into<Arc<str>>) -> Self {
                Self(value.into())
            }
            /// The string itself.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }
        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.into())
            }
        }
        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value.into())
            }
        }
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// A node of the cluster (random at start unless configured).
    NodeId
);
name_type!(
    /// A SignalR connection id, as clients and the REST API see it.
    ConnectionId
);
name_type!(
    /// A user id: the `sub` claim of the connection's token.
    UserId
);
name_type!(
    /// A group name, scoped to a hub.
    GroupName
);
name_type!(
    /// A hub name, lower-case (hub names match case-insensitively).
    HubName
);
