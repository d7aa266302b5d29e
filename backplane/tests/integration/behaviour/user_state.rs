//! Per-user state held cluster-wide: rate buckets, first / last connection
//! of a user, last seen, cached read positions, room presence (the first
//! and last entry of a user decided atomically, a dead node's entries).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hubwire_backplane::{ConnectionId, Keyspace, PresenceChange, Rate, UserId};

use super::hub;
use crate::common::{record, TestCluster};

const MINUTE: Duration = Duration::from_secs(60);

pub(super) async fn rate_limit_holds_across_nodes(c: TestCluster) {
    let u = UserId::from("u:{1}");
    let mut allowed = 0;
    let mut refused = Vec::new();
    for i in 0..9 {
        let node = &c.nodes[i % 3].backplane;
        match node.take_token(&hub(), &u, "send", 5, MINUTE).await.expect("take") {
            Rate::Allowed => allowed += 1,
            Rate::RetryAfter(wait) => refused.push(wait),
        }
    }
    assert_eq!(allowed, 5, "five tokens in all, whichever node takes them");
    assert_eq!(refused.len(), 4);
    for wait in refused {
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(12),
            "one token refills in 60 s / 5: {wait:?}"
        );
    }
    let take = |i: usize, hub: &str, user: &str, bucket: &'static str, limit: u32| {
        let (hub, user) = (hub.into(), UserId::from(user));
        let node = &c.nodes[i].backplane;
        async move { node.take_token(&hub, &user, bucket, limit, MINUTE).await.expect("take") }
    };
    assert_eq!(
        take(1, "chat", "v", "send", 5).await,
        Rate::Allowed,
        "buckets are per user"
    );
    assert_eq!(
        take(2, "chat", "u:{1}", "typing", 5).await,
        Rate::Allowed,
        "and per bucket"
    );
    assert_eq!(take(0, "rooms", "u:{1}", "send", 5).await, Rate::Allowed, "and per hub");
    assert!(
        matches!(take(0, "chat", "w", "send", 0).await, Rate::RetryAfter(_)),
        "a limit of 0 refuses"
    );
}

pub(super) async fn rate_bucket_refills(c: TestCluster) {
    let u = UserId::from("refill");
    let per = Duration::from_millis(400); // 2 tokens: one every 200 ms
    let mut wait = None;
    for i in 0..50 {
        let node = &c.nodes[i % 3].backplane;
        if let Rate::RetryAfter(w) = node.take_token(&hub(), &u, "send", 2, per).await.expect("take") {
            wait = Some(w);
            break;
        }
    }
    let wait = wait.expect("the bucket empties");
    assert!(wait <= Duration::from_millis(200), "{wait:?}");
    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    let again = c.nodes[1].backplane.take_token(&hub(), &u, "send", 2, per).await;
    assert_eq!(
        again.expect("take"),
        Rate::Allowed,
        "a token came back after the wait it named"
    );
}

pub(super) async fn one_first_and_one_last_connection_under_concurrency(c: TestCluster) {
    let [a, b, third] = [0, 1, 2].map(|i| &c.nodes[i].backplane);
    let rec = |i: usize, id: &str| record(id, &c.nodes[i].id(), "chat", Some("u"));
    let recs = [
        rec(0, "c1"),
        rec(1, "c2"),
        rec(2, "c3"),
        rec(0, "c4"),
        rec(1, "c5"),
        rec(2, "c6"),
    ];
    let (r1, r2, r3, r4, r5, r6) = tokio::join!(
        a.register(&recs[0], None),
        b.register(&recs[1], None),
        third.register(&recs[2], None),
        a.register(&recs[3], None),
        b.register(&recs[4], None),
        third.register(&recs[5], None),
    );
    let mut counts: Vec<usize> = [r1, r2, r3, r4, r5, r6]
        .into_iter()
        .map(|r| r.expect("register").user_connections)
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, [1, 2, 3, 4, 5, 6], "each registration counted atomically");
    let anonymous = a.register(&record("anon", &c.nodes[0].id(), "chat", None), None).await;
    assert_eq!(anonymous.expect("register").user_connections, 0);

    let (u1, u2, u3, u4, u5, u6) = tokio::join!(
        a.unregister(&recs[0].id),
        b.unregister(&recs[1].id),
        third.unregister(&recs[2].id),
        a.unregister(&recs[3].id),
        b.unregister(&recs[4].id),
        third.unregister(&recs[5].id),
    );
    let last: Vec<UserId> = [u1, u2, u3, u4, u5, u6]
        .into_iter()
        .filter_map(|r| r.expect("unregister"))
        .collect();
    assert_eq!(
        last,
        [UserId::from("u")],
        "exactly one unregistration is the user's last"
    );
    assert_eq!(a.unregister(&"c1".into()).await.expect("again"), None);
    assert_eq!(a.unregister(&"anon".into()).await.expect("anonymous"), None);
}

