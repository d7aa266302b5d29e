//! Membership: the keyspace of connections, users and groups, cluster-wide.

use std::time::Duration;

use hubwire_backplane::{
    BackplaneError, ConnectionId, Delivery, GroupName, HubName, Keyspace, MembershipTtl, NodeId, Registered, UserId,
};

use super::hub;
use crate::common::{ids, record, TestCluster};

pub(super) async fn register_unregister_and_lookup(c: TestCluster) {
    let (a, b) = (&c.nodes[0].backplane, &c.nodes[1].backplane);
    let alice = record("c:1", &c.nodes[0].id(), "chat", Some("alice"));
    let anon = record("c{2}", &c.nodes[1].id(), "chat", None);
    assert_eq!(
        a.register(&alice, Some(5)).await.expect("register"),
        Registered {
            groups: vec![],
            user_connections: 1
        }
    );
    b.register(&anon, Some(5)).await.expect("register anonymous");

    assert_eq!(b.connection(&alice.id).await.expect("lookup"), Some(alice.clone()));
    assert_eq!(
        c.nodes[2].backplane.connection(&anon.id).await.expect("lookup"),
        Some(anon.clone())
    );
    assert_eq!(a.connection(&"c:3".into()).await.expect("lookup"), None);

    a.unregister(&alice.id).await.expect("unregister");
    a.unregister(&alice.id).await.expect("unregister twice");
    assert_eq!(b.connection(&alice.id).await.expect("lookup"), None);
    assert!(a
        .user_connections(&hub(), &"alice".into())
        .await
        .expect("list")
        .is_empty());
    assert_eq!(a.hub_connection_count(&hub()).await.expect("count"), 1);
    assert!(a.is_ready() && b.is_ready());
}

pub(super) async fn per_user_limit_holds_cluster_wide(c: TestCluster) {
    let [a, b, third] = [0, 1, 2].map(|i| &c.nodes[i].backplane);
    let on = |i: usize, id: &str, hub: &str, user: Option<&str>| record(id, &c.nodes[i].id(), hub, user);
    a.register(&on(0, "u-1", "chat", Some("u")), Some(2))
        .await
        .expect("first");
    b.register(&on(1, "u-2", "chat", Some("u")), Some(2))
        .await
        .expect("second");
    match third.register(&on(2, "u-3", "chat", Some("u")), Some(2)).await {
        Err(BackplaneError::UserLimit { limit: 2 }) => {}
        other => panic!("expected the user limit, got {other:?}"),
    }
    assert_eq!(a.connection(&"u-3".into()).await.expect("lookup"), None);
    match third.register(&on(2, "v-1", "chat", Some("v")), Some(0)).await {
        Err(BackplaneError::UserLimit { limit: 0 }) => {}
        other => panic!("expected the user limit of 0, got {other:?}"),
    }
    let other_hub = on(2, "u-r", "rooms", Some("u"));
    third
        .register(&other_hub, Some(2))
        .await
        .expect("other hubs count apart");
    third
        .register(&on(2, "u-4", "chat", Some("u")), None)
        .await
        .expect("no limit asked");
    a.register(&on(0, "anon-1", "chat", None), Some(1))
        .await
        .expect("anonymous");
    a.register(&on(0, "anon-2", "chat", None), Some(1))
        .await
        .expect("anonymous again");

    b.unregister(&"u-2".into()).await.expect("unregister");
    third.unregister(&"u-4".into()).await.expect("unregister");
    third
        .register(&on(2, "u-5", "chat", Some("u")), Some(2))
        .await
        .expect("room again");
}

