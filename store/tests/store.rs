//! The store's behaviour, the same test functions on SQLite and PostgreSQL.

mod common;

use std::collections::HashSet;

use common::TestDb;
use hubwire_store::{MessageId, NewMessage, Store, StoreConfig, StoreError};

on_both!(
    create_is_idempotent_and_conflicts,
    direct_conversation_is_one_under_a_race,
    participants_come_and_go,
    client_message_id_deduplicates,
    concurrent_duplicates_store_one,
    cursors_page_by_time_ordered_ids,
    read_positions_never_move_back,
    concurrent_read_marks_coalesce_and_bad_ones_fail_alone,
    inbox_has_last_message_and_unread_counts,
    content_is_encrypted_and_keys_rotate,
    retention_deletes_only_old_messages_of_its_kind,
    bad_appends_fail_alone,
    calls_are_observed_with_their_batches_and_failures,
);

fn message(conversation: &str, sender: &str, content: &str, client_id: Option<&str>) -> NewMessage {
    NewMessage {
        conversation_id: conversation.into(),
        sender_id: sender.into(),
        content: content.into(),
        attachments: None,
        client_message_id: client_id.map(Into::into),
        ..NewMessage::default()
    }
}

async fn append(store: &Store, m: NewMessage) -> hubwire_store::Message {
    match store.append_message(m).await {
        Ok((stored, _)) => stored,
        Err(e) => panic!("append failed: {e}"),
    }
}

async fn create_is_idempotent_and_conflicts(db: TestDb) {
    let store = db.open().await;
    store.ping().await.expect("ping");
    let first = store
        .create_conversation(Some("guid-1"), "group", &["bob", "alice"])
        .await
        .expect("create");
    assert_eq!(first.participants, vec!["alice", "bob"]);
    assert_eq!(first.kind, "group");
    let again = store
        .create_conversation(Some("guid-1"), "group", &["alice", "bob", "alice"])
        .await
        .expect("same again");
    assert_eq!(again, first);
    let other = store
        .create_conversation(Some("guid-1"), "group", &["alice", "carol"])
        .await;
    assert!(matches!(other, Err(StoreError::Conflict(_))), "{other:?}");
    let kind = store
        .create_conversation(Some("guid-1"), "direct", &["alice", "bob"])
        .await;
    assert!(matches!(kind, Err(StoreError::Conflict(_))), "{kind:?}");
    let generated = store
        .create_conversation(None, "group", &["x"])
        .await
        .expect("generated");
    assert_ne!(generated.id, first.id);
    assert_eq!(store.get_conversation("guid-1").await.expect("get"), Some(first));
    assert_eq!(store.get_conversation("nope").await.expect("get"), None);
}

async fn direct_conversation_is_one_under_a_race(db: TestDb) {
    let store = db.open().await;
    let calls = (0..30).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let (a, b) = if i % 2 == 0 { ("ann", "ben") } else { ("ben", "ann") };
            store.direct_conversation(a, b).await
        })
    });
    let mut ids = HashSet::new();
    for call in calls {
        let conversation = call.await.expect("task").expect("direct");
        assert_eq!(conversation.kind, "direct");
        assert_eq!(conversation.participants, vec!["ann", "ben"]);
        ids.insert(conversation.id);
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(store.conversations_of("ann").await.expect("inbox").len(), 1);
    let other = store.direct_conversation("ann", "cid").await.expect("other");
    assert!(!ids.contains(&other.id));
    assert!(store.direct_conversation("ann", "ann").await.is_err());
}

async fn participants_come_and_go(db: TestDb) {
    let store = db.open().await;
    store
        .create_conversation(Some("c"), "group", &["a"])
        .await
        .expect("create");
    assert!(store.add_participant("c", "b").await.expect("add"));
    assert!(!store.add_participant("c", "b").await.expect("add again"));
    assert!(store.is_participant("c", "b").await.expect("is"));
    let users: Vec<String> = store
        .participants("c")
        .await
        .expect("list")
        .into_iter()
        .map(|p| p.user_id)
        .collect();
    assert_eq!(users, vec!["a", "b"]);
    assert!(store.remove_participant("c", "b").await.expect("remove"));
    assert!(!store.remove_participant("c", "b").await.expect("remove again"));
    assert!(!store.is_participant("c", "b").await.expect("is"));
    let missing = store.add_participant("nope", "b").await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))), "{missing:?}");
    // Partners: everyone who shares a conversation, once, not the user.
    store
        .create_conversation(Some("d"), "group", &["a", "c", "e"])
        .await
        .expect("create d");
    store
        .create_conversation(Some("f"), "group", &["c", "a", "g"])
        .await
        .expect("create f");
    store
        .create_conversation(Some("h"), "group", &["x", "y"])
        .await
        .expect("create h");
    assert_eq!(store.partners_of("a").await.expect("partners"), vec!["c", "e", "g"]);
    assert_eq!(store.partners_of("x").await.expect("partners"), vec!["y"]);
    assert!(store.partners_of("nobody").await.expect("partners").is_empty());
}

