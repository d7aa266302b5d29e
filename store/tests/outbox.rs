//! The broadcast outbox and the stored message type, the same test
//! functions on SQLite and PostgreSQL.

mod common;

use common::TestDb;
use hubwire_store::{Message, MessageId, NewMessage, Store};

on_both!(
    unmarked_messages_are_listed_per_node_until_marked,
    many_marks_at_once_all_commit,
    a_repeat_returns_the_mark,
    one_of_racing_takers_takes_a_message,
    message_type_is_stored_and_read_back,
);

fn by(node: Option<&str>, conversation: &str, client_id: &str) -> NewMessage {
    NewMessage {
        conversation_id: conversation.into(),
        sender_id: "ann".into(),
        content: format!("{client_id} says hi"),
        client_message_id: Some(client_id.into()),
        stored_by: node.map(Into::into),
        ..NewMessage::default()
    }
}

async fn append(store: &Store, m: NewMessage) -> (Message, bool) {
    match store.append_message(m).await {
        Ok(appended) => appended,
        Err(e) => panic!("append failed: {e}"),
    }
}

fn ids(messages: &[Message]) -> Vec<MessageId> {
    messages.iter().map(|m| m.id).collect()
}

async fn unmarked_messages_are_listed_per_node_until_marked(db: TestDb) {
    let store = db.open().await;
    store
        .create_conversation(Some("c"), "group", &["ann", "ben"])
        .await
        .expect("create");
    let mut n1 = Vec::new();
    for i in 0..5 {
        let (m, inserted) = append(&store, by(Some("node-1"), "c", &format!("k{i}"))).await;
        assert!(inserted);
        assert_eq!(m.stored_by.as_deref(), Some("node-1"));
        assert_eq!(m.broadcast_at, None, "in the outbox until marked");
        n1.push(m);
    }
    let (n2, _) = append(&store, by(Some("node-2"), "c", "other")).await;
    let (nobody, _) = append(&store, by(None, "c", "tool")).await;

    let listed = store.unbroadcast_of("node-1", None, 100).await.expect("list");
    assert_eq!(ids(&listed), ids(&n1), "node-1's messages, oldest first");
    assert_eq!(listed[0].content, "k0 says hi");
    let page = store.unbroadcast_of("node-1", Some(n1[1].id), 2).await.expect("page");
    assert_eq!(ids(&page), ids(&n1[2..4]), "a page after a cursor");
    assert_eq!(
        ids(&store.unbroadcast_of("node-2", None, 100).await.expect("list")),
        vec![n2.id]
    );
    assert!(
        store.unbroadcast_of("", None, 100).await.expect("list").is_empty(),
        "a message stored by no node is no node's"
    );

    store.mark_broadcast(n1[0].id).await.expect("mark");
    store.mark_broadcast(n1[3].id).await.expect("mark");
    store.mark_broadcast(n1[3].id).await.expect("a second mark is harmless");
    let listed = store.unbroadcast_of("node-1", None, 100).await.expect("list");
    assert_eq!(ids(&listed), vec![n1[1].id, n1[2].id, n1[4].id]);
    let marked = store.message("c", n1[0].id).await.expect("read").expect("stored");
    assert!(marked.broadcast_at.is_some(), "{marked:?}");
    let unmarked = store.message("c", nobody.id).await.expect("read").expect("stored");
    assert_eq!(unmarked.broadcast_at, None);
}

async fn many_marks_at_once_all_commit(db: TestDb) {
    let store = db.open().await;
    store
        .create_conversation(Some("c"), "group", &["ann"])
        .await
        .expect("create");
    let mut stored = Vec::new();
    for i in 0..300 {
        stored.push(append(&store, by(Some("node-1"), "c", &format!("k{i}"))).await.0);
    }
    let marks = stored.iter().map(|m| {
        let (store, id) = (store.clone(), m.id);
        tokio::spawn(async move { store.mark_broadcast(id).await })
    });
    for mark in futures_util::future::join_all(marks).await {
        mark.expect("task").expect("mark");
    }
    assert!(store
        .unbroadcast_of("node-1", None, 1000)
        .await
        .expect("list")
        .is_empty());
    for m in store.messages_after("c", None, 1000).await.expect("read") {
        assert!(m.broadcast_at.is_some_and(|at| at >= m.sent_at), "{m:?}");
    }
}

