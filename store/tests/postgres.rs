//! What only PostgreSQL has: several nodes on one database, and outages.

mod common;

use std::time::Duration;

use common::TestDb;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use hubwire_store::{NewMessage, Store, StoreConfig, RETENTION_LOCK};
use hubwire_test_support::postgres::PostgresServer;

fn message(conversation: &str, content: &str) -> NewMessage {
    NewMessage {
        conversation_id: conversation.into(),
        sender_id: "a".into(),
        content: content.into(),
        attachments: None,
        client_message_id: None,
        ..NewMessage::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_stores_open_at_once_on_an_empty_database() {
    let db = TestDb::postgres();
    let config = db.config();
    let opens: Vec<_> = (0..3)
        .map(|_| {
            let config = config.clone();
            tokio::spawn(async move { Store::open(&config).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.expect("task").expect("open"));
    }
    stores[0]
        .create_conversation(Some("c"), "group", &["a"])
        .await
        .expect("create");
    for (i, store) in stores.iter().enumerate() {
        store
            .append_message(message("c", &format!("from {i}")))
            .await
            .expect("append");
    }
    let all = stores[2].messages_after("c", None, 10).await.expect("read");
    assert_eq!(all.len(), 3);
}

#[tokio::test]
async fn a_store_survives_a_restart_of_postgres() {
    let mut server = PostgresServer::start();
    let config = StoreConfig {
        database_url: Some(server.url()),
        acquire_timeout_ms: 2000,
        ..StoreConfig::default()
    };
    let store = Store::open(&config).await.expect("open");
    store
        .create_conversation(Some("c"), "group", &["a"])
        .await
        .expect("create");
    store.append_message(message("c", "before")).await.expect("append");

    server.stop();
    assert!(store.ping().await.is_err(), "ping while down");
    assert!(store.append_message(message("c", "while down")).await.is_err());
    assert!(store.messages_after("c", None, 10).await.is_err());

    server.start_again();
    // Connections broken by the restart are replaced as they are found.
    let mut up = false;
    for _ in 0..50 {
        if store.ping().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the store did not reconnect");
    store.append_message(message("c", "after")).await.expect("append after");
    let contents: Vec<String> = store
        .messages_after("c", None, 10)
        .await
        .expect("read")
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(contents, ["before", "after"]);
}

#[tokio::test]
async fn retention_skips_while_another_node_holds_the_lock() {
    let db = TestDb::postgres();
    let config = StoreConfig {
        retention: vec!["customer-driver=30".into()],
        ..db.config()
    };
    let store = db.open_with(config.clone()).await;
    store
        .create_conversation(Some("d"), "customer-driver", &["a"])
        .await
        .expect("create");
    store.append_message(message("d", "old")).await.expect("append");
    let far_future = hubwire_store::MessageId::first_at(0).timestamp_ms() + 100 * 365 * 24 * 3600 * 1000;

    let url = config.database_url.clone().expect("url");
    let mut other = AsyncPgConnection::establish(&url).await.expect("connect");
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(RETENTION_LOCK)
        .execute(&mut other)
        .await
        .expect("lock");
    assert_eq!(store.run_retention(far_future).await.expect("run"), None);
    assert_eq!(store.messages_after("d", None, 10).await.expect("read").len(), 1);

    diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(RETENTION_LOCK)
        .execute(&mut other)
        .await
        .expect("unlock");
    assert_eq!(store.run_retention(far_future).await.expect("run"), Some(1));
    assert!(store.messages_after("d", None, 10).await.expect("read").is_empty());
}
