//! Throughput of persisted appends (group commit): `senders` tasks each
//! append one message, await its commit, and append the next, for
//! `seconds`; prints messages/s for SQLite (a temp dir) and PostgreSQL (a
//! server of its own, started as the tests do).
//!
//! `cargo run --release -p hubwire-store --example store_bench -- [senders] [seconds]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hubwire_store::{NewMessage, Store, StoreConfig};
use hubwire_test_support::postgres::PostgresServer;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let senders: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);

    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = StoreConfig {
        data_dir: dir.path().to_owned(),
        ..StoreConfig::default()
    };
    run("sqlite", &sqlite, senders, seconds).await;

    let server = PostgresServer::start();
    let postgres = StoreConfig {
        database_url: Some(server.url()),
        ..StoreConfig::default()
    };
    run("postgres", &postgres, senders, seconds).await;
}

async fn run(name: &str, config: &StoreConfig, senders: usize, seconds: u64) {
    let store = Store::open(config).await.expect("open");
    for s in 0..senders {
        store
            .create_conversation(Some(&format!("c{s}")), "group", &["u"])
            .await
            .expect("create");
    }
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..senders)
        .map(|s| {
            let store = store.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let message = NewMessage {
                        conversation_id: format!("c{}", (s + n as usize) % senders),
                        sender_id: format!("u{s}"),
                        content: format!("message {n} of sender {s}, about as long as a chat line"),
                        attachments: None,
                        client_message_id: Some(format!("{s}-{n}")),
                        ..NewMessage::default()
                    };
                    store.append_message(message).await.expect("append");
                    n += 1;
                }
                done.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("sender");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = done.load(Ordering::Relaxed);
    println!(
        "{name}: {total} messages persisted by {senders} senders in {elapsed:.1} s = {:.0} messages/s",
        total as f64 / elapsed
    );
}
