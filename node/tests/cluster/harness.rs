//! The harness: three nodes on one Redis, SignalR clients that record what
//! they receive, a publisher that sends numbered messages to a group, and
//! polling with a deadline.
//!
//! Nodes are numbered 1 to 3 and have the node ids `node-1` … `node-3`, so
//! the keyspace and the REST listings can be checked by name. The blocking
//! parts (processes, the HTTP client, the independent Redis client) run under
//! [`blocking`], which needs the multi-threaded runtime every test uses.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hubwire_loadtest::{Client, ClientError, ConnectOptions};
use hubwire_node::core::auth::{Authenticator, Claims};
use hubwire_node::core::config::Config;
use hubwire_protocol::{Protocol, Value};
use hubwire_test_support::node::NodeProcess;
use hubwire_test_support::{http, unique_prefix};
use parking_lot::Mutex;
use serde_json::json;
use tokio::task::JoinHandle;

/// The hub every test uses: the built-in diagnostics hub.
pub const HUB: &str = "diagnostics";
/// The HS256 secret shared by the nodes of a test.
const JWT_SECRET: &str = "cluster-tests-jwt-secret-of-32-bytes";
/// How often a recording client pings: well within the 30 s client timeout.
const PING_EVERY: Duration = Duration::from_secs(5);
/// The pause between two messages of the publisher (about 40 messages/s).
const PUBLISH_PAUSE: Duration = Duration::from_millis(20);
/// How often [`eventually`] checks again.
const POLL: Duration = Duration::from_millis(100);

/// Runs blocking work (process control, HTTP, the `redis` crate) on the
/// current worker thread without stalling the runtime's other tasks.
pub fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

/// The node id of node `n`.
pub fn node_id(n: usize) -> String {
    format!("node-{n}")
}

/// Three `hubwire-node` processes on one Redis (or Redis Cluster).
pub struct Nodes {
    nodes: Vec<NodeProcess>,
    /// The key prefix of this test.
    pub prefix: String,
    auth: Authenticator,
    admin_token: String,
}

impl Nodes {
    /// Starts three nodes on `redis_url` under a fresh prefix, with a 300 ms
    /// heartbeat and a node counted dead after 2 s of silence.
    pub fn start(test: &str, redis_url: &str, redis_cluster: bool) -> Self {
        let prefix = unique_prefix(test);
        let binary = std::path::Path::new(env!("CARGO_BIN_EXE_hubwire-node"));
        let cluster_flag = redis_cluster.to_string();
        let nodes = (1..=3)
            .map(|n| {
                let id = node_id(n);
                let env = [
                    ("HUBWIRE_REDIS_URL", redis_url),
                    ("HUBWIRE_REDIS_PREFIX", prefix.as_str()),
                    ("HUBWIRE_REDIS_CLUSTER", cluster_flag.as_str()),
                    ("HUBWIRE_JWT_SECRET", JWT_SECRET),
                    ("HUBWIRE_NODE_ID", id.as_str()),
                    ("HUBWIRE_NODE_HEARTBEAT_MS", "300"),
                    ("HUBWIRE_NODE_DEAD_AFTER_MS", "2000"),
                ];
                NodeProcess::start(&id, binary, &env)
            })
            .collect();
        let config = Config {
            jwt_secret: Some(JWT_SECRET.into()),
            ..Config::default()
        };
        let auth = Authenticator::from_config(&config).expect("authenticator");
        let admin = Claims::new("cluster-test-admin", 3600).with_roles(vec!["admin".into()]);
        let admin_token = auth.issue(&admin).expect("admin token");
        Self {
            nodes,
            prefix,
            auth,
            admin_token,
        }
    }

    /// Node `n` (1-based).
    pub fn node(&self, n: usize) -> &NodeProcess {
        &self.nodes[n - 1]
    }

    /// Node `n` (1-based), mutably.
    pub fn node_mut(&mut self, n: usize) -> &mut NodeProcess {
        &mut self.nodes[n - 1]
    }

    /// Whether each node's process still runs.
    pub fn running(&mut self) -> Vec<bool> {
        self.nodes.iter_mut().map(NodeProcess::is_running).collect()
    }

    /// The output of every node, for failure messages.
    pub fn logs(&self) -> String {
        let logs = self.nodes.iter().enumerate();
        logs.map(|(i, node)| format!("--- {} ---\n{}\n", node_id(i + 1), node.output()))
            .collect()
    }

    /// A SignalR client of `user` on node `n` (WebSockets, skipNegotiation).
    pub async fn client(&self, n: usize, user: &str) -> Client {
        match self.try_client(n, user).await {
            Ok(client) => client,
            Err(e) => panic!("{user} cannot connect to {}: {e}", node_id(n)),
        }
    }

