//! Redis goes away and comes back (empty, as without persistence), or loses
//! its data under a live connection: operations fail fast meanwhile, and
//! afterwards the same backplanes deliver again and the keyspace holds every
//! live connection and membership again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hubwire_backplane::{BackplaneError, Channel, Delivery, GroupName, HubName, Keyspace, Target, UserId};
use hubwire_test_support::{unique_prefix, RedisServer};

use crate::common::{deliver, eventually, ids, record, redis_node, TestNode, QUIET};

/// "Fails instead of hanging": the test configuration's command timeout is
/// 500 ms; this bound only catches an operation that waits for Redis to come
/// back, with a wide margin for a loaded machine (it is no measurement).
const PROMPT: Duration = Duration::from_secs(5);

fn hub() -> HubName {
    HubName::from("chat")
}

/// Asserts an operation fails with `Unavailable`, promptly.
async fn fails_fast<T: std::fmt::Debug>(what: &str, op: impl std::future::Future<Output = Result<T, BackplaneError>>) {
    let started = Instant::now();
    let result = op.await;
    assert!(
        matches!(result, Err(BackplaneError::Unavailable(_))),
        "{what}: {result:?}"
    );
    assert!(started.elapsed() < PROMPT, "{what} took {:?}", started.elapsed());
}