pub(super) async fn group_join_leave_and_listing(c: TestCluster) {
    let (a, b) = (&c.nodes[0].backplane, &c.nodes[1].backplane);
    let g = GroupName::from("g:1");
    let c1 = record("c1", &c.nodes[0].id(), "chat", Some("u1"));
    let c2 = record("c2", &c.nodes[1].id(), "chat", None);
    a.register(&c1, None).await.expect("register");
    b.register(&c2, None).await.expect("register");
    a.join_group(&hub(), &g, &c1.id).await.expect("join");
    a.join_group(&hub(), &g, &c2.id)
        .await
        .expect("join a remote connection");
    a.join_group(&hub(), &g, &"ghost".into())
        .await
        .expect("join an unknown connection");
    assert_eq!(ids(&b.group_connections(&hub(), &g).await.expect("list")), ["c1", "c2"]);
    assert_eq!(
        b.group_connections(&hub(), &g)
            .await
            .expect("list")
            .iter()
            .find(|r| r.id == c1.id),
        Some(&c1)
    );
    assert!(a
        .group_connections(&HubName::from("rooms"), &g)
        .await
        .expect("list")
        .is_empty());

    assert!(b.leave_group(&hub(), &g, &c1.id).await.expect("leave"));
    assert!(!b.leave_group(&hub(), &g, &c1.id).await.expect("leave again"));
    assert_eq!(ids(&a.group_connections(&hub(), &g).await.expect("list")), ["c2"]);
    b.unregister(&c2.id).await.expect("unregister");
    assert!(a.group_connections(&hub(), &g).await.expect("list").is_empty());
}

pub(super) async fn user_memberships_follow_their_ttl(c: TestCluster) {
    let a = &c.nodes[0].backplane;
    let node = c.nodes[0].id();
    let (u, v) = (UserId::from("u"), UserId::from("v"));
    a.register(&record("u-1", &node, "chat", Some("u")), None)
        .await
        .expect("register");

    let forever = GroupName::from("forever");
    let current = GroupName::from("current");
    let zero = GroupName::from("zero");
    let short = GroupName::from("short");
    a.add_user_to_group(&hub(), &u, &forever, MembershipTtl::Forever)
        .await
        .expect("add");
    a.add_user_to_group(&hub(), &u, &current, MembershipTtl::CurrentConnectionsOnly)
        .await
        .expect("add");
    a.add_user_to_group(&hub(), &u, &zero, MembershipTtl::For(Duration::ZERO))
        .await
        .expect("add");
    a.add_user_to_group(&hub(), &u, &short, MembershipTtl::For(Duration::from_millis(400)))
        .await
        .expect("add");
    for group in [&forever, &current, &zero, &short] {
        assert!(a.user_in_group(&hub(), &u, group).await.expect("in group"), "{group}");
        assert_eq!(
            ids(&a.group_connections(&hub(), group).await.expect("list")),
            ["u-1"],
            "{group}"
        );
    }

    let mut joined = c.nodes[1]
        .backplane
        .register(&record("u-2", &c.nodes[1].id(), "chat", Some("u")), None)
        .await
        .expect("register")
        .groups;
    joined.sort();
    assert_eq!(joined, [forever.clone(), short.clone()]);
    assert_eq!(
        ids(&a.group_connections(&hub(), &short).await.expect("list")),
        ["u-1", "u-2"]
    );
    assert_eq!(
        ids(&a.group_connections(&hub(), &current).await.expect("list")),
        ["u-1"]
    );

    a.add_user_to_group(&hub(), &v, &forever, MembershipTtl::Forever)
        .await
        .expect("add");
    a.add_user_to_group(&hub(), &v, &zero, MembershipTtl::For(Duration::ZERO))
        .await
        .expect("add");
    a.add_user_to_group(&hub(), &v, &short, MembershipTtl::For(Duration::from_millis(400)))
        .await
        .expect("add");
    a.add_user_to_group(&hub(), &v, &current, MembershipTtl::CurrentConnectionsOnly)
        .await
        .expect("add");
    assert!(a.user_in_group(&hub(), &v, &forever).await.expect("in group"));
    assert!(!a.user_in_group(&hub(), &v, &zero).await.expect("in group"));
    assert!(a.user_in_group(&hub(), &v, &short).await.expect("in group"));
    assert!(!a.user_in_group(&hub(), &v, &current).await.expect("in group"));

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!a.user_in_group(&hub(), &v, &short).await.expect("expired"));
    assert!(a.user_in_group(&hub(), &v, &forever).await.expect("forever"));
    let joined = a
        .register(&record("v-1", &node, "chat", Some("v")), None)
        .await
        .expect("register")
        .groups;
    assert_eq!(joined, [forever]);
    assert!(a.user_in_group(&hub(), &u, &short).await.expect("still by connection"));
}

