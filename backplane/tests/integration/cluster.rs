//! Redis Cluster (three masters started by the test): sharded pub/sub between
//! nodes, and the Lua scripts running in one slot per hub.

use std::time::Duration;

use hubwire_backplane::{Channel, Delivery, GroupName, HubName, Keyspace, MembershipTtl, Target, UserId};
use hubwire_test_support::{unique_prefix, RedisCluster};

use crate::common::{deliver, ids, record, redis_node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_pubsub_and_scripts_work_on_a_cluster() {
    let cluster = tokio::task::block_in_place(|| RedisCluster::start(3));
    let prefix = unique_prefix("cluster");
    let mut a = redis_node(&cluster.url(), &prefix, "a", true).await;
    let mut b = redis_node(&cluster.url(), &prefix, "b", true).await;
    let (hub, user) = (HubName::from("chat"), UserId::from("u"));

    // Keyspace: every script of a hub runs in the hub's slot.
    b.backplane
        .register(&record("b1", &b.id(), "chat", Some("u")), Some(2))
        .await
        .expect("register");
    a.backplane
        .register(&record("a1", &a.id(), "rooms", Some("u")), Some(2))
        .await
        .expect("register");
    a.backplane
        .add_user_to_group(&hub, &user, &"vip".into(), MembershipTtl::Forever)
        .await
        .expect("add");
    let joined = a
        .backplane
        .register(&record("a2", &a.id(), "chat", Some("u")), Some(2))
        .await
        .expect("register");
    assert_eq!(joined.groups, [GroupName::from("vip")]);
    assert!(a
        .backplane
        .register(&record("a3", &a.id(), "chat", Some("u")), Some(2))
        .await
        .is_err());
    assert_eq!(
        ids(&b.backplane.group_connections(&hub, &"vip".into()).await.expect("list")),
        ["a2", "b1"]
    );
    assert_eq!(
        a.backplane
            .connection(&"a1".into())
            .await
            .expect("lookup")
            .map(|r| r.hub),
        Some("rooms".into())
    );
    assert!(b
        .backplane
        .leave_group(&hub, &"vip".into(), &"b1".into())
        .await
        .expect("leave"));

    // Sharded pub/sub: channels spread over the shards, and still meet.
    for i in 0..8 {
        b.backplane
            .subscribe(Channel::Group(hub.clone(), format!("g{i}").into()))
            .await
            .expect("subscribe");
    }
    b.backplane.subscribe(Channel::Node(b.id())).await.expect("subscribe");
    for i in 0..8 {
        let msg = deliver(&a.id(), "chat", Target::Group(format!("g{i}").into()), "sharded");
        a.backplane.publish(msg.clone()).await.expect("spublish");
        assert_eq!(b.next_message().await, msg);
    }
    let direct = deliver(&a.id(), "chat", Target::Connection("b1".into()), "direct");
    a.backplane.publish(direct.clone()).await.expect("spublish to a node");
    assert_eq!(b.next_message().await, direct);
    a.expect_quiet().await;
    b.expect_quiet().await;

    // Record leases: each heartbeat renews a's lease in both hubs' slots, so
    // its records still count after more than a lease (3 s in the tests).
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(b.backplane.hub_connection_count(&hub).await.expect("count"), 2);
    let rooms = HubName::from("rooms");
    assert_eq!(b.backplane.hub_connection_count(&rooms).await.expect("count"), 1);
    assert_eq!(a.stats().resyncs, 0, "no lease was found expired");

    b.backplane.unregister(&"b1".into()).await.expect("unregister");
    assert_eq!(a.backplane.hub_connection_count(&hub).await.expect("count"), 1);
    assert!(a.backplane.is_ready() && b.backplane.is_ready());
}