async fn client_message_id_deduplicates(db: TestDb) {
    let store = db.open().await;
    store
        .create_conversation(Some("c"), "group", &["a", "b"])
        .await
        .expect("create");
    let (first, inserted) = store
        .append_message(message("c", "a", "hi", Some("m1")))
        .await
        .expect("append");
    assert!(inserted);
    let (again, inserted) = store
        .append_message(message("c", "a", "hi (retry)", Some("m1")))
        .await
        .expect("again");
    assert!(!inserted);
    assert_eq!(again, first);
    // The key is per sender: b may use the same client id.
    let (other, inserted) = store
        .append_message(message("c", "b", "hey", Some("m1")))
        .await
        .expect("b");
    assert!(inserted);
    assert_ne!(other.id, first.id);
    // No client id: never deduplicated.
    let x = append(&store, message("c", "a", "same", None)).await;
    let y = append(&store, message("c", "a", "same", None)).await;
    assert_ne!(x.id, y.id);
    assert_eq!(store.messages_after("c", None, 100).await.expect("all").len(), 4);
}

async fn concurrent_duplicates_store_one(db: TestDb) {
    let store = db.open().await;
    store
        .create_conversation(Some("c"), "group", &["a"])
        .await
        .expect("create");
    // Spawned together, most land in one batch; some may not: either way
    // one is stored and all are answered with it.
    let sends: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            let client_id = format!("k{}", i % 4);
            tokio::spawn(async move {
                store
                    .append_message(message("c", "a", &format!("n{i}"), Some(&client_id)))
                    .await
            })
        })
        .collect();
    let mut inserted = 0;
    let mut ids = HashSet::new();
    for send in sends {
        let (stored, new) = send.await.expect("task").expect("append");
        inserted += usize::from(new);
        ids.insert((stored.client_message_id.clone(), stored.id));
    }
    assert_eq!(inserted, 4);
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(store.messages_after("c", None, 100).await.expect("all").len(), 4);
}

async fn cursors_page_by_time_ordered_ids(db: TestDb) {
    let store = db.open().await;
    store
        .create_conversation(Some("c"), "group", &["a"])
        .await
        .expect("create");
    store
        .create_conversation(Some("d"), "group", &["a"])
        .await
        .expect("create");
    let mut sent = Vec::new();
    for i in 0..10 {
        sent.push(append(&store, message("c", "a", &format!("m{i}"), None)).await);
        append(&store, message("d", "a", "elsewhere", None)).await;
    }
    for pair in sent.windows(2) {
        assert!(pair[0].id < pair[1].id);
        assert!(pair[0].sent_at <= pair[1].sent_at);
        assert!(pair[0].id.timestamp_ms() <= pair[1].id.timestamp_ms());
    }
    let contents = |ms: &[hubwire_store::Message]| ms.iter().map(|m| m.content.clone()).collect::<Vec<_>>();
    let first = store.messages_after("c", None, 4).await.expect("after");
    assert_eq!(contents(&first), ["m0", "m1", "m2", "m3"]);
    let next = store.messages_after("c", Some(first[3].id), 4).await.expect("after");
    assert_eq!(contents(&next), ["m4", "m5", "m6", "m7"]);
    let end = store.messages_after("c", Some(sent[9].id), 4).await.expect("after");
    assert!(end.is_empty());
    let newest = store.messages_before("c", None, 3).await.expect("before");
    assert_eq!(contents(&newest), ["m9", "m8", "m7"]);
    let page = store.messages_before("c", Some(newest[2].id), 3).await.expect("before");
    assert_eq!(contents(&page), ["m6", "m5", "m4"]);
    let from_time = store
        .messages_after("c", Some(MessageId(MessageId::first_at(0).0)), 100)
        .await
        .expect("all");
    assert_eq!(from_time.len(), 10);
}

