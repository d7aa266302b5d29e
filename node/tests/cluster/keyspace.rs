//! The shared keyspace read with an independent client (the `redis` crate),
//! by the names `backplane/src/redis/names.rs` documents — spelled out here
//! rather than taken from `RedisNames`, so that a wrong name fails the test.
//!
//! [`Keyspace::check`] says whether the keyspace holds exactly a given set of
//! live connections (hashes, the hub / node / user / group sets, each
//! connection's groups) and nothing of connections that are gone.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::harness::{ensure, node_id, Conn, HUB};

/// An independent connection to the Redis of a test.
pub struct Keyspace {
    con: redis::Connection,
    prefix: String,
}

/// Escapes a name part as `names.rs` does (`%`, `:`, `{`, `}`).
fn escape(part: &str) -> String {
    let mut out = String::new();
    for c in part.chars() {
        match c {
            '%' | ':' | '{' | '}' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The ids of some connections.
pub fn ids<'a>(conns: impl Iterator<Item = &'a Conn>) -> BTreeSet<String> {
    conns.map(|c| c.id.clone()).collect()
}

impl Keyspace {
    /// Connects to `url`; keys are read under `prefix`.
    pub fn open(url: &str, prefix: &str) -> Result<Self, String> {
        let con = redis::Client::open(url)
            .and_then(|c| c.get_connection())
            .map_err(|e| format!("independent Redis client: {e}"))?;
        Ok(Self {
            con,
            prefix: prefix.to_owned(),
        })
    }

    /// `<p>:hub:{diagnostics}:<rest>`.
    fn hub_key(&self, rest: &str) -> String {
        format!("{}:hub:{{{}}}:{rest}", self.prefix, escape(HUB))
    }

    fn query<T: redis::FromRedisValue>(&mut self, args: &[&str]) -> Result<T, String> {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(&mut self.con).map_err(|e| format!("{args:?}: {e}"))
    }

    fn set(&mut self, key: &str) -> Result<BTreeSet<String>, String> {
        self.query(&["SMEMBERS", key])
    }

    fn zset(&mut self, key: &str) -> Result<BTreeSet<String>, String> {
        self.query(&["ZRANGE", key, "0", "-1"])
    }

    /// Nodes with a heartbeat (`<p>:{nodes}:live`).
    pub fn live_nodes(&mut self) -> Result<BTreeSet<String>, String> {
        let key = format!("{}:{{nodes}}:live", self.prefix);
        self.zset(&key)
    }

    /// Nodes being swept (`<p>:{nodes}:dead`).
    pub fn dead_nodes(&mut self) -> Result<BTreeSet<String>, String> {
        let key = format!("{}:{{nodes}}:dead", self.prefix);
        self.zset(&key)
    }

    /// Connections of the hub.
    pub fn hub_conns(&mut self) -> Result<BTreeSet<String>, String> {
        let key = self.hub_key("conns");
        self.set(&key)
    }

    /// A connection's record (empty when it has none).
    pub fn conn(&mut self, id: &str) -> Result<HashMap<String, String>, String> {
        let key = self.hub_key(&format!("conn:{}", escape(id)));
        self.query(&["HGETALL", &key])
    }

    /// A connection's groups.
    pub fn conn_groups(&mut self, id: &str) -> Result<BTreeSet<String>, String> {
        let key = self.hub_key(&format!("conn:{}:groups", escape(id)));
        self.set(&key)
    }

    /// Connections of node `n` in the hub.
    pub fn node_conns(&mut self, n: usize) -> Result<BTreeSet<String>, String> {
        let key = self.hub_key(&format!("node:{}:conns", escape(&node_id(n))));
        self.set(&key)
    }

    /// A user's connections.
    pub fn user_conns(&mut self, user: &str) -> Result<BTreeSet<String>, String> {
        let key = self.hub_key(&format!("user:{}:conns", escape(user)));
        self.set(&key)
    }

    /// A group's connections.
    pub fn group_conns(&mut self, group: &str) -> Result<BTreeSet<String>, String> {
        let key = self.hub_key(&format!("group:{}:conns", escape(group)));
        self.set(&key)
    }

    /// Hubs that had connections (`<p>:hubs`).
    pub fn hubs(&mut self) -> Result<BTreeSet<String>, String> {
        let key = format!("{}:hubs", self.prefix);
        self.set(&key)
    }

    /// `Ok` if the hub's keyspace holds exactly `live` (on nodes 1..=`nodes`)
    /// and nothing of `gone`; else the first difference.
    pub fn check(&mut self, live: &[&Conn], gone: &[&Conn], nodes: usize) -> Result<(), String> {
        let hub_conns = self.hub_conns()?;
        let expected = ids(live.iter().copied());
        ensure(hub_conns == expected, || {
            format!("hub connections {hub_conns:?}, expected {expected:?}")
        })?;
        for conn in live {
            let record = self.conn(&conn.id)?;
            let wanted: HashMap<String, String> = [
                ("node", node_id(conn.node)),
                ("hub", HUB.to_owned()),
                ("user", conn.user.clone()),
                ("transport", "WebSockets".to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            let matches = wanted.iter().all(|(k, v)| record.get(k) == Some(v)) && record.contains_key("since");
            ensure(matches, || format!("record of {} ({}): {record:?}", conn.id, conn.user))?;
            let groups = self.conn_groups(&conn.id)?;
            ensure(groups == conn.groups, || {
                format!(
                    "groups of {} ({}): {groups:?}, expected {:?}",
                    conn.id, conn.user, conn.groups
                )
            })?;
        }
        for conn in gone {
            let record = self.conn(&conn.id)?;
            ensure(record.is_empty(), || {
                format!("record of gone {} ({}) still there: {record:?}", conn.id, conn.user)
            })?;
            let groups = self.conn_groups(&conn.id)?;
            ensure(groups.is_empty(), || {
                format!("groups of gone {} ({}) still there: {groups:?}", conn.id, conn.user)
            })?;
        }
        for n in 1..=nodes {
            let held = self.node_conns(n)?;
            let expected = ids(live.iter().copied().filter(|c| c.node == n));
            ensure(held == expected, || {
                format!("connections of {}: {held:?}, expected {expected:?}", node_id(n))
            })?;
        }
        let mut users: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        let mut groups: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for conn in gone {
            users.entry(&conn.user).or_default();
            for group in &conn.groups {
                groups.entry(group).or_default();
            }
        }
        for conn in live {
            users.entry(&conn.user).or_default().insert(conn.id.clone());
            for group in &conn.groups {
                groups.entry(group).or_default().insert(conn.id.clone());
            }
        }
        for (user, expected) in users {
            let held = self.user_conns(user)?;
            ensure(held == expected, || {
                format!("connections of user {user}: {held:?}, expected {expected:?}")
            })?;
        }
        for (group, expected) in groups {
            let held = self.group_conns(group)?;
            ensure(held == expected, || {
                format!("connections of group {group}: {held:?}, expected {expected:?}")
            })?;
        }
        Ok(())
    }
}
