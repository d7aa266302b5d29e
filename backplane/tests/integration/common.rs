//! The test harness: a few nodes on one backplane, and what they receive.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hubwire_backplane::{
    AnyBackplane, BackplaneEvent, Channel, ClusterBody, ClusterMessage, ConnectionId, ConnectionRecord, Delivery,
    GroupName, HubName, LocalBus, LocalMembership, MembershipSnapshot, NodeId, RedisBackplane, RedisConfig, RedisStats,
    Target, UserId,
};
use hubwire_test_support::{unique_prefix, RedisServer};
use parking_lot::Mutex;
use tokio::sync::mpsc::Receiver;

/// How long to wait for something that must arrive.
pub const ARRIVAL: Duration = Duration::from_secs(3);
/// How long to listen to be sure nothing (more) arrives.
pub const QUIET: Duration = Duration::from_millis(200);
/// The unsubscribe delay of the Redis test configuration.
pub const UNSUBSCRIBE_DELAY: Duration = Duration::from_millis(200);

/// One node of a test cluster.
pub struct TestNode {
    pub backplane: AnyBackplane,
    pub inbox: Receiver<BackplaneEvent>,
    /// Stands in for the node's registry, the owner of local group membership.
    pub membership: Arc<TestMembership>,
}

/// The groups a test says its node's connections are in, as a node's registry
/// would hold them: what a resync writes back.
#[derive(Default)]
pub struct TestMembership {
    state: Mutex<MembershipSnapshot>,
}

impl TestMembership {
    /// Records that connection `id` is in `group`.
    pub fn joined(&self, id: &str, group: &str) {
        let mut s = self.state.lock();
        s.generation += 1;
        s.groups
            .entry(ConnectionId::from(id))
            .or_default()
            .push(GroupName::from(group));
    }
}

impl LocalMembership for TestMembership {
    fn generation(&self) -> u64 {
        self.state.lock().generation
    }
    fn snapshot(&self) -> MembershipSnapshot {
        self.state.lock().clone()
    }
}

impl TestNode {
    /// A node on `backplane`, with an empty membership attached.
    pub fn new(backplane: AnyBackplane, inbox: Receiver<BackplaneEvent>) -> Self {
        let membership = Arc::new(TestMembership::default());
        backplane.attach_membership(membership.clone());
        Self {
            backplane,
            inbox,
            membership,
        }
    }

    pub fn id(&self) -> NodeId {
        self.backplane.node_id().clone()
    }

    /// Subscribes a channel; panics on failure.
    pub async fn subscribe(&self, channel: Channel) {
        self.backplane.subscribe(channel).await.expect("subscribe");
    }

    /// Unsubscribes a channel; panics on failure.
    pub async fn unsubscribe(&self, channel: Channel) {
        self.backplane.unsubscribe(channel).await.expect("unsubscribe");
    }

    /// Publishes a message; panics on failure.
    pub async fn publish(&self, msg: ClusterMessage) {
        self.backplane.publish(msg).await.expect("publish");
    }

    /// The next event; panics if none arrives in time.
    pub async fn next_event(&mut self) -> BackplaneEvent {
        match tokio::time::timeout(ARRIVAL, self.inbox.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => panic!("{}: inbox closed", self.id()),
            Err(_) => panic!("{}: nothing arrived within {ARRIVAL:?}", self.id()),
        }
    }

    /// The next message; panics on anything else.
    pub async fn next_message(&mut self) -> ClusterMessage {
        match self.next_event().await {
            BackplaneEvent::Message(msg) => msg,
            other => panic!("{}: expected a message, got {other:?}", self.id()),
        }
    }

    /// Asserts nothing arrives for a while.
    pub async fn expect_quiet(&mut self) {
        if let Ok(Some(event)) = tokio::time::timeout(QUIET, self.inbox.recv()).await {
            panic!("{}: expected nothing, got {event:?}", self.id());
        }
    }

    /// Drops whatever is waiting.
    pub fn drain(&mut self) {
        while self.inbox.try_recv().is_ok() {}
    }

    /// The Redis counters (panics on the local backplane).
    pub fn stats(&self) -> RedisStats {
        match &self.backplane {
            AnyBackplane::Redis(redis) => redis.stats(),
            AnyBackplane::Local(_) => panic!("no Redis counters on the local backplane"),
        }
    }
}

/// Several nodes on one backplane (and the Redis server behind it, if any).
pub struct TestCluster {
    pub nodes: Vec<TestNode>,
    pub server: Option<RedisServer>,
}