pub(super) async fn last_seen_is_written_when_the_last_connection_goes(c: TestCluster) {
    let [a, b, third] = [0, 1, 2].map(|i| &c.nodes[i].backplane);
    let u = UserId::from("seen:{u}");
    let before = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as u64;
    a.register(&record("s1", &c.nodes[0].id(), "chat", Some("seen:{u}")), None)
        .await
        .expect("register");
    b.register(&record("s2", &c.nodes[1].id(), "chat", Some("seen:{u}")), None)
        .await
        .expect("register");
    assert_eq!(third.last_seen(&hub(), &u).await.expect("read"), None, "never seen yet");
    assert_eq!(a.unregister(&"s1".into()).await.expect("unregister"), None);
    assert_eq!(
        third.last_seen(&hub(), &u).await.expect("read"),
        None,
        "still online through its other connection"
    );
    assert_eq!(b.unregister(&"s2".into()).await.expect("unregister"), Some(u.clone()));
    let seen = third.last_seen(&hub(), &u).await.expect("read").expect("seen");
    // One clock for the cluster (Redis' on Redis); the same machine's here.
    assert!(seen + 1000 >= before, "{seen} vs {before}");
    assert_eq!(
        third.last_seen(&"rooms".into(), &u).await.expect("read"),
        None,
        "per hub"
    );
}

pub(super) async fn read_positions_are_cached_cluster_wide(c: TestCluster) {
    let [a, b, third] = [0, 1, 2].map(|i| &c.nodes[i].backplane);
    let u = UserId::from("reader");
    assert_eq!(b.cached_read_position(&hub(), "conv:1", &u).await.expect("read"), None);
    a.cache_read_position(&hub(), "conv:1", &u, "41|1732000000000")
        .await
        .expect("cache");
    b.cache_read_position(&hub(), "conv:1", &u, "42|1732000000001")
        .await
        .expect("cache");
    assert_eq!(
        third.cached_read_position(&hub(), "conv:1", &u).await.expect("read"),
        Some("42|1732000000001".into())
    );
    assert_eq!(
        third.cached_read_position(&hub(), "conv:2", &u).await.expect("read"),
        None
    );
    assert_eq!(
        third
            .cached_read_position(&hub(), "conv:1", &"other".into())
            .await
            .expect("read"),
        None
    );
}

