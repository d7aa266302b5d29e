//! The node's inbox is bounded: a node that does not keep up makes the
//! receive task wait (counted), and what waits is delivered in order, not
//! lost, while it fits in fred's buffer behind the inbox.

use hubwire_backplane::{AnyBackplane, BackplaneEvent, Channel, RedisBackplane, Target};
use hubwire_test_support::{unique_prefix, RedisServer};

use crate::common::{deliver, eventually, redis_config, redis_node, TestNode, ARRIVAL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_inbox_makes_the_receiver_wait_and_loses_nothing() {
    let server = RedisServer::start();
    let prefix = unique_prefix("inbox");
    let sender = redis_node(&server.url(), &prefix, "sender", false).await;
    let mut config = redis_config(&server.url(), &prefix, "slow", false);
    config.inbox_capacity = 2;
    let (backplane, inbox) = RedisBackplane::connect(config).await.expect("connect");
    let mut slow = TestNode::new(AnyBackplane::Redis(backplane), inbox);
    let hub = "chat";
    slow.subscribe(Channel::All(hub.into())).await;

    let origin = sender.id();
    for payload in ["m0", "m1", "m2", "m3", "m4", "m5"] {
        sender.publish(deliver(&origin, hub, Target::All, payload)).await;
    }
    // Nothing reads the inbox yet: two events fit, the third makes the receiver wait.
    eventually(ARRIVAL, "the receiver finds the inbox full", || {
        let full = slow.stats().inbox_full;
        async move { full >= 1 }
    })
    .await;

    let mut payloads = Vec::new();
    for _ in 0..6 {
        match slow.next_event().await {
            BackplaneEvent::Message(msg) => payloads.push(msg),
            other => panic!("expected a delivery, got {other:?}"),
        }
    }
    let sent: Vec<_> = ["m0", "m1", "m2", "m3", "m4", "m5"]
        .into_iter()
        .map(|p| deliver(&origin, hub, Target::All, p))
        .collect();
    assert_eq!(payloads, sent, "every message, in order");
    assert_eq!(slow.stats().dropped, 0);
    slow.expect_quiet().await;
}
