//! Typing indicators a node holds, in the keyspace so that the node that
//! sweeps it after its death can announce their end: one hash per (hub,
//! node), a field per (conversation, user) (`names::pair`). Written when an indicator starts
//! (not on a refresh) and when it is cleared; taken (read and deleted) by
//! the sweeper.

use fred::prelude::{HashesInterface, KeysInterface};

use super::names::{pair, unpair};
use super::Shared;
use crate::names::{HubName, NodeId, UserId};
use crate::BackplaneError;

impl Shared {
    pub(super) async fn typing_held(
        &self,
        hub: &HubName,
        conversation: &str,
        user: &UserId,
        held: bool,
    ) -> Result<(), BackplaneError> {
        let key = self.names.typing(hub, &self.config.node);
        let field = pair(conversation, user.as_str());
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
        Ok(fields
            .iter()
            .filter_map(|f| unpair(f))
            .map(|(conversation, user)| (conversation.to_owned(), UserId::from(user)))
            .collect())
    }
}
