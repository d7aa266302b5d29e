//! Three nodes on a Redis Cluster of three masters (sharded pub/sub): group,
//! user and connection sends from node 1 reach their recipients on every node
//! exactly once, and nobody else.

use std::time::{Duration, Instant};

use hubwire_test_support::RedisCluster;
use serde_json::json;

use crate::harness::{blocking, ensure, eventually, Invocation, Member, Nodes};

/// Generous bound for deliveries that take milliseconds.
const SOON: Duration = Duration::from_secs(10);
/// How long to keep listening for a duplicate after everything arrived.
const LINGER: Duration = Duration::from_secs(1);
/// Several groups, so that their channels hash to different shards.
const GROUPS: [&str; 6] = ["g0", "g1", "g2", "g3", "g4", "g5"];

/// Every invocation `member` should get: one per group, one to its user, one
/// to its connection; sorted.
fn expected(member: &Member) -> Vec<Invocation> {
    let mut expected: Vec<Invocation> = GROUPS.iter().map(|g| ("Group".to_owned(), vec![json!(g)])).collect();
    expected.push(("User".into(), vec![json!("member")]));
    expected.push(("Direct".into(), vec![json!(member.conn.id)]));
    expected.sort_by_key(|(target, args)| format!("{target}{args:?}"));
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sends_from_one_node_reach_every_node_once_over_a_redis_cluster() {
    let cluster = blocking(|| RedisCluster::start(3));
    let nodes = blocking(|| Nodes::start("redis-cluster", &cluster.url(), true));
    // One user with a connection on each node, and a bystander.
    let mut members = Vec::new();
    for n in 1..=3 {
        members.push(nodes.member(n, "member", &GROUPS).await);
    }
    let bystander = nodes.member(2, "bystander", &[]).await;
    let mut sender = nodes.admin_client(1, "sender").await;

    for group in GROUPS {
        let arguments = vec![json!(group), json!("Group"), json!(group)];
        sender.invoke("SendToGroup", arguments).await.expect("SendToGroup");
    }
    let arguments = vec![json!("member"), json!("User"), json!("member")];
    sender.invoke("SendToUser", arguments).await.expect("SendToUser");
    for member in &members {
        let id = &member.conn.id;
        let arguments = vec![json!(id), json!("Direct"), json!(id)];
        sender
            .invoke("SendToConnection", arguments)
            .await
            .expect("SendToConnection");
    }

    eventually(Instant::now() + SOON, "every member receives its messages", || {
        members.iter().try_for_each(|m| {
            let (got, wanted) = (m.all_received().len(), expected(m).len());
            ensure(got >= wanted, || {
                format!("member on node {}: {got} of {wanted}", m.conn.node)
            })
        })
    })
    .await;
    tokio::time::sleep(LINGER).await;
    for member in &members {
        let mut received = member.all_received();
        received.sort_by_key(|(target, args)| format!("{target}{args:?}"));
        assert_eq!(received, expected(member), "member on node {}", member.conn.node);
        assert!(member.is_open(), "member on node {} disconnected", member.conn.node);
    }
    assert_eq!(bystander.all_received(), [], "the bystander");
    let statuses: Vec<u16> = blocking(|| (1..=3).map(|n| nodes.readyz(n)).collect());
    assert_eq!(statuses, [200, 200, 200], "/readyz");
}
