//! Acknowledged cluster commands, an inbox that only delivers, and REST-style
//! sends that publish first — on nodes of this process, built by
//! `build_node` as `main` builds them, joined by a `redis-server` of the
//! test's own (one node, in one test, through a proxy that can hold back what
//! its subscriber connection sends, so that its `SUBSCRIBE` waits on Redis).
//!
//! The nodes' connections are bare handles registered through the node, as a
//! transport registers them; what reaches a connection is read from its queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hubwire_backplane::{ConnectionRecord, HubName, Keyspace, Target};
use hubwire_node::core::config::Config;
use hubwire_node::core::connection::{ConnectionHandle, QueueLimits, QueueReceiver};
use hubwire_node::core::node::{Node, NodeError, SendOrder};
use hubwire_protocol::Protocol;
use hubwire_test_support::{unique_prefix, RedisServer};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::harness::{blocking, HUB};

/// The longest any awaited step may take before the test calls it hung.
const HUNG: Duration = Duration::from_secs(20);

/// A node of this process on `redis_url` under `prefix`.
async fn start_node(id: &str, redis_url: &str, prefix: &str, ack_timeout_ms: u64) -> Arc<Node> {
    let config = Config {
        node_id: Some(id.into()),
        redis_url: Some(redis_url.into()),
        redis_prefix: prefix.into(),
        jwt_secret: Some("acks-tests-jwt-secret-of-32-bytes!!".into()),
        diagnostics_hub: true,
        cluster_ack_timeout_ms: ack_timeout_ms,
        data_dir: std::env::temp_dir().join(format!("hubwire-acks-{}-{id}", std::process::id())),
        ..Config::default()
    };
    hubwire_node::build(config).await.expect("node starts").node
}

/// A connection `id` registered on `node`, and its queue.
async fn connect(node: &Arc<Node>, id: &str) -> (Arc<ConnectionHandle>, QueueReceiver) {
    let metrics = node.metrics.hub(HUB);
    let limits = QueueLimits {
        records: 4096,
        bytes: 1 << 20,
    };
    let (handle, queue) = ConnectionHandle::new(
        id.into(),
        HUB.into(),
        None,
        Protocol::Json,
        "WebSockets",
        limits,
        metrics,
    );
    node.reserve(&handle.id, &handle.hub, None, "WebSockets")
        .await
        .expect("connection registered");
    node.connected(&handle).await.expect("connection live");
    (handle, queue)
}

/// The next invocation queued to a connection: target and first argument.
async fn next_invocation(queue: &mut QueueReceiver) -> (String, Value) {
    let queued = tokio::time::timeout(HUNG, queue.recv())
        .await
        .expect("a message reaches the connection");
    let text = String::from_utf8_lossy(&queued.record);
    let message: Value = serde_json::from_str(text.trim_end_matches('\u{1e}')).expect("a JSON record");
    let target = message["target"].as_str().unwrap_or("?").to_owned();
    (target, message["arguments"][0].clone())
}

