//! What one node's REST API (as an admin) says about the cluster: counts and
//! listings of the hub, its users and groups, and whether connections exist —
//! the hubwire extensions and Azure's existence checks of `docs/rest-api.md`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::harness::{ensure, node_id, Conn, Nodes, HUB};
use crate::keyspace::ids;

/// `GET path` on node `n`, expecting `status`; the body.
fn get(nodes: &Nodes, n: usize, path: &str, status: u16) -> Result<Value, String> {
    let (got, body) = nodes.rest_get(n, path)?;
    ensure(got == status, || {
        format!("GET {path} on {}: {got} {body}, expected {status}", node_id(n))
    })?;
    Ok(body)
}

/// `Ok` if node `n`'s REST API lists exactly `live` and nothing of `gone`;
/// else the first difference.
pub fn check(nodes: &Nodes, n: usize, live: &[&Conn], gone: &[&Conn]) -> Result<(), String> {
    let base = format!("/api/hubs/{HUB}");
    let on = node_id(n);
    let count = get(nodes, n, &format!("{base}/count"), 200)?;
    ensure(count == json!({ "connections": live.len() }), || {
        format!("hub count on {on}: {count}, expected {}", live.len())
    })?;

    let mut users: BTreeMap<&str, Vec<&Conn>> = BTreeMap::new();
    let mut groups: BTreeMap<&str, Vec<&Conn>> = BTreeMap::new();
    for conn in gone {
        users.entry(&conn.user).or_default();
        for group in &conn.groups {
            groups.entry(group).or_default();
        }
    }
    for conn in live {
        users.entry(&conn.user).or_default().push(conn);
        for group in &conn.groups {
            groups.entry(group).or_default().push(conn);
        }
    }

    for (user, conns) in &users {
        let listed = get(nodes, n, &format!("{base}/users/{user}/connections"), 200)?;
        let listed: BTreeSet<(String, String, String, String)> = listed["value"]
            .as_array()
            .ok_or_else(|| format!("connections of {user} on {on}: {listed}"))?
            .iter()
            .map(|c| {
                let field = |name: &str| c[name].as_str().unwrap_or("?").to_owned();
                (
                    field("connectionId"),
                    field("userId"),
                    field("node"),
                    field("transport"),
                )
            })
            .collect();
        let expected: BTreeSet<(String, String, String, String)> = conns
            .iter()
            .map(|c| (c.id.clone(), c.user.clone(), node_id(c.node), "WebSockets".to_owned()))
            .collect();
        ensure(listed == expected, || {
            format!("connections of {user} on {on}: {listed:?}, expected {expected:?}")
        })?;
        let count = get(nodes, n, &format!("{base}/users/{user}/count"), 200)?;
        ensure(count == json!({ "connections": conns.len() }), || {
            format!("count of {user} on {on}: {count}, expected {}", conns.len())
        })?;
        let exists = if conns.is_empty() { 404 } else { 200 };
        get(nodes, n, &format!("{base}/users/{user}"), exists)?;
    }

    for (group, conns) in &groups {
        let listed = get(nodes, n, &format!("{base}/groups/{group}/connections"), 200)?;
        let expected: Vec<Value> = {
            let mut by_id: Vec<&&Conn> = conns.iter().collect();
            by_id.sort_by(|a, b| a.id.cmp(&b.id));
            by_id
                .into_iter()
                .map(|c| json!({ "connectionId": c.id, "userId": c.user }))
                .collect()
        };
        ensure(listed == json!({ "value": expected, "nextLink": null }), || {
            format!("connections of group {group} on {on}: {listed}, expected {expected:?}")
        })?;
        let per_user = conns.iter().fold(BTreeMap::<&str, usize>::new(), |mut m, c| {
            *m.entry(c.user.as_str()).or_default() += 1;
            m
        });
        let count = get(nodes, n, &format!("{base}/groups/{group}/count"), 200)?;
        let expected_count = json!({ "connections": conns.len(), "users": per_user.len() });
        ensure(count == expected_count, || {
            format!("count of group {group} on {on}: {count}, expected {expected_count}")
        })?;
        let listed = get(nodes, n, &format!("{base}/groups/{group}/users"), 200)?;
        let expected: Vec<Value> = per_user
            .iter()
            .map(|(user, count)| json!({ "userId": user, "connectionCount": count }))
            .collect();
        ensure(listed == json!({ "value": expected }), || {
            format!("users of group {group} on {on}: {listed}, expected {expected:?}")
        })?;
    }

    let mut per_node: BTreeMap<String, u64> = BTreeMap::new();
    for conn in live {
        *per_node.entry(node_id(conn.node)).or_default() += 1;
    }
    let listed = get(nodes, n, &format!("{base}/nodes"), 200)?;
    let listed: BTreeMap<String, u64> = listed["value"]
        .as_array()
        .ok_or_else(|| format!("nodes on {on}: {listed}"))?
        .iter()
        .map(|e| {
            (
                e["node"].as_str().unwrap_or("?").to_owned(),
                e["connections"].as_u64().unwrap_or(0),
            )
        })
        .filter(|(_, count)| *count > 0)
        .collect();
    ensure(listed == per_node, || {
        format!("connections per node on {on}: {listed:?}, expected {per_node:?}")
    })?;

    for id in ids(live.iter().copied()) {
        get(nodes, n, &format!("{base}/connections/{id}"), 200)?;
    }
    for id in ids(gone.iter().copied()) {
        get(nodes, n, &format!("{base}/connections/{id}"), 404)?;
    }
    Ok(())
}
