//! The app's backend in the loop: its authentication and authorisation
//! hooks (`docs/hubs.md`, "The backend hooks", is the contract apps
//! implement).
//!
//! A hub definition names the hooks by paths under the node's
//! `backend_url`. [`Backend`] is the one service the other layers call:
//! - [`Backend::authenticate`]: the web layer, for a negotiate or connect
//!   request without a valid JWT (or every one, with `authenticate_always`):
//!   the request's credentials are POSTed, the answer is a principal
//!   ([`AuthAnswer::Accepted`]) or a refusal (401 / 403).
//! - [`Backend::authorize`]: the hubs, before a join or a subscription
//!   (`authorize(hub, user, method, group, arguments)`): allowed or not.
//!   The chat kind's `join_conversation` calls it; the other kinds call it
//!   the same way. A hub without an `authorize` hook is always allowed.
//!
//! Both answers are cached ([`TtlCache`]: by a SHA-256 of what the answer
//! depends on, a bounded number of entries, the oldest dropped first), and
//! every call is bounded by `backend_timeout_ms`: a backend that is down,
//! slow or answers nonsense is [`BackendError::Unavailable`], never a hang.
//! Concurrent misses of one key share one call ([`InFlight`], single
//! flight): the first starts it on a task of its own, the others wait for
//! its answer — principal, refusal or failure alike — so a page of eight
//! hubs or a reconnect storm asks the backend once per node. At most
//! `backend_cache_entries` calls are shared at once; a miss beyond that
//! calls on its own.
//! Requests go through the node's one HTTP client
//! ([`crate::core::webhook::post_json_answer`]), signed like the offline
//! hook when `backend_secret` is set.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use tokio::sync::watch;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::core::auth::{unix_now, OneOrMany, Principal};
use crate::core::config::Config;
use crate::core::metrics::{HookOutcome, HookSeries, Metrics};
use crate::core::webhook;
use hubwire_backplane::UserId;

/// The most bytes of a hook's answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// The expiry of a principal whose answer gives no `expiresIn`: far away
/// (ten years), so that `close_on_token_expiry` never closes it.
const NO_EXPIRY_SECS: u64 = 10 * 365 * 24 * 3600;

/// The hooks one hub names (paths resolved against `backend_url`).
#[derive(Clone, Debug)]
struct HubHooks {
    authenticate: Option<Hook>,
    authenticate_always: bool,
    authorize: Option<Hook>,
}

/// One hook of a hub: where it is, and its series of requests.
#[derive(Clone, Debug)]
struct Hook {
    url: url::Url,
    series: HookSeries,
}

/// What a request offers to prove who is behind it, as the authentication
/// hook receives it (absent fields are left out of the body).
#[derive(Clone, Debug, Default)]
pub struct Credentials<'a> {
    /// The `Cookie` header.
    pub cookie: Option<&'a str>,
    /// The `Authorization` header, whatever its scheme.
    pub authorization: Option<&'a str>,
    /// The request's bearer token: of `Authorization: Bearer`, else the
    /// `access_token` query parameter (what the official clients send their
    /// `accessTokenFactory`'s token as).
    pub access_token: Option<&'a str>,
    /// The client's address (the socket's peer).
    pub remote_addr: Option<IpAddr>,
    /// `WebSockets`, `ServerSentEvents`, `LongPolling`; none for negotiate.
    pub transport: Option<&'a str>,
}

/// The authentication hook's answer.
#[derive(Clone, Debug, PartialEq)]
pub enum AuthAnswer {
    /// `200` with a principal.
    Accepted(Principal),
    /// `401`: not signed in.
    Unauthorized,
    /// `403`: signed in, but not allowed on this hub.
    Forbidden,
}

/// A hook that could not be asked.
#[derive(Clone, Debug, thiserror::Error)]
pub enum BackendError {
    /// Down, slower than the timeout, another status, or an answer that is
    /// not the contract's.
    #[error("the backend hook is unavailable: {0}")]
    Unavailable(String),
}

