//! A node dies (SIGKILL) while a publisher on another node sends to a group
//! with members on every node: the survivors sweep its connections out of the
//! keyspace and the REST listings, announce its user's last connection gone,
//! and their own members miss nothing.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hubwire_test_support::RedisServer;

use crate::harness::{blocking, ensure, eventually, exactly_in_order, node_id, Nodes, Publisher};
use crate::keyspace::Keyspace;
use crate::rest;

/// What the mission promises: a dead node's connections are gone within 15 s.
const SWEPT_WITHIN: Duration = Duration::from_secs(15);
/// Generous bound for things that take milliseconds (no measurement).
const SOON: Duration = Duration::from_secs(10);
/// Messages each member must see before and after the kill: the publisher
/// sends about 40 a second, so this is well under a second of traffic.
const SOME_MESSAGES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_leaves_the_cluster_and_survivors_miss_nothing() {
    let redis = blocking(RedisServer::start);
    let mut nodes = blocking(|| Nodes::start("node-death", &redis.url(), false));
    let mut keyspace = blocking(|| Keyspace::open(&redis.url(), &nodes.prefix)).expect("keyspace");

    // alice (node 1) and bob (node 2) survive; carol's only connection is on
    // node 3; `shared` has one connection on node 2 and one on node 3.
    let alice = nodes.member(1, "alice", &["g"]).await;
    let bob = nodes.member(2, "bob", &["g"]).await;
    let shared2 = nodes.member(2, "shared", &["g"]).await;
    let carol = nodes.member(3, "carol", &["g"]).await;
    let shared3 = nodes.member(3, "shared", &["g"]).await;
    let publisher = Publisher::start(&nodes, 1, "publisher", "g").await;
    let publisher_conn = publisher.conn.clone();
    let survivors = [&alice, &bob, &shared2];
    let live = [&publisher_conn, &alice.conn, &bob.conn, &shared2.conn];
    let gone = [&carol.conn, &shared3.conn];
    let everyone: Vec<_> = live.iter().chain(&gone).copied().collect();

    eventually(Instant::now() + SOON, "every connection registered", || {
        keyspace.check(&everyone, &[], 3)?;
        let live_nodes = keyspace.live_nodes()?;
        ensure(live_nodes.len() == 3, || format!("live nodes {live_nodes:?}"))?;
        (1..=3).try_for_each(|n| rest::check(&nodes, n, &everyone, &[]))
    })
    .await;
    eventually(
        Instant::now() + SOON,
        "every member receives the publisher's messages",
        || {
            let doomed = [&carol, &shared3];
            survivors.iter().chain(&doomed).try_for_each(|m| {
                let received = m.ticks().len();
                ensure(received >= SOME_MESSAGES, || {
                    format!("{} received {received}", m.conn.user)
                })
            })
        },
    )
    .await;

    let before_kill: Vec<usize> = survivors.iter().map(|m| m.ticks().len()).collect();
    blocking(|| nodes.node_mut(3).kill());
    let killed = Instant::now();
    let deadline = killed + SWEPT_WITHIN;

    eventually(deadline, "node-3's connections leave the keyspace", || {
        keyspace.check(&live, &gone, 3)?;
        let live_nodes = keyspace.live_nodes()?;
        let expected: BTreeSet<String> = [node_id(1), node_id(2)].into();
        ensure(live_nodes == expected, || format!("live nodes {live_nodes:?}"))?;
        let dead_nodes = keyspace.dead_nodes()?;
        ensure(dead_nodes.is_empty(), || {
            format!("sweeps still under way: {dead_nodes:?}")
        })
    })
    .await;
    eprintln!("node-3 left the keyspace {:?} after the kill", killed.elapsed());
    eventually(
        deadline,
        "node-3's connections leave the REST listings of nodes 1 and 2",
        || {
            rest::check(&nodes, 1, &live, &gone)?;
            rest::check(&nodes, 2, &live, &gone)
        },
    )
    .await;
    eventually(deadline, "UserOffline(carol) reaches the survivors", || {
        survivors.iter().try_for_each(|m| {
            let announced = m.offline_announcements();
            ensure(announced.iter().any(|u| u == "carol"), || {
                format!("{} got UserOffline for {announced:?}", m.conn.user)
            })
        })
    })
    .await;
    eprintln!("UserOffline(carol) arrived {:?} after the kill", killed.elapsed());

    // The publisher keeps going a while after the sweep, then stops.
    let after_sweep: Vec<usize> = survivors.iter().map(|m| m.ticks().len()).collect();
    eventually(
        Instant::now() + SOON,
        "the survivors keep receiving after the sweep",
        || {
            survivors.iter().zip(&after_sweep).try_for_each(|(m, then)| {
                let now = m.ticks().len();
                ensure(now >= then + SOME_MESSAGES, || {
                    format!("{}: {then} then {now}", m.conn.user)
                })
            })
        },
    )
    .await;
    let (_client, outcomes) = publisher.stop().await;
    let failed: Vec<_> = outcomes.iter().filter(|o| o.error.is_some()).collect();
    assert!(failed.is_empty(), "sends that failed: {failed:?}");
    let last = outcomes.last().expect("the publisher sent").seq;
    eventually(Instant::now() + SOON, "the last message reaches the survivors", || {
        survivors
            .iter()
            .try_for_each(|m| ensure(m.ticks().contains(&last), || format!("{} lacks {last}", m.conn.user)))
    })
    .await;

    for (member, before) in survivors.iter().zip(&before_kill) {
        let ticks = member.ticks();
        let user = &member.conn.user;
        if let Err(e) = exactly_in_order(&ticks, 0, last) {
            panic!("{user} on {}: {e}\n{}", node_id(member.conn.node), nodes.logs());
        }
        assert!(ticks.len() > *before, "{user} received nothing after the kill");
        assert!(member.is_open(), "{user}'s connection closed");
        // Exactly one announcement: the sweep runs the offline hook once
        // cluster-wide, and `shared` still has a connection on node 2.
        assert_eq!(member.offline_announcements(), ["carol"], "UserOffline seen by {user}");
    }
    assert!(
        !carol.is_open() && !shared3.is_open(),
        "node-3's clients still connected"
    );
    assert_eq!(blocking(|| nodes.running()), [true, true, false], "which nodes run");
}
