//! The per-user connection limit (default 5) holds across the cluster, is
//! enforced before the 101 (a 429, not a handshake error), and a closed
//! connection frees its place on every node.

use std::time::{Duration, Instant};

use hubwire_loadtest::ClientError;
use hubwire_test_support::RedisServer;

use crate::harness::{blocking, eventually, Nodes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_user_limit_counts_connections_on_every_node() {
    let server = blocking(RedisServer::start);
    let nodes = blocking(|| Nodes::start("user-limit", &server.url(), false));

    let mut held = Vec::new();
    for n in [1, 2, 3, 1, 2] {
        held.push(nodes.client(n, "heavy").await);
    }
    match nodes.try_client(3, "heavy").await {
        Err(ClientError::WebSocket(error)) => {
            assert!(
                error.to_string().contains("429"),
                "refused before the 101 with 429: {error}"
            );
        }
        Err(other) => panic!("refused the wrong way: {other}"),
        Ok(_) => panic!("a sixth connection of one user was accepted across the cluster"),
    }
    // Another user is not affected.
    nodes.client(3, "light").await;

    // Closing one (on node 2) frees a place on node 3.
    held.remove(1).close().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reconnected = None;
    while reconnected.is_none() {
        match nodes.try_client(3, "heavy").await {
            Ok(client) => reconnected = Some(client),
            Err(ClientError::WebSocket(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the freed place was not given back within 10 s: {e}"),
        }
    }
    eventually(deadline, "the user holds exactly five connections again", || {
        let (status, body) = nodes.rest_get(1, "/api/hubs/diagnostics/users/heavy/count")?;
        (status == 200 && body["connections"] == 5)
            .then_some(())
            .ok_or_else(|| format!("{status} {body}"))
    })
    .await;
}
