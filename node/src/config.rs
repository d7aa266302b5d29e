//! Node configuration: a TOML file, then `HUBWIRE_*` environment variables on top.
//!
//! Every field states its default; `docs/configuration.md` lists them all. The
//! environment names are a contract with operators and the Helm chart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Everything a node can be told. Field names are the TOML keys; each has an
/// environment variable `HUBWIRE_<FIELD>` (upper-case) that overrides the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:8080`; port 0 picks a free port.
    pub listen: String,
    /// This node's id in the cluster. Default: random at every start.
    pub node_id: Option<String>,
    /// HS256 key for user tokens. Default: none, in which case a development key
    /// is generated once and kept in `<data_dir>/dev-jwt-secret`.
    pub jwt_secret: Option<String>,
    /// PEM file with an RSA or EC public key: user tokens signed RS256 / ES256
    /// are accepted too. Default: none.
    pub jwt_public_key_file: Option<PathBuf>,
    /// Required `iss` claim of user tokens. Default: not checked.
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim of user tokens. Default: not checked.
    pub jwt_audience: Option<String>,
    /// Access key for the REST API (HS256 bearer tokens as Azure SignalR Service
    /// uses them). Default: none; then only admin JWTs (user tokens whose `roles`
    /// hold `admin`) are accepted by the REST API.
    pub access_key: Option<String>,
    /// Redis URL (`redis://host:port`); absent: the in-process backplane, a
    /// single node. In cluster mode any master's URL. Default: absent.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel. Default `hubwire`.
    pub redis_prefix: String,
    /// Redis Cluster: sharded pub/sub and hash-tagged keys. Default `false`.
    pub redis_cluster: bool,
    /// Milliseconds between this node's heartbeats in Redis. Default 2000.
    pub node_heartbeat_ms: u64,
    /// Milliseconds without a heartbeat after which a node counts as dead and
    /// its connections are removed from the cluster. Default 10000.
    pub node_dead_after_ms: u64,
    /// Directory for the embedded database and the development key. Default `./data`.
    pub data_dir: PathBuf,
    /// Hubs that accept connections without a token (comma-separated in the
    /// environment). Default: none; every hub requires a valid token.
    pub anonymous_hubs: Vec<String>,
    /// Whether the built-in `diagnostics` hub is served. Default `false`: it
    /// is a test and operations surface (tests, `loadtest` and the bench
    /// scripts turn it on), and its sends to other users need the `admin` role.
    pub diagnostics_hub: bool,
    /// Seconds without a send after which the server sends a Ping. Default 15.
    pub keep_alive_secs: u64,
    /// Seconds without anything from a client after which it is closed. Default 30.
    pub client_timeout_secs: u64,
    /// Seconds a client has to complete the handshake. Default 15.
    pub handshake_timeout_secs: u64,
    /// Largest hub message a client may send, in bytes. Default 32768.
    pub max_message_size: usize,
    /// Messages that may wait for one connection before it counts as slow and
    /// is closed. Default 1024.
    pub outbound_queue: usize,
    /// Connections one user may hold per hub, cluster-wide; 0 = unlimited. Default 5.
    pub max_connections_per_user: usize,
    /// Send exception details to clients in errors. Default `false`.
    pub detailed_errors: bool,
    /// HTTP worker threads. Default: the number of cores.
    pub workers: Option<usize>,
    /// Seconds graceful shutdown waits for connections to close. Default 10.
    pub shutdown_timeout_secs: u64,
    /// `TCP_NODELAY` on client sockets (each frame is one write). Default `true`.
    pub tcp_nodelay: bool,
    /// Server-to-client streams one connection may run at once; a stream
    /// invocation beyond it is answered with a Completion error and the
    /// connection stays open. 0 = unlimited. Default 32.
    pub max_streams_per_connection: usize,
    /// Groups one connection may be added to (JoinGroup or the REST API);
    /// adding it to one more is refused. 0 = unlimited. Default 128.
    pub max_groups_per_connection: usize,
    /// Seconds a negotiated connection token waits for its transport; after
    /// that it cannot be used. Default 30.
    pub negotiate_ttl_secs: u64,
    /// Negotiated-but-unconnected tokens one user may hold on this node
    /// (anonymous negotiations count only towards the node's limit); more are
    /// refused with 429. 0 = unlimited. Default 32.
    pub max_pending_negotiations_per_user: usize,
    /// Negotiated-but-unconnected tokens on this node; more are refused with
    /// 503. 0 = unlimited. Default 100000.
    pub max_pending_negotiations: usize,
    /// Close a connection (Close message with an error, reconnect allowed) when
    /// the `exp` of its token passes, as ASP.NET Core's
    /// `CloseOnAuthenticationExpiration`. Default `false`.
    pub close_on_token_expiry: bool,
    /// Whether HS256 user tokens are accepted when `jwt_public_key_file` is
    /// set (without a public key HS256 is the only algorithm and this is
    /// ignored). Default `true`.
    pub jwt_allow_hs256: bool,
    /// The node's externally visible base URL (`https://signalr.example.com`,
    /// optionally with a path prefix): REST access-token audiences are
    /// compared with it instead of the request's `Host`. Default: none.
    pub public_url: Option<String>,
    /// Proxies (IP addresses or CIDR blocks) whose `Forwarded` /
    /// `X-Forwarded-Host` / `X-Forwarded-Proto` headers are trusted for the
    /// REST audience check. Default: none (only the direct `Host` is used).
    pub trusted_proxies: Vec<String>,
    /// Origins (`https://app.example.com`, or `*`) allowed to open WebSockets
    /// and to call negotiate and the REST API from a browser; the CORS
    /// preflight is answered for them. Default: none = no Origin check and no
    /// CORS headers.
    pub allowed_origins: Vec<String>,
    /// How long a group or close command for connections on other nodes
    /// waits for those nodes to confirm it, in milliseconds; then it fails
    /// (REST 503, `HubException`). Default 5000.
    pub cluster_ack_timeout_ms: u64,
    /// Events a node's backplane inbox holds (Redis backplane). When full,
    /// receiving waits and what overflows fred's buffer behind it is lost
    /// and counted (`hubwire_redis_dropped_total`). Must be positive.
    /// Default 4096.
    pub cluster_inbox_capacity: usize,
    /// Seconds a write to a client may make no progress before the client
    /// counts as slow and is closed. Default 10.
    pub write_timeout_secs: u64,
    /// Bytes of records that may wait for one connection (besides what the
    /// socket took) before it counts as slow and is closed; one record larger
    /// than this is still accepted into an empty queue. Default 1048576.
    pub outbound_queue_bytes: usize,
    /// WebSocket connections this node holds at once, handshakes included.
    /// Default: the process's open-file soft limit minus 64 (Redis, the
    /// database, the listener, `/healthz` and other HTTP requests).
    pub max_connections: Option<usize>,
    /// WebSocket upgrades whose SignalR handshake is not complete yet, on the
    /// whole node; 0 = unlimited. Default 1024.
    pub max_handshakes: usize,
    /// The same per client IP address; 0 = unlimited. Default 64.
    pub max_handshakes_per_ip: usize,
    /// Largest SignalR handshake request, in bytes. Default 4096.
    pub max_handshake_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            node_id: None,
            jwt_secret: None,
            jwt_public_key_file: None,
            jwt_issuer: None,
            jwt_audience: None,
            access_key: None,
            redis_url: None,
            redis_prefix: "hubwire".into(),
            redis_cluster: false,
            node_heartbeat_ms: 2000,
            node_dead_after_ms: 10_000,
            data_dir: PathBuf::from("./data"),
            anonymous_hubs: Vec::new(),
            diagnostics_hub: false,
            keep_alive_secs: 15,
            client_timeout_secs: 30,
            handshake_timeout_secs: 15,
            max_message_size: 32 * 1024,
            outbound_queue: 1024,
            max_connections_per_user: 5,
            detailed_errors: false,
            workers: None,
            shutdown_timeout_secs: 10,
            tcp_nodelay: true,
            max_streams_per_connection: 32,
            max_groups_per_connection: 128,
            negotiate_ttl_secs: 30,
            max_pending_negotiations_per_user: 32,
            max_pending_negotiations: 100_000,
            close_on_token_expiry: false,
            jwt_allow_hs256: true,
            public_url: None,
            trusted_proxies: Vec::new(),
            allowed_origins: Vec::new(),
            cluster_ack_timeout_ms: 5000,
            cluster_inbox_capacity: 4096,
            write_timeout_secs: 10,
            outbound_queue_bytes: 1024 * 1024,
            max_connections: None,
            max_handshakes: 1024,
            max_handshakes_per_ip: 64,
            max_handshake_size: 4096,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this structure.
    #[error("invalid configuration file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// An environment variable has a value of the wrong kind.
    #[error("invalid value {value:?} for {name}: {reason}")]
    Env {
        /// The variable.
        name: String,
        /// Its value.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// A value that parses but cannot be used (a key too short to be safe...).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, with its environment variable.
        field: &'static str,
        /// Why, and what to do.
        reason: String,
    },
}

