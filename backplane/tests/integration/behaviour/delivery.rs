//! Delivery: publishes reach exactly the other nodes subscribed to their
//! channel, once, never the origin.

use hubwire_backplane::{Channel, ClusterBody, ClusterMessage, Delivery, GroupName, HubName, Keyspace, Target, UserId};

use super::hub;
use crate::common::{deliver, record, TestCluster};

pub(super) async fn publish_to_all_reaches_each_subscribed_other_node_once(mut c: TestCluster) {
    for node in &c.nodes[..2] {
        node.subscribe(Channel::All(hub())).await;
    }
    c.nodes[2].subscribe(Channel::All(HubName::from("other"))).await;
    let msg = deliver(&c.nodes[0].id(), "chat", Target::All, "hello");
    c.nodes[0].publish(msg.clone()).await;

    assert_eq!(c.nodes[1].next_message().await, msg);
    for node in &mut c.nodes {
        node.expect_quiet().await;
    }
}

pub(super) async fn publish_to_group_reaches_only_its_subscribers(mut c: TestCluster) {
    let group = GroupName::from("room:1 {a}");
    for node in &c.nodes {
        node.subscribe(Channel::Group(hub(), group.clone())).await;
    }
    let other = Channel::Group(hub(), GroupName::from("room"));
    c.nodes[2].unsubscribe(Channel::Group(hub(), group.clone())).await;
    c.nodes[2].subscribe(other).await;
    tokio::time::sleep(c.unsubscribe_settle()).await;

    let msg = deliver(&c.nodes[0].id(), "chat", Target::Group(group), "to the room");
    c.nodes[0].publish(msg.clone()).await;
    assert_eq!(c.nodes[1].next_message().await, msg);
    for node in &mut c.nodes {
        node.expect_quiet().await;
    }
}

pub(super) async fn publish_to_user_reaches_only_its_subscribers(mut c: TestCluster) {
    let alice = UserId::from("alice:x");
    c.nodes[1].subscribe(Channel::User(hub(), alice.clone())).await;
    c.nodes[2].subscribe(Channel::User(hub(), UserId::from("alice"))).await;
    c.nodes[0].subscribe(Channel::User(hub(), alice.clone())).await;

    let msg = ClusterMessage {
        origin: c.nodes[0].id(),
        hub: hub(),
        body: ClusterBody::Close {
            target: Target::User(alice),
            except: Vec::new(),
            reason: Some("bye".into()),
            ack: Some(7),
        },
    };
    c.nodes[0].publish(msg.clone()).await;
    assert_eq!(c.nodes[1].next_message().await, msg);
    for node in &mut c.nodes {
        node.expect_quiet().await;
    }
}

/// A subscribe returns once the channel is subscribed: a message published by
/// another node at once, on a channel nobody had, arrives. (fred resolves a
/// Redis `SUBSCRIBE` when it is written; without waiting for Redis to apply
/// it, some of these publishes were lost, more often on a loaded machine.)
pub(super) async fn a_publish_right_after_a_subscribe_returns_is_delivered(mut c: TestCluster) {
    const ROUNDS: usize = 300;
    let origin = c.nodes[0].id();
    for round in 0..ROUNDS {
        let group = GroupName::from(format!("fresh-{round}"));
        c.nodes[1].subscribe(Channel::Group(hub(), group.clone())).await;
        let msg = deliver(&origin, "chat", Target::Group(group), "at once");
        c.nodes[0].publish(msg.clone()).await;
        assert_eq!(c.nodes[1].next_message().await, msg, "round {round}");
    }
    c.nodes[1].expect_quiet().await;
}

