//! A minimal WebSocket broadcast server with no protocol: the limit hubwire's
//! benchmark figures are held against (`raw_ws_server`, docs/benchmarks.md).
//!
//! Text frames from a client:
//! - `join <group>`: adds the connection to `group`;
//! - `pub <group> <payload>`: sends `<payload>` as a text frame to every member;
//! - `echo <payload>`: sends `<payload>` back.
//!
//! Anything else is ignored. There is no handshake, no authentication, no
//! heartbeat, no cross-node fan-out: only what a group broadcast needs.
//!
//! Invariants: one task reads a connection and handles its frames in order;
//! one writer task per connection drains its bounded queue, writing whatever
//! is queued before one flush. A publish copies the payload once and queues
//! the same bytes for every member; a member whose queue is full misses that
//! message (the load generator counts it as lost) rather than slowing the
//! publisher down.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Frames queued for one connection before it misses messages.
const QUEUE: usize = 4096;
/// Frames written before one flush, at most.
const BATCH: usize = 256;
/// The read buffer of a connection, allocated up front: small, as the frames
/// are (tungstenite's default of 128 KiB would dominate memory per connection);
/// a longer frame still arrives whole, the buffer grows for it.
const READ_BUFFER: usize = 1024;

type Queue = mpsc::Sender<Message>;

/// The groups: name to members (connection id to queue).
///
/// A `std` lock, not a tokio one: it is never held across an `.await`, and a
/// publish only clones a cheap `Message` into each member's queue under the
/// read lock, so publishers on several threads share it.
#[derive(Default)]
struct Groups(RwLock<HashMap<String, HashMap<u64, Queue>>>);

impl Groups {
    fn join(&self, group: &str, id: u64, queue: &Queue) {
        let mut groups = self.0.write().unwrap_or_else(|e| e.into_inner());
        groups.entry(group.to_owned()).or_default().insert(id, queue.clone());
    }

    fn leave(&self, group: &str, id: u64) {
        let mut groups = self.0.write().unwrap_or_else(|e| e.into_inner());
        if let Some(members) = groups.get_mut(group) {
            members.remove(&id);
            if members.is_empty() {
                groups.remove(group);
            }
        }
    }

    fn publish(&self, group: &str, message: &Message) {
        let groups = self.0.read().unwrap_or_else(|e| e.into_inner());
        for queue in groups.get(group).into_iter().flat_map(HashMap::values) {
            // A full queue misses this message; a closed one is leaving.
            let _ = queue.try_send(message.clone());
        }
    }
}

/// Serves connections from `listener` until `shutdown` completes; then stops
/// accepting and drops every connection.
pub async fn run(listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let groups = Arc::new(Groups::default());
    let next_id = AtomicU64::new(0);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    connections.spawn(serve(stream, id, groups.clone()));
                }
                // Out of file descriptors and the like: the client sees it; keep serving the others.
                Err(e) => eprintln!("raw_ws_server: accept: {e}"),
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

/// One connection: the handshake, a writer task, then its frames in order.
async fn serve(stream: TcpStream, id: u64, groups: Arc<Groups>) {
    // Nagle off, as every server measured here; if it fails the frames still flow.
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (mut sink, mut frames) = ws.split();
    let (queue, mut queued) = mpsc::channel::<Message>(QUEUE);
    let writer = tokio::spawn(async move {
        // Grows on first use: an idle connection holds no batch.
        let mut batch = Vec::new();
        while queued.recv_many(&mut batch, BATCH).await > 0 {
            for message in batch.drain(..) {
                if sink.feed(message).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let mut joined: Vec<String> = Vec::new();
    while let Some(Ok(frame)) = frames.next().await {
        let Message::Text(text) = frame else {
            if frame.is_close() {
                break;
            }
            continue;
        };
        let Some((command, rest)) = text.as_str().split_once(' ') else {
            continue;
        };
        match command {
            "join" => {
                groups.join(rest, id, &queue);
                joined.push(rest.to_owned());
            }
            "pub" => {
                if let Some((group, payload)) = rest.split_once(' ') {
                    groups.publish(group, &Message::Text(Utf8Bytes::from(payload)));
                }
            }
            "echo" => {
                // Waiting for room here slows only this connection's own reading.
                let sent = queue.send(Message::Text(Utf8Bytes::from(rest))).await;
                if sent.is_err() {
                    break;
                }
            }
            _ => {}
        }
    }
    for group in &joined {
        groups.leave(group, id);
    }
    drop(queue);
    // The writer ends once every queue sender is gone; it may already have.
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ConnectOptions;
    use crate::peer::{Peer, ServerKind};
    use hubwire_protocol::Protocol;
    use serde_json::json;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_publish_reaches_every_member_and_echo_comes_back() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let options = ConnectOptions {
            base_url: format!("http://{}", listener.local_addr().expect("addr")),
            hub: String::new(),
            token: None,
            protocol: Protocol::Json,
            source: None,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(run(listener, async {
            // A dropped sender stops the server too.
            let _ = stopped.await;
        }));
        let mut members = Vec::new();
        for _ in 0..3 {
            let mut peer = Peer::connect(ServerKind::Raw, &options).await.expect("connect");
            peer.join("g").await.expect("join");
            members.push(peer);
        }
        let mut publisher = Peer::connect(ServerKind::Raw, &options).await.expect("connect");
        publisher
            .send_to_group("g", "tick", json!({"n": 1}))
            .await
            .expect("publish");
        assert_eq!(publisher.echo(json!("flush")).await.expect("echo"), json!("flush"));
        for member in &mut members {
            let event = member.next_event(Duration::from_secs(5)).await.expect("event");
            assert_eq!(event, ("tick".to_owned(), json!({"n": 1})));
        }
        assert!(matches!(
            publisher.next_event(Duration::from_millis(100)).await,
            Err(crate::ClientError::Timeout)
        ));
        // Nothing to report if the server already stopped.
        let _ = stop.send(());
        server.await.expect("server");
    }
}