/// The body of an accepting authentication answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PrincipalAnswer {
    user_id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    roles: OneOrMany,
    #[serde(default)]
    channels: OneOrMany,
    #[serde(default)]
    picture: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// The body of an authorisation answer.
#[derive(Debug, Deserialize)]
struct AuthorizeAnswer {
    allow: bool,
}

/// Reads an authentication hook's answer: the principal and how many
/// seconds it may be used, or the refusal.
pub fn parse_auth_answer(status: u16, body: &[u8]) -> Result<(AuthAnswer, Option<u64>), BackendError> {
    match status {
        200 => {
            let answer: PrincipalAnswer =
                serde_json::from_slice(body).map_err(|e| BackendError::Unavailable(format!("not a principal: {e}")))?;
            if answer.user_id.trim().is_empty() {
                return Err(BackendError::Unavailable("the principal's userId is empty".into()));
            }
            let principal = Principal {
                user: UserId::from(answer.user_id),
                name: answer.name,
                tenant: answer.tenant,
                roles: answer.roles.into_vec(),
                channels: answer.channels.into_vec(),
                picture: answer.picture,
                expires: unix_now() + answer.expires_in.unwrap_or(NO_EXPIRY_SECS),
                groups: Vec::new(),
            };
            Ok((AuthAnswer::Accepted(principal), answer.expires_in))
        }
        401 => Ok((AuthAnswer::Unauthorized, None)),
        403 => Ok((AuthAnswer::Forbidden, None)),
        other => Err(BackendError::Unavailable(format!("answered {other}"))),
    }
}

/// Reads an authorisation hook's answer.
pub fn parse_authorize_answer(status: u16, body: &[u8]) -> Result<bool, BackendError> {
    match status {
        200 => serde_json::from_slice::<AuthorizeAnswer>(body)
            .map(|a| a.allow)
            .map_err(|e| BackendError::Unavailable(format!("not {{\"allow\": bool}}: {e}"))),
        other => Err(BackendError::Unavailable(format!("answered {other}"))),
    }
}

/// Answers kept for a while, at most `capacity` of them: when full, the
/// oldest goes. Keys are digests (credentials are not kept as keys).
pub struct TtlCache<V> {
    inner: parking_lot::Mutex<CacheInner<V>>,
    capacity: usize,
}

struct CacheInner<V> {
    /// Key -> (deadline, insertion number, value).
    entries: HashMap<[u8; 32], (Instant, u64, V)>,
    /// Keys in insertion order with their insertion number (a key
    /// re-inserted later appears twice; the stale one is skipped).
    order: VecDeque<([u8; 32], u64)>,
    /// The next insertion number.
    next: u64,
}

