//! The Lua scripts of the keyspace, and reading their replies.
//!
//! Each script is a `.lua` file in `lua/` with its KEYS / ARGV documented at the
//! top. Per-hub scripts are prefixed at compile time with `lua/prelude.lua`,
//! which builds the hub's key names exactly as [`super::names`] does.
//!
//! # Invariants
//! - Scripts are sent by SHA-1 (`EVALSHA`); a server that does not know one
//!   (a restarted Redis, a new cluster shard) gets it once by `EVAL`, which
//!   also caches it there.
//! - Every key a per-hub script touches carries the hub's hash tag, and its
//!   `KEYS[1]` is one of them, so the script is routed to the hub's slot.

use fred::prelude::{Client, LuaInterface, Value};

use crate::BackplaneError;

/// One script: its source and the SHA-1 Redis knows it by.
pub(super) struct LuaScript {
    name: &'static str,
    source: &'static str,
    sha1: String,
}

impl LuaScript {
    fn new(name: &'static str, source: &'static str) -> Self {
        Self {
            name,
            source,
            sha1: fred::util::sha1_hash(source),
        }
    }

    /// The file name, for errors and logs.
    pub(super) fn name(&self) -> &'static str {
        self.name
    }

    /// Runs the script, loading it first if the server does not have it.
    pub(super) async fn run(
        &self,
        client: &Client,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Value, fred::error::Error> {
        let reply = client.evalsha(self.sha1.as_str(), keys.clone(), args.clone()).await;
        match reply {
            Err(e) if e.details().starts_with("NOSCRIPT") => client.eval(self.source, keys, args).await,
            other => other,
        }
    }
}

macro_rules! hub_script {
    ($file:literal) => {
        LuaScript::new(
            $file,
            concat!(include_str!("lua/prelude.lua"), include_str!(concat!("lua/", $file))),
        )
    };
}

macro_rules! plain_script {
    ($file:literal) => {
        LuaScript::new($file, include_str!(concat!("lua/", $file)))
    };
}

/// Every script of the backplane.
pub(super) struct Scripts {
    pub(super) register: LuaScript,
    pub(super) unregister: LuaScript,
    pub(super) join_group: LuaScript,
    pub(super) leave_group: LuaScript,
    pub(super) add_user_to_group: LuaScript,
    pub(super) remove_user_from_group: LuaScript,
    pub(super) remove_user_from_all_groups: LuaScript,
    pub(super) user_in_group: LuaScript,
    pub(super) records: LuaScript,
    pub(super) node_counts: LuaScript,
    pub(super) take_token: LuaScript,
    pub(super) room_set: LuaScript,
    pub(super) room_remove: LuaScript,
    pub(super) sweep_hub: LuaScript,
    pub(super) heartbeat: LuaScript,
    pub(super) stale_nodes: LuaScript,
    pub(super) claim_node: LuaScript,
    pub(super) unlock: LuaScript,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            register: hub_script!("register.lua"),
            unregister: hub_script!("unregister.lua"),
            join_group: hub_script!("join_group.lua"),
            leave_group: hub_script!("leave_group.lua"),
            add_user_to_group: hub_script!("add_user_to_group.lua"),
            remove_user_from_group: hub_script!("remove_user_from_group.lua"),
            remove_user_from_all_groups: hub_script!("remove_user_from_all_groups.lua"),
            user_in_group: hub_script!("user_in_group.lua"),
            records: hub_script!("records.lua"),
            node_counts: hub_script!("node_counts.lua"),
            take_token: hub_script!("take_token.lua"),
            room_set: hub_script!("room_set.lua"),
            room_remove: hub_script!("room_remove.lua"),
            sweep_hub: hub_script!("sweep_hub.lua"),
            heartbeat: plain_script!("heartbeat.lua"),
            stale_nodes: plain_script!("stale_nodes.lua"),
            claim_node: plain_script!("claim_node.lua"),
            unlock: plain_script!("unlock.lua"),
        }
    }
}

/// A reply the scripts never produce: a bug or a foreign writer.
pub(super) fn unexpected(what: &str, reply: &Value) -> BackplaneError {
    BackplaneError::Unavailable(format!("unexpected reply to {what}: {reply:?}"))
}

/// An integer reply.
pub(super) fn int(what: &str, reply: Value) -> Result<i64, BackplaneError> {
    match reply {
        Value::Integer(i) => Ok(i),
        other => Err(unexpected(what, &other)),
    }
}

/// An array reply, element by element; `Null` for an empty array (RESP2 gives
/// no way to tell them apart in Lua replies).
pub(super) fn array(what: &str, reply: Value) -> Result<Vec<Value>, BackplaneError> {
    match reply {
        Value::Array(items) => Ok(items),
        Value::Null => Ok(Vec::new()),
        other => Err(unexpected(what, &other)),
    }
}

/// A string element.
pub(super) fn text(what: &str, value: Value) -> Result<String, BackplaneError> {
    match value {
        Value::String(s) => Ok(s.to_string()),
        Value::Bytes(b) => String::from_utf8(b.to_vec())
            .map_err(|_| BackplaneError::Unavailable(format!("{what}: a name is not UTF-8"))),
        Value::Integer(i) => Ok(i.to_string()),
        other => Err(unexpected(what, &other)),
    }
}

/// A string element that may be nil.
pub(super) fn opt_text(what: &str, value: Value) -> Result<Option<String>, BackplaneError> {
    match value {
        Value::Null => Ok(None),
        other => text(what, other).map(Some),
    }
}

/// An array of strings.
pub(super) fn texts(what: &str, reply: Value) -> Result<Vec<String>, BackplaneError> {
    array(what, reply)?.into_iter().map(|v| text(what, v)).collect()
}