/// The value of an unlabelled series in a node's `/metrics` text.
fn metric(node: &Node, series: &str) -> String {
    let text = node.render_metrics();
    let prefix = format!("{series} ");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()).map(str::to_owned));
    line.unwrap_or_else(|| panic!("no series {series} in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_member_added_and_removed_then_sent_to_at_once_1000_times_never_misses() {
    let redis = blocking(RedisServer::start);
    let prefix = unique_prefix("ack-1000");
    let a = start_node("node-a", &redis.url(), &prefix, 5000).await;
    let b = start_node("node-b", &redis.url(), &prefix, 5000).await;
    let (member, mut queue) = connect(&b, "member-on-b").await;
    let hub = HubName::from(HUB);
    let group = "busy".into();
    let to_member = || Target::Connection(member.id.clone());
    for i in 0..1000u64 {
        let added = a.add_to_group(&hub, &group, &member.id).await;
        assert!(added.expect("added through node a"), "round {i}: the member exists");
        // From the member's own node (its registry) and from node a (node b's
        // subscription of the group channel): both must reach it.
        let to_group = || Target::Group(group.clone());
        b.send(
            &hub,
            to_group(),
            vec![],
            ("FromB", vec![json!(i)]),
            SendOrder::LocalFirst,
        )
        .await
        .expect("send");
        a.send(
            &hub,
            to_group(),
            vec![],
            ("FromA", vec![json!(i)]),
            SendOrder::LocalFirst,
        )
        .await
        .expect("send");
        assert_eq!(
            next_invocation(&mut queue).await,
            ("FromB".into(), json!(i)),
            "round {i}"
        );
        assert_eq!(
            next_invocation(&mut queue).await,
            ("FromA".into(), json!(i)),
            "round {i}"
        );

        let removed = a.remove_from_group(&hub, &group, &member.id).await;
        assert!(removed.expect("removed through node a"), "round {i}: it was a member");
        b.send(
            &hub,
            to_group(),
            vec![],
            ("Removed", vec![json!(i)]),
            SendOrder::LocalFirst,
        )
        .await
        .expect("send");
        a.send(
            &hub,
            to_group(),
            vec![],
            ("Removed", vec![json!(i)]),
            SendOrder::LocalFirst,
        )
        .await
        .expect("send");
        a.send(
            &hub,
            to_member(),
            vec![],
            ("Marker", vec![json!(i)]),
            SendOrder::LocalFirst,
        )
        .await
        .expect("send");
        let next = next_invocation(&mut queue).await;
        assert_eq!(
            next,
            ("Marker".into(), json!(i)),
            "round {i}: nothing sent to the group after the removal"
        );
    }
    assert_eq!(metric(&a, "hubwire_cluster_ack_timeouts_total"), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_for_a_node_that_does_not_answer_fails_clearly_instead_of_hanging() {
    let redis = blocking(RedisServer::start);
    let prefix = unique_prefix("ack-timeout");
    let a = start_node("node-a", &redis.url(), &prefix, 500).await;
    let hub = HubName::from(HUB);
    // A connection the keyspace says node "gone" holds; no such node runs.
    let record = ConnectionRecord {
        id: "held-by-nobody".into(),
        node: "gone".into(),
        hub: hub.clone(),
        user: None,
        transport: "WebSockets".into(),
        since_ms: 0,
    };
    a.backplane_for_tests().register(&record, None).await.expect("record");
    let group = "g".into();
    let silent = |result: Result<(), NodeError>| match result {
        Err(NodeError::NotAcknowledged { nodes, timeout_ms: 500 }) => assert_eq!(nodes, vec!["gone".into()]),
        other => panic!("expected the node not to confirm, got {other:?}"),
    };

    let added = tokio::time::timeout(HUNG, a.add_to_group(&hub, &group, &record.id)).await;
    silent(added.expect("add_to_group returns").map(drop));
    let removed = tokio::time::timeout(HUNG, a.remove_from_group(&hub, &group, &record.id)).await;
    silent(removed.expect("remove_from_group returns").map(drop));
    let target = Target::Connection(record.id.clone());
    let closed = tokio::time::timeout(HUNG, a.close(&hub, target, vec![], None)).await;
    silent(closed.expect("close returns"));
    assert_eq!(metric(&a, "hubwire_cluster_ack_timeouts_total"), "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_not_held_back_by_a_group_command_waiting_on_redis() {
    let redis = blocking(RedisServer::start);
    let prefix = unique_prefix("slow-subscribe");
    let proxy = Proxy::start(redis.port()).await;
    let a = start_node("node-a", &redis.url(), &prefix, 30_000).await;
    let b = start_node("node-b", &proxy.url(), &prefix, 30_000).await;
    let (member, mut queue) = connect(&b, "member-on-b").await;
    let hub = HubName::from(HUB);

    // Node b's SUBSCRIBE of the group's channel now waits on Redis.
    proxy.hold(true);
    let add = {
        let a = a.clone();
        let id = member.id.clone();
        tokio::spawn(async move { a.add_to_group(&HubName::from(HUB), &"slow".into(), &id).await })
    };
    let deadline = Instant::now() + HUNG;
    while metric(&b, "hubwire_cluster_commands_pending") != "1" {
        assert!(Instant::now() < deadline, "node b never received the group command");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let direct = Target::Connection(member.id.clone());
    a.send(&hub, direct, vec![], ("Direct", vec![json!(1)]), SendOrder::LocalFirst)
        .await
        .expect("send");
    assert_eq!(next_invocation(&mut queue).await, ("Direct".into(), json!(1)));
    assert_eq!(
        metric(&b, "hubwire_cluster_commands_pending"),
        "1",
        "the delivery arrived while the group command still waited on Redis"
    );
    assert!(!add.is_finished(), "the add returns only once node b subscribed");

    proxy.hold(false);
    let added = tokio::time::timeout(Duration::from_secs(40), add).await;
    match added.expect("the add returns").expect("no panic") {
        // Applied once Redis answered the held SUBSCRIBE.
        Ok(true) => {}
        // Redis answered after node b's command timeout: not confirmed, and
        // the subscription is restored by node b's resync.
        Err(NodeError::NotAcknowledged { .. }) => {}
        other => panic!("unexpected outcome of the add: {other:?}"),
    }
    // Either way the member ends up reachable through the group.
    let deadline = Instant::now() + HUNG;
    for n in 0.. {
        let to_group = Target::Group("slow".into());
        a.send(
            &hub,
            to_group,
            vec![],
            ("Grouped", vec![json!(n)]),
            SendOrder::LocalFirst,
        )
        .await
        .ok();
        let arrived = tokio::time::timeout(Duration::from_millis(200), queue.recv()).await;
        if arrived.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the member never became reachable through the group"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_published_first_that_fails_reached_nobody_and_its_retry_reaches_everyone_once() {
    let mut redis = blocking(RedisServer::start);
    let prefix = unique_prefix("publish-first");
    let a = start_node("node-a", &redis.url(), &prefix, 5000).await;
    let (member, mut queue) = connect(&a, "member-on-a").await;
    let hub = HubName::from(HUB);
    let group = "news".into();
    assert!(a.add_to_group(&hub, &group, &member.id).await.expect("local add"));

    blocking(|| redis.stop());
    let target = Target::Group(group.clone());
    let sent = tokio::time::timeout(
        HUNG,
        a.send(&hub, target, vec![], ("News", vec![json!(1)]), SendOrder::PublishFirst),
    )
    .await;
    assert!(
        matches!(sent.expect("the send returns"), Err(NodeError::Backplane(_))),
        "the publish fails"
    );
    assert!(
        queue.try_recv().is_none(),
        "a failed send reached nobody, not even this node's members"
    );

    blocking(|| redis.start_again());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !a.cluster_ready() {
        assert!(Instant::now() < deadline, "node a never got back into the cluster");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let target = Target::Group(group.clone());
    let retried = a
        .send(&hub, target, vec![], ("News", vec![json!(1)]), SendOrder::PublishFirst)
        .await;
    retried.expect("the retry succeeds");
    let direct = Target::Connection(member.id.clone());
    a.send(&hub, direct, vec![], ("Marker", vec![json!(0)]), SendOrder::LocalFirst)
        .await
        .expect("send");
    assert_eq!(next_invocation(&mut queue).await, ("News".into(), json!(1)));
    assert_eq!(
        next_invocation(&mut queue).await,
        ("Marker".into(), json!(0)),
        "exactly one copy"
    );
}

/// A TCP proxy to Redis that can hold back the `SUBSCRIBE` commands a node
/// sends (and what follows them on their connection), while everything Redis
/// sends passes: the node's Redis is slow for subscribing, not for delivering.
struct Proxy {
    port: u16,
    held: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(redis_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (held, hold) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let Ok(redis) = TcpStream::connect(("127.0.0.1", redis_port)).await else {
                    return;
                };
                let (client_in, client_out) = client.into_split();
                let (redis_in, redis_out) = redis.into_split();
                tokio::spawn(pump(client_in, redis_out, Some(hold.clone())));
                tokio::spawn(pump(redis_in, client_out, None));
            }
        });
        Self { port, held, task }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn hold(&self, held: bool) {
        self.held.send_replace(held);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies bytes from `from` to `to`; a chunk with a `SUBSCRIBE` in it waits
/// while `hold` says so.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut hold: Option<watch::Receiver<bool>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let subscribes = buf[..n].windows(9).any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE"));
        if let Some(hold) = hold.as_mut().filter(|_| subscribes) {
            if hold.wait_for(|held| !*held).await.is_err() {
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