impl<V: Clone> TtlCache<V> {
    /// An empty cache of at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: parking_lot::Mutex::new(CacheInner {
                entries: HashMap::new(),
                order: VecDeque::new(),
                next: 0,
            }),
            capacity,
        }
    }

    /// The value of `key`, unless it expired (then it is dropped).
    pub fn get(&self, key: &[u8; 32], now: Instant) -> Option<V> {
        let mut inner = self.inner.lock();
        match inner.entries.get(key) {
            Some((deadline, _, value)) if *deadline > now => Some(value.clone()),
            Some(_) => {
                inner.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `value` for `ttl` (nothing for a zero `ttl` or capacity).
    pub fn insert(&self, key: [u8; 32], value: V, ttl: Duration, now: Instant) {
        if ttl.is_zero() || self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.lock();
        let seq = inner.next;
        inner.next += 1;
        inner.entries.insert(key, (now + ttl, seq, value));
        inner.order.push_back((key, seq));
        // Drop what went stale or expired at the front, then the oldest
        // while over capacity.
        while let Some(&(front, at)) = inner.order.front() {
            let current = inner.entries.get(&front).map(|(d, s, _)| (*d, *s));
            let stale = current.is_none_or(|(_, s)| s != at);
            let expired = current.is_some_and(|(d, _)| d <= now);
            let over = inner.entries.len() > self.capacity;
            if !(stale || expired || over) {
                break;
            }
            inner.order.pop_front();
            if !stale {
                inner.entries.remove(&front);
            }
        }
        // Re-inserted keys leave stale order entries behind: bound them too.
        if inner.order.len() > 2 * self.capacity + 16 {
            let CacheInner { entries, order, .. } = &mut *inner;
            order.retain(|(k, at)| entries.get(k).is_some_and(|(_, s, _)| s == at));
        }
    }

    /// Entries held (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The digest of `parts`, each length-prefixed (no two lists collide).
fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// The answer of a call in flight, once it has one.
type Pending<V> = watch::Receiver<Option<Result<V, BackendError>>>;

/// Calls in flight by key, each shared by the misses that find it here
/// (single flight). A call runs on a task of its own, so a waiter that
/// goes away (its client disconnected) does not cancel it for the others;
/// the task is bounded by the call's timeout and removes its key when it
/// ends, after caching the answer — so a later miss finds the cache.
pub struct InFlight<V> {
    calls: parking_lot::Mutex<HashMap<[u8; 32], Pending<V>>>,
    capacity: usize,
    /// Misses that waited for a call already in flight.
    shared: IntCounter,
}

/// Removes its key from the calls in flight when the call's task ends
/// (also if it panics: its waiters then get `Unavailable`).
struct Landed<V> {
    flight: Arc<InFlight<V>>,
    key: [u8; 32],
}

impl<V> Drop for Landed<V> {
    fn drop(&mut self) {
        self.flight.calls.lock().remove(&self.key);
    }
}

impl<V: Clone + Send + Sync + 'static> InFlight<V> {
    /// No call in flight; at most `capacity` shared at once; `shared`
    /// counts the misses that waited for another's call.
    pub fn new(capacity: usize, shared: IntCounter) -> Arc<Self> {
        Arc::new(Self {
            calls: parking_lot::Mutex::new(HashMap::new()),
            capacity,
            shared,
        })
    }

    /// The answer of the call of `key`: the one in flight if there is one,
    /// else `call`'s, started now on a task of its own (or, when
    /// `capacity` calls are in flight already, awaited here unshared).
    pub async fn run<F>(self: &Arc<Self>, key: [u8; 32], call: F) -> Result<V, BackendError>
    where
        F: Future<Output = Result<V, BackendError>> + Send + 'static,
    {
        let mut call = Some(call);
        let joined = {
            let mut calls = self.calls.lock();
            if let Some(pending) = calls.get(&key) {
                self.shared.inc();
                Some(pending.clone())
            } else if calls.len() >= self.capacity {
                None
            } else if let Some(call) = call.take() {
                let (answer, pending) = watch::channel(None);
                calls.insert(key, pending.clone());
                let landed = Landed {
                    flight: self.clone(),
                    key,
                };
                tokio::spawn(async move {
                    let result = call.await;
                    answer.send_replace(Some(result));
                    drop(landed);
                });
                Some(pending)
            } else {
                None
            }
        };
        match (joined, call) {
            (Some(pending), _) => Self::answer(pending).await,
            (None, Some(call)) => call.await,
            (None, None) => Err(BackendError::Unavailable("the call was not made".into())),
        }
    }

    /// The answer `pending` will have.
    async fn answer(mut pending: Pending<V>) -> Result<V, BackendError> {
        let answer = match pending.wait_for(Option::is_some).await {
            Ok(answer) => answer.clone(),
            Err(_) => None,
        };
        answer.unwrap_or_else(|| Err(BackendError::Unavailable("the call ended without an answer".into())))
    }

    /// Keys with a call in flight.
    pub fn len(&self) -> usize {
        self.calls.lock().len()
    }

    /// Whether no call is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How the node calls a hook: signed when a secret is configured, within
/// the timeout. Cloned into the task of each call.
#[derive(Clone)]
struct Caller {
    secret: Option<Arc<str>>,
    timeout: Duration,
}

impl Caller {
    /// One POST of `body` to `url` within the timeout, signed when a
    /// secret is configured: the status and the answer's body.
    async fn call(&self, url: &url::Url, series: &HookSeries, body: &Value) -> Result<(u16, Vec<u8>), BackendError> {
        let body = body.to_string().into_bytes();
        let signature = self.secret.as_ref().map(|s| webhook::signature(s.as_bytes(), &body));
        let headers: Vec<(&str, &str)> = signature
            .as_deref()
            .map(|s| ("X-Hubwire-Signature", s))
            .into_iter()
            .collect();
        let exchange = webhook::post_json_answer(url, &headers, &body, MAX_ANSWER);
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, exchange).await;
        series.record(HookOutcome::of(&result, |(status, _)| *status), started);
        match result {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(BackendError::Unavailable(format!("{url}: {e}"))),
            Err(_) => Err(BackendError::Unavailable(format!(
                "{url}: no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }
}

/// The backend hooks of every hub, their caches, and how to call them.
pub struct Backend {
    hubs: HashMap<String, HubHooks>,
    caller: Caller,
    auth_ttl: Duration,
    authorize_ttl: Duration,
    auth_cache: Arc<TtlCache<AuthAnswer>>,
    authorize_cache: Arc<TtlCache<bool>>,
    auth_flight: Arc<InFlight<AuthAnswer>>,
    authorize_flight: Arc<InFlight<bool>>,
}

impl Backend {
    /// The hooks the configuration's hub definitions name under
    /// `backend_url` (checked by `Config::validate` and the definitions;
    /// a hook that does not resolve is left out here). `metrics` counts
    /// the requests (`Metrics::hook`) and those that waited for a call in
    /// flight (`Metrics::backend_shared`).
    pub fn from_config(config: &Config, metrics: &Metrics) -> Self {
        let base = config.backend_url.as_deref().and_then(|u| url::Url::parse(u).ok());
        let mut hubs = HashMap::new();
        for table in &config.hub {
            let Some(backend) = &table.backend else {
                continue;
            };
            let name = table.path.rsplit('/').next().unwrap_or_default().to_ascii_lowercase();
            let resolve = |path: &Option<String>, hook: &str| -> Option<Hook> {
                let url = hook_url(base.as_ref()?, path.as_deref()?).ok()?;
                let series = metrics.hook(&name, hook);
                Some(Hook { url, series })
            };
            let hooks = HubHooks {
                authenticate: resolve(&backend.authenticate, "authenticate"),
                authenticate_always: backend.authenticate_always.unwrap_or(false),
                authorize: resolve(&backend.authorize, "authorize"),
            };
            hubs.insert(name, hooks);
        }
        let entries = config.backend_cache_entries;
        Self {
            hubs,
            caller: Caller {
                secret: config.backend_secret.as_deref().map(Arc::from),
                timeout: Duration::from_millis(config.backend_timeout_ms.max(1)),
            },
            auth_ttl: Duration::from_secs(config.backend_auth_cache_secs),
            authorize_ttl: Duration::from_secs(config.backend_authorize_cache_secs),
            auth_cache: Arc::new(TtlCache::new(entries)),
            authorize_cache: Arc::new(TtlCache::new(entries)),
            auth_flight: InFlight::new(entries, metrics.backend_shared("authenticate")),
            authorize_flight: InFlight::new(entries, metrics.backend_shared("authorize")),
        }
    }

    /// Whether `hub` has an authentication hook: `Some(always)`, where
    /// `always` says it is asked even when the request has a valid JWT.
    pub fn authenticates(&self, hub: &str) -> Option<bool> {
        let hooks = self.hubs.get(&hub.to_ascii_lowercase())?;
        hooks.authenticate.as_ref().map(|_| hooks.authenticate_always)
    }

    /// Whether `hub` has an authorisation hook.
    pub fn authorizes(&self, hub: &str) -> bool {
        self.hubs
            .get(&hub.to_ascii_lowercase())
            .is_some_and(|h| h.authorize.is_some())
    }

    /// Asks `hub`'s authentication hook who `credentials` stand for
    /// (cached by hub and credentials: the address and the transport are
    /// told to the hook but are not part of the key; concurrent misses of
    /// one key share one call). `Unauthorized` when the hub has no hook.
    pub async fn authenticate(&self, hub: &str, credentials: &Credentials<'_>) -> Result<AuthAnswer, BackendError> {
        let Some(hook) = self
            .hubs
            .get(&hub.to_ascii_lowercase())
            .and_then(|h| h.authenticate.clone())
        else {
            return Ok(AuthAnswer::Unauthorized);
        };
        let opt = |v: Option<&str>| v.unwrap_or("").as_bytes().to_vec();
        let key = digest(&[
            hub.to_ascii_lowercase().as_bytes(),
            &[u8::from(credentials.cookie.is_some())],
            &opt(credentials.cookie),
            &[u8::from(credentials.authorization.is_some())],
            &opt(credentials.authorization),
            &[u8::from(credentials.access_token.is_some())],
            &opt(credentials.access_token),
        ]);
        if let Some(answer) = self.auth_cache.get(&key, Instant::now()) {
            return Ok(answer);
        }
        let body = auth_request(hub, credentials);
        let (caller, cache, max_ttl) = (self.caller.clone(), self.auth_cache.clone(), self.auth_ttl);
        self.auth_flight
            .run(key, async move {
                let (status, answer) = caller.call(&hook.url, &hook.series, &body).await?;
                let (answer, expires_in) = parse_auth_answer(status, &answer)?;
                let ttl = match expires_in {
                    Some(secs) => max_ttl.min(Duration::from_secs(secs)),
                    None => max_ttl,
                };
                cache.insert(key, answer.clone(), ttl, Instant::now());
                Ok(answer)
            })
            .await
    }

    /// Asks `hub`'s authorisation hook whether `user` may `method` on
    /// `group` (the resolved group name) with `arguments` (the invocation's,
    /// as the client sent them; concurrent misses of one key share one
    /// call). `Ok(true)` when the hub names no hook. Callers refuse on
    /// `Err` (and log it): a backend that cannot answer allows nothing.
    pub async fn authorize(
        &self,
        hub: &str,
        user: &UserId,
        method: &str,
        group: &str,
        arguments: &[Value],
    ) -> Result<bool, BackendError> {
        let Some(hook) = self
            .hubs
            .get(&hub.to_ascii_lowercase())
            .and_then(|h| h.authorize.clone())
        else {
            return Ok(true);
        };
        let arguments = Value::Array(arguments.to_vec());
        let arguments_text = arguments.to_string();
        let key = digest(&[
            hub.to_ascii_lowercase().as_bytes(),
            user.as_str().as_bytes(),
            method.as_bytes(),
            group.as_bytes(),
            arguments_text.as_bytes(),
        ]);
        if let Some(allow) = self.authorize_cache.get(&key, Instant::now()) {
            return Ok(allow);
        }
        let body = json!({
            "hub": hub,
            "userId": user.as_str(),
            "method": method,
            "group": group,
            "arguments": arguments,
        });
        let (caller, cache, ttl) = (self.caller.clone(), self.authorize_cache.clone(), self.authorize_ttl);
        self.authorize_flight
            .run(key, async move {
                let (status, answer) = caller.call(&hook.url, &hook.series, &body).await?;
                let allow = parse_authorize_answer(status, &answer)?;
                cache.insert(key, allow, ttl, Instant::now());
                Ok(allow)
            })
            .await
    }
}

/// The authentication hook's request body (absent fields left out).
fn auth_request(hub: &str, c: &Credentials<'_>) -> Value {
    let mut body = Map::new();
    body.insert("hub".into(), json!(hub));
    if let Some(transport) = c.transport {
        body.insert("transport".into(), json!(transport));
    }
    if let Some(addr) = c.remote_addr {
        body.insert("remoteAddr".into(), json!(addr.to_string()));
    }
    let mut headers = Map::new();
    if let Some(cookie) = c.cookie {
        headers.insert("cookie".into(), json!(cookie));
    }
    if let Some(authorization) = c.authorization {
        headers.insert("authorization".into(), json!(authorization));
    }
    if !headers.is_empty() {
        body.insert("headers".into(), Value::Object(headers));
    }
    if let Some(token) = c.access_token {
        body.insert("accessToken".into(), json!(token));
    }
    Value::Object(body)
}

/// A hook's URL: `path` (`/hubwire/authenticate`, relative) under `base`,
/// keeping the base's own path as a prefix.
pub fn hook_url(base: &url::Url, path: &str) -> Result<url::Url, String> {
    if !path.starts_with('/') || path.starts_with("//") {
        return Err(format!("{path:?} must be a path starting with '/'"));
    }
    let mut joined = base.clone();
    let prefix = base.path().trim_end_matches('/');
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    joined.set_path(&format!("{prefix}{path}"));
    joined.set_query(query);
    Ok(joined)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_answer_reads_every_field_and_refusals_are_statuses() {
        let body = br#"{"userId":"u1","name":"Ann","tenant":"t","roles":["admin","x"],"channels":"room-*","picture":"http://p/1.png","expiresIn":120}"#;
        let (answer, expires_in) = parse_auth_answer(200, body).unwrap();
        let AuthAnswer::Accepted(p) = answer else {
            panic!("not accepted")
        };
        assert_eq!(p.user.as_str(), "u1");
        assert_eq!(p.name.as_deref(), Some("Ann"));
        assert_eq!(p.tenant.as_deref(), Some("t"));
        assert_eq!(p.roles, vec!["admin", "x"]);
        assert_eq!(p.channels, vec!["room-*"]);
        assert_eq!(p.picture.as_deref(), Some("http://p/1.png"));
        assert_eq!(expires_in, Some(120));
        assert!(p.expires >= unix_now() + 119 && p.expires <= unix_now() + 121);
        let (minimal, none) = parse_auth_answer(200, br#"{"userId":"u2"}"#).unwrap();
        assert!(matches!(minimal, AuthAnswer::Accepted(ref p) if p.roles.is_empty() && p.expires > unix_now() + 3600));
        assert_eq!(none, None);
        assert_eq!(parse_auth_answer(401, b"").unwrap().0, AuthAnswer::Unauthorized);
        assert_eq!(parse_auth_answer(403, b"nope").unwrap().0, AuthAnswer::Forbidden);
        for (status, body) in [
            (500, &b"{}"[..]),
            (200, b"{}"),
            (200, br#"{"userId":"  "}"#),
            (200, b"not json"),
            (302, b""),
        ] {
            assert!(parse_auth_answer(status, body).is_err(), "{status} {body:?}");
        }
        assert!(parse_authorize_answer(200, br#"{"allow":true}"#).unwrap());
        assert!(!parse_authorize_answer(200, br#"{"allow":false}"#).unwrap());
        assert!(parse_authorize_answer(200, br#"{"allow":"yes"}"#).is_err());
        assert!(parse_authorize_answer(403, b"").is_err());
    }

    #[test]
    fn the_request_leaves_absent_fields_out() {
        let full = auth_request(
            "chathub",
            &Credentials {
                cookie: Some("a=b"),
                authorization: Some("Basic x"),
                access_token: Some("tok"),
                remote_addr: Some("127.0.0.1".parse().unwrap()),
                transport: Some("WebSockets"),
            },
        );
        assert_eq!(
            full,
            json!({"hub":"chathub","transport":"WebSockets","remoteAddr":"127.0.0.1",
                   "headers":{"cookie":"a=b","authorization":"Basic x"},"accessToken":"tok"})
        );
        assert_eq!(auth_request("h", &Credentials::default()), json!({"hub":"h"}));
    }

    #[test]
    fn hook_paths_resolve_under_the_base_url() {
        let base = url::Url::parse("http://app:5000/api/").unwrap();
        assert_eq!(
            hook_url(&base, "/hubwire/auth?v=1").unwrap().as_str(),
            "http://app:5000/api/hubwire/auth?v=1"
        );
        let bare = url::Url::parse("http://app:5000").unwrap();
        assert_eq!(hook_url(&bare, "/auth").unwrap().as_str(), "http://app:5000/auth");
        assert!(hook_url(&bare, "auth").is_err());
        assert!(hook_url(&bare, "//evil/auth").is_err());
    }

    #[test]
    fn the_cache_expires_entries_and_drops_the_oldest_when_full() {
        let cache = TtlCache::new(2);
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        cache.insert([1; 32], "a", ttl, t0);
        assert_eq!(cache.get(&[1; 32], t0 + Duration::from_secs(9)), Some("a"));
        assert_eq!(cache.get(&[1; 32], t0 + ttl), None, "expired at its deadline");
        assert!(cache.is_empty(), "an expired entry read is dropped");
        cache.insert([1; 32], "a", ttl, t0);
        cache.insert([2; 32], "b", ttl, t0);
        cache.insert([3; 32], "c", ttl, t0);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&[1; 32], t0), None, "the oldest went");
        assert_eq!(cache.get(&[3; 32], t0), Some("c"));
        // Re-inserting a key refreshes it: the other one is now the oldest.
        cache.insert([2; 32], "b2", ttl, t0 + Duration::from_secs(1));
        cache.insert([4; 32], "d", ttl, t0 + Duration::from_secs(1));
        assert_eq!(cache.get(&[2; 32], t0), Some("b2"));
        assert_eq!(cache.get(&[3; 32], t0), None);
        // Zero TTL or capacity: nothing kept.
        cache.insert([5; 32], "e", Duration::ZERO, t0);
        assert_eq!(cache.get(&[5; 32], t0), None);
        let none = TtlCache::new(0);
        none.insert([1; 32], 1, ttl, t0);
        assert!(none.is_empty());
        // Many re-inserts of one key keep the order queue bounded.
        let one = TtlCache::new(1);
        for i in 0..1000 {
            one.insert([7; 32], i, ttl, t0);
        }
        assert_eq!(one.get(&[7; 32], t0), Some(999));
        assert!(one.inner.lock().order.len() <= 2 + 16 + 1);
    }

    #[test]
    fn the_cache_key_tells_absent_from_empty() {
        assert_ne!(digest(&[b"a", b"bc"]), digest(&[b"ab", b"c"]));
        assert_ne!(digest(&[&[0], b""]), digest(&[&[1], b""]));
    }

    /// A listener that accepts and never answers: its port and how many
    /// connections it accepted.
    async fn silent_listener() -> (u16, Arc<std::sync::atomic::AtomicUsize>, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        let held = tokio::spawn(async move {
            let mut sockets = Vec::new();
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                sockets.push(socket);
            }
        });
        (port, accepted, held)
    }

    fn hooked_backend(port: u16, timeout_ms: u64) -> (Backend, crate::core::metrics::Metrics) {
        let table: crate::core::definition::HubTable = toml::from_str(
            "kind = \"chat\"\npath = \"/chathub\"\n[backend]\nauthenticate = \"/auth\"\nauthorize = \"/authz\"\n",
        )
        .unwrap();
        let config = Config {
            backend_url: Some(format!("http://127.0.0.1:{port}")),
            backend_timeout_ms: timeout_ms,
            hub: vec![table],
            ..Config::default()
        };
        let metrics = crate::core::metrics::Metrics::new();
        let backend = Backend::from_config(&config, &metrics);
        (backend, metrics)
    }

    #[tokio::test]
    async fn a_silent_backend_is_unavailable_after_the_timeout_and_hooks_need_a_definition() {
        let (port, _, held) = silent_listener().await;
        let (backend, _metrics) = hooked_backend(port, 50);
        assert_eq!(backend.authenticates("ChatHub"), Some(false));
        assert!(backend.authorizes("chathub"));
        assert_eq!(backend.authenticates("other"), None);
        let err = backend
            .authenticate("chathub", &Credentials::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no answer within 50 ms"), "{err}");
        let user = UserId::from("u");
        assert!(backend.authorize("chathub", &user, "Join", "g", &[]).await.is_err());
        assert!(backend.authorize("other", &user, "Join", "g", &[]).await.unwrap());
        assert!(backend.auth_cache.is_empty(), "a failure is not cached");
        held.abort();
    }

    #[tokio::test]
    async fn concurrent_misses_of_one_key_share_one_call_even_a_failing_one() {
        let (port, accepted, held) = silent_listener().await;
        let (backend, metrics) = hooked_backend(port, 300);
        let cookie = Credentials {
            cookie: Some("a=b"),
            ..Credentials::default()
        };
        let other = Credentials {
            cookie: Some("a=c"),
            ..Credentials::default()
        };
        let user = UserId::from("u");
        let (auths, authzs, apart) = tokio::join!(
            futures_util::future::join_all((0..10).map(|_| backend.authenticate("chathub", &cookie))),
            futures_util::future::join_all((0..10).map(|_| backend.authorize("chathub", &user, "Join", "g", &[]))),
            backend.authenticate("chathub", &other),
        );
        for result in &auths {
            let err = result.as_ref().unwrap_err();
            assert!(err.to_string().contains("no answer within 300 ms"), "{err}");
        }
        assert!(authzs.iter().all(Result::is_err), "every waiter gets the failure");
        assert!(apart.is_err());
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "one call per key: the cookie, the authorisation, the other cookie"
        );
        assert_eq!(metrics.backend_shared("authenticate").get(), 9);
        assert_eq!(metrics.backend_shared("authorize").get(), 9);
        assert!(
            backend.auth_flight.is_empty() && backend.authorize_flight.is_empty(),
            "landed calls leave"
        );
        // The next miss (the failure was not cached) makes a new call.
        assert!(backend.authenticate("chathub", &cookie).await.is_err());
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 4);
        held.abort();
    }

    #[tokio::test]
    async fn a_full_flight_map_calls_unshared_and_a_cancelled_waiter_does_not_cancel_the_call() {
        let shared = IntCounter::new("t", "t").unwrap();
        let flight = InFlight::<u32>::new(1, shared.clone());
        let (release, released) = tokio::sync::oneshot::channel::<u32>();
        let first = tokio::spawn({
            let flight = flight.clone();
            async move {
                flight
                    .run([1; 32], async move {
                        released.await.map_err(|_| BackendError::Unavailable("x".into()))
                    })
                    .await
            }
        });
        while flight.is_empty() {
            tokio::task::yield_now().await;
        }
        // Full: another key is called here, unshared.
        assert_eq!(flight.run([2; 32], async { Ok(7) }).await.unwrap(), 7);
        assert_eq!(flight.len(), 1);
        // The first waiter goes away; the call goes on for a second one.
        first.abort();
        let second = tokio::spawn({
            let flight = flight.clone();
            async move { flight.run([1; 32], async { Ok(0) }).await }
        });
        while shared.get() == 0 {
            tokio::task::yield_now().await;
        }
        release.send(42).unwrap();
        assert_eq!(
            second.await.unwrap().unwrap(),
            42,
            "the shared call's answer, not its own"
        );
        assert!(flight.is_empty());
    }
}
