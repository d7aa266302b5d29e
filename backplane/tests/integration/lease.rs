//! Record leases: a node's records count only while its heartbeat renews its
//! lease in the hub. A dead node nobody sweeps frees its users' slots once
//! the lease expires (its room presence entries go with them); a live
//! node's records never expire; a node whose lease
//! was lost writes itself back.

use std::time::Duration;

use hubwire_backplane::{BackplaneError, ConnectionId, GroupName, HubName, Keyspace, NodeId, RedisNames, UserId};
use hubwire_test_support::{unique_prefix, RedisServer};

use crate::common::{connect, eventually, ids, query, record, redis_config, redis_node, redis_node_from, TestNode};

/// A generous bound for "eventually", far above the leases of these tests.
const BOUND: Duration = Duration::from_secs(20);

/// A node whose records outlive its heartbeat by `lease` (the dead-node
/// timeout sets it).
async fn node_with_dead_timeout(server: &RedisServer, prefix: &str, node: &str, dead: Duration) -> TestNode {
    let mut config = redis_config(&server.url(), prefix, node, false);
    config.dead_node_timeout = dead;
    redis_node_from(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_nobody_sweeps_frees_its_users_slots_when_its_lease_expires() {
    let server = RedisServer::start();
    let prefix = unique_prefix("lease-dead");
    let names = RedisNames::new(&prefix);
    let mut con = connect(&server);
    let (hub, user, group) = (HubName::from("chat"), UserId::from("u"), GroupName::from("g"));
    // A 2 s dead-node timeout: a 4 s lease, ample time to see the slot held.
    let dying = node_with_dead_timeout(&server, &prefix, "d", Duration::from_secs(2)).await;
    let d = dying.id();
    let held = record("d-1", &d, "chat", Some("u"));
    dying.backplane.register(&held, Some(1)).await.expect("register");
    dying
        .backplane
        .register(&record("d-2", &d, "chat", None), None)
        .await
        .expect("register");
    dying.backplane.join_group(&hub, &group, &held.id).await.expect("join");
    let long = Duration::from_secs(60);
    dying
        .backplane
        .room_presence_set(&hub, "r:{1}", &held.id, &user, "dying", long)
        .await
        .expect("room entry");
    let lease = names.node_lease(&hub, &d);
    let ttl: i64 = query(&mut con, &["PTTL", &lease]);
    assert!(ttl > 0 && ttl <= 4000, "the lease expires: {ttl}");

    // The node dies without cleanup, and its live entry is lost: no survivor
    // will ever find it to sweep.
    drop(dying);
    let _: i64 = query(&mut con, &["ZREM", &names.live_nodes(), d.as_str()]);

    let mut survivor = redis_node(&server.url(), &prefix, "s", false).await;
    let s = survivor.id();
    let mine = record("s-1", &s, "chat", Some("u"));
    let refused = survivor.backplane.register(&mine, Some(1)).await;
    assert!(
        matches!(refused, Err(BackplaneError::UserLimit { limit: 1 })),
        "the dead node's connection still holds the slot: {refused:?}"
    );

    eventually(BOUND, "the expired lease frees the user's slot", || async {
        match survivor.backplane.register(&mine, Some(1)).await {
            Ok(_) => true,
            Err(BackplaneError::UserLimit { .. }) => false,
            Err(e) => panic!("register: {e}"),
        }
    })
    .await;
    let bp = &survivor.backplane;
    assert_eq!(bp.user_connections(&hub, &user).await.expect("list"), [mine]);
    assert!(bp.group_connections(&hub, &group).await.expect("list").is_empty());
    assert_eq!(bp.hub_connection_count(&hub).await.expect("count"), 1);
    assert_eq!(
        bp.node_connection_counts(&hub).await.expect("counts"),
        [(NodeId::from("s"), 1)]
    );
    assert_eq!(bp.connection(&ConnectionId::from("d-2")).await.expect("lookup"), None);

    let exists: i64 = query(&mut con, &["EXISTS", &lease]);
    assert_eq!(exists, 0, "the lease expired");
    let leftovers: Vec<String> = query(&mut con, &["KEYS", &format!("{prefix}:*d-*")]);
    assert!(leftovers.is_empty(), "the dead node's records are gone: {leftovers:?}");
    let node_conns: i64 = query(&mut con, &["EXISTS", &names.node_conns(&hub, &d)]);
    assert_eq!(node_conns, 0);
    assert!(
        bp.room_presence(&hub, "r:{1}").await.expect("read").is_empty(),
        "its room presence went with its records"
    );
    let node_rooms: i64 = query(&mut con, &["EXISTS", &names.node_rooms(&hub, &d)]);
    assert_eq!(node_rooms, 0);
    let hub_conns: Vec<String> = query(&mut con, &["SMEMBERS", &names.hub_conns(&hub)]);
    assert_eq!(hub_conns, ["s-1"]);

    survivor.expect_quiet().await;
    assert_eq!(survivor.stats().nodes_swept, 0, "no sweep did it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeating_node_keeps_its_records_past_many_leases() {
    let server = RedisServer::start();
    let prefix = unique_prefix("lease-live");
    let names = RedisNames::new(&prefix);
    let mut con = connect(&server);
    let (hub, user) = (HubName::from("chat"), UserId::from("u"));
    let a = redis_node(&server.url(), &prefix, "a", false).await;
    let b = redis_node(&server.url(), &prefix, "b", false).await;
    let held = record("a-1", &a.id(), "chat", Some("u"));
    a.backplane.register(&held, Some(1)).await.expect("register");
    let lease = names.node_lease(&hub, &a.id());
    let ttl: i64 = query(&mut con, &["PTTL", &lease]);
    assert!(ttl > 0, "the lease expires unless renewed: {ttl}");

    // Three leases of the test configuration (1 s dead-node timeout + 2 s
    // sweep lock TTL), checked all along.
    let lease_ttl = Duration::from_secs(3);
    let until = tokio::time::Instant::now() + lease_ttl * 3;
    let mut checks = 0;
    while tokio::time::Instant::now() < until {
        let other = record("b-1", &b.id(), "chat", Some("u"));
        let refused = b.backplane.register(&other, Some(1)).await;
        assert!(
            matches!(refused, Err(BackplaneError::UserLimit { limit: 1 })),
            "the live connection keeps its slot: {refused:?}"
        );
        assert_eq!(
            b.backplane.user_connections(&hub, &user).await.expect("list"),
            std::slice::from_ref(&held)
        );
        assert_eq!(b.backplane.hub_connection_count(&hub).await.expect("count"), 1);
        checks += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(checks > 3);
    let ttl: i64 = query(&mut con, &["PTTL", &lease]);
    assert!(ttl > 0, "renewed by the heartbeat: {ttl}");
    assert_eq!(a.stats().nodes_swept + b.stats().nodes_swept, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_lease_was_lost_writes_itself_back() {
    let server = RedisServer::start();
    let prefix = unique_prefix("lease-lost");
    let names = RedisNames::new(&prefix);
    let mut con = connect(&server);
    let (hub, user, group) = (HubName::from("chat"), UserId::from("u"), GroupName::from("g"));
    let a = redis_node(&server.url(), &prefix, "a", false).await;
    let b = redis_node(&server.url(), &prefix, "b", false).await;
    let held = record("a-1", &a.id(), "chat", Some("u"));
    a.backplane.register(&held, None).await.expect("register");
    a.membership.joined("a-1", "g");
    a.backplane.join_group(&hub, &group, &held.id).await.expect("join");

    // The lease vanishes (as after a long freeze); another node's listing
    // removes a's records on the way.
    let _: i64 = query(&mut con, &["DEL", &names.node_lease(&hub, &a.id())]);
    let _ = b.backplane.user_connections(&hub, &user).await.expect("list");

    eventually(BOUND, "a writes its connection back", || async {
        let users = b.backplane.user_connections(&hub, &user).await.expect("list");
        let members = b.backplane.group_connections(&hub, &group).await.expect("list");
        ids(&users) == ["a-1"] && ids(&members) == ["a-1"]
    })
    .await;
    assert!(a.stats().resyncs >= 1, "through a resync");
    let exists: i64 = query(&mut con, &["EXISTS", &names.node_lease(&hub, &a.id())]);
    assert_eq!(exists, 1, "with a new lease");
}
