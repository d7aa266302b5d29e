//! The database each test runs against: a fresh SQLite file in a temporary
//! directory, or a PostgreSQL server of its own.

// Shared by two test binaries; each uses only part of it.
#![allow(dead_code)]

use hubwire_store::{Store, StoreConfig};
use hubwire_test_support::postgres::PostgresServer;

/// One test's database.
pub enum TestDb {
    /// A temporary data dir.
    Sqlite(tempfile::TempDir),
    /// A server of the test's own.
    Postgres(PostgresServer),
}

impl TestDb {
    /// A fresh SQLite data dir.
    pub fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().expect("temp dir"))
    }

    /// A PostgreSQL server of this test's own.
    pub fn postgres() -> Self {
        Self::Postgres(PostgresServer::start())
    }

    /// The configuration of a store on this database.
    pub fn config(&self) -> StoreConfig {
        match self {
            Self::Sqlite(dir) => StoreConfig {
                data_dir: dir.path().to_owned(),
                ..StoreConfig::default()
            },
            Self::Postgres(server) => StoreConfig {
                database_url: Some(server.url()),
                ..StoreConfig::default()
            },
        }
    }

    /// A store with the default configuration on this database.
    pub async fn open(&self) -> Store {
        self.open_with(self.config()).await
    }

    /// A store with `config` (made from [`TestDb::config`]).
    pub async fn open_with(&self, config: StoreConfig) -> Store {
        match Store::open(&config).await {
            Ok(store) => store,
            Err(e) => panic!("cannot open the store: {e}"),
        }
    }
}

/// Runs each listed `async fn(TestDb)` against both back ends, as
/// `sqlite::<name>` and `postgres::<name>`.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::common::TestDb::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::common::TestDb::postgres()).await;
                }
            )*
        }
    };
}
