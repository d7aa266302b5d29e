//! Every Redis key and channel name of the backplane, built in one place.
//!
//! In the table `<p>` is the configured prefix and `<hub>`, `<c>` (connection),
//! `<n>` (node), `<u>` (user), `<g>` (group) are escaped name parts; braces are
//! literal Redis Cluster hash tags.
//!
//! | name | type | TTL | what |
//! |---|---|---|---|
//! | `<p>:{nodes}:live` | zset node → last heartbeat (ms, Redis clock) | none | liveness |
//! | `<p>:{nodes}:dead` | zset node → when a sweeper claimed it (ms) | none | sweeps under way |
//! | `<p>:sweep:<n>` | string: the sweeping node | `PX` lock TTL | one sweeper per dead node |
//! | `<p>:hubs` | set of hub names | none | which hubs a sweep or a lookup visits |
//! | `<p>:hub:{<hub>}:conns` | set of connection ids | none | every connection of a hub |
//! | `<p>:hub:{<hub>}:conn:<c>` | hash `node`, `hub`, `user` (absent: anonymous), `transport`, `since` (ms) | none; counts while its node's lease lives | where a connection lives |
//! | `<p>:hub:{<hub>}:conn:<c>:groups` | set of group names | none | what to leave on disconnect |
//! | `<p>:hub:{<hub>}:node:<n>:conns` | set of connection ids | none | what to sweep when `n` dies; per-node counts |
//! | `<p>:hub:{<hub>}:node:<n>:lease` | string: the node id | `PX` record lease (`dead_node_timeout` + sweep lock TTL), renewed by every heartbeat | `n`'s records in the hub count while it exists |
//! | `<p>:hub:{<hub>}:user:<u>:conns` | set of connection ids | none | a user's connections, limit |
//! | `<p>:hub:{<hub>}:user:<u>:groups` | zset group → expiry (ms, `+inf` = forever) | `PEXPIREAT` latest expiry, none if one is forever | persistent user memberships |
//! | `<p>:hub:{<hub>}:group:<g>:conns` | set of connection ids | none | a group's connections |
//! | `<p>:hub:{<hub>}:user:<u>:seen` | string: Unix ms | `PX` 30 days, rewritten | when the user's last connection closed |
//! | `<p>:hub:{<hub>}:user:<u>:rate:<b>` | hash `tokens` (float), `at` (ms, Redis clock) | `PX` until the bucket is full again | rate bucket `b` (`take_token.lua`) |
//! | `<p>:hub:{<hub>}:conv:<c>:read:<u>` | string: the node's encoding of a read position | `PX` 30 days, rewritten | cached read position |
//! | `<p>:hub:{<hub>}:node:<n>:typing` | hash [`pair`]`(conversation, user)` → `1` | none | typing indicators `n` holds, for its sweeper |
//! | `<p>:hub:{<hub>}:room:<r>` | hash connection → [`pair`]`(node, pair(user, entry))` | `PX` presence TTL, rewritten | presence entries of a room (`rooms.rs`) |
//! | `<p>:hub:{<hub>}:node:<n>:rooms` | set of [`pair`]`(room, connection)` | `PX` at least the presence TTL, rewritten | the rooms `n`'s connections have entries in, for its sweeper |
//! | `<p>:hub:<hub>:all` | channel | | sends to a whole hub |
//! | `<p>:hub:<hub>:group:<g>` | channel | | sends and commands for a group |
//! | `<p>:hub:<hub>:user:<u>` | channel | | sends and commands for a user |
//! | `<p>:node:<n>` | channel | | anything for the connections of one node |
//! | `<p>:events` | channel | | cluster events (a node died) |
//!
//! Sets and zsets vanish when their last member leaves, and a node's lease in
//! a hub goes with its last connection there, so a connection that
//! unregisters leaves no key behind but its user's last-seen time (which
//! expires). Rate buckets expire once full, read positions after 30 days.
//!
//! # Record leases
//! A connection's records (its hash, its membership in the sets above) count
//! only while its node's lease in the hub exists. The node sets the lease when
//! it registers a connection and renews it on every heartbeat: one `PEXPIRE`
//! per hub, whatever the number of connections. A node that dies without
//! being swept (no survivor, a lost live entry) thus stops holding its users'
//! slots once the lease expires: every script that meets a record of a node
//! without lease removes all that node's connections in the hub, as a sweep
//! would (without the `NodeDown` event, which only a sweep sends). The lease
//! outlives the dead-node timeout by a sweep lock TTL, so a survivor normally
//! sweeps first.
//!
//! # Invariants
//! - Escaping is injective: `%`, `:`, `{` and `}` in a name part become `%25`,
//!   `%3A`, `%7B`, `%7D`, so a part never contains a separator or a brace and a
//!   group named `a:b` cannot collide with anything else.
//! - The second segment (`hub`, `node`, `{nodes}`, `sweep`, `hubs`, `events`) is
//!   a literal that tells the families apart.
//! - Every key of a hub carries the hub as hash tag, so every Lua script (which
//!   only touches one hub) runs in one slot of a Redis Cluster. The price: one
//!   hub's keyspace lives on one shard. Channels carry no hash tag, so sharded
//!   pub/sub spreads them over every shard.
//! - `lua/prelude.lua` builds the per-hub names inside scripts and mirrors this
//!   module exactly; the keyspace tests check both agree.