pub(super) async fn remove_user_from_group_and_from_all_groups(c: TestCluster) {
    let a = &c.nodes[0].backplane;
    let b = &c.nodes[1].backplane;
    let u = UserId::from("u");
    let (g1, g2, g3) = (GroupName::from("g1"), GroupName::from("g2"), GroupName::from("g3"));
    let c1 = record("c1", &c.nodes[0].id(), "chat", Some("u"));
    a.register(&c1, None).await.expect("register");
    b.add_user_to_group(&hub(), &u, &g1, MembershipTtl::Forever)
        .await
        .expect("add");
    b.add_user_to_group(&hub(), &u, &g2, MembershipTtl::Forever)
        .await
        .expect("add");
    a.join_group(&hub(), &g3, &c1.id).await.expect("join");

    assert!(b.remove_user_from_group(&hub(), &u, &g1).await.expect("remove"));
    assert!(!b.remove_user_from_group(&hub(), &u, &g1).await.expect("remove again"));
    assert!(!b.user_in_group(&hub(), &u, &g1).await.expect("in group"));
    assert!(a.group_connections(&hub(), &g1).await.expect("list").is_empty());
    assert!(!b
        .remove_user_from_group(&hub(), &UserId::from("nobody"), &g2)
        .await
        .expect("remove nobody"));

    let mut left = b.remove_user_from_all_groups(&hub(), &u).await.expect("remove all");
    left.sort();
    assert_eq!(left, [g2.clone(), g3.clone()]);
    for group in [&g1, &g2, &g3] {
        assert!(!a.user_in_group(&hub(), &u, group).await.expect("in group"), "{group}");
        assert!(
            a.group_connections(&hub(), group).await.expect("list").is_empty(),
            "{group}"
        );
    }
    let joined = b
        .register(&record("c2", &c.nodes[1].id(), "chat", Some("u")), None)
        .await
        .expect("register");
    assert!(joined.groups.is_empty());
    assert!(b
        .remove_user_from_all_groups(&hub(), &u)
        .await
        .expect("remove all again")
        .is_empty());
}

pub(super) async fn counts_span_every_node(c: TestCluster) {
    for (i, node) in c.nodes.iter().enumerate() {
        for j in 0..=i {
            let id = format!("c-{i}-{j}");
            node.backplane
                .register(&record(&id, &node.id(), "chat", Some("u")), None)
                .await
                .expect("register");
        }
        node.backplane
            .register(&record(&format!("r-{i}"), &node.id(), "rooms", Some("u")), None)
            .await
            .expect("register");
    }
    let a = &c.nodes[0].backplane;
    assert_eq!(a.hub_connection_count(&hub()).await.expect("count"), 6);
    assert_eq!(a.hub_connection_count(&"rooms".into()).await.expect("count"), 3);
    assert_eq!(a.hub_connection_count(&"none".into()).await.expect("count"), 0);
    let of_u = c.nodes[1]
        .backplane
        .user_connections(&hub(), &UserId::from("u"))
        .await
        .expect("list");
    assert_eq!(ids(&of_u), ["c-0-0", "c-1-0", "c-1-1", "c-2-0", "c-2-1", "c-2-2"]);
    assert!(of_u
        .iter()
        .filter(|r| r.id.as_str().starts_with("c-2"))
        .all(|r| r.node == c.nodes[2].id()));
    let mut expected: Vec<(NodeId, usize)> = c.nodes.iter().enumerate().map(|(i, n)| (n.id(), i + 1)).collect();
    expected.sort();
    let per_node = c.nodes[2]
        .backplane
        .node_connection_counts(&hub())
        .await
        .expect("per node");
    assert_eq!(per_node, expected, "every live node with its count");
    let rooms = a.node_connection_counts(&"rooms".into()).await.expect("per node");
    assert!(rooms.iter().all(|(_, n)| *n == 1), "{rooms:?}");

    let c00 = ConnectionId::from("c-0-0");
    for g in ["g1", "g2"] {
        a.join_group(&hub(), &GroupName::from(g), &c00).await.expect("join");
    }
    let mut groups = c.nodes[1]
        .backplane
        .connection_groups(&hub(), &c00)
        .await
        .expect("groups");
    groups.sort();
    assert_eq!(groups, [GroupName::from("g1"), GroupName::from("g2")]);
    let elsewhere = a.connection_groups(&"rooms".into(), &c00).await.expect("groups");
    assert!(elsewhere.is_empty(), "another hub's view of the connection");
}