async fn read_positions_never_move_back(db: TestDb) {
    let store = db.open().await;
    store
        .create_conversation(Some("c"), "group", &["a", "b"])
        .await
        .expect("create");
    let m1 = append(&store, message("c", "a", "one", None)).await;
    let m2 = append(&store, message("c", "a", "two", None)).await;
    let at2 = store.mark_read("c", "b", m2.id).await.expect("read 2");
    assert_eq!(at2.message_id, m2.id);
    let back = store.mark_read("c", "b", m1.id).await.expect("read 1");
    assert_eq!(back, at2, "moved backwards");
    assert_eq!(store.read_position("c", "b").await.expect("position"), Some(at2));
    assert_eq!(store.read_position("c", "a").await.expect("position"), None);
    let unknown = store.mark_read("c", "b", MessageId(12345)).await;
    assert!(matches!(unknown, Err(StoreError::NotFound(_))), "{unknown:?}");
}

/// Many marks at once (group-committed together, coalesced per conversation
/// and user): each answered with a position at least its own, the stored one
/// the newest; a mark of a message that is not in its conversation fails
/// alone. With the default batch and with batches of 2 (marks of one user
/// then split over commits).
async fn concurrent_read_marks_coalesce_and_bad_ones_fail_alone(db: TestDb) {
    for batch_max in [StoreConfig::default().batch_max, 2] {
        let store = db
            .open_with(StoreConfig {
                batch_max,
                ..db.config()
            })
            .await;
        let (c1, c2) = (format!("c1-{batch_max}"), format!("c2-{batch_max}"));
        store
            .create_conversation(Some(&c1), "group", &["a", "b", "c"])
            .await
            .expect("create");
        store
            .create_conversation(Some(&c2), "group", &["a", "b"])
            .await
            .expect("create");
        let mut in_c1 = Vec::new();
        for i in 0..6 {
            in_c1.push(append(&store, message(&c1, "a", &format!("m{i}"), None)).await.id);
        }
        let mut in_c2 = Vec::new();
        for i in 0..3 {
            in_c2.push(append(&store, message(&c2, "a", &format!("n{i}"), None)).await.id);
        }
        // (conversation, user, message, should succeed), in a scrambled order.
        let mut marks = Vec::new();
        for &k in &[3, 0, 5, 1, 4, 2] {
            marks.push((c1.clone(), "b", in_c1[k], true));
            marks.push((c1.clone(), "c", in_c1[5 - k], true));
        }
        for &k in &[2, 0, 1] {
            marks.push((c2.clone(), "b", in_c2[k], true));
        }
        marks.insert(4, (c1.clone(), "b", in_c2[0], false)); // a message of another conversation
        marks.insert(9, (c1.clone(), "c", MessageId(12345), false)); // no such message
        marks.insert(13, (c2.clone(), "a", in_c2[1], true)); // a user with a single mark
        let tasks: Vec<_> = marks
            .iter()
            .cloned()
            .map(|(conversation, user, id, _)| {
                let store = store.clone();
                tokio::spawn(async move { store.mark_read(&conversation, user, id).await })
            })
            .collect();
        for ((conversation, user, id, good), task) in marks.iter().zip(tasks) {
            match (task.await.expect("task"), good) {
                (Ok(position), true) => assert!(
                    position.message_id >= *id,
                    "{conversation}/{user}: marked {id}, answered {}",
                    position.message_id
                ),
                (Err(StoreError::NotFound(_)), false) => {}
                (other, _) => panic!("{conversation}/{user} marking {id}: unexpected {other:?}"),
            }
        }
        let position = |conversation: String, user: &'static str| {
            let store = store.clone();
            async move {
                store
                    .read_position(&conversation, user)
                    .await
                    .expect("position")
                    .map(|p| p.message_id)
            }
        };
        assert_eq!(position(c1.clone(), "b").await, Some(in_c1[5]));
        assert_eq!(position(c1.clone(), "c").await, Some(in_c1[5]));
        assert_eq!(position(c2.clone(), "b").await, Some(in_c2[2]));
        assert_eq!(position(c2.clone(), "a").await, Some(in_c2[1]));
        assert_eq!(position(c1.clone(), "a").await, None, "nobody marked for a in c1");
        // Later, an older mark answers the stored position and leaves it.
        let again = store.mark_read(&c1, "b", in_c1[0]).await.expect("older mark");
        assert_eq!(again.message_id, in_c1[5]);
        assert_eq!(position(c1.clone(), "b").await, Some(in_c1[5]));
    }
}