pub(super) async fn publish_to_connection_reaches_only_the_node_holding_it(mut c: TestCluster) {
    for node in &c.nodes {
        node.subscribe(Channel::Node(node.id())).await;
    }
    let held_by_1 = record("c-1", &c.nodes[1].id(), "chat", Some("bob"));
    let held_by_0 = record("c-0", &c.nodes[0].id(), "chat", None);
    c.nodes[1].backplane.register(&held_by_1, None).await.expect("register");
    c.nodes[0].backplane.register(&held_by_0, None).await.expect("register");

    let to_1 = ClusterMessage {
        origin: c.nodes[0].id(),
        hub: hub(),
        body: ClusterBody::AddToGroup {
            target: Target::Connection(held_by_1.id.clone()),
            group: "g".into(),
            ack: Some(1),
        },
    };
    c.nodes[0].publish(to_1.clone()).await;
    assert_eq!(c.nodes[1].next_message().await, to_1);

    // The answer goes to the node channel of the command's origin only.
    let ack = ClusterMessage {
        origin: c.nodes[1].id(),
        hub: hub(),
        body: ClusterBody::Ack {
            to: c.nodes[0].id(),
            id: 1,
        },
    };
    c.nodes[1].publish(ack.clone()).await;
    assert_eq!(c.nodes[0].next_message().await, ack);

    let origin = c.nodes[0].id();
    let own = deliver(&origin, "chat", Target::Connection(held_by_0.id.clone()), "to itself");
    c.nodes[0]
        .backplane
        .publish(own)
        .await
        .expect("publish to own connection");
    let unknown = deliver(&origin, "chat", Target::Connection("nobody".into()), "lost");
    c.nodes[0]
        .backplane
        .publish(unknown)
        .await
        .expect("publish to unknown connection");
    let wrong_hub = deliver(&origin, "rooms", Target::Connection(held_by_1.id.clone()), "wrong hub");
    c.nodes[0]
        .backplane
        .publish(wrong_hub)
        .await
        .expect("publish to another hub");
    for node in &mut c.nodes {
        node.expect_quiet().await;
    }
}

pub(super) async fn unsubscribe_stops_delivery(mut c: TestCluster) {
    let g = GroupName::from("g");
    let left = Channel::Group(hub(), g.clone());
    let kept = Channel::Group(hub(), GroupName::from("kept"));
    let b = &c.nodes[1].backplane;
    b.subscribe(left.clone()).await.expect("subscribe");
    b.subscribe(kept.clone()).await.expect("subscribe");
    b.unsubscribe(left).await.expect("unsubscribe");
    b.unsubscribe(kept.clone()).await.expect("unsubscribe");
    b.subscribe(kept).await.expect("subscribe again within the delay");
    tokio::time::sleep(c.unsubscribe_settle()).await;

    let origin = c.nodes[0].id();
    c.nodes[0]
        .publish(deliver(&origin, "chat", Target::Group(g), "gone"))
        .await;
    let still = deliver(&origin, "chat", Target::Group("kept".into()), "kept");
    c.nodes[0].publish(still.clone()).await;
    assert_eq!(c.nodes[1].next_message().await, still);
    c.nodes[1].expect_quiet().await;
}

pub(super) async fn shutdown_leaves_the_cluster(mut c: TestCluster) {
    let b_id = c.nodes[1].id();
    c.nodes[1]
        .backplane
        .register(&record("b-1", &b_id, "chat", Some("u")), None)
        .await
        .expect("register");
    c.nodes[1]
        .backplane
        .join_group(&hub(), &"g".into(), &"b-1".into())
        .await
        .expect("join");
    c.nodes[1].subscribe(Channel::All(hub())).await;
    c.nodes[1].backplane.shutdown().await.expect("shutdown");

    let a = &c.nodes[0].backplane;
    assert_eq!(a.connection(&"b-1".into()).await.expect("lookup"), None);
    assert_eq!(a.hub_connection_count(&hub()).await.expect("count"), 0);
    assert!(a.group_connections(&hub(), &"g".into()).await.expect("list").is_empty());
    assert!(!c.nodes[1].backplane.is_ready() || c.server.is_none());
    a.publish(deliver(&c.nodes[0].id(), "chat", Target::All, "after"))
        .await
        .expect("publish");
    c.nodes[1].expect_quiet().await;
}
