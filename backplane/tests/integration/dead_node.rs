//! A node that stops heartbeating (dropped without any cleanup) is swept by
//! the survivors: within the bound, by exactly one of them, and every survivor
//! learns which connections went.

use std::time::{Duration, Instant};

use hubwire_backplane::{BackplaneEvent, ConnectionRecord, GroupName, HubName, Keyspace, NodeId, RedisNames, UserId};
use hubwire_test_support::{unique_prefix, RedisServer};

use crate::common::{record, redis_config, redis_node, TestNode};

/// The product's bound for noticing a dead node (MISSION: ≤ 15 s). The test
/// runs with a 1 s dead-node timeout, so this is a functional deadline with a
/// wide margin for a loaded machine, not a measurement.
const SWEEP_BOUND: Duration = Duration::from_secs(15);

async fn node_down(node: &mut TestNode) -> (NodeId, Vec<ConnectionRecord>) {
    match node.next_event().await {
        BackplaneEvent::NodeDown { node, mut removed, .. } => {
            removed.sort_by(|a, b| a.id.cmp(&b.id));
            (node, removed)
        }
        other => panic!("expected a dead node, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_is_swept_once_within_the_bound() {
    let server = RedisServer::start();
    let prefix = unique_prefix("dead");
    let mut a = redis_node(&server.url(), &prefix, "a", false).await;
    let mut b = redis_node(&server.url(), &prefix, "b", false).await;
    let dying = redis_node(&server.url(), &prefix, "c", false).await;
    let c = dying.id();
    let mut held = vec![
        record("c-1", &c, "chat", Some("u")),
        record("c-2", &c, "chat", None),
        record("c-3", &c, "rooms", Some("u")),
    ];
    for r in &held {
        dying.backplane.register(r, None).await.expect("register");
    }
    let g = GroupName::from("g");
    dying
        .backplane
        .join_group(&HubName::from("chat"), &g, &"c-1".into())
        .await
        .expect("join");
    let survivor = record("a-1", &a.id(), "chat", Some("u"));
    a.backplane.register(&survivor, None).await.expect("register");

    drop(dying);
    let died = Instant::now();
    let (node, removed) = node_down(&mut a).await;
    let noticed = died.elapsed();
    assert!(noticed <= SWEEP_BOUND, "swept after {noticed:?}");
    held.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!((node, removed), (c.clone(), held.clone()));
    assert_eq!(node_down(&mut b).await, (c.clone(), held));

    let chat = HubName::from("chat");
    assert_eq!(a.backplane.hub_connection_count(&chat).await.expect("count"), 1);
    assert_eq!(
        a.backplane.hub_connection_count(&"rooms".into()).await.expect("count"),
        0
    );
    assert!(b.backplane.group_connections(&chat, &g).await.expect("list").is_empty());
    assert_eq!(
        b.backplane
            .user_connections(&chat, &UserId::from("u"))
            .await
            .expect("list"),
        [survivor]
    );
    assert_eq!(a.backplane.connection(&"c-1".into()).await.expect("lookup"), None);

    let names = RedisNames::new(&prefix);
    let mut con = redis::Client::open(server.url())
        .and_then(|c| c.get_connection())
        .expect("independent client");
    let mut live: Vec<String> = redis::cmd("ZRANGE")
        .arg(names.live_nodes())
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .expect("ZRANGE");
    live.sort();
    assert_eq!(live, ["a", "b"]);
    let leftovers: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*c-*"))
        .query(&mut con)
        .expect("KEYS");
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let dead: bool = redis::cmd("EXISTS")
        .arg(names.dead_nodes())
        .query(&mut con)
        .expect("EXISTS");
    assert!(!dead, "the claim is dropped after the sweep");

    a.expect_quiet().await;
    b.expect_quiet().await;
    assert_eq!(
        a.stats().nodes_swept + b.stats().nodes_swept,
        1,
        "exactly one sweeper acted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_under_its_id_sweeps_what_it_left_behind() {
    let server = RedisServer::start();
    let prefix = unique_prefix("rerun");
    let mut watcher = redis_node(&server.url(), &prefix, "watcher", false).await;
    let first = redis_node(&server.url(), &prefix, "n", false).await;
    let left = record("old-1", &first.id(), "chat", Some("u"));
    first.backplane.register(&left, None).await.expect("register");
    drop(first);

    let config = redis_config(&server.url(), &prefix, "n", false);
    let (second, _inbox) = hubwire_backplane::RedisBackplane::connect(config)
        .await
        .expect("connect again");
    assert_eq!(node_down(&mut watcher).await, (NodeId::from("n"), vec![left]));
    assert_eq!(second.hub_connection_count(&"chat".into()).await.expect("count"), 0);
    watcher.expect_quiet().await;
}