pub(super) async fn room_presence_is_shared_per_room_and_expires(c: TestCluster) {
    let [a, b, third] = [0, 1, 2].map(|i| &c.nodes[i].backplane);
    let rooms = hubwire_backplane::HubName::from("rooms");
    let long = Duration::from_secs(60);
    let (ann, bob) = (UserId::from("ann:{1}"), UserId::from("bob"));
    assert!(third.room_presence(&rooms, "r:{1}").await.expect("read").is_empty());
    let first = a
        .room_presence_set(&rooms, "r:{1}", &"c1".into(), &ann, "one", long)
        .await
        .expect("set");
    assert_eq!(first, PresenceChange::default(), "nothing there before");
    let other_user = b
        .room_presence_set(&rooms, "r:{1}", &"c2".into(), &bob, "two", long)
        .await
        .expect("set");
    assert_eq!(
        other_user,
        PresenceChange::default(),
        "another user's entry does not count"
    );
    let replaced = b
        .room_presence_set(&rooms, "r:{1}", &"c2".into(), &bob, "two again", long)
        .await
        .expect("replace");
    assert_eq!(replaced.previous.as_deref(), Some("two"));
    assert!(replaced.others.is_empty());
    let elsewhere = a
        .room_presence_set(&rooms, "r2", &"c1".into(), &ann, "elsewhere", long)
        .await
        .expect("set");
    assert_eq!(elsewhere, PresenceChange::default(), "per room");
    let mut seen = third.room_presence(&rooms, "r:{1}").await.expect("read");
    seen.sort();
    assert_eq!(
        seen,
        vec![("c1".into(), "one".into()), ("c2".into(), "two again".into())]
    );
    assert!(
        third.room_presence(&hub(), "r:{1}").await.expect("read").is_empty(),
        "per hub"
    );
    let removed = third
        .room_presence_remove(&rooms, "r:{1}", &"c1".into())
        .await
        .expect("remove");
    assert_eq!(removed.previous.as_deref(), Some("one"), "any node removes any entry");
    assert!(removed.others.is_empty());
    let again = third
        .room_presence_remove(&rooms, "r:{1}", &"c1".into())
        .await
        .expect("remove");
    assert_eq!(again, PresenceChange::default(), "nothing left to remove");
    assert_eq!(
        a.room_presence(&rooms, "r:{1}").await.expect("read"),
        vec![("c2".into(), "two again".into())]
    );
    // A room whose entries nobody refreshes expires.
    b.room_presence_set(&rooms, "r3", &"c9".into(), &bob, "short", Duration::from_millis(100))
        .await
        .expect("set");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !third.room_presence(&rooms, "r3").await.expect("read").is_empty() {
        assert!(std::time::Instant::now() < deadline, "the room never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        a.room_presence(&rooms, "r2").await.expect("read").len(),
        1,
        "other rooms stay"
    );
}

pub(super) async fn one_first_and_one_last_entry_of_a_user_in_a_room_under_concurrency(c: TestCluster) {
    let [a, b, third] = [0, 1, 2].map(|i| &c.nodes[i].backplane);
    let rooms = hubwire_backplane::HubName::from("rooms");
    let long = Duration::from_secs(60);
    let (ann, bob) = (UserId::from("ann"), UserId::from("bob"));
    // Bob is in the room throughout: he never counts for ann.
    third
        .room_presence_set(&rooms, "r", &"bob-1".into(), &bob, "bob", long)
        .await
        .expect("set");
    let ids: [ConnectionId; 3] = ["ann-a".into(), "ann-b".into(), "ann-c".into()];
    for round in 0..20 {
        let (x, y, z) = tokio::join!(
            a.room_presence_set(&rooms, "r", &ids[0], &ann, "from a", long),
            b.room_presence_set(&rooms, "r", &ids[1], &ann, "from b", long),
            third.room_presence_set(&rooms, "r", &ids[2], &ann, "from c", long),
        );
        let sets = [x, y, z].map(|r| r.expect("set"));
        assert!(sets.iter().all(|s| s.previous.is_none()), "round {round}: new entries");
        let mut others: Vec<usize> = sets.iter().map(|s| s.others.len()).collect();
        others.sort_unstable();
        assert_eq!(
            others,
            [0, 1, 2],
            "round {round}: exactly one write found no other entry of ann"
        );

        let (x, y, z) = tokio::join!(
            a.room_presence_remove(&rooms, "r", &ids[0]),
            b.room_presence_remove(&rooms, "r", &ids[1]),
            third.room_presence_remove(&rooms, "r", &ids[2]),
        );
        let removals = [x, y, z].map(|r| r.expect("remove"));
        let mut removed: Vec<String> = removals.iter().filter_map(|r| r.previous.clone()).collect();
        removed.sort();
        assert_eq!(
            removed,
            ["from a", "from b", "from c"],
            "round {round}: each removal took its own entry"
        );
        let mut left: Vec<usize> = removals.iter().map(|r| r.others.len()).collect();
        left.sort_unstable();
        assert_eq!(left, [0, 1, 2], "round {round}: exactly one removal left ann nothing");
        for r in &removals {
            assert!(
                r.others.iter().all(|e| e.starts_with("from ")),
                "only ann's entries: {:?}",
                r.others
            );
        }
    }
    assert_eq!(
        a.room_presence(&rooms, "r").await.expect("read"),
        vec![("bob-1".into(), "bob".into())]
    );
}

pub(super) async fn a_dead_nodes_room_entries_are_taken_by_its_sweeper(c: TestCluster) {
    let [a, b, sweeper] = [0, 1, 2].map(|i| &c.nodes[i].backplane);
    let (dead, alive) = (c.nodes[0].id(), c.nodes[1].id());
    let rooms = hubwire_backplane::HubName::from("rooms");
    let long = Duration::from_secs(60);
    let ann = UserId::from("ann");
    for (room, id) in [("r:{1}", "a1"), ("r2", "a1"), ("r:{1}", "a2"), ("r2", "a3")] {
        a.room_presence_set(&rooms, room, &id.into(), &ann, id, long)
            .await
            .expect("set");
    }
    b.room_presence_set(&rooms, "r:{1}", &"b1".into(), &ann, "b1", long)
        .await
        .expect("set");
    a.room_presence_set(&hub(), "r:{1}", &"chat-1".into(), &ann, "x", long)
        .await
        .expect("set in another hub");
    // An entry removed (by any node) is no longer listed.
    sweeper
        .room_presence_remove(&rooms, "r2", &"a3".into())
        .await
        .expect("remove");

    let mut taken = sweeper.take_rooms_of(&rooms, &dead).await.expect("take");
    taken.sort();
    let expected: Vec<(String, ConnectionId)> = [("r2", "a1"), ("r:{1}", "a1"), ("r:{1}", "a2")]
        .into_iter()
        .map(|(r, id)| (r.to_owned(), id.into()))
        .collect();
    assert_eq!(taken, expected);
    assert!(
        sweeper.take_rooms_of(&rooms, &dead).await.expect("take").is_empty(),
        "taken once"
    );
    assert_eq!(
        sweeper.take_rooms_of(&rooms, &alive).await.expect("take"),
        vec![("r:{1}".to_owned(), ConnectionId::from("b1"))],
        "per node"
    );
    assert_eq!(
        sweeper.take_rooms_of(&hub(), &dead).await.expect("take"),
        vec![("r:{1}".to_owned(), ConnectionId::from("chat-1"))],
        "per hub"
    );
    // Taking the list leaves the entries; the sweeper removes them.
    assert_eq!(sweeper.room_presence(&rooms, "r:{1}").await.expect("read").len(), 3);
    let first = sweeper
        .room_presence_remove(&rooms, "r:{1}", &"a1".into())
        .await
        .expect("remove");
    assert_eq!(first.others.len(), 2, "ann still has a2 and b1 there");
}
