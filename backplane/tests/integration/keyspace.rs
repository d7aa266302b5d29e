//! What the Redis backplane writes, read back with an independent client (the
//! `redis` crate): names and types as `names.rs` documents them, the Lua
//! scripts' names agreeing with Rust's, and nothing left behind.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hubwire_backplane::redis::codec;
use hubwire_backplane::redis::names::pair;
use hubwire_backplane::{
    AnyBackplane, BackplaneEvent, Channel, ConnectionId, Delivery, GroupName, HubName, Keyspace, MembershipTtl, NodeId,
    RedisNames, Target, UserId,
};
use hubwire_test_support::{unique_prefix, RedisServer};

use crate::common::{connect, deliver, query, record, redis_node};

/// Every key under the prefix, with its type.
fn keys(con: &mut redis::Connection, prefix: &str) -> BTreeMap<String, String> {
    let names: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query(con).expect("KEYS");
    names
        .into_iter()
        .map(|key| {
            let kind: String = redis::cmd("TYPE").arg(&key).query(con).expect("TYPE");
            (key, kind)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_named_and_typed_as_documented_and_cleaned_up() {
    let server = RedisServer::start();
    let prefix = unique_prefix("keyspace");
    let node = redis_node(&server.url(), &prefix, "n:1", false).await;
    let names = RedisNames::new(&prefix);
    let (hub, user) = (HubName::from("chat"), UserId::from("u:{1}"));
    let (group, id) = (GroupName::from("g:a{b}%"), ConnectionId::from("c:1"));
    let bp = &node.backplane;
    let rec = record("c:1", &node.id(), "chat", Some("u:{1}"));
    bp.register(&rec, Some(5)).await.expect("register");
    bp.join_group(&hub, &group, &id).await.expect("join");
    bp.add_user_to_group(&hub, &user, &"forever".into(), MembershipTtl::Forever)
        .await
        .expect("add");
    bp.add_user_to_group(
        &hub,
        &user,
        &"short".into(),
        MembershipTtl::For(Duration::from_secs(60)),
    )
    .await
    .expect("add");
    bp.take_token(&hub, &user, "send:{x}", 5, Duration::from_secs(60))
        .await
        .expect("take");
    bp.cache_read_position(&hub, "conv:{1}", &user, "42|1732000000000")
        .await
        .expect("cache");

    let mut con = connect(&server);
    let expected: BTreeMap<String, String> = [
        (names.live_nodes(), "zset"),
        (names.hubs(), "set"),
        (names.hub_conns(&hub), "set"),
        (names.conn(&hub, &id), "hash"),
        (names.conn_groups(&hub, &id), "set"),
        (names.node_conns(&hub, &node.id()), "set"),
        (names.node_lease(&hub, &node.id()), "string"),
        (names.user_conns(&hub, &user), "set"),
        (names.user_groups(&hub, &user), "zset"),
        (names.group_conns(&hub, &group), "set"),
        (names.group_conns(&hub, &"forever".into()), "set"),
        (names.group_conns(&hub, &"short".into()), "set"),
        (names.rate(&hub, &user, "send:{x}"), "hash"),
        (names.read_position(&hub, "conv:{1}", &user), "string"),
    ]
    .into_iter()
    .map(|(k, t)| (k, t.to_owned()))
    .collect();
    assert_eq!(keys(&mut con, &prefix), expected);
    assert!(names
        .group_conns(&hub, &group)
        .ends_with(":group:g%3Aa%7Bb%7D%25:conns"));

    let hash: BTreeMap<String, String> = query(&mut con, &["HGETALL", &names.conn(&hub, &id)]);
    let fields: BTreeMap<String, String> = [
        ("node", "n:1"),
        ("hub", "chat"),
        ("user", "u:{1}"),
        ("transport", "WebSockets"),
        ("since", "1732000000000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(hash, fields);
    let groups: BTreeSet<String> = query(&mut con, &["SMEMBERS", &names.conn_groups(&hub, &id)]);
    assert_eq!(
        groups,
        ["forever", "g:a{b}%", "short"].into_iter().map(String::from).collect()
    );
    let forever: String = query(&mut con, &["ZSCORE", &names.user_groups(&hub, &user), "forever"]);
    assert_eq!(forever, "inf");
    let ttl: i64 = query(&mut con, &["PTTL", &names.user_groups(&hub, &user)]);
    assert_eq!(ttl, -1, "a forever membership keeps the key");
    bp.remove_user_from_group(&hub, &user, &"forever".into())
        .await
        .expect("remove");
    let ttl: i64 = query(&mut con, &["PTTL", &names.user_groups(&hub, &user)]);
    assert!(
        ttl > 50_000 && ttl <= 60_000,
        "expires with its latest membership: {ttl}"
    );
    let beat: f64 = query(&mut con, &["ZSCORE", &names.live_nodes(), "n:1"]);
    assert!(beat > 1.7e12);
    let bucket: BTreeMap<String, String> = query(&mut con, &["HGETALL", &names.rate(&hub, &user, "send:{x}")]);
    assert_eq!(bucket.keys().collect::<Vec<_>>(), ["at", "tokens"]);
    assert_eq!(bucket["tokens"].parse::<f64>().map(|t| t.round()), Ok(4.0));
    let ttl: i64 = query(&mut con, &["PTTL", &names.rate(&hub, &user, "send:{x}")]);
    assert!(ttl > 0 && ttl <= 12_000, "a bucket expires once full again: {ttl}");
    let ttl: i64 = query(&mut con, &["PTTL", &names.read_position(&hub, "conv:{1}", &user)]);
    assert!(ttl > 29 * 86_400_000, "read positions are kept 30 days: {ttl}");
    let _: i64 = query(&mut con, &["DEL", &names.read_position(&hub, "conv:{1}", &user)]);

    bp.remove_user_from_all_groups(&hub, &user).await.expect("remove all");
    assert_eq!(bp.unregister(&id).await.expect("unregister"), Some(user.clone()));
    let seen: u64 = query(&mut con, &["GET", &names.last_seen(&hub, &user)]);
    assert!(seen > 1_700_000_000_000, "last seen in Unix ms: {seen}");
    let ttl: i64 = query(&mut con, &["PTTL", &names.last_seen(&hub, &user)]);
    assert!(ttl > 29 * 86_400_000, "last seen is kept 30 days: {ttl}");
    let _: i64 = query(&mut con, &["DEL", &names.rate(&hub, &user, "send:{x}")]);
    let mut left: Vec<String> = keys(&mut con, &prefix).into_keys().collect();
    left.sort();
    let mut expected = vec![names.hubs(), names.live_nodes(), names.last_seen(&hub, &user)];
    expected.sort();
    assert_eq!(left, expected, "a user who left leaves only their last-seen time");
    let _: i64 = query(&mut con, &["DEL", &names.last_seen(&hub, &user)]);
    bp.shutdown().await.expect("shutdown");
    let left: Vec<String> = keys(&mut con, &prefix).into_keys().collect();
    assert_eq!(left, [names.hubs()], "only the list of hubs outlives the nodes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_presence_keys_are_named_and_typed_as_documented_and_cleaned_up() {
    let server = RedisServer::start();
    let prefix = unique_prefix("rooms");
    let node = redis_node(&server.url(), &prefix, "n:1", false).await;
    let names = RedisNames::new(&prefix);
    let (hub, user, id) = (HubName::from("rooms"), UserId::from("u:{1}"), ConnectionId::from("c:1"));
    let bp = &node.backplane;
    bp.room_presence_set(&hub, "r:{1}", &id, &user, "{\"u\":1}", Duration::from_secs(60))
        .await
        .expect("set");
    let mut con = connect(&server);
    let (room, index) = (names.room(&hub, "r:{1}"), names.node_rooms(&hub, &node.id()));
    assert!(room.ends_with(":room:r%3A%7B1%7D"), "{room}");
    let all = keys(&mut con, &prefix);
    assert_eq!(all.get(&room).map(String::as_str), Some("hash"));
    assert_eq!(all.get(&index).map(String::as_str), Some("set"));
    let hash: BTreeMap<String, String> = query(&mut con, &["HGETALL", &room]);
    let value = pair("n:1", &pair("u:{1}", "{\"u\":1}"));
    assert_eq!(hash, BTreeMap::from([("c:1".to_owned(), value)]));
    let members: Vec<String> = query(&mut con, &["SMEMBERS", &index]);
    assert_eq!(members, [pair("r:{1}", "c:1")]);
    for key in [&room, &index] {
        let ttl: i64 = query(&mut con, &["PTTL", key]);
        assert!(
            ttl > 50_000 && ttl <= 60_000,
            "{key} expires with the presence TTL: {ttl}"
        );
    }
    let removed = bp.room_presence_remove(&hub, "r:{1}", &id).await.expect("remove");
    assert_eq!(removed.previous.as_deref(), Some("{\"u\":1}"));
    let all = keys(&mut con, &prefix);
    assert!(
        !all.contains_key(&room) && !all.contains_key(&index),
        "nothing left: {all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_is_one_publish_on_its_channel() {
    let server = RedisServer::start();
    let prefix = unique_prefix("publish");
    let node = redis_node(&server.url(), &prefix, "origin", false).await;
    let names = RedisNames::new(&prefix);
    let channel = names.channel(&Channel::Group(HubName::from("chat"), GroupName::from("room:1")));
    assert_eq!(channel, format!("{prefix}:hub:chat:group:room%3A1"));

    let mut listener = connect(&server);
    let mut pubsub = listener.as_pubsub();
    pubsub.subscribe(&channel).expect("subscribe");
    pubsub
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");

    let msg = deliver(
        &NodeId::from("origin"),
        "chat",
        Target::Group("room:1".into()),
        "payload",
    );
    node.backplane.publish(msg.clone()).await.expect("publish");
    let received = pubsub.get_message().expect("one message");
    assert_eq!(received.get_channel_name(), channel);
    let frame: Vec<u8> = received.get_payload().expect("bytes");
    let (origin, event) = codec::decode(frame.into()).expect("decodes");
    assert_eq!(origin, NodeId::from("origin"));
    assert_eq!(event, BackplaneEvent::Message(msg));
    assert!(pubsub.get_message().is_err(), "exactly one publish");
    if let AnyBackplane::Redis(redis) = &node.backplane {
        assert_eq!(redis.stats().published, 1);
    }
}
