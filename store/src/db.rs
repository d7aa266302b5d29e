//! The connection pools of both back ends and [`with_conn!`], which runs one
//! block of diesel code against whichever back end the store opened.
//!
//! PostgreSQL: `AsyncPgConnection` in a deadpool pool. SQLite: diesel's
//! synchronous `SqliteConnection` behind diesel-async's
//! `SyncConnectionWrapper` (each query on the blocking pool), in the same
//! kind of pool; every SQLite connection is set up with WAL, a busy timeout
//! and foreign keys on. Connections are recycled without a test query (a
//! round trip per checkout would cost more than the queries); a connection
//! whose server went away reports itself broken and is replaced.

use diesel::ConnectionError;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::FutureExt;

use crate::{Result, StoreConfig, StoreError};

/// The SQLite connection type.
pub(crate) type SqliteConn = SyncConnectionWrapper<diesel::SqliteConnection>;

/// Which database the store uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL, shared by all nodes.
    Postgres,
    /// The embedded SQLite file (one node).
    Sqlite,
}

/// The histogram of database calls (`hubwire_database_duration_seconds`),
/// one per store, adopted by the node's `/metrics`.
pub(crate) fn round_trips() -> prometheus::Histogram {
    let opts = prometheus::HistogramOpts::new(
        "hubwire_database_duration_seconds",
        "Seconds one store call took (pool checkout and queries of one connection)",
    )
    .buckets(vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ]);
    // The options are constants; they cannot be invalid.
    prometheus::Histogram::with_opts(opts).unwrap_or_else(|e| panic!("histogram: {e}"))
}

/// A pool of one back end.
#[derive(Clone)]
pub(crate) enum Db {
    Postgres(Pool<AsyncPgConnection>),
    Sqlite(Pool<SqliteConn>),
}

/// Runs `$body` with `$conn: &mut` a pooled connection of either back end
/// (the same source compiled for both), inside an `async` fn returning
/// [`crate::Result`].
macro_rules! with_conn {
    ($store:expr, $conn:ident => $body:expr) => {{
        // Observed when the call ends, however it ends (checkout wait included).
        let _round_trip = $store.round_trips.start_timer();
        match &$store.db {
            $crate::db::Db::Postgres(pool) => {
                let mut object = $crate::db::checkout_postgres(pool, $store.acquire_timeout).await?;
                let $conn: &mut diesel_async::AsyncPgConnection = &mut object;
                $body
            }
            $crate::db::Db::Sqlite(pool) => {
                let mut object = $crate::db::checkout_sqlite(pool, $store.acquire_timeout).await?;
                let $conn: &mut $crate::db::SqliteConn = &mut object;
                $body
            }
        }
    }};
}
pub(crate) use with_conn;

/// Defines a checkout function per connection type: a connection from the
/// pool, or `Unavailable` after `timeout`.
macro_rules! checkout_fn {
    ($name:ident, $conn:ty) => {
        pub(crate) async fn $name(pool: &Pool<$conn>, timeout: std::time::Duration) -> Result<Object<$conn>> {
            match tokio::time::timeout(timeout, pool.get()).await {
                Ok(Ok(object)) => Ok(object),
                Ok(Err(e)) => Err(StoreError::Unavailable(e.to_string())),
                Err(_) => Err(StoreError::Unavailable(format!(
                    "no database connection within {} ms",
                    timeout.as_millis()
                ))),
            }
        }
    };
}
checkout_fn!(checkout_postgres, AsyncPgConnection);
checkout_fn!(checkout_sqlite, SqliteConn);

/// The PostgreSQL pool (connections are made on first use).
pub(crate) fn postgres_pool(url: &str, config: &StoreConfig) -> Result<Db> {
    let mut manager_config = ManagerConfig::default();
    manager_config.recycling_method = RecyclingMethod::Fast;
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, manager_config);
    let pool = Pool::builder(manager)
        .max_size(config.pool_size)
        .build()
        .map_err(|e| StoreError::Config(e.to_string()))?;
    Ok(Db::Postgres(pool))
}

/// The SQLite pools on `data_dir/hubwire.db` (the directory is created): one
/// for every call, and the writer — one connection of its own that the
/// batched writes (messages, read positions, broadcast marks) share.
///
/// One writer because SQLite has one write lock: batch loops on several
/// connections would only wait for each other (sleeping in the busy
/// handler), and in WAL mode a connection whose file another one changed
/// drops its whole page cache at its next transaction, so rotating writes
/// over the pool re-read the tables' pages on every batch (docs/decisions.md).
pub(crate) fn sqlite_pools(config: &StoreConfig) -> Result<(Db, Db)> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| StoreError::Config(format!("cannot create {}: {e}", config.data_dir.display())))?;
    let path = config.sqlite_path();
    let url = path
        .to_str()
        .ok_or_else(|| StoreError::Config(format!("{} is not UTF-8", path.display())))?
        .to_owned();
    let pool = |size: usize| -> Result<Db> {
        // 32 MiB of page cache per connection, and pages read through a map
        // of the file rather than one `pread` each.
        let setup = format!(
            "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
             PRAGMA cache_size = -32768; PRAGMA mmap_size = 268435456;",
            config.sqlite_busy_timeout_ms
        );
        let mut manager_config = ManagerConfig::default();
        manager_config.recycling_method = RecyclingMethod::Fast;
        manager_config.custom_setup = Box::new(move |url| {
            let setup = setup.clone();
            let url = url.to_owned();
            async move {
                let mut conn = SqliteConn::establish(&url).await?;
                conn.batch_execute(&setup)
                    .await
                    .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
                Ok(conn)
            }
            .boxed()
        });
        let manager = AsyncDieselConnectionManager::<SqliteConn>::new_with_config(url.clone(), manager_config);
        let pool = Pool::builder(manager)
            .max_size(size)
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        Ok(Db::Sqlite(pool))
    };
    Ok((pool(config.pool_size.min(4))?, pool(1)?))
}