use std::fmt::Write as _;

use crate::message::Channel;
use crate::names::{ConnectionId, GroupName, HubName, NodeId, UserId};

/// Two texts in one, either of which may hold any character: the first's
/// length in bytes, `:`, the first, the second (`lua/prelude.lua` has the
/// same `pair` and `unpair`).
pub fn pair(first: &str, second: &str) -> String {
    format!("{}:{first}{second}", first.len())
}

/// The two texts of a [`pair`], or `None` for anything else.
pub fn unpair(both: &str) -> Option<(&str, &str)> {
    let (len, rest) = both.split_once(':')?;
    let len: usize = len.parse().ok()?;
    Some((rest.get(..len)?, rest.get(len..)?))
}

/// Builds the names of one prefix.
#[derive(Clone, Debug)]
pub struct RedisNames {
    prefix: String,
}

/// Escapes one user-controlled name part (see the module invariants).
pub fn escape(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for c in part.chars() {
        match c {
            '%' | ':' | '{' | '}' => {
                // Writing to a String cannot fail.
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

impl RedisNames {
    /// Names under `prefix`, which must not contain `{` or `}` (checked by the
    /// configuration).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<p>:{nodes}:live`: zset node → last heartbeat.
    pub fn live_nodes(&self) -> String {
        format!("{}:{{nodes}}:live", self.prefix)
    }

    /// `<p>:{nodes}:dead`: zset node → when its sweep was claimed.
    pub fn dead_nodes(&self) -> String {
        format!("{}:{{nodes}}:dead", self.prefix)
    }

    /// `<p>:sweep:<n>`: the lock held while `node` is swept.
    pub fn sweep_lock(&self, node: &NodeId) -> String {
        format!("{}:sweep:{}", self.prefix, escape(node.as_str()))
    }

    /// `<p>:hubs`: set of hubs that ever had a connection.
    pub fn hubs(&self) -> String {
        format!("{}:hubs", self.prefix)
    }

    /// `<p>:hub:{<hub>}:`: what every key of a hub starts with (the Lua
    /// scripts' `ARGV[1]`).
    pub fn hub_base(&self, hub: &HubName) -> String {
        format!("{}:hub:{{{}}}:", self.prefix, escape(hub.as_str()))
    }

    /// `<p>:hub:{<hub>}:conns`: set of the hub's connections.
    pub fn hub_conns(&self, hub: &HubName) -> String {
        format!("{}conns", self.hub_base(hub))
    }

    /// `<p>:hub:{<hub>}:conn:<c>`: hash, the connection's record.
    pub fn conn(&self, hub: &HubName, id: &ConnectionId) -> String {
        format!("{}conn:{}", self.hub_base(hub), escape(id.as_str()))
    }

    /// `<p>:hub:{<hub>}:conn:<c>:groups`: set of the connection's groups.
    pub fn conn_groups(&self, hub: &HubName, id: &ConnectionId) -> String {
        format!("{}conn:{}:groups", self.hub_base(hub), escape(id.as_str()))
    }

    /// `<p>:hub:{<hub>}:node:<n>:conns`: set of a node's connections in the hub.
    pub fn node_conns(&self, hub: &HubName, node: &NodeId) -> String {
        format!("{}node:{}:conns", self.hub_base(hub), escape(node.as_str()))
    }

    /// `<p>:hub:{<hub>}:node:<n>:lease`: while it exists, `node`'s records in
    /// the hub count (see the module's record leases).
    pub fn node_lease(&self, hub: &HubName, node: &NodeId) -> String {
        format!("{}node:{}:lease", self.hub_base(hub), escape(node.as_str()))
    }

    /// `<p>:hub:{<hub>}:user:<u>:conns`: set of a user's connections.
    pub fn user_conns(&self, hub: &HubName, user: &UserId) -> String {
        format!("{}user:{}:conns", self.hub_base(hub), escape(user.as_str()))
    }

    /// `<p>:hub:{<hub>}:user:<u>:groups`: zset of a user's persistent groups.
    pub fn user_groups(&self, hub: &HubName, user: &UserId) -> String {
        format!("{}user:{}:groups", self.hub_base(hub), escape(user.as_str()))
    }

    /// `<p>:hub:{<hub>}:group:<g>:conns`: set of a group's connections.
    pub fn group_conns(&self, hub: &HubName, group: &GroupName) -> String {
        format!("{}group:{}:conns", self.hub_base(hub), escape(group.as_str()))
    }

    /// `<p>:hub:{<hub>}:user:<u>:seen`: when the user's last connection closed.
    pub fn last_seen(&self, hub: &HubName, user: &UserId) -> String {
        format!("{}user:{}:seen", self.hub_base(hub), escape(user.as_str()))
    }

    /// `<p>:hub:{<hub>}:user:<u>:rate:<b>`: hash, a rate bucket of the user.
    pub fn rate(&self, hub: &HubName, user: &UserId, bucket: &str) -> String {
        format!(
            "{}user:{}:rate:{}",
            self.hub_base(hub),
            escape(user.as_str()),
            escape(bucket)
        )
    }

    /// `<p>:hub:{<hub>}:conv:<c>:read:<u>`: a cached read position.
    pub fn read_position(&self, hub: &HubName, conversation: &str, user: &UserId) -> String {
        format!(
            "{}conv:{}:read:{}",
            self.hub_base(hub),
            escape(conversation),
            escape(user.as_str())
        )
    }

    /// `<p>:hub:{<hub>}:node:<n>:typing`: hash, the typing indicators node
    /// `n` holds (see `typing.rs`).
    pub fn typing(&self, hub: &HubName, node: &NodeId) -> String {
        format!("{}node:{}:typing", self.hub_base(hub), escape(node.as_str()))
    }

    /// `<p>:hub:{<hub>}:room:<room>`: hash, the presence entries of a room
    /// of the rooms kind, a field per connection (see `rooms.rs`).
    pub fn room(&self, hub: &HubName, room: &str) -> String {
        format!("{}room:{}", self.hub_base(hub), escape(room))
    }

    /// `<p>:hub:{<hub>}:node:<n>:rooms`: set, the (room, connection) pairs
    /// of node `n`'s presence entries (see `rooms.rs`).
    pub fn node_rooms(&self, hub: &HubName, node: &NodeId) -> String {
        format!("{}node:{}:rooms", self.hub_base(hub), escape(node.as_str()))
    }

    /// The pub/sub channel of a subscription.
    pub fn channel(&self, channel: &Channel) -> String {
        let p = &self.prefix;
        match channel {
            Channel::All(hub) => format!("{p}:hub:{}:all", escape(hub.as_str())),
            Channel::Group(hub, g) => format!("{p}:hub:{}:group:{}", escape(hub.as_str()), escape(g.as_str())),
            Channel::User(hub, u) => format!("{p}:hub:{}:user:{}", escape(hub.as_str()), escape(u.as_str())),
            Channel::Node(node) => format!("{p}:node:{}", escape(node.as_str())),
        }
    }

    /// `<p>:events`: the channel of cluster events.
    pub fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_separators_and_braces_out_of_parts() {
        assert_eq!(escape("plain-name_1"), "plain-name_1");
        assert_eq!(escape("a:b"), "a%3Ab");
        assert_eq!(escape("{x}%"), "%7Bx%7D%25");
        assert_eq!(escape("é:ü"), "é%3Aü");
    }

    #[test]
    fn a_pair_holds_any_two_texts() {
        for (a, b) in [("c1", "ann"), ("a:b", "1:x"), ("", "u"), ("ü:€", "ö"), ("x", "")] {
            assert_eq!(unpair(&pair(a, b)), Some((a, b)));
        }
        assert_eq!(unpair("9:short"), None);
        assert_eq!(unpair("x:y"), None);
    }

    #[test]
    fn escaping_is_injective_on_tricky_names() {
        let parts = ["a:b", "a%3Ab", "a", "b", "a:", ":b", "%", "%25", "{a}", ""];
        let escaped: std::collections::HashSet<String> = parts.iter().map(|p| escape(p)).collect();
        assert_eq!(escaped.len(), parts.len());
    }

    #[test]
    fn group_named_like_a_key_suffix_does_not_collide() {
        let names = RedisNames::new("hw");
        let hub = HubName::from("chat");
        let tricky = names.group_conns(&hub, &GroupName::from("x:conns"));
        let plain = names.group_conns(&hub, &GroupName::from("x"));
        assert_ne!(tricky, plain);
        assert_eq!(tricky, "hw:hub:{chat}:group:x%3Aconns:conns");
    }

    #[test]
    fn keys_of_a_hub_share_its_hash_tag() {
        let names = RedisNames::new("hw");
        let hub = HubName::from("we{ir}d");
        let keys = [
            names.hub_conns(&hub),
            names.conn(&hub, &ConnectionId::from("c")),
            names.user_groups(&hub, &UserId::from("u}{")),
            names.group_conns(&hub, &GroupName::from("{g}")),
        ];
        for key in keys {
            let open = key.find('{').map(|i| i + 1);
            let tag = open.and_then(|i| key[i..].find('}').map(|j| &key[i..i + j]));
            assert_eq!(tag, Some("we%7Bir%7Dd"), "{key}");
        }
    }

    #[test]
    fn channels_are_distinct_per_kind() {
        let names = RedisNames::new("hw");
        let hub = HubName::from("node");
        let all = names.channel(&Channel::All(hub.clone()));
        let node = names.channel(&Channel::Node(NodeId::from("all")));
        assert_ne!(all, node);
        assert_eq!(all, "hw:hub:node:all");
        assert_eq!(node, "hw:node:all");
        assert_eq!(
            names.channel(&Channel::Group(hub.clone(), GroupName::from("a:b"))),
            "hw:hub:node:group:a%3Ab"
        );
        assert_eq!(
            names.channel(&Channel::User(hub, UserId::from("u"))),
            "hw:hub:node:user:u"
        );
    }
}
