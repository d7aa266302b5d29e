//! The persistence layer of hubwire: conversations, participants, messages
//! and read positions, in PostgreSQL (shared by all nodes) or an embedded
//! SQLite file (one node), through diesel-async with one schema for both.
//!
//! # Layout
//! - [`config`]: [`StoreConfig`] (URL, data dir, pool, keys, retention, batches).
//! - [`error`]: [`StoreError`], the one error type.
//! - [`schema`]: the diesel tables; `store/migrations/` the SQL, embedded.
//! - [`models`]: [`Conversation`], [`Message`], [`ReadPosition`], ... and rows.
//! - [`id`]: time-ordered [`MessageId`]s.
//! - `db`: the pools of both back ends and `with_conn!`, which compiles one
//!   block of diesel code for both.
//! - [`migrations`]: run at open, on a thread of their own, under a lock.
//! - `conversations`: create (idempotent), direct conversations, participants.
//! - `messages`: history pages, catch-up, read positions, a user's inbox.
//! - `batching`: the group-commit task behind [`Store::append_message`].
//! - [`outbox`]: the broadcast mark (`stored_by`, `broadcast_at`): batched
//!   [`Store::mark_broadcast`], and [`Store::unbroadcast_of`] for the sweep
//!   of a dead node's unbroadcast messages.
//! - `receipts`: the group-commit task behind [`Store::mark_read`] (read
//!   positions coalesced per conversation and user).
//! - [`crypto`]: AES-256-GCM of message content at rest, with key rotation.
//! - [`notifications`]: the notifications hub kind's notifications (by
//!   audience: user, tenant, channel, all), each user's acknowledged / read
//!   state, and their retention.
//! - `rooms`: room membership grants of the rooms hub kind (grant, revoke,
//!   check, list).
//! - `retention`: deleting old messages per conversation kind, one node at a time.
//! - [`observe`]: the [`observe::Observer`] told of each call (the node's
//!   trace spans), installed by [`Store::observe`].
//!
//! # Invariants
//! - A message is acknowledged (its `append_message` returns) only after the
//!   transaction holding it committed.
//! - `(conversation, sender, client_message_id)` is unique: a repeated append
//!   returns the stored message with `inserted == false`.
//! - A read position never moves backwards; a `mark_read` returns only
//!   after the transaction holding it (or a newer position of the same
//!   user and conversation) committed.
//! - A message is in the outbox (`broadcast_at` NULL) from its commit until
//!   [`Store::mark_broadcast`]; a mark is never cleared.
//! - The store knows nothing of the node: authorisation (who may read or
//!   send) is the caller's.

mod batching;
pub mod config;
mod conversations;
pub mod crypto;
mod db;
pub mod error;
pub mod id;
mod messages;
pub mod migrations;
pub mod models;
pub mod notifications;
pub mod observe;
pub mod outbox;
mod receipts;
mod retention;
mod rooms;
pub mod schema;

use std::sync::Arc;
use std::time::Duration;

use diesel_async::RunQueryDsl;

pub use config::StoreConfig;
pub use crypto::Cipher;
pub use db::Backend;
pub use error::{Result, StoreError};
pub use id::MessageId;
pub use models::{Conversation, ConversationSummary, Message, NewMessage, Participant, ReadPosition};
pub use notifications::{Audience, NewNotification, Notification, Recipient, NOTIFICATION_RETENTION_LOCK};
pub use retention::RETENTION_LOCK;

/// A handle on the store; cheap to clone, shared by all tasks.
///
/// Open it once (in `main`, on the runtime that outlives its users): its
/// connections' and commit task's background work runs on that runtime.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: db::Db,
    acquire_timeout: Duration,
    cipher: Cipher,
    retention: Vec<(String, u32)>,
    retention_interval: Duration,
    appends: tokio::sync::mpsc::Sender<batching::Pending>,
    marks: tokio::sync::mpsc::Sender<outbox::PendingMark>,
    reads: tokio::sync::mpsc::Sender<receipts::PendingRead>,
    round_trips: prometheus::Histogram,
    /// Told of each call ([`Store::observe`]); none until installed.
    observer: std::sync::OnceLock<Arc<dyn observe::Observer>>,
}

impl Store {
    /// The histogram of this store's database calls, for `/metrics`.
    pub fn round_trips(&self) -> prometheus::Histogram {
        self.inner.round_trips.clone()
    }

    /// Opens the configured database, runs the pending migrations and starts
    /// the commit task.
    pub async fn open(config: &StoreConfig) -> Result<Self> {
        config.validate()?;
        let cipher = Cipher::from_config(&config.encryption_keys)?;
        // PostgreSQL's batched writes share the pool; SQLite's have a writer.
        let (db, writer) = match config.postgres_url() {
            Some(url) => {
                let pool = db::postgres_pool(url, config)?;
                (pool.clone(), pool)
            }
            None => db::sqlite_pools(config)?,
        };
        migrations::run(config).await?;
        // SQLite has one writer at a time: batches in flight would only queue on its lock.
        let in_flight = match db {
            db::Db::Postgres(_) => config.commits_in_flight,
            db::Db::Sqlite(_) => 1,
        };
        let (appends, queue) = tokio::sync::mpsc::channel(config.queue_capacity);
        let (marks, mark_queue) = tokio::sync::mpsc::channel(config.queue_capacity);
        let (reads, read_queue) = tokio::sync::mpsc::channel(config.queue_capacity);
        let inner = Arc::new(Inner {
            db,
            acquire_timeout: config.acquire_timeout(),
            cipher,
            retention: config.retention_days()?,
            retention_interval: Duration::from_secs(config.retention_interval_secs.max(1)),
            appends,
            marks,
            reads,
            round_trips: db::round_trips(),
            observer: std::sync::OnceLock::new(),
        });
        tokio::spawn(outbox::run(
            writer.clone(),
            inner.acquire_timeout,
            inner.round_trips.clone(),
            mark_queue,
            config.batch_max,
            in_flight,
        ));
        tokio::spawn(batching::run(
            batching::Committer::new(
                writer.clone(),
                inner.acquire_timeout,
                inner.cipher.clone(),
                inner.round_trips.clone(),
            ),
            queue,
            config.batch_max,
            in_flight,
        ));
        tokio::spawn(receipts::run(
            writer,
            inner.acquire_timeout,
            read_queue,
            config.batch_max,
            in_flight,
        ));
        Ok(Self { inner })
    }

    /// Which database this store uses.
    pub fn backend(&self) -> Backend {
        match self.inner.db {
            db::Db::Postgres(_) => Backend::Postgres,
            db::Db::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Checks that the database answers (`SELECT 1`).
    pub async fn ping(&self) -> Result<()> {
        let inner = &*self.inner;
        db::with_conn!(inner, conn => {
            diesel::sql_query("SELECT 1").execute(conn).await?;
        });
        Ok(())
    }
}