async fn inbox_has_last_message_and_unread_counts(db: TestDb) {
    let store = db.open().await;
    store
        .create_conversation(Some("c1"), "group", &["a", "b"])
        .await
        .expect("create");
    store
        .create_conversation(Some("c2"), "group", &["a", "b", "c"])
        .await
        .expect("create");
    store
        .create_conversation(Some("c3"), "group", &["b"])
        .await
        .expect("create");
    let first = append(&store, message("c1", "b", "b1", None)).await;
    append(&store, message("c1", "b", "b2", None)).await;
    append(&store, message("c1", "a", "a1", None)).await; // own: never unread
    let c2_last = append(&store, message("c2", "c", "c1", None)).await;
    append(&store, message("c3", "b", "not a's", None)).await;
    store.mark_read("c1", "a", first.id).await.expect("read");

    let inbox = store.conversations_of("a").await.expect("inbox");
    let ids: Vec<&str> = inbox.iter().map(|s| s.conversation.id.as_str()).collect();
    assert_eq!(ids, ["c2", "c1"], "newest activity first");
    assert_eq!(inbox[0].unread, 1);
    assert_eq!(inbox[0].last_message.as_ref(), Some(&c2_last));
    assert_eq!(inbox[0].conversation.participants, vec!["a", "b", "c"]);
    assert_eq!(inbox[1].unread, 1, "b2 only: b1 is read, a1 is a's own");
    assert_eq!(inbox[1].last_message.as_ref().map(|m| m.content.as_str()), Some("a1"));
    store
        .create_conversation(Some("c4"), "group", &["a"])
        .await
        .expect("create");
    let inbox = store.conversations_of("a").await.expect("inbox");
    let empty = inbox.iter().find(|s| s.conversation.id == "c4").expect("c4 listed");
    assert_eq!((empty.unread, empty.last_message.as_ref()), (0, None));
    assert!(store.conversations_of("nobody").await.expect("inbox").is_empty());
}

fn key(byte: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

async fn content_is_encrypted_and_keys_rotate(db: TestDb) {
    let with_keys = |keys: Vec<String>| StoreConfig {
        encryption_keys: keys,
        ..db.config()
    };
    let old = db.open_with(with_keys(vec![format!("k1:{}", key(1))])).await;
    old.create_conversation(Some("c"), "group", &["a"])
        .await
        .expect("create");
    let m1 = append(&old, message("c", "a", "secret one", None)).await;
    assert_eq!(m1.key_id.as_deref(), Some("k1"));
    assert_eq!(m1.content, "secret one");
    drop(old);

    let rotated = db
        .open_with(with_keys(vec![format!("k1:{}", key(1)), format!("k2:{}", key(2))]))
        .await;
    let m2 = append(&rotated, message("c", "a", "secret two", None)).await;
    assert_eq!(m2.key_id.as_deref(), Some("k2"), "the newest key encrypts");
    let all = rotated.messages_after("c", None, 10).await.expect("read");
    let contents: Vec<&str> = all.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["secret one", "secret two"]);

    // Without k1 the old message cannot be read, and the error says why.
    let k2_only = db.open_with(with_keys(vec![format!("k2:{}", key(2))])).await;
    let page = k2_only.messages_after("c", None, 10).await;
    assert!(
        matches!(&page, Err(StoreError::KeyMissing { key_id, .. }) if key_id == "k1"),
        "{page:?}"
    );
    let m2_again = k2_only.message("c", m2.id).await.expect("read m2");
    assert_eq!(m2_again.map(|m| m.content), Some("secret two".into()));

    // At rest it is not the plain text: a store without keys sees the stored form.
    let plain = db.open_with(with_keys(Vec::new())).await;
    let stored = plain.message("c", m2.id).await;
    assert!(matches!(stored, Err(StoreError::KeyMissing { .. })), "{stored:?}");
}

async fn retention_deletes_only_old_messages_of_its_kind(db: TestDb) {
    let config = StoreConfig {
        retention: vec!["customer-support=180".into(), "customer-driver=30".into()],
        ..db.config()
    };
    let store = db.open_with(config).await;
    store
        .create_conversation(Some("s"), "customer-support", &["a"])
        .await
        .expect("create");
    store
        .create_conversation(Some("g"), "group", &["a"])
        .await
        .expect("create");
    let old_support = append(&store, message("s", "a", "old", None)).await;
    append(&store, message("g", "a", "kept forever", None)).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let boundary = hubwire_store::MessageId::first_at(old_support.sent_at + 2).timestamp_ms();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let new_support = append(&store, message("s", "a", "new", None)).await;
    assert!(old_support.sent_at < boundary && boundary < new_support.sent_at);

    // As of 180 days after `boundary`: what was sent before it is too old.
    let now = boundary + 180 * 24 * 3600 * 1000;
    assert_eq!(store.run_retention(now).await.expect("run"), Some(1));
    let left: Vec<String> = store
        .messages_after("s", None, 10)
        .await
        .expect("s")
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(left, ["new"]);
    assert_eq!(store.messages_after("g", None, 10).await.expect("g").len(), 1);
    assert_eq!(store.run_retention(now).await.expect("again"), Some(0));
}