    /// Like [`Nodes::client`], with the `admin` role: the diagnostics hub's
    /// sends to other users and connections need it.
    pub async fn admin_client(&self, n: usize, user: &str) -> Client {
        let claims = Claims::new(user, 3600).with_roles(vec!["admin".into()]);
        match self.connect(n, &claims).await {
            Ok(client) => client,
            Err(e) => panic!("{user} cannot connect to {}: {e}", node_id(n)),
        }
    }

    /// Like [`Nodes::client`], but a refusal is the caller's to check.
    pub async fn try_client(&self, n: usize, user: &str) -> Result<Client, ClientError> {
        self.connect(n, &Claims::new(user, 3600)).await
    }

    async fn connect(&self, n: usize, claims: &Claims) -> Result<Client, ClientError> {
        let token = self.auth.issue(claims).expect("user token");
        let options = ConnectOptions {
            base_url: self.node(n).base_url(),
            hub: HUB.into(),
            token: Some(token),
            protocol: Protocol::Json,
            source: None,
        };
        Client::connect(&options).await
    }

    /// A client of `user` on node `n` that joins `groups`, then records
    /// everything the server invokes on it.
    pub async fn member(&self, n: usize, user: &str, groups: &[&str]) -> Member {
        let mut client = self.client(n, user).await;
        let conn = Conn::identify(&mut client, n, user, groups).await;
        Member::record(client, conn)
    }

    /// `GET path` on node `n`'s REST API as an admin: status and JSON body
    /// (`Null` when the body is not JSON).
    pub fn rest_get(&self, n: usize, path: &str) -> Result<(u16, serde_json::Value), String> {
        let auth = format!("Bearer {}", self.admin_token);
        let response = http::request(self.node(n).address(), "GET", path, &[("Authorization", &auth)], "")
            .map_err(|e| format!("GET {path} on {}: {e}", node_id(n)))?;
        let body = serde_json::from_str(&response.body).unwrap_or(serde_json::Value::Null);
        Ok((response.status, body))
    }

    /// The status of node `n`'s `/readyz` (0 if it did not answer).
    pub fn readyz(&self, n: usize) -> u16 {
        http::request(self.node(n).address(), "GET", "/readyz", &[], "").map_or(0, |r| r.status)
    }
}

/// One connection as the cluster should know it.
#[derive(Clone, Debug)]
pub struct Conn {
    /// Its connection id (from `WhoAmI`).
    pub id: String,
    /// Its user.
    pub user: String,
    /// The node holding it (1-based).
    pub node: usize,
    /// The groups it joined.
    pub groups: BTreeSet<String>,
}

impl Conn {
    /// Asks the server who `client` is, and joins `groups`.
    pub async fn identify(client: &mut Client, node: usize, user: &str, groups: &[&str]) -> Self {
        let me = client.invoke("WhoAmI", vec![]).await.expect("WhoAmI");
        let id = me["connectionId"].as_str().expect("connectionId").to_owned();
        assert_eq!(me["userId"], json!(user), "WhoAmI of {user}");
        for group in groups {
            let joined = client.invoke("JoinGroup", vec![json!(group)]).await;
            joined.unwrap_or_else(|e| panic!("{user} cannot join {group}: {e}"));
        }
        Self {
            id,
            user: user.into(),
            node,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }
}

/// One invocation the server sent a client: its target and arguments.
pub type Invocation = (String, Vec<Value>);

/// Invocations received so far, shared by a reading task and the test.
type Received = Arc<Mutex<Vec<Invocation>>>;

/// A client whose every received invocation is recorded by a reading task
/// (which also pings, so the server's client timeout never fires).
pub struct Member {
    /// The connection.
    pub conn: Conn,
    received: Received,
    reader: JoinHandle<ClientError>,
}

impl Member {
    fn record(client: Client, conn: Conn) -> Self {
        let received = Received::default();
        let reader = tokio::spawn(read(client, received.clone()));
        Self { conn, received, reader }
    }

    /// Whether the connection is still open (the reader has not failed).
    pub fn is_open(&self) -> bool {
        !self.reader.is_finished()
    }

    /// The arguments of every received invocation of `target`, in order.
    pub fn received(&self, target: &str) -> Vec<Vec<Value>> {
        let received = self.received.lock();
        let of_target = received.iter().filter(|(t, _)| t == target);
        of_target.map(|(_, args)| args.clone()).collect()
    }

    /// Every received invocation: target and arguments.
    pub fn all_received(&self) -> Vec<Invocation> {
        self.received.lock().clone()
    }

