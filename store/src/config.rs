//! [`StoreConfig`]: where the data lives and how the store behaves. Every
//! field has a plain type (text, number, path, list of text) so the node's
//! `config_fields!` table can take the fields over as they are.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::{Result, StoreError};

/// The store's configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// A `postgres://` or `postgresql://` URL selects PostgreSQL; anything
    /// else (default: none) is the embedded SQLite file `hubwire.db` in
    /// `data_dir`.
    pub database_url: Option<String>,
    /// Directory of the SQLite file, created if missing. Default `data`.
    pub data_dir: PathBuf,
    /// Connections in the pool shared by all tasks. Default 16 (SQLite: at
    /// most 4 are opened, since it has one writer at a time anyway).
    pub pool_size: usize,
    /// How long a query waits for a pooled connection before failing with
    /// `Unavailable`, in milliseconds. Default 5000.
    pub acquire_timeout_ms: u64,
    /// SQLite's busy timeout (waiting for the write lock), in milliseconds.
    /// Default 5000.
    pub sqlite_busy_timeout_ms: u64,
    /// Keys for encrypting message content at rest, as `key_id:base64` of
    /// 32 bytes, oldest first: the last one encrypts new messages, all of
    /// them decrypt. Default none (content stored as plain text).
    pub encryption_keys: Vec<String>,
    /// Retention per conversation kind as `kind=days` (e.g.
    /// `customer-support=180`); kinds not listed keep messages forever.
    /// Default none.
    pub retention: Vec<String>,
    /// How often the retention job runs, in seconds. Default 3600.
    pub retention_interval_secs: u64,
    /// Most appends (or read positions) one group commit writes in one
    /// transaction. Default 512.
    pub batch_max: usize,
    /// Group commits that may be under way at once (one gathers while
    /// another waits for its commit); PostgreSQL only, SQLite has one
    /// writer. Default 4.
    pub commits_in_flight: usize,
    /// Appends (and, in a queue of their own, read positions) that may wait
    /// for their commit task before callers wait for room (back-pressure).
    /// Default 8192.
    pub queue_capacity: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            database_url: None,
            data_dir: PathBuf::from("data"),
            pool_size: 16,
            acquire_timeout_ms: 5000,
            sqlite_busy_timeout_ms: 5000,
            encryption_keys: Vec::new(),
            retention: Vec::new(),
            retention_interval_secs: 3600,
            batch_max: 512,
            commits_in_flight: 4,
            queue_capacity: 8192,
        }
    }
}

impl StoreConfig {
    /// The PostgreSQL URL, when `database_url` is one.
    pub fn postgres_url(&self) -> Option<&str> {
        self.database_url
            .as_deref()
            .filter(|url| url.starts_with("postgres://") || url.starts_with("postgresql://"))
    }

    /// The SQLite file: `data_dir/hubwire.db`.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("hubwire.db")
    }

    /// `acquire_timeout_ms` as a duration.
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }

    /// `retention` parsed: (kind, days), checked.
    pub fn retention_days(&self) -> Result<Vec<(String, u32)>> {
        self.retention
            .iter()
            .map(|entry| {
                let bad = || StoreError::Config(format!("retention entry {entry:?} is not kind=days"));
                let (kind, days) = entry.split_once('=').ok_or_else(bad)?;
                let days: u32 = days.trim().parse().map_err(|_| bad())?;
                let kind = kind.trim();
                if kind.is_empty() || days == 0 {
                    return Err(bad());
                }
                Ok((kind.to_owned(), days))
            })
            .collect()
    }

    /// Checks the sizes that must not be zero.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.pool_size == 0 || self.batch_max == 0 || self.queue_capacity == 0 || self.commits_in_flight == 0 {
            return Err(StoreError::Config(
                "pool_size, batch_max, commits_in_flight and queue_capacity must be at least 1".into(),
            ));
        }
        self.retention_days().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_back_end_from_the_url() {
        let mut config = StoreConfig::default();
        assert_eq!(config.postgres_url(), None);
        config.database_url = Some("postgresql://u@h/db".into());
        assert_eq!(config.postgres_url(), Some("postgresql://u@h/db"));
        config.database_url = Some("sqlite://x".into());
        assert_eq!(config.postgres_url(), None);
        assert_eq!(config.sqlite_path(), PathBuf::from("data/hubwire.db"));
    }

    #[test]
    fn parses_retention() {
        let config = StoreConfig {
            retention: vec!["customer-support=180".into(), " customer-driver = 30".into()],
            ..StoreConfig::default()
        };
        let days = config.retention_days().expect("valid");
        assert_eq!(
            days,
            vec![("customer-support".into(), 180), ("customer-driver".into(), 30)]
        );
        for bad in ["x", "x=0", "=3", "x=-1"] {
            let config = StoreConfig {
                retention: vec![bad.into()],
                ..StoreConfig::default()
            };
            assert!(config.validate().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn deserialises_with_defaults() {
        let config: StoreConfig = serde_json::from_str(r#"{"pool_size": 3}"#).expect("parse");
        assert_eq!(config.pool_size, 3);
        assert_eq!(config.batch_max, StoreConfig::default().batch_max);
    }
}