async fn bad_appends_fail_alone(db: TestDb) {
    let store = db.open().await;
    store
        .create_conversation(Some("c"), "group", &["a"])
        .await
        .expect("create");
    let sends: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            let conversation = if i % 5 == 0 { "missing" } else { "c" };
            tokio::spawn(async move { store.append_message(message(conversation, "a", "x", None)).await })
        })
        .collect();
    let mut missing = 0;
    for send in sends {
        match send.await.expect("task") {
            Ok((_, inserted)) => assert!(inserted),
            Err(StoreError::NotFound(_)) => missing += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(missing, 4);
    assert_eq!(store.messages_after("c", None, 100).await.expect("all").len(), 16);
    let mut bad = message("c", "a", "x", None);
    bad.attachments = Some("{not json".into());
    assert!(matches!(store.append_message(bad).await, Err(StoreError::Invalid(_))));
    let mut good = message("c", "a", "with file", None);
    good.attachments = Some(r#"[{"url":"https://x/y.png"}]"#.into());
    assert_eq!(append(&store, good.clone()).await.attachments, good.attachments);
}

/// What [`Recorder`] saw of one call.
#[derive(Clone, Debug, Default)]
struct Seen {
    call: Option<hubwire_store::observe::Call>,
    batch: Option<usize>,
    failed: Option<String>,
    ended: bool,
}

type Log = std::sync::Arc<std::sync::Mutex<Vec<Seen>>>;

/// An observer that records every call.
#[derive(Clone, Default)]
struct Recorder(Log);

/// One call's record in the log.
struct Recording(Log, usize);

impl hubwire_store::observe::Observer for Recorder {
    fn call(&self, call: &hubwire_store::observe::Call) -> Option<Box<dyn hubwire_store::observe::Observed>> {
        let mut seen = self.0.lock().expect("recorder");
        seen.push(Seen {
            call: Some(*call),
            ..Seen::default()
        });
        Some(Box::new(Recording(self.0.clone(), seen.len() - 1)))
    }
}

impl hubwire_store::observe::Observed for Recording {
    fn batch(&mut self, size: usize) {
        self.0.lock().expect("recorder")[self.1].batch = Some(size);
    }
    fn failed(&mut self, error: &StoreError) {
        self.0.lock().expect("recorder")[self.1].failed = Some(error.to_string());
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.0.lock().expect("recorder")[self.1].ended = true;
    }
}

/// Each call tells the observer its operation, table and method, ends its
/// observation when it returns, reports a failure, and a group-committed
/// append its batch (concurrent appends share batches: every size is at
/// least 1, at most the appends in flight).
async fn calls_are_observed_with_their_batches_and_failures(db: TestDb) {
    let store = db.open().await;
    let recorder = Recorder::default();
    store.observe(std::sync::Arc::new(recorder.clone()));
    store
        .create_conversation(Some("observed"), "group", &["a", "b"])
        .await
        .expect("create");
    let appends: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append_message(message("observed", "a", &format!("m{i}"), None))
                    .await
            })
        })
        .collect();
    for task in appends {
        task.await.expect("task").expect("append");
    }
    let missing = store.append_message(message("nosuch", "a", "lost", None)).await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))), "{missing:?}");
    assert!(store.get_conversation("observed").await.expect("get").is_some());
    let seen = recorder.0.lock().expect("recorder").clone();
    let backend = store.backend();
    let calls: Vec<(&str, &str, &str)> = seen
        .iter()
        .map(|s| s.call.map(|c| (c.operation, c.collection, c.method)).expect("call"))
        .collect();
    let mut expected = vec![("INSERT", "conversations", "create_conversation")];
    expected.extend([("INSERT", "messages", "append_message"); 9]);
    expected.push(("SELECT", "conversations", "get_conversation"));
    assert_eq!(calls, expected);
    assert!(seen.iter().all(|s| s.ended), "every observation ended: {seen:?}");
    assert!(seen.iter().all(|s| s.call.map(|c| c.backend) == Some(backend)));
    for append in &seen[1..9] {
        let batch = append.batch.expect("an append's batch");
        assert!((1..=8).contains(&batch), "{append:?}");
        assert_eq!(append.failed, None);
    }
    assert_eq!(seen[9].batch, Some(1), "the lone failed append: {:?}", seen[9]);
    assert!(
        seen[9].failed.as_deref().is_some_and(|e| e.contains("not found")),
        "{:?}",
        seen[9]
    );
    assert_eq!((seen[0].batch, seen[10].batch), (None, None), "not group-committed");
    assert_eq!((&seen[0].failed, &seen[10].failed), (&None, &None));
}