impl TestCluster {
    /// `n` nodes on one in-process bus.
    pub async fn local(n: usize) -> Self {
        let bus = LocalBus::new();
        let nodes = (0..n)
            .map(|i| {
                let (backplane, inbox) = bus.attach(NodeId::from(format!("node-{i}")));
                TestNode::new(AnyBackplane::Local(backplane), inbox)
            })
            .collect();
        Self { nodes, server: None }
    }

    /// `n` nodes on a fresh `redis-server`, under a prefix of their own.
    pub async fn redis(n: usize) -> Self {
        let server = RedisServer::start();
        let prefix = unique_prefix("suite");
        let mut nodes = Vec::new();
        for i in 0..n {
            nodes.push(redis_node(&server.url(), &prefix, &format!("node-{i}"), false).await);
        }
        Self {
            nodes,
            server: Some(server),
        }
    }

    /// How long after an unsubscribe delivery is sure to have stopped.
    pub fn unsubscribe_settle(&self) -> Duration {
        match self.server {
            Some(_) => UNSUBSCRIBE_DELAY * 2,
            None => Duration::ZERO,
        }
    }
}

/// The test configuration: short intervals so the suite runs fast.
pub fn redis_config(url: &str, prefix: &str, node: &str, cluster: bool) -> RedisConfig {
    let mut config = RedisConfig::new(url, NodeId::from(node));
    config.prefix = prefix.to_owned();
    config.heartbeat_interval = Duration::from_millis(200);
    config.dead_node_timeout = Duration::from_millis(1000);
    config.unsubscribe_delay = UNSUBSCRIBE_DELAY;
    config.command_timeout = Duration::from_millis(500);
    config.reconnect_max_delay = Duration::from_millis(300);
    config.cluster = cluster;
    config
}

/// Shows the backplane's logs (warnings and up, or `RUST_LOG`) in the output
/// of a failed test.
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    // Only the first test of a process installs it; the others find it there.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A node on Redis with the test configuration.
pub async fn redis_node(url: &str, prefix: &str, node: &str, cluster: bool) -> TestNode {
    redis_node_from(redis_config(url, prefix, node, cluster)).await
}

/// A node on Redis with `config`.
pub async fn redis_node_from(config: RedisConfig) -> TestNode {
    init_logs();
    let node = config.node.clone();
    let (backplane, inbox) = match RedisBackplane::connect(config).await {
        Ok(connected) => connected,
        Err(e) => panic!("cannot connect {node}: {e}"),
    };
    TestNode::new(AnyBackplane::Redis(backplane), inbox)
}

/// An independent client (the `redis` crate), to check what the nodes wrote.
pub fn connect(server: &RedisServer) -> redis::Connection {
    match redis::Client::open(server.url()).and_then(|c| c.get_connection()) {
        Ok(connection) => connection,
        Err(e) => panic!("independent client: {e}"),
    }
}

/// Runs one command on the independent client; panics with the command on failure.
pub fn query<T: redis::FromRedisValue>(con: &mut redis::Connection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    match cmd.query(con) {
        Ok(value) => value,
        Err(e) => panic!("{args:?}: {e}"),
    }
}

/// A connection record held by `node`.
pub fn record(id: &str, node: &NodeId, hub: &str, user: Option<&str>) -> ConnectionRecord {
    ConnectionRecord {
        id: ConnectionId::from(id),
        node: node.clone(),
        hub: HubName::from(hub),
        user: user.map(UserId::from),
        transport: "WebSockets".into(),
        since_ms: 1_732_000_000_000,
    }
}

/// A delivery from `origin` to `target` in `hub`.
pub fn deliver(origin: &NodeId, hub: &str, target: Target, payload: &'static str) -> ClusterMessage {
    ClusterMessage {
        origin: origin.clone(),
        hub: HubName::from(hub),
        body: ClusterBody::Deliver {
            target,
            except: vec![ConnectionId::from("nobody")],
            payload: Bytes::from_static(payload.as_bytes()),
            trace: None,
        },
    }
}

/// Connection ids of records, sorted.
pub fn ids(records: &[ConnectionRecord]) -> Vec<String> {
    let mut ids: Vec<String> = records.iter().map(|r| r.id.to_string()).collect();
    ids.sort();
    ids
}

/// Waits until `check` holds, polling; panics after `limit`.
pub async fn eventually<F: std::future::Future<Output = bool>>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        if tokio::time::Instant::now() > deadline {
            panic!("not within {limit:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