/// Node `a` holds a1 (in g) and a2; node `b` holds b1 (in g) and listens to g.
async fn populate(a: &TestNode, b: &TestNode) {
    let g = GroupName::from("g");
    a.backplane
        .register(&record("a1", &a.id(), "chat", Some("u1")), Some(5))
        .await
        .expect("register");
    a.backplane
        .register(&record("a2", &a.id(), "chat", None), None)
        .await
        .expect("register");
    b.backplane
        .register(&record("b1", &b.id(), "chat", Some("u2")), None)
        .await
        .expect("register");
    a.membership.joined("a1", "g");
    a.backplane.join_group(&hub(), &g, &"a1".into()).await.expect("join");
    b.membership.joined("b1", "g");
    b.backplane.join_group(&hub(), &g, &"b1".into()).await.expect("join");
    b.backplane
        .subscribe(Channel::Group(hub(), g))
        .await
        .expect("subscribe");
    b.backplane.subscribe(Channel::Node(b.id())).await.expect("subscribe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_is_survived_and_repaired() {
    let mut server = RedisServer::start();
    let prefix = unique_prefix("restart");
    let a = Arc::new(redis_node(&server.url(), &prefix, "a", false).await);
    let mut b = redis_node(&server.url(), &prefix, "b", false).await;
    populate(&a, &b).await;

    let (ok, failed, slowest_ms) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let publisher = {
        let (a, ok, failed, slowest_ms) = (a.clone(), ok.clone(), failed.clone(), slowest_ms.clone());
        tokio::spawn(async move {
            loop {
                let started = Instant::now();
                let msg = deliver(&a.id(), "chat", Target::Group("g".into()), "ongoing");
                let counter = if a.backplane.publish(msg).await.is_ok() {
                    &ok
                } else {
                    &failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
                slowest_ms.fetch_max(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    b.next_message().await;

    tokio::task::block_in_place(|| server.stop());
    eventually(Duration::from_secs(2), "a reports not ready", || async {
        !a.backplane.is_ready()
    })
    .await;
    fails_fast(
        "register",
        a.backplane.register(&record("a3", &a.id(), "chat", None), None),
    )
    .await;
    fails_fast("group listing", b.backplane.group_connections(&hub(), &"g".into())).await;
    fails_fast(
        "publish",
        a.backplane.publish(deliver(&a.id(), "chat", Target::All, "x")),
    )
    .await;
    fails_fast("unregister", a.backplane.unregister(&"a2".into())).await;
    // As a node does: the registry first, then the keyspace (which fails).
    a.membership.joined("a1", "g2");
    fails_fast("join", a.backplane.join_group(&hub(), &"g2".into(), &"a1".into())).await;
    fails_fast(
        "subscribe",
        b.backplane.subscribe(Channel::User(hub(), UserId::from("u2"))),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    tokio::task::block_in_place(|| server.start_again());
    let both_ready = || async { a.backplane.is_ready() && b.backplane.is_ready() };
    eventually(Duration::from_secs(10), "both nodes ready again", both_ready).await;
    publisher.abort();
    // Only the cancellation can come back from an aborted loop.
    let _ = publisher.await;
    assert!(failed.load(Ordering::Relaxed) > 0 && ok.load(Ordering::Relaxed) > 0);
    assert!(
        slowest_ms.load(Ordering::Relaxed) < PROMPT.as_millis() as u64,
        "a publish hung"
    );

    // Publishes of the stopped publisher may still be on their way.
    tokio::time::sleep(QUIET).await;
    b.drain();
    let after = deliver(&a.id(), "chat", Target::Group("g".into()), "after");
    a.backplane
        .publish(after.clone())
        .await
        .expect("publish after the restart");
    assert_eq!(b.next_message().await, after);
    let to_b1 = deliver(&a.id(), "chat", Target::Connection("b1".into()), "direct");
    a.backplane
        .publish(to_b1.clone())
        .await
        .expect("publish to a connection");
    assert_eq!(b.next_message().await, to_b1);
    let to_u2 = deliver(&a.id(), "chat", Target::User("u2".into()), "user");
    a.backplane.publish(to_u2.clone()).await.expect("publish to a user");
    assert_eq!(
        b.next_message().await,
        to_u2,
        "a subscription asked for during the outage"
    );

    let bp = &b.backplane;
    assert_eq!(
        ids(&bp.group_connections(&hub(), &"g".into()).await.expect("list")),
        ["a1", "b1"]
    );
    assert_eq!(
        ids(&bp.group_connections(&hub(), &"g2".into()).await.expect("list")),
        ["a1"]
    );
    assert_eq!(
        bp.connection(&"a2".into()).await.expect("lookup"),
        None,
        "unregistered during the outage"
    );
    assert_eq!(
        bp.connection(&"a3".into()).await.expect("lookup"),
        None,
        "refused during the outage"
    );
    assert_eq!(bp.hub_connection_count(&hub()).await.expect("count"), 2);
    assert_eq!(
        ids(&bp.user_connections(&hub(), &"u1".into()).await.expect("list")),
        ["a1"]
    );
    let stats = a.stats();
    assert!(
        stats.reconnects >= 1 && stats.redis_errors >= 1 && stats.resyncs >= 1,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_data_is_written_back() {
    let server = RedisServer::start();
    let prefix = unique_prefix("flush");
    let a = redis_node(&server.url(), &prefix, "a", false).await;
    let mut b = redis_node(&server.url(), &prefix, "b", false).await;
    populate(&a, &b).await;
    // u1's one connection on a joins the group with its user, as a node's registry records it.
    a.membership.joined("a1", "vip");
    a.backplane
        .add_user_to_group(
            &hub(),
            &"u1".into(),
            &"vip".into(),
            hubwire_backplane::MembershipTtl::Forever,
        )
        .await
        .expect("add");

    let mut con = redis::Client::open(server.url())
        .and_then(|c| c.get_connection())
        .expect("independent client");
    redis::cmd("FLUSHALL").query::<()>(&mut con).expect("FLUSHALL");
    let restored = || async {
        let listed = a
            .backplane
            .group_connections(&hub(), &"g".into())
            .await
            .map(|r| ids(&r));
        listed.is_ok_and(|ids| ids == ["a1", "b1"])
    };
    eventually(Duration::from_secs(3), "the group is written back", restored).await;
    assert_eq!(
        ids(&a
            .backplane
            .group_connections(&hub(), &"vip".into())
            .await
            .expect("list")),
        ["a1"]
    );
    assert_eq!(a.backplane.hub_connection_count(&hub()).await.expect("count"), 3);

    let msg = deliver(&a.id(), "chat", Target::Group("g".into()), "still there");
    a.backplane.publish(msg.clone()).await.expect("publish");
    assert_eq!(b.next_message().await, msg);
}
