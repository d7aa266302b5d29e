//! Retention: messages of conversations of a configured kind are deleted
//! once older than that kind's days (`StoreConfig::retention`).
//!
//! [`Store::run_retention`] deletes in chunks (short transactions, no long
//! lock on the table). [`Store::spawn_retention`] runs it periodically; on
//! PostgreSQL each run first takes `pg_try_advisory_lock(RETENTION_LOCK)` on
//! its connection, so of all nodes only one deletes at a time and the others
//! skip that round. SQLite is one node's file: no lock needed.

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool};
use diesel_async::RunQueryDsl;

use crate::db::{checkout_postgres, Db};
use crate::models::now_ms;
use crate::schema::{conversations, messages};
use crate::{Result, Store};

/// The PostgreSQL advisory lock a retention run holds.
pub const RETENTION_LOCK: i64 = 0x6875_6277_6972_0002;

/// Messages deleted per statement.
const CHUNK: i64 = 1000;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// Deletes the messages of `kind` conversations sent before `cutoff`.
macro_rules! delete_older {
    ($conn:expr, $kind:expr, $cutoff:expr) => {
        async {
            let mut deleted = 0u64;
            loop {
                let ids: Vec<i64> = messages::table
                    .inner_join(conversations::table)
                    .filter(conversations::kind.eq($kind))
                    .filter(messages::sent_at.lt($cutoff))
                    .select(messages::id)
                    .limit(CHUNK)
                    .load(&mut *$conn)
                    .await?;
                if ids.is_empty() {
                    return Ok::<_, crate::StoreError>(deleted);
                }
                let n = diesel::delete(messages::table.filter(messages::id.eq_any(&ids)))
                    .execute(&mut *$conn)
                    .await?;
                deleted += n as u64;
            }
        }
    };
}

impl Store {
    /// One retention run as of `now_ms` (Unix milliseconds): the number of
    /// messages deleted, or `None` when another node holds the retention
    /// lock (PostgreSQL) and this run was skipped.
    pub async fn run_retention(&self, now_ms: i64) -> Result<Option<u64>> {
        let inner = &*self.inner;
        let mut deleted = 0;
        match &inner.db {
            Db::Postgres(pool) => {
                let mut conn = checkout_postgres(pool, inner.acquire_timeout).await?;
                let conn = &mut *conn;
                let lock = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
                    .bind::<BigInt, _>(RETENTION_LOCK)
                    .get_result::<Locked>(conn)
                    .await?;
                if !lock.locked {
                    return Ok(None);
                }
                let mut result = Ok(());
                for (kind, days) in &inner.retention {
                    let cutoff = now_ms - i64::from(*days) * DAY_MS;
                    match delete_older!(conn, kind.as_str(), cutoff).await {
                        Ok(n) => deleted += n,
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                // Unlock even after a failure; a lost connection drops it anyway.
                let unlocked = diesel::sql_query("SELECT pg_advisory_unlock($1)")
                    .bind::<BigInt, _>(RETENTION_LOCK)
                    .execute(conn)
                    .await;
                result?;
                unlocked?;
            }
            Db::Sqlite(pool) => {
                let mut conn = crate::db::checkout_sqlite(pool, inner.acquire_timeout).await?;
                let conn = &mut *conn;
                for (kind, days) in &inner.retention {
                    let cutoff = now_ms - i64::from(*days) * DAY_MS;
                    deleted += delete_older!(conn, kind.as_str(), cutoff).await?;
                }
            }
        }
        Ok(Some(deleted))
    }

    /// Runs retention every `retention_interval_secs` until the returned
    /// handle is aborted (nothing to do when no retention is configured).
    pub fn spawn_retention(&self) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        let interval: Duration = self.inner.retention_interval;
        tokio::spawn(async move {
            if store.inner.retention.is_empty() {
                return;
            }
            let mut ticks = tokio::time::interval(interval);
            loop {
                ticks.tick().await;
                match store.run_retention(now_ms()).await {
                    Ok(Some(deleted)) => tracing::info!(deleted, "retention run"),
                    Ok(None) => tracing::debug!("retention run skipped: another node holds the lock"),
                    Err(e) => tracing::warn!(error = %e, "retention run failed"),
                }
            }
        })
    }
}
