//! Node configuration: a TOML file, then `HUBWIRE_*` environment variables on top.
//!
//! Each field is declared once, in the `config_fields!` table below: name,
//! type, default and doc comment (which states the default). The macro makes
//! the struct, its `Default`, [`Config::FIELDS`] and the environment layer, so
//! `HUBWIRE_` + the upper-case field name is the variable of every field and
//! none can be forgotten. How a value is read from its variable follows from
//! the field's type (`FromEnv`). `docs/configuration.md` has one row per
//! field; a test holds the two in step. The names are a contract with operators.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::definition::HubTable;
use hubwire_backplane::{NodeId, RedisConfig};
use hubwire_store::StoreConfig;
use serde::Deserialize;

/// Declares the configuration from one table of `name: type = default;`
/// entries with their doc comments: the struct (TOML keys are the names,
/// unknown keys refused), `Default`, the list of names and the environment
/// layer.
macro_rules! config_fields {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$field_meta:meta])* $field:ident: $ty:ty = $default:expr; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        impl $name {
            /// Every field's name (its TOML key), in declaration order; its
            /// environment variable is [`env_name`] of it.
            pub const FIELDS: &'static [&'static str] = &[$( stringify!($field) ),*];

            /// Applies `HUBWIRE_*` variables as returned by `get`: each field
            /// whose variable is set takes the value read from it.
            pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
                $(
                    let name = env_name(stringify!($field));
                    if let Some(value) = get(&name) {
                        self.$field = FromEnv::from_env(&name, value)?;
                    }
                )*
                Ok(())
            }
        }
    };
}

/// The environment variable of a field: `HUBWIRE_` + its name in upper case.
pub fn env_name(field: &str) -> String {
    format!("HUBWIRE_{}", field.to_ascii_uppercase())
}

/// How a field of this type is read from its environment variable `name`.
trait FromEnv: Sized {
    /// The field's value for the variable's `value`.
    fn from_env(name: &str, value: String) -> Result<Self, ConfigError>;
}

/// Text as it is.
impl FromEnv for String {
    fn from_env(_: &str, value: String) -> Result<Self, ConfigError> {
        Ok(value)
    }
}

/// An empty variable means none, so a file's value can be unset.
impl FromEnv for Option<String> {
    fn from_env(_: &str, value: String) -> Result<Self, ConfigError> {
        Ok(Some(value).filter(|s| !s.is_empty()))
    }
}

impl FromEnv for PathBuf {
    fn from_env(_: &str, value: String) -> Result<Self, ConfigError> {
        Ok(value.into())
    }
}

/// An empty variable means none, as for text.
impl FromEnv for Option<PathBuf> {
    fn from_env(_: &str, value: String) -> Result<Self, ConfigError> {
        Ok(Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty()))
    }
}

/// Comma-separated; items trimmed, empty ones dropped.
impl FromEnv for Vec<String> {
    fn from_env(_: &str, value: String) -> Result<Self, ConfigError> {
        Ok(value
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect())
    }
}

/// Hub definitions: a JSON array of `[[hub]]` tables; empty means none.
impl FromEnv for Vec<HubTable> {
    fn from_env(name: &str, value: String) -> Result<Self, ConfigError> {
        if value.trim().is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_str(&value).map_err(|e| ConfigError::Env {
            name: name.into(),
            value: value.clone(),
            reason: format!("a JSON array of hub tables: {e}"),
        })
    }
}

/// Parses the trimmed value; a bad one is an error naming the variable.
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

/// Numbers and booleans, parsed.
macro_rules! from_env_parsed {
    ($($ty:ty),*) => {$(
        impl FromEnv for $ty {
            fn from_env(name: &str, value: String) -> Result<Self, ConfigError> {
                parsed(name, value)
            }
        }
    )*};
}
from_env_parsed!(bool, u64, usize);

/// A number that may be absent: a set variable must hold a number (an empty
/// one is an error too, as before).
impl FromEnv for Option<usize> {
    fn from_env(name: &str, value: String) -> Result<Self, ConfigError> {
        parsed(name, value).map(Some)
    }
}

