//! The embedded migrations, run when a store opens.
//!
//! They run on a thread of their own with a connection of their own:
//! diesel_migrations' harness is synchronous, and driving diesel-async's
//! wrapper from inside a runtime panics on a current-thread runtime (actix's).
//! PostgreSQL: the run is wrapped in a session advisory lock, so nodes that
//! start at once on one empty database apply them once, one after another.
//! SQLite: the run is one `BEGIN IMMEDIATE` transaction (the write lock).

use std::path::PathBuf;

use diesel::connection::SimpleConnection;
use diesel::sql_types::BigInt;
use diesel::{Connection, RunQueryDsl, SqliteConnection};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::AsyncPgConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::{Result, StoreConfig, StoreError};

/// The SQL under `store/migrations/`.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The PostgreSQL advisory lock held while migrations run.
pub const MIGRATION_LOCK: i64 = 0x6875_6277_6972_0001;

/// Runs the pending migrations of the configured database.
pub(crate) async fn run(config: &StoreConfig) -> Result<()> {
    let postgres = config.postgres_url().map(str::to_owned);
    let sqlite = config.sqlite_path();
    let busy_ms = config.sqlite_busy_timeout_ms;
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("hubwire-migrations".into())
        .spawn(move || {
            let result = match postgres {
                Some(url) => postgres_migrations(&url),
                None => sqlite_migrations(sqlite, busy_ms),
            };
            // The opener may have been dropped (its future cancelled): nobody to tell.
            let _ = done.send(result);
        })
        .map_err(|e| StoreError::Migration(format!("cannot start the migration thread: {e}")))?;
    result
        .await
        .map_err(|_| StoreError::Migration("the migration thread panicked".into()))?
}

fn postgres_migrations(url: &str) -> Result<()> {
    let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(url)
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK)
        .execute(&mut conn)?;
    let applied = conn.run_pending_migrations(MIGRATIONS).map(|done| done.len());
    // Also released when the connection closes, right after.
    let unlocked = diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK)
        .execute(&mut conn);
    let applied = applied.map_err(|e| StoreError::Migration(e.to_string()))?;
    unlocked?;
    tracing::info!(applied, "postgres migrations done");
    Ok(())
}

fn sqlite_migrations(path: PathBuf, busy_ms: u64) -> Result<()> {
    let url = path.to_string_lossy().into_owned();
    let mut conn = SqliteConnection::establish(&url).map_err(|e| StoreError::Unavailable(e.to_string()))?;
    conn.batch_execute(&format!("PRAGMA busy_timeout = {busy_ms}; PRAGMA journal_mode = WAL;"))?;
    let applied = conn.immediate_transaction(|conn| {
        conn.run_pending_migrations(MIGRATIONS)
            .map(|done| done.len())
            .map_err(|e| StoreError::Migration(e.to_string()))
    })?;
    tracing::info!(applied, path = %path.display(), "sqlite migrations done");
    Ok(())
}