async fn a_repeat_returns_the_mark(db: TestDb) {
    let store = db.open().await;
    store
        .create_conversation(Some("c"), "group", &["ann"])
        .await
        .expect("create");
    let (first, _) = append(&store, by(Some("node-1"), "c", "k")).await;
    let (again, inserted) = append(&store, by(Some("node-2"), "c", "k")).await;
    assert!(!inserted);
    assert_eq!(again.id, first.id);
    assert_eq!(
        again.stored_by.as_deref(),
        Some("node-1"),
        "the storing node stays the first"
    );
    assert_eq!(again.broadcast_at, None, "a repeat sees that the first was not marked");
    store.mark_broadcast(first.id).await.expect("mark");
    let (marked, inserted) = append(&store, by(Some("node-2"), "c", "k")).await;
    assert!(!inserted);
    assert!(marked.broadcast_at.is_some(), "a repeat sees the mark: {marked:?}");
}

async fn message_type_is_stored_and_read_back(db: TestDb) {
    let store = db.open().await;
    store
        .create_conversation(Some("c"), "group", &["ann", "ben"])
        .await
        .expect("create");
    let image = NewMessage {
        message_type: Some("Image".into()),
        ..by(Some("node-1"), "c", "k1")
    };
    let (stored, _) = append(&store, image).await;
    assert_eq!(stored.message_type.as_deref(), Some("Image"));
    let (plain, _) = append(&store, by(Some("node-1"), "c", "k2")).await;
    assert_eq!(
        plain.message_type, None,
        "none given: none stored (the definition's default)"
    );
    let after = store.messages_after("c", None, 10).await.expect("after");
    let kinds: Vec<Option<&str>> = after.iter().map(|m| m.message_type.as_deref()).collect();
    assert_eq!(kinds, vec![Some("Image"), None]);
    let before = store.messages_before("c", None, 10).await.expect("before");
    assert_eq!(before[1].message_type.as_deref(), Some("Image"));
    let last = NewMessage {
        message_type: Some("Location".into()),
        ..by(Some("node-1"), "c", "k3")
    };
    append(&store, last).await;
    let inbox = store.conversations_of("ben").await.expect("inbox");
    let newest = inbox[0].last_message.as_ref().expect("a last message");
    assert_eq!(newest.message_type.as_deref(), Some("Location"));
}

async fn one_of_racing_takers_takes_a_message(db: TestDb) {
    let store = db.open().await;
    store
        .create_conversation(Some("c"), "group", &["ann"])
        .await
        .expect("create");
    let mut stored = Vec::new();
    for i in 0..3 {
        stored.push(append(&store, by(Some("dead"), "c", &format!("k{i}"))).await.0);
    }
    store.mark_broadcast(stored[2].id).await.expect("mark");
    let all = ids(&stored);
    let takers = (0..8).map(|_| {
        let (store, all) = (store.clone(), all.clone());
        tokio::spawn(async move { store.take_broadcast(&all).await })
    });
    let mut taken: Vec<MessageId> = Vec::new();
    for taker in futures_util::future::join_all(takers).await {
        taken.extend(taker.expect("task").expect("take"));
    }
    taken.sort();
    assert_eq!(
        taken,
        all[..2].to_vec(),
        "each unmarked message taken once, the marked one never"
    );
    assert!(store.unbroadcast_of("dead", None, 10).await.expect("list").is_empty());
    store.untake_broadcast(all[0]).await.expect("untake");
    assert_eq!(
        ids(&store.unbroadcast_of("dead", None, 10).await.expect("list")),
        vec![all[0]],
        "back in the outbox"
    );
}
