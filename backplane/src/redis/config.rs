//! Configuration of the Redis backplane, and the fred clients built from it.
//!
//! # Invariants
//! - No Redis call waits longer than `command_timeout`; while a client is
//!   disconnected, calls fail at once instead of queueing behind reconnection.
//! - fred reconnects forever, with exponential backoff capped at
//!   `reconnect_max_delay`.

use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::{Builder, Client, Config, ReconnectPolicy};

use crate::names::NodeId;

/// What a [`super::RedisBackplane`] needs to know.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`; in cluster mode any master,
    /// other seeds as `?node=host:port`. No default.
    pub url: String,
    /// This node's id in the cluster. No default.
    pub node: NodeId,
    /// Start of every key and channel name. Must not contain `{` or `}`.
    /// Default `hubwire`.
    pub prefix: String,
    /// How often the node refreshes its heartbeat and looks for dead nodes.
    /// Default 2 s.
    pub heartbeat_interval: Duration,
    /// A node whose heartbeat is older than this is dead and swept. A dead node
    /// is swept within `dead_node_timeout + heartbeat_interval` (default 12 s).
    /// Must exceed `heartbeat_interval`. Also sets how long a node's records
    /// count without its heartbeat when nobody sweeps it (see
    /// [`RedisConfig::record_lease_ttl`]). Default 10 s.
    pub dead_node_timeout: Duration,
    /// How long a channel stays subscribed after the node asked to leave it, in
    /// case a new local member arrives. Default 2 s.
    pub unsubscribe_delay: Duration,
    /// Redis Cluster: sharded pub/sub (`SSUBSCRIBE` / `SPUBLISH`). Default `false`.
    pub cluster: bool,
    /// Longest wait for one Redis call, and for connecting. Default 2 s.
    pub command_timeout: Duration,
    /// Longest pause between two reconnection attempts. Default 2 s.
    pub reconnect_max_delay: Duration,
    /// Events the node's inbox holds. When it is full the receive task waits,
    /// fred's buffer (16 Ki messages) fills behind it, and what overflows that
    /// is lost and counted (`dropped`; each wait counts in `inbox_full`).
    /// Must be positive. Default 4096.
    pub inbox_capacity: usize,
}

/// Why a backplane could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The configuration cannot work.
    #[error("invalid Redis backplane configuration: {0}")]
    Config(String),
    /// Redis did not answer.
    #[error("cannot connect to Redis: {0}")]
    Redis(String),
}

impl RedisConfig {
    /// A configuration with every default.
    pub fn new(url: impl Into<String>, node: NodeId) -> Self {
        Self {
            url: url.into(),
            node,
            prefix: "hubwire".into(),
            heartbeat_interval: Duration::from_secs(2),
            dead_node_timeout: Duration::from_secs(10),
            unsubscribe_delay: Duration::from_secs(2),
            cluster: false,
            command_timeout: Duration::from_secs(2),
            reconnect_max_delay: Duration::from_secs(2),
            inbox_capacity: 4096,
        }
    }

    /// How long a sweep lock lives; also how long an abandoned sweep waits
    /// before another node takes it over.
    pub(super) fn sweep_lock_ttl(&self) -> Duration {
        self.dead_node_timeout.max(self.command_timeout * 4)
    }

    /// How long a node's records in a hub count after its last heartbeat or
    /// registration there: the dead-node timeout plus a sweep lock TTL, so
    /// that a survivor sweeps the dead node (and tells every node) first, and
    /// the lease only frees what nobody swept. Default 20 s.
    pub fn record_lease_ttl(&self) -> Duration {
        self.dead_node_timeout + self.sweep_lock_ttl()
    }

    pub(super) fn validate(&self) -> Result<(), ConnectError> {
        let fail = |why: &str| Err(ConnectError::Config(why.into()));
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return fail("prefix must be non-empty and free of '{' and '}'");
        }
        if self.heartbeat_interval.is_zero() || self.command_timeout.is_zero() {
            return fail("heartbeat_interval and command_timeout must be positive");
        }
        if self.inbox_capacity == 0 {
            return fail("inbox_capacity must be positive");
        }
        if self.dead_node_timeout <= self.heartbeat_interval {
            return fail("dead_node_timeout must exceed heartbeat_interval");
        }
        Ok(())
    }

    /// The command client and the subscriber client.
    pub(super) fn clients(&self) -> Result<(Client, SubscriberClient), ConnectError> {
        let parsed = if self.cluster {
            Config::from_url_clustered(&self.url)
        } else {
            Config::from_url(&self.url)
        };
        let config = parsed.map_err(|e| ConnectError::Config(format!("url: {e}")))?;
        let max_delay = u32::try_from(self.reconnect_max_delay.as_millis()).unwrap_or(u32::MAX);
        let timeout = self.command_timeout;
        let mut builder = Builder::from_config(config);
        builder
            .set_policy(ReconnectPolicy::new_exponential(0, 50, max_delay.max(50), 2))
            .with_connection_config(|c| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = timeout;
                c.max_command_attempts = 2;
                c.unresponsive.max_timeout = Some(timeout * 2);
                c.unresponsive.interval = (timeout / 2).max(Duration::from_millis(100));
            })
            .with_performance_config(|p| {
                p.default_command_timeout = timeout;
                // Pub/sub messages wait here between fred and the receive task,
                // which only decodes them; a lagging receiver loses messages.
                p.broadcast_channel_capacity = 16 * 1024;
            });
        let client = builder.build().map_err(|e| ConnectError::Config(e.to_string()))?;
        let subscriber = builder
            .build_subscriber_client()
            .map_err(|e| ConnectError::Config(e.to_string()))?;
        Ok((client, subscriber))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_sweep_a_dead_node_within_fifteen_seconds() {
        let config = RedisConfig::new("redis://127.0.0.1:6379", NodeId::from("n"));
        assert!(config.validate().is_ok());
        assert!(config.dead_node_timeout + config.heartbeat_interval <= Duration::from_secs(15));
        assert_eq!(config.record_lease_ttl(), Duration::from_secs(20));
    }

    #[test]
    fn impossible_settings_are_refused() {
        let mut config = RedisConfig::new("redis://127.0.0.1:6379", NodeId::from("n"));
        config.prefix = "a{b}".into();
        assert!(config.validate().is_err());
        config.prefix = "ok".into();
        config.dead_node_timeout = config.heartbeat_interval;
        assert!(config.validate().is_err());
    }
}
