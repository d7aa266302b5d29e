//! Redis stops for about four seconds while a publisher on node 1 sends to a
//! group with members on nodes 1 and 2: the nodes stay up, deliver locally,
//! report not-ready, and once Redis is back (empty: no persistence) they are
//! ready again, deliver across nodes, and have written every live connection
//! and membership back into the keyspace — without being restarted.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hubwire_test_support::{http, RedisServer};
use serde_json::json;

use crate::harness::{blocking, ensure, eventually, exactly_in_order, node_id, Nodes, Publisher};
use crate::keyspace::Keyspace;
use crate::rest;

/// How long Redis stays down.
const OUTAGE: Duration = Duration::from_secs(4);
/// Generous bound for recovery and for things that take milliseconds.
const SOON: Duration = Duration::from_secs(15);
/// Messages a member must see in a phase (the publisher sends about 40 a
/// second; a phase lasts seconds).
const SOME_MESSAGES: usize = 20;
/// Local deliveries node 1 must make while Redis is down (a fraction of what
/// four seconds of traffic give).
const SOME_LOCAL_MESSAGES: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_ride_out_a_redis_outage_and_repair_the_cluster() {
    let mut redis = blocking(RedisServer::start);
    let url = redis.url();
    let mut nodes = blocking(|| Nodes::start("redis-outage", &url, false));
    let m1 = nodes.member(1, "m1", &["g"]).await;
    let m2 = nodes.member(2, "m2", &["g"]).await;
    let m3 = nodes.member(3, "m3", &["other"]).await;
    let publisher = Publisher::start(&nodes, 1, "publisher", "g").await;
    let publisher_conn = publisher.conn.clone();
    let everyone = [&publisher_conn, &m1.conn, &m2.conn, &m3.conn];
    let all_nodes: BTreeSet<String> = (1..=3).map(node_id).collect();

    let mut keyspace = blocking(|| Keyspace::open(&url, &nodes.prefix)).expect("keyspace");
    eventually(Instant::now() + SOON, "every connection registered", || {
        keyspace.check(&everyone, &[], 3)
    })
    .await;
    drop(keyspace);
    eventually(Instant::now() + SOON, "the group's members receive", || {
        [&m1, &m2].iter().try_for_each(|m| {
            let received = m.ticks().len();
            ensure(received >= SOME_MESSAGES, || {
                format!("{} received {received}", m.conn.user)
            })
        })
    })
    .await;

    // Redis goes down under traffic.
    let acked_before_outage = publisher.last_ok().expect("a send succeeded");
    blocking(|| redis.stop());
    let stopped = Instant::now();
    let m1_at_stop = m1.ticks().len();
    eventually(stopped + OUTAGE, "every node reports not ready", || {
        let statuses: Vec<u16> = (1..=3).map(|n| nodes.readyz(n)).collect();
        ensure(statuses == [503, 503, 503], || format!("/readyz: {statuses:?}"))
    })
    .await;
    tokio::time::sleep(OUTAGE.saturating_sub(stopped.elapsed())).await;
    let during_outage = m1.ticks().len() - m1_at_stop;
    let statuses: Vec<u16> = blocking(|| (1..=3).map(|n| nodes.readyz(n)).collect());
    assert_eq!(statuses, [503, 503, 503], "/readyz at the end of the outage");
    assert_eq!(
        blocking(|| nodes.running()),
        [true; 3],
        "nodes running during the outage"
    );
    assert!(
        during_outage >= SOME_LOCAL_MESSAGES,
        "m1 (on the publisher's node) received {during_outage} messages while Redis was down"
    );

    // Redis comes back, empty, on the same port.
    blocking(|| redis.start_again());
    let restarted = Instant::now();
    eventually(restarted + SOON, "every node ready again", || {
        let statuses: Vec<u16> = (1..=3).map(|n| nodes.readyz(n)).collect();
        ensure(statuses == [200, 200, 200], || format!("/readyz: {statuses:?}"))
    })
    .await;
    eprintln!("every node ready {:?} after Redis came back", restarted.elapsed());
    let resumed_from = publisher.next_seq();
    eventually(restarted + SOON, "m2 (node 2) receives new messages", || {
        let ticks = m2.ticks();
        ensure(ticks.iter().any(|s| *s >= resumed_from), || {
            format!("m2's last message: {:?}", ticks.last())
        })
    })
    .await;
    let mut keyspace = blocking(|| Keyspace::open(&url, &nodes.prefix)).expect("keyspace after the restart");
    eventually(
        restarted + SOON,
        "the keyspace holds every live connection again",
        || {
            keyspace.check(&everyone, &[], 3)?;
            let live_nodes = keyspace.live_nodes()?;
            ensure(live_nodes == all_nodes, || format!("live nodes {live_nodes:?}"))?;
            let hubs = keyspace.hubs()?;
            ensure(hubs.contains("diagnostics"), || format!("hubs {hubs:?}"))
        },
    )
    .await;
    eventually(restarted + SOON, "every node's REST API lists every connection", || {
        (1..=3).try_for_each(|n| rest::check(&nodes, n, &everyone, &[]))
    })
    .await;
    let m2_at_resume = m2.ticks().len();
    eventually(Instant::now() + SOON, "m2 keeps receiving", || {
        let now = m2.ticks().len();
        ensure(now >= m2_at_resume + SOME_MESSAGES, || {
            format!("{m2_at_resume} then {now}")
        })
    })
    .await;

    // Sends that need the keyspace (where a connection lives) and a user's
    // subscription, both written back after the outage.
    let (mut client, outcomes) = publisher.stop().await;
    let to_m2 = vec![json!(m2.conn.id), json!("Direct"), json!("to m2")];
    client
        .invoke("SendToConnection", to_m2)
        .await
        .expect("SendToConnection");
    let to_m3 = vec![json!("m3"), json!("Direct"), json!("to m3")];
    client.invoke("SendToUser", to_m3).await.expect("SendToUser");
    let last = outcomes.last().expect("the publisher sent").seq;
    eventually(Instant::now() + SOON, "the last and the direct messages arrive", || {
        ensure(m1.ticks().contains(&last), || format!("m1 lacks {last}"))?;
        ensure(m2.ticks().contains(&last), || format!("m2 lacks {last}"))?;
        ensure(m2.received("Direct") == [vec![json!("to m2")]], || {
            format!("m2's direct messages: {:?}", m2.received("Direct"))
        })?;
        ensure(m3.received("Direct") == [vec![json!("to m3")]], || {
            format!("m3's direct messages: {:?}", m3.received("Direct"))
        })
    })
    .await;

    // m1 shares the publisher's node: every message, outage or not.
    if let Err(e) = exactly_in_order(&m1.ticks(), 0, last) {
        panic!("m1 on node-1: {e}\n{}", nodes.logs());
    }
    // m2 got everything sent before the outage, and everything from the first
    // message it received after Redis came back — in order, never twice.
    let m2_ticks = m2.ticks();
    let first_after = *m2_ticks.iter().find(|s| **s >= resumed_from).expect("checked above");
    let before: Vec<u64> = m2_ticks.iter().copied().filter(|s| *s <= acked_before_outage).collect();
    let after: Vec<u64> = m2_ticks.iter().copied().filter(|s| *s >= first_after).collect();
    let checks = [
        exactly_in_order(&before, 0, acked_before_outage).map_err(|e| format!("before the outage: {e}")),
        exactly_in_order(&after, first_after, last).map_err(|e| format!("after the outage: {e}")),
        ensure(m2_ticks.windows(2).all(|w| w[0] < w[1]), || {
            "out of order or twice".into()
        }),
    ];
    for check in checks {
        if let Err(e) = check {
            panic!("m2 on node-2: {e}\n{}", nodes.logs());
        }
    }
    let failed_after: Vec<_> = outcomes
        .iter()
        .filter(|o| o.seq >= resumed_from && o.error.is_some())
        .collect();
    assert!(
        failed_after.is_empty(),
        "sends that failed after recovery: {failed_after:?}"
    );
    let failed_before: Vec<_> = outcomes
        .iter()
        .filter(|o| o.seq <= acked_before_outage && o.error.is_some())
        .collect();
    assert!(
        failed_before.is_empty(),
        "sends that failed before the outage: {failed_before:?}"
    );
    assert!(m3.ticks().is_empty(), "m3 is not in the group");
    assert!(
        m1.is_open() && m2.is_open() && m3.is_open(),
        "a member's connection closed"
    );
    assert_eq!(
        blocking(|| nodes.running()),
        [true; 3],
        "nodes running after the outage"
    );
    // Sends that failed did so with a clear hub error naming the backplane.
    for outcome in outcomes.iter().filter(|o| o.error.is_some()) {
        let error = outcome.error.as_deref().unwrap_or_default();
        assert!(
            error.starts_with("An unexpected error occurred invoking 'SendToGroup' on the server. HubException: backplane unavailable"),
            "send {} failed with {error}",
            outcome.seq
        );
    }
    // The loss and the recovery are counted in /metrics.
    let metrics = blocking(|| http::request(nodes.node(1).address(), "GET", "/metrics", &[], ""))
        .expect("metrics")
        .body;
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{metrics}"))
    };
    assert!(counter("hubwire_redis_errors_total") > 0, "errors counted");
    assert!(counter("hubwire_redis_reconnects_total") > 0, "reconnections counted");
    assert!(counter("hubwire_redis_resyncs_total") > 0, "write-backs counted");
    assert!(metrics.contains("hubwire_backplane_ready 1"), "ready again in /metrics");
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    eprintln!(
        "{} messages sent, {failed} of them failed with a backplane error",
        last + 1
    );
}