    /// The sequence numbers of the `Tick`s received, in order of arrival.
    pub fn ticks(&self) -> Vec<u64> {
        let ticks = self.received("Tick").into_iter();
        ticks
            .map(|args| args.first().and_then(Value::as_u64).expect("a Tick carries its number"))
            .collect()
    }

    /// `UserOffline` announcements received, by user.
    pub fn offline_announcements(&self) -> Vec<String> {
        let announcements = self.received("UserOffline").into_iter();
        announcements
            .map(|args| args.first().and_then(Value::as_str).unwrap_or("?").to_owned())
            .collect()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn read(mut client: Client, received: Received) -> ClientError {
    let mut last_ping = Instant::now();
    loop {
        if last_ping.elapsed() >= PING_EVERY {
            if let Err(e) = client.ping().await {
                return e;
            }
            last_ping = Instant::now();
        }
        match client.next_invocation(Duration::from_millis(500)).await {
            Ok(invocation) => received.lock().push(invocation),
            Err(ClientError::Timeout) => {}
            Err(e) => return e,
        }
    }
}

/// What became of one numbered message.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Its sequence number.
    pub seq: u64,
    /// The hub error the invocation completed with, if any.
    pub error: Option<String>,
}

/// A client that invokes `SendToGroup(group, "Tick", seq)` with seq = 0, 1, …
/// one after the other, until stopped.
pub struct Publisher {
    /// The publisher's connection.
    pub conn: Conn,
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    task: JoinHandle<Result<Client, ClientError>>,
}

impl Publisher {
    /// Connects `user` to node `n` and starts sending to `group`. The user is
    /// an admin, so that tests may send to users through its client afterwards.
    pub async fn start(nodes: &Nodes, n: usize, user: &str, group: &str) -> Self {
        let mut client = nodes.admin_client(n, user).await;
        let conn = Conn::identify(&mut client, n, user, &[]).await;
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(publish(client, group.to_owned(), stop.clone(), outcomes.clone()));
        Self {
            conn,
            stop,
            outcomes,
            task,
        }
    }

    /// The next sequence number it will send.
    pub fn next_seq(&self) -> u64 {
        self.outcomes.lock().len() as u64
    }

    /// The highest sequence number whose invocation completed without error.
    pub fn last_ok(&self) -> Option<u64> {
        let outcomes = self.outcomes.lock();
        outcomes.iter().rev().find(|o| o.error.is_none()).map(|o| o.seq)
    }

    /// Stops after the invocation under way; the client and every outcome.
    pub async fn stop(self) -> (Client, Vec<Outcome>) {
        self.stop.store(true, Ordering::Relaxed);
        let client = match self.task.await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => panic!("the publisher's connection failed: {e}"),
            Err(e) => panic!("the publisher panicked: {e}"),
        };
        let outcomes = self.outcomes.lock().clone();
        (client, outcomes)
    }
}

async fn publish(
    mut client: Client,
    group: String,
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
) -> Result<Client, ClientError> {
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let arguments = vec![json!(group), json!("Tick"), json!(seq)];
        let error = match client.invoke("SendToGroup", arguments).await {
            Ok(_) => None,
            Err(ClientError::Hub(error)) => Some(error),
            Err(e) => return Err(e),
        };
        outcomes.lock().push(Outcome { seq, error });
        seq += 1;
        tokio::time::sleep(PUBLISH_PAUSE).await;
    }
    Ok(client)
}

/// Polls `check` (blocking work allowed) until it returns `Ok`, and returns
/// that; panics with the last error once `deadline` has passed.
pub async fn eventually<T>(deadline: Instant, what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    loop {
        let last = match blocking(&mut check) {
            Ok(value) => return value,
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            panic!("not by the deadline: {what}: {last}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `Ok` if `condition`, else `Err(message)`.
pub fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(message())
    }
}

/// Whether `seqs` is exactly `first..=last`, one each, in order; else what differs.
pub fn exactly_in_order(seqs: &[u64], first: u64, last: u64) -> Result<(), String> {
    let expected: Vec<u64> = (first..=last).collect();
    if seqs == expected {
        return Ok(());
    }
    let got: BTreeSet<u64> = seqs.iter().copied().collect();
    let missing: Vec<u64> = expected.iter().copied().filter(|s| !got.contains(s)).collect();
    let duplicates = seqs.len() - got.len();
    let out_of_order = seqs.windows(2).filter(|w| w[0] >= w[1]).count();
    Err(format!(
        "expected {first}..={last}; got {} messages: {} missing (first ones: {:?}), {duplicates} duplicates, \
         {out_of_order} out of order, {} outside the range",
        seqs.len(),
        missing.len(),
        &missing[..missing.len().min(20)],
        got.iter().filter(|s| !(first..=last).contains(*s)).count(),
    ))
}