config_fields! {
    /// Everything a node can be told. Field names are the TOML keys; each has an
    /// environment variable `HUBWIRE_<FIELD>` (upper-case) that overrides the file.
    Config {
        /// Address to listen on. Default `127.0.0.1:8080`; port 0 picks a free port.
        listen: String = "127.0.0.1:8080".into();
        /// This node's id in the cluster. Default: random at every start.
        node_id: Option<String> = None;
        /// HS256 key for user tokens. Default: none, in which case a development key
        /// is generated once and kept in `<data_dir>/dev-jwt-secret`.
        jwt_secret: Option<String> = None;
        /// PEM file with an RSA or EC public key: user tokens signed RS256 / ES256
        /// are accepted too. Default: none.
        jwt_public_key_file: Option<PathBuf> = None;
        /// Required `iss` claim of user tokens. Default: not checked.
        jwt_issuer: Option<String> = None;
        /// Required `aud` claim of user tokens. Default: not checked.
        jwt_audience: Option<String> = None;
        /// Access key for the REST API (HS256 bearer tokens as Azure SignalR Service
        /// uses them). Default: none; then only admin JWTs (user tokens whose `roles`
        /// hold `admin`) are accepted by the REST API.
        access_key: Option<String> = None;
        /// Redis URL (`redis://host:port`); absent: the in-process backplane, a
        /// single node. In cluster mode any master's URL. Default: absent.
        redis_url: Option<String> = None;
        /// Prefix of every Redis key and channel. Default `hubwire`.
        redis_prefix: String = "hubwire".into();
        /// Redis Cluster: sharded pub/sub and hash-tagged keys. Default `false`.
        redis_cluster: bool = false;
        /// Milliseconds between this node's heartbeats in Redis. Default 2000.
        node_heartbeat_ms: u64 = 2000;
        /// Milliseconds without a heartbeat after which a node counts as dead and
        /// its connections are removed from the cluster. Default 10000.
        node_dead_after_ms: u64 = 10_000;
        /// Directory for the node's files: the development key and the embedded
        /// SQLite database (`hubwire.db`). Default `./data`.
        data_dir: PathBuf = PathBuf::from("./data");
        /// Database of conversations, messages and receipts: a `postgres://` URL
        /// (shared by every node of a cluster); absent: SQLite in `data_dir`
        /// (one node). Default: absent.
        database_url: Option<String> = None;
        /// Connections in the database pool shared by every worker. Default 16.
        database_pool_size: usize = 16;
        /// Milliseconds a query waits for a pooled connection before it fails
        /// (the caller gets a clear error, `/readyz` says not ready). Default 5000.
        database_acquire_timeout_ms: u64 = 5000;
        /// Keys encrypting message content at rest, `key_id:base64` of 32 bytes,
        /// oldest first (comma-separated in the environment): the last encrypts,
        /// all decrypt. Default: none (content stored as plain text).
        message_encryption_keys: Vec<String> = Vec::new();
        /// Message retention per conversation type, `type=days` (comma-separated
        /// in the environment, e.g. `customer-support=180,customer-driver=30`);
        /// one node at a time deletes older messages. Default: none (kept).
        message_retention: Vec<String> = Vec::new();
        /// Hubs that accept connections without a token (comma-separated in the
        /// environment). Default: none; every hub requires a valid token.
        anonymous_hubs: Vec<String> = Vec::new();
        /// Whether the built-in `diagnostics` hub is served. Default `false`: it
        /// is a test and operations surface (tests, `loadtest` and the bench
        /// scripts turn it on), and its sends to other users need the `admin` role.
        diagnostics_hub: bool = false;
        /// Seconds without a send after which the server sends a Ping. Default 15.
        keep_alive_secs: u64 = 15;
        /// Seconds without anything from a client after which it is closed. Default 30.
        client_timeout_secs: u64 = 30;
        /// Seconds a client has to complete the handshake. Default 15.
        handshake_timeout_secs: u64 = 15;
        /// Largest hub message a client may send, in bytes. Default 32768.
        max_message_size: usize = 32 * 1024;
        /// Messages that may wait for one connection before it counts as slow and
        /// is closed. Default 1024.
        outbound_queue: usize = 1024;
        /// Connections one user may hold per hub, cluster-wide; 0 = unlimited. Default 5.
        max_connections_per_user: usize = 5;
        /// Send exception details to clients in errors. Default `false`.
        detailed_errors: bool = false;
        /// HTTP worker threads. Default: the number of cores.
        workers: Option<usize> = None;
        /// Seconds graceful shutdown waits for connections to close. Default 10.
        shutdown_timeout_secs: u64 = 10;
        /// Seconds between `/readyz` turning 503 on SIGTERM and the first client
        /// being asked to reconnect, for load balancers that poll `/readyz`
        /// (Kubernetes removes the pod from its endpoints during `preStop`
        /// instead). New connections are refused from the start. Default 0.
        shutdown_delay_secs: u64 = 0;
        /// Connections asked to reconnect at once during graceful shutdown; the
        /// next batch is asked once these have left (or their share of the
        /// drain time passed). 0 = all at once. Default 500.
        shutdown_close_batch: usize = 500;
        /// `TCP_NODELAY` on client sockets (each frame is one write). Default `true`.
        tcp_nodelay: bool = true;
        /// Log output on stderr: `text` (human-readable lines), `json` (one
        /// JSON object per line, with `node`, `connection` and `user` fields)
        /// or `auto` (JSON unless stderr is a terminal). Default `text`.
        log_format: String = "text".into();
        /// OTLP/HTTP endpoint traces are exported to (`http://collector:4318`;
        /// spans go to `/v1/traces` under it, JSON bodies). Absent:
        /// `OTEL_EXPORTER_OTLP_ENDPOINT` if set, else no tracing. Default: absent.
        otlp_endpoint: Option<String> = None;
        /// Server-to-client streams one connection may run at once; a stream
        /// invocation beyond it is answered with a Completion error and the
        /// connection stays open. 0 = unlimited. Default 32.
        max_streams_per_connection: usize = 32;
        /// Groups one connection may be added to (JoinGroup or the REST API);
        /// adding it to one more is refused. 0 = unlimited. Default 128.
        max_groups_per_connection: usize = 128;
        /// Seconds a negotiated connection token waits for its transport; after
        /// that it cannot be used. Default 30.
        negotiate_ttl_secs: u64 = 30;
        /// Negotiated-but-unconnected tokens one user may hold on this node
        /// (anonymous negotiations count only towards the node's limit); more are
        /// refused with 429. 0 = unlimited. Default 32.
        max_pending_negotiations_per_user: usize = 32;
        /// Negotiated-but-unconnected tokens on this node; more are refused with
        /// 503. 0 = unlimited. Default 100000.
        max_pending_negotiations: usize = 100_000;
        /// Close a connection (Close message with an error, reconnect allowed) when
        /// the `exp` of its token passes, as ASP.NET Core's
        /// `CloseOnAuthenticationExpiration`. Default `false`.
        close_on_token_expiry: bool = false;
        /// Whether HS256 user tokens are accepted when `jwt_public_key_file` is
        /// set (without a public key HS256 is the only algorithm and this is
        /// ignored). Default `true`.
        jwt_allow_hs256: bool = true;
        /// The node's externally visible base URL (`https://signalr.example.com`,
        /// optionally with a path prefix): REST access-token audiences are
        /// compared with it instead of the request's `Host`. Default: none.
        public_url: Option<String> = None;
        /// Proxies (IP addresses or CIDR blocks) whose `Forwarded` /
        /// `X-Forwarded-Host` / `X-Forwarded-Proto` headers are trusted for the
        /// REST audience check. Default: none (only the direct `Host` is used).
        trusted_proxies: Vec<String> = Vec::new();
        /// Origins (`https://app.example.com`, or `*`) allowed to open WebSockets
        /// and to call negotiate and the REST API from a browser; the CORS
        /// preflight is answered for them. Default: none = no Origin check and no
        /// CORS headers.
        allowed_origins: Vec<String> = Vec::new();
        /// How long a group or close command for connections on other nodes
        /// waits for those nodes to confirm it, in milliseconds; then it fails
        /// (REST 503, `HubException`). Default 5000.
        cluster_ack_timeout_ms: u64 = 5000;
        /// Events a node's backplane inbox holds (Redis backplane). When full,
        /// receiving waits and what overflows fred's buffer behind it is lost
        /// and counted (`hubwire_redis_dropped_total`). Must be positive.
        /// Default 4096.
        cluster_inbox_capacity: usize = 4096;
        /// Seconds a write to a client may make no progress before the client
        /// counts as slow and is closed. Default 10.
        write_timeout_secs: u64 = 10;
        /// Bytes of records that may wait for one connection (besides what the
        /// socket took) before it counts as slow and is closed; one record larger
        /// than this is still accepted into an empty queue. Default 1048576.
        outbound_queue_bytes: usize = 1024 * 1024;
        /// Connections this node holds at once (WebSockets, SSE streams and
        /// long-polling connections), handshakes included.
        /// Default: the process's open-file soft limit minus 64 (Redis, the
        /// database, the listener, `/healthz` and other HTTP requests).
        max_connections: Option<usize> = None;
        /// WebSocket upgrades whose SignalR handshake is not complete yet, on the
        /// whole node; 0 = unlimited. Default 1024.
        max_handshakes: usize = 1024;
        /// The same per client IP address; 0 = unlimited. Default 64.
        max_handshakes_per_ip: usize = 64;
        /// Largest SignalR handshake request, in bytes. Default 4096.
        max_handshake_size: usize = 4096;
        /// Offer stateful reconnect to clients that ask for it in negotiate
        /// (`useStatefulReconnect=true`, WebSockets, hub protocol version 2).
        /// Default `true`.
        stateful_reconnect: bool = true;
        /// Bytes of sent messages a stateful connection keeps until its client
        /// acknowledges them; when full, nothing more is sent until an Ack
        /// (ASP.NET Core's `StatefulReconnectBufferSize`). Default 100000.
        stateful_reconnect_buffer_bytes: usize = 100_000;
        /// Seconds a stateful connection whose socket dropped waits for its
        /// client to reconnect, still registered (groups, user); then it is
        /// closed as usual. Default 15.
        stateful_reconnect_grace_secs: u64 = 15;
        /// Seconds a long poll waits for something to send before it is answered
        /// `200` with an empty body (ASP.NET Core's `LongPolling.PollTimeout`).
        /// Default 90.
        long_poll_timeout_secs: u64 = 90;
        /// Seconds a long-polling client may go without a poll outstanding
        /// before its connection is closed (ASP.NET Core's `DisconnectTimeout`).
        /// Default 15.
        long_poll_disconnect_secs: u64 = 15;
        /// Development mode: the node serves the transport check page at
        /// `/dev/` (`dev/transports.html`), which loads the SignalR browser
        /// bundle from `dev_signalr_dir`. Never in production. Default `false`.
        dev_mode: bool = false;
        /// Directory holding the official SignalR browser bundle (`signalr.js`,
        /// e.g. `e2e/node_modules/@microsoft/signalr/dist/browser`), served at
        /// `/dev/signalr/` in development mode. Default: none.
        dev_signalr_dir: Option<PathBuf> = None;
        /// Seconds the server waits for a client's result (a hub method's or
        /// the REST API's `:invoke`); then the caller gets an error. Default 30.
        client_result_timeout_secs: u64 = 30;
        /// The app's backend (`http://app:5000`): the base URL of the hooks
        /// hub definitions name in their `backend` table (authentication,
        /// authorisation; `docs/hubs.md`). Default: none.
        backend_url: Option<String> = None;
        /// HMAC-SHA256 key signing every backend hook request
        /// (`X-Hubwire-Signature`). Default: none (unsigned).
        backend_secret: Option<String> = None;
        /// Milliseconds a backend hook call may take; then the request is
        /// refused (503 for authentication, the hub's refusal for
        /// authorisation). Default 3000.
        backend_timeout_ms: u64 = 3000;
        /// Seconds an authentication answer (a principal or a refusal) is
        /// reused for the same credentials (never beyond the principal's
        /// `expiresIn`); 0 = not cached. Default 60.
        backend_auth_cache_secs: u64 = 60;
        /// Seconds an authorisation answer is reused for the same user,
        /// method, group and arguments; 0 = not cached. Default 10.
        backend_authorize_cache_secs: u64 = 10;
        /// Answers each of the two backend caches holds at most (the oldest
        /// go first). Default 10000.
        backend_cache_entries: usize = 10_000;
        /// Hub definitions (`[[hub]]` tables, `docs/hubs.md`): hubs of a built-in
        /// kind under an app's own path and names. One at `/hubs/chat` replaces
        /// the built-in chat hub. In the environment: the same tables as a JSON
        /// array. Default: none (the built-in `/hubs/chat` with MISSION's names).
        hub: Vec<HubTable> = Vec::new();
        /// Azure SignalR Service upstream (serverless mode, `docs/rest-api.md`):
        /// an `http://` URL template with `{hub}`, `{category}` and `{event}`.
        /// When set, every hub POSTs its connections' `connected` /
        /// `disconnected` events and invocations of methods it does not define
        /// there, signed with `access_key`. Default: none (unknown methods are
        /// refused as before).
        upstream_url: Option<String> = None;
        /// Milliseconds an upstream request may take (connect, send, whole
        /// answer); then the invocation gets an error Completion. Default 5000.
        upstream_timeout_ms: u64 = 5000;
        /// Invocations one connection may have waiting on the upstream at once;
        /// more wait for one of them to finish (the connection's other
        /// invocations queue behind). Default 4.
        upstream_concurrency: usize = 4;
        /// The most messages one REST batch send (`POST
        /// /api/hubs/{hub}/:sendBatch`) may carry; more answer 400. Must be
        /// positive. Default 1000.
        rest_batch_max_messages: usize = 1000;
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
            crate::core::proxies::IpBlock::parse(proxy).map_err(|reason| ConfigError::Invalid {
                field: "trusted_proxies (HUBWIRE_TRUSTED_PROXIES)",
                reason,
            })?;
        }
        if let Some(backend) = &self.backend_url {
            crate::core::webhook::check_url(backend).map_err(|reason| ConfigError::Invalid {
                field: "backend_url (HUBWIRE_BACKEND_URL)",
                reason,
            })?;
        }
        if let Some(secret) = self.backend_secret.as_deref().filter(|k| k.len() < 16) {
            return Err(ConfigError::Invalid {
                field: "backend_secret (HUBWIRE_BACKEND_SECRET)",
                reason: format!("{} bytes is too short: at least 16", secret.len()),
            });
        }
        if self.backend_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                field: "backend_timeout_ms (HUBWIRE_BACKEND_TIMEOUT_MS)",
                reason: "must be positive".into(),
            });
        }
        if let Some(upstream) = &self.upstream_url {
            let sample = upstream
                .replace("{hub}", "hub")
                .replace("{category}", "messages")
                .replace("{event}", "event");
            crate::core::webhook::check_url(&sample).map_err(|reason| ConfigError::Invalid {
                field: "upstream_url (HUBWIRE_UPSTREAM_URL)",
                reason,
            })?;
        }
        if self.rest_batch_max_messages == 0 {
            return Err(ConfigError::Invalid {
                field: "rest_batch_max_messages (HUBWIRE_REST_BATCH_MAX_MESSAGES)",
                reason: "must be positive".into(),
            });
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

    /// The Redis backplane's settings for this node (`node`) when `redis_url`
    /// is set: the fields above that concern it, the backplane's own defaults
    /// for the rest. None: the in-process backplane.
    pub fn redis_backplane(&self, node: &NodeId) -> Option<RedisConfig> {
        let url = self.redis_url.as_ref()?;
        Some(RedisConfig {
            prefix: self.redis_prefix.clone(),
            cluster: self.redis_cluster,
            heartbeat_interval: Duration::from_millis(self.node_heartbeat_ms),
            dead_node_timeout: Duration::from_millis(self.node_dead_after_ms),
            inbox_capacity: self.cluster_inbox_capacity,
            ..RedisConfig::new(url.clone(), node.clone())
        })
    }

    /// The store's configuration: the database fields of this one.
    pub fn store(&self) -> StoreConfig {
        StoreConfig {
            database_url: self.database_url.clone(),
            data_dir: self.data_dir.clone(),
            pool_size: self.database_pool_size,
            acquire_timeout_ms: self.database_acquire_timeout_ms,
            encryption_keys: self.message_encryption_keys.clone(),
            retention: self.message_retention.clone(),
            ..StoreConfig::default()
        }
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
    /// [`Config::long_poll_timeout_secs`] as a duration (at least a second).
    pub fn long_poll_timeout(&self) -> Duration {
        Duration::from_secs(self.long_poll_timeout_secs.max(1))
    }
    /// [`Config::long_poll_disconnect_secs`] as a duration.
    pub fn long_poll_disconnect(&self) -> Duration {
        Duration::from_secs(self.long_poll_disconnect_secs.max(1))
    }
    /// [`Config::write_timeout_secs`] as a duration (at least a second).
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

    #[test]
    fn every_field_is_read_from_hubwire_and_its_upper_case_name() {
        let asked = std::cell::RefCell::new(Vec::new());
        Config::default()
            .apply_env(|name| {
                asked.borrow_mut().push(name.to_owned());
                None
            })
            .unwrap();
        let expected: Vec<String> = Config::FIELDS.iter().map(|f| env_name(f)).collect();
        assert_eq!(asked.into_inner(), expected);
        assert!(expected.contains(&"HUBWIRE_MAX_PENDING_NEGOTIATIONS_PER_USER".to_owned()));
        assert_eq!(Config::FIELDS.len(), 71);
    }

    #[test]
    fn environment_values_are_read_by_the_kind_of_their_field() {
        let mut config: Config =
            toml::from_str("node_id = \"a\"\njwt_public_key_file = \"k.pem\"\nworkers = 2").unwrap();
        config
            .apply_env(|name| match name {
                "HUBWIRE_NODE_ID" | "HUBWIRE_JWT_PUBLIC_KEY_FILE" => Some(String::new()),
                "HUBWIRE_REDIS_PREFIX" => Some(" spaced ".into()),
                "HUBWIRE_DATA_DIR" => Some("/var/lib/hubwire".into()),
                "HUBWIRE_TRUSTED_PROXIES" => Some(" 10.0.0.0/8 ,, ::1 ".into()),
                "HUBWIRE_MAX_CONNECTIONS" => Some(" 100 ".into()),
                "HUBWIRE_TCP_NODELAY" => Some("false".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.node_id, None);
        assert_eq!(config.jwt_public_key_file, None);
        assert_eq!(config.redis_prefix, " spaced ");
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/hubwire"));
        assert_eq!(config.trusted_proxies, vec!["10.0.0.0/8", "::1"]);
        assert_eq!(config.max_connections, Some(100));
        assert_eq!(config.workers, Some(2));
        assert!(!config.tcp_nodelay);
        let err = Config::default()
            .apply_env(|name| (name == "HUBWIRE_WORKERS").then(String::new))
            .unwrap_err();
        assert!(err.to_string().contains("HUBWIRE_WORKERS"), "{err}");
    }

    #[test]
    fn the_defaults_are_those_documented() {
        let config = Config::default();
        assert_eq!(config.listen, "127.0.0.1:8080");
        assert_eq!(config.redis_prefix, "hubwire");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.node_dead_after_ms, 10_000);
        assert_eq!(config.max_message_size, 32_768);
        assert_eq!(config.outbound_queue_bytes, 1_048_576);
        assert_eq!(config.max_pending_negotiations, 100_000);
        assert!(config.tcp_nodelay && config.jwt_allow_hs256 && !config.redis_cluster);
        assert_eq!(
            (config.workers, config.max_connections, config.redis_url),
            (None, None, None)
        );
    }

    #[test]
    fn the_redis_backplane_gets_the_fields_that_concern_it() {
        let node = NodeId::from("n1".to_owned());
        assert!(Config::default().redis_backplane(&node).is_none());
        let config = Config {
            redis_url: Some("redis://127.0.0.1:1".into()),
            redis_prefix: "p".into(),
            redis_cluster: true,
            node_heartbeat_ms: 300,
            node_dead_after_ms: 4000,
            cluster_inbox_capacity: 7,
            ..Config::default()
        };
        let redis = config.redis_backplane(&node).unwrap();
        assert_eq!(redis.url, "redis://127.0.0.1:1");
        assert_eq!(redis.node, node);
        assert_eq!(redis.prefix, "p");
        assert!(redis.cluster);
        assert_eq!(redis.heartbeat_interval, Duration::from_millis(300));
        assert_eq!(redis.dead_node_timeout, Duration::from_millis(4000));
        assert_eq!(redis.inbox_capacity, 7);
    }

    /// The `` `key` / `HUBWIRE_KEY` `` rows of `docs/configuration.md`, in order,
    /// after checking that they form one table (nothing else between them).
    fn documented_fields(doc: &str) -> Vec<String> {
        let lines: Vec<&str> = doc.lines().collect();
        let is_row = |line: &&str| line.starts_with("| `") && line.contains("` / `HUBWIRE_");
        let first = lines.iter().position(&is_row).unwrap();
        let last = lines.iter().rposition(&is_row).unwrap();
        let mut fields = Vec::new();
        for line in &lines[first..=last] {
            assert!(is_row(line), "not a field row inside the table: {line:?}");
            let cell = line.split('|').nth(1).unwrap().trim();
            let (key, var) = cell.split_once(" / ").unwrap();
            let (key, var) = (key.trim_matches('`'), var.trim_matches('`'));
            assert_eq!(var, env_name(key), "row of {key} names the wrong variable");
            fields.push(key.to_owned());
        }
        fields
    }

    #[test]
    fn docs_configuration_md_documents_exactly_the_fields() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let documented = documented_fields(&doc);
        for field in Config::FIELDS {
            let rows = documented.iter().filter(|d| d == field).count();
            assert_eq!(rows, 1, "`{field}` has {rows} rows in docs/configuration.md, want 1");
        }
        for field in &documented {
            assert!(
                Config::FIELDS.contains(&field.as_str()),
                "docs/configuration.md documents `{field}`, which is not a field"
            );
        }
    }

    #[test]
    fn the_doc_check_catches_a_missing_or_stray_row() {
        let doc = "| key / variable | default | meaning |\n|---|---|---|\n\
                   | `listen` / `HUBWIRE_LISTEN` | x | y |\n| `gone` / `HUBWIRE_GONE` | x | y |\n";
        assert_eq!(documented_fields(doc), vec!["listen", "gone"]);
        let split = "| `listen` / `HUBWIRE_LISTEN` | x | y |\ntext\n| `workers` / `HUBWIRE_WORKERS` | x | y |\n";
        assert!(std::panic::catch_unwind(|| documented_fields(split)).is_err());
        let wrong = "| `listen` / `HUBWIRE_LISTEN_ADDR` | x | y |\n";
        assert!(std::panic::catch_unwind(|| documented_fields(wrong)).is_err());
    }
}