/// The fewest bytes a signing secret or access key may have (HS256 keys
/// shorter than the hash output are guessable; RFC 7518 3.2).
pub const MIN_KEY_BYTES: usize = 32;

impl Config {
    /// Reads the file (if any), then applies the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_owned(),
                    source: Box::new(source),
                })?
            }
            None => Config::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// Refuses values that would start an unsafe or broken node: signing keys
    /// shorter than [`MIN_KEY_BYTES`], unparsable proxies or public URL.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let keys = [
            ("jwt_secret (HUBWIRE_JWT_SECRET)", &self.jwt_secret),
            ("access_key (HUBWIRE_ACCESS_KEY)", &self.access_key),
        ];
        for (field, key) in keys {
            if let Some(key) = key.as_deref().filter(|k| k.len() < MIN_KEY_BYTES) {
                return Err(ConfigError::Invalid {
                    field,
                    reason: format!(
                        "{} bytes is too short; use at least {MIN_KEY_BYTES} random bytes (e.g. `openssl rand -base64 32`)",
                        key.len()
                    ),
                });
            }
        }
        for proxy in &self.trusted_proxies {
            crate::proxies::IpBlock::parse(proxy).map_err(|reason| ConfigError::Invalid {
                field: "trusted_proxies (HUBWIRE_TRUSTED_PROXIES)",
                reason,
            })?;
        }
        if let Some(public) = &self.public_url {
            let usable = url::Url::parse(public)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
            if usable.is_none() {
                return Err(ConfigError::Invalid {
                    field: "public_url (HUBWIRE_PUBLIC_URL)",
                    reason: format!("{public:?} is not an http(s) URL with a host"),
                });
            }
        }
        Ok(())
    }

    /// Applies `HUBWIRE_*` variables as returned by `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parsed<T: std::str::FromStr>(name: &str, value: String) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.trim().parse().map_err(|e: T::Err| ConfigError::Env {
                name: name.into(),
                value: value.clone(),
                reason: e.to_string(),
            })
        }
        macro_rules! env_field {
            ($field:ident, $name:literal, text) => {
                if let Some(v) = get($name) {
                    self.$field = v;
                }
            };
            ($field:ident, $name:literal, optional) => {
                if let Some(v) = get($name) {
                    self.$field = Some(v.into()).filter(|s: &String| !s.is_empty());
                }
            };
            ($field:ident, $name:literal, path) => {
                if let Some(v) = get($name) {
                    self.$field = v.into();
                }
            };
            ($field:ident, $name:literal, optional_path) => {
                if let Some(v) = get($name) {
                    self.$field = Some(v.into()).filter(|p: &PathBuf| !p.as_os_str().is_empty());
                }
            };
            ($field:ident, $name:literal, parse) => {
                if let Some(v) = get($name) {
                    self.$field = parsed($name, v)?;
                }
            };
            ($field:ident, $name:literal, optional_parse) => {
                if let Some(v) = get($name) {
                    self.$field = Some(parsed($name, v)?);
                }
            };
            ($field:ident, $name:literal, list) => {
                if let Some(v) = get($name) {
                    self.$field = v
                        .split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect();
                }
            };
        }
        env_field!(listen, "HUBWIRE_LISTEN", text);
        env_field!(node_id, "HUBWIRE_NODE_ID", optional);
        env_field!(jwt_secret, "HUBWIRE_JWT_SECRET", optional);
        env_field!(jwt_public_key_file, "HUBWIRE_JWT_PUBLIC_KEY_FILE", optional_path);
        env_field!(jwt_issuer, "HUBWIRE_JWT_ISSUER", optional);
        env_field!(jwt_audience, "HUBWIRE_JWT_AUDIENCE", optional);
        env_field!(access_key, "HUBWIRE_ACCESS_KEY", optional);
        env_field!(redis_url, "HUBWIRE_REDIS_URL", optional);
        env_field!(redis_prefix, "HUBWIRE_REDIS_PREFIX", text);
        env_field!(redis_cluster, "HUBWIRE_REDIS_CLUSTER", parse);
        env_field!(node_heartbeat_ms, "HUBWIRE_NODE_HEARTBEAT_MS", parse);
        env_field!(node_dead_after_ms, "HUBWIRE_NODE_DEAD_AFTER_MS", parse);
        env_field!(data_dir, "HUBWIRE_DATA_DIR", path);
        env_field!(anonymous_hubs, "HUBWIRE_ANONYMOUS_HUBS", list);
        env_field!(diagnostics_hub, "HUBWIRE_DIAGNOSTICS_HUB", parse);
        env_field!(keep_alive_secs, "HUBWIRE_KEEP_ALIVE_SECS", parse);
        env_field!(client_timeout_secs, "HUBWIRE_CLIENT_TIMEOUT_SECS", parse);
        env_field!(handshake_timeout_secs, "HUBWIRE_HANDSHAKE_TIMEOUT_SECS", parse);
        env_field!(max_message_size, "HUBWIRE_MAX_MESSAGE_SIZE", parse);
        env_field!(outbound_queue, "HUBWIRE_OUTBOUND_QUEUE", parse);
        env_field!(max_connections_per_user, "HUBWIRE_MAX_CONNECTIONS_PER_USER", parse);
        env_field!(detailed_errors, "HUBWIRE_DETAILED_ERRORS", parse);
        env_field!(workers, "HUBWIRE_WORKERS", optional_parse);
        env_field!(shutdown_timeout_secs, "HUBWIRE_SHUTDOWN_TIMEOUT_SECS", parse);
        env_field!(tcp_nodelay, "HUBWIRE_TCP_NODELAY", parse);
        env_field!(max_streams_per_connection, "HUBWIRE_MAX_STREAMS_PER_CONNECTION", parse);
        env_field!(max_groups_per_connection, "HUBWIRE_MAX_GROUPS_PER_CONNECTION", parse);
        env_field!(negotiate_ttl_secs, "HUBWIRE_NEGOTIATE_TTL_SECS", parse);
        env_field!(
            max_pending_negotiations_per_user,
            "HUBWIRE_MAX_PENDING_NEGOTIATIONS_PER_USER",
            parse
        );
        env_field!(max_pending_negotiations, "HUBWIRE_MAX_PENDING_NEGOTIATIONS", parse);
        env_field!(close_on_token_expiry, "HUBWIRE_CLOSE_ON_TOKEN_EXPIRY", parse);
        env_field!(jwt_allow_hs256, "HUBWIRE_JWT_ALLOW_HS256", parse);
        env_field!(public_url, "HUBWIRE_PUBLIC_URL", optional);
        env_field!(trusted_proxies, "HUBWIRE_TRUSTED_PROXIES", list);
        env_field!(allowed_origins, "HUBWIRE_ALLOWED_ORIGINS", list);
        env_field!(cluster_ack_timeout_ms, "HUBWIRE_CLUSTER_ACK_TIMEOUT_MS", parse);
        env_field!(cluster_inbox_capacity, "HUBWIRE_CLUSTER_INBOX_CAPACITY", parse);
        env_field!(write_timeout_secs, "HUBWIRE_WRITE_TIMEOUT_SECS", parse);
        env_field!(outbound_queue_bytes, "HUBWIRE_OUTBOUND_QUEUE_BYTES", parse);
        env_field!(max_connections, "HUBWIRE_MAX_CONNECTIONS", optional_parse);
        env_field!(max_handshakes, "HUBWIRE_MAX_HANDSHAKES", parse);
        env_field!(max_handshakes_per_ip, "HUBWIRE_MAX_HANDSHAKES_PER_IP", parse);
        env_field!(max_handshake_size, "HUBWIRE_MAX_HANDSHAKE_SIZE", parse);
        Ok(())
    }

    /// Keep-alive interval.
    pub fn keep_alive(&self) -> Duration {
        Duration::from_secs(self.keep_alive_secs)
    }
    /// Client timeout.
    pub fn client_timeout(&self) -> Duration {
        Duration::from_secs(self.client_timeout_secs)
    }
    /// Handshake timeout.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }
    /// Write timeout (at least one second).
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_secs.max(1))
    }
    /// Whether `hub` accepts connections without a token.
    pub fn hub_is_anonymous(&self, hub: &str) -> bool {
        self.anonymous_hubs.iter().any(|h| h.eq_ignore_ascii_case(hub))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_file_values() {
        let mut config: Config = toml::from_str("listen = \"0.0.0.0:1\"\nkeep_alive_secs = 3").unwrap();
        config
            .apply_env(|name| match name {
                "HUBWIRE_LISTEN" => Some("127.0.0.1:9".into()),
                "HUBWIRE_ANONYMOUS_HUBS" => Some("diagnostics, chat".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.listen, "127.0.0.1:9");
        assert_eq!(config.keep_alive_secs, 3);
        assert_eq!(config.anonymous_hubs, vec!["diagnostics", "chat"]);
        assert!(config.hub_is_anonymous("Diagnostics"));
        assert_eq!(config.max_message_size, 32768);
    }

    #[test]
    fn the_diagnostics_hub_is_off_unless_turned_on() {
        assert!(!Config::default().diagnostics_hub);
        let mut config = Config::default();
        config
            .apply_env(|name| (name == "HUBWIRE_DIAGNOSTICS_HUB").then(|| "true".into()))
            .unwrap();
        assert!(config.diagnostics_hub);
    }

    #[test]
    fn bad_numbers_and_unknown_keys_are_errors() {
        let mut config = Config::default();
        let err = config
            .apply_env(|name| (name == "HUBWIRE_KEEP_ALIVE_SECS").then(|| "soon".into()))
            .unwrap_err();
        assert!(err.to_string().contains("HUBWIRE_KEEP_ALIVE_SECS"), "{err}");
        assert!(toml::from_str::<Config>("no_such_field = 1").is_err());
    }

    #[test]
    fn short_keys_bad_proxies_and_bad_public_urls_are_refused() {
        let with = |edit: fn(&mut Config)| {
            let mut config = Config::default();
            edit(&mut config);
            config.validate()
        };
        assert!(with(|_| {}).is_ok());
        let err = with(|c| c.jwt_secret = Some("short".into())).unwrap_err();
        assert!(err.to_string().contains("HUBWIRE_JWT_SECRET"), "{err}");
        assert!(with(|c| c.access_key = Some("k".repeat(31))).is_err());
        assert!(with(|c| c.access_key = Some("k".repeat(32))).is_ok());
        assert!(with(|c| c.trusted_proxies = vec!["10.0.0.0/8".into(), "::1".into()]).is_ok());
        assert!(with(|c| c.trusted_proxies = vec!["proxy.local".into()]).is_err());
        assert!(with(|c| c.public_url = Some("https://signalr.example.com/prefix".into())).is_ok());
        assert!(with(|c| c.public_url = Some("signalr.example.com".into())).is_err());
    }
}
