//! Typing indicators a node holds, in the keyspace so that the node that
//! sweeps it after its death can announce their end: one hash per (hub,
//! node), a field per (conversation, user). Written when an indicator starts
//! (not on a refresh) and when it is cleared; taken (read and deleted) by
//! the sweeper.

use fred::prelude::{HashesInterface, KeysInterface};

use super::Shared;
use crate::names::{HubName, NodeId, UserId};
use crate::BackplaneError;

/// The hash field of (conversation, user): the conversation's length, `:`,
/// the conversation, the user (both may hold any character).
fn field(conversation: &str, user: &UserId) -> String {
    format!("{}:{conversation}{}", conversation.len(), user.as_str())
}

fn unfield(field: &str) -> Option<(String, UserId)> {
    let (len, rest) = field.split_once(':')?;
    let len: usize = len.parse().ok()?;
    let (conversation, user) = (rest.get(..len)?, rest.get(len..)?);
    Some((conversation.to_owned(), UserId::from(user)))
}

impl Shared {
    pub(super) async fn typing_held(
        &self,
        hub: &HubName,
        conversation: &str,
        user: &UserId,
        held: bool,
    ) -> Result<(), BackplaneError> {
        let key = self.names.typing(hub, &self.config.node);
        let field = field(conversation, user);
        if held {
            let set = self.client.hset::<(), _, _>(key, (field, "1"));
            self.call("HSET typing", set).await
        } else {
            let del = self.client.hdel::<(), _, _>(key, field);
            self.call("HDEL typing", del).await
        }
    }

    pub(super) async fn take_typing_of(
        &self,
        hub: &HubName,
        node: &NodeId,
    ) -> Result<Vec<(String, UserId)>, BackplaneError> {
        let key = self.names.typing(hub, node);
        let fields = self.client.hkeys::<Vec<String>, _>(&key);
        let fields = self.call("HKEYS typing", fields).await?;
        // The node is dead: nothing adds to its hash meanwhile.
        let del = self.client.del::<(), _>(&key);
        self.call("DEL typing", del).await?;
        Ok(fields.iter().filter_map(|f| unfield(f)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_holds_any_conversation_and_user() {
        for (c, u) in [("c1", "ann"), ("a:b", "1:x"), ("", "u"), ("ü:€", "ö")] {
            let user = UserId::from(u);
            assert_eq!(unfield(&field(c, &user)), Some((c.to_owned(), user)));
        }
        assert_eq!(unfield("9:short"), None);
    }
}
