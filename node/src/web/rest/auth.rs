//! Who may call the REST API: an access-key token, as Azure SignalR Service
//! issues them, or an admin user token.
//!
//! An access-key token is a JWT signed HS256 (HS384 / HS512 accepted too) with
//! the UTF-8 bytes of the configured access key (`HUBWIRE_ACCESS_KEY`); `exp`
//! is required and `nbf` checked, both with [`LEEWAY_SECS`] of clock skew. Its
//! `aud` must name the URL of the request. The Management SDK builds it in two
//! ways, both accepted:
//!
//! - 2022-06-01 SDKs: `scheme://host/path?application=..&api-version=..` — no
//!   port, and the query string as the SDK first built it (parameters it adds
//!   later, such as `excluded` or `ttl`, are not in it);
//! - later SDKs: the request URL up to its path, port included when not the
//!   scheme's default, no query string.
//!
//! So the audience matches when its scheme and host are the request's, its
//! port (if it names one) is the request's, its path is the request's (after
//! percent-decoding, ignoring a trailing slash) and every query parameter it
//! names has the same value in the request. The request's scheme, host and
//! port are those of `public_url` when it is configured (its path, if any, is
//! a prefix the proxy in front removed); else those of `Forwarded` /
//! `X-Forwarded-Proto` / `X-Forwarded-Host` when the peer is one of the
//! `trusted_proxies`; else plain `http` and the `Host` header. Forwarded
//! headers from anyone else are ignored: they would let a token issued for
//! one URL be replayed at another.
//!
//! Otherwise a user token (see [`crate::core::auth`]) whose `roles` hold `admin` is
//! accepted. Tokens are read from `Authorization: Bearer` only, never from the
//! query string. A refusal answers a generic 401 (see [`RestError::Unauthorized`]);
//! why is logged at debug.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::error::RestError;
use crate::core::config::Config;
use crate::web::state::AppState;

/// Seconds of clock skew tolerated on `exp` and `nbf` of access-key tokens.
pub const LEEWAY_SECS: u64 = 30;

pub use crate::core::auth::ADMIN_ROLE;

/// An extractor that succeeds only for an authorized request (401 otherwise).
pub struct Authorized;

impl FromRequest for Authorized {
    type Error = RestError;
    type Future = Ready<Result<Self, RestError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authorize(req))
    }
}

fn authorize(req: &HttpRequest) -> Result<Authorized, RestError> {
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        tracing::debug!(path = req.path(), "REST request refused: the node is not configured");
        return Err(RestError::Unauthorized);
    };
    let node = &state.node;
    let Some(token) = bearer_token(req) else {
        tracing::debug!(
            path = req.path(),
            "REST request refused: no Authorization: Bearer token"
        );
        return Err(RestError::Unauthorized);
    };
    // An empty key would let anyone sign: it counts as no key.
    let refused = match node.config.access_key.as_deref().filter(|k| !k.is_empty()) {
        Some(key) => match verify_access_token(token, key, &RequestUrl::of(req, &node.config)) {
            Ok(()) => return Ok(Authorized),
            Err(e) => e,
        },
        None => TokenError::NoAccessKey,
    };
    let reason = match node.auth.verify(token) {
        Ok(principal) if principal.roles.iter().any(|r| r == ADMIN_ROLE) => return Ok(Authorized),
        Ok(principal) => format!(
            "{refused}; the user token of '{}' lacks the '{ADMIN_ROLE}' role",
            principal.user
        ),
        Err(e) => format!("{refused}; not a user token either: {e}"),
    };
    tracing::debug!(path = req.path(), reason = %reason, "REST request refused");
    Err(RestError::Unauthorized)
}

fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// Why an access-key token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The node has no access key.
    #[error("no access key is configured (HUBWIRE_ACCESS_KEY)")]
    NoAccessKey,
    /// Malformed, badly signed, expired or not yet valid.
    #[error("invalid access token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// The `aud` claim names another URL (or none).
    #[error("the access token's audience {aud:?} does not match the request URL {url}")]
    Audience {
        /// The token's audiences.
        aud: Vec<String>,
        /// The request URL, as the node saw it.
        url: String,
    },
}

#[derive(Deserialize)]
struct AccessClaims {
    #[serde(default)]
    aud: Audience,
}

#[derive(Default, Deserialize)]
#[serde(untagged)]
enum Audience {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn into_vec(self) -> Vec<String> {
        match self {
            Audience::None => Vec::new(),
            Audience::One(aud) => vec![aud],
            Audience::Many(auds) => auds,
        }
    }
}

/// Verifies an access-key token for a request to `url`.
pub fn verify_access_token(token: &str, key: &str, url: &RequestUrl) -> Result<(), TokenError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.algorithms = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    let key = DecodingKey::from_secret(key.as_bytes());
    let aud = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)?
        .claims
        .aud
        .into_vec();
    if aud.iter().any(|a| url.matches(a)) {
        Ok(())
    } else {
        Err(TokenError::Audience {
            aud,
            url: url.to_string(),
        })
    }
}

/// The URL a request was made to, as far as audiences are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestUrl {
    scheme: String,
    host: String,
    port: u16,
    path: String,
    query: Vec<(String, String)>,
}

impl RequestUrl {
    /// The URL of `req` as its caller named it: `public_url` if configured,
    /// forwarded headers from trusted proxies, else `http` and `Host`.
    pub fn of(req: &HttpRequest, config: &Config) -> Self {
        if let Some(public) = config.public_url.as_deref().and_then(|u| url::Url::parse(u).ok()) {
            let host = match public.port() {
                Some(port) => format!("{}:{port}", public.host_str().unwrap_or_default()),
                None => public.host_str().unwrap_or_default().to_owned(),
            };
            let path = format!("{}{}", public.path().trim_end_matches('/'), req.path());
            return Self::new(public.scheme(), &host, &path, req.query_string());
        }
        let peer = req.peer_addr().map(|a| a.ip());
        if crate::core::proxies::is_trusted(&config.trusted_proxies, peer) {
            let info = req.connection_info();
            return Self::new(info.scheme(), info.host(), req.path(), req.query_string());
        }
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or_default();
        Self::new("http", host, req.path(), req.query_string())
    }

    /// A URL from its scheme, `Host` header value, raw path and raw query.
    pub fn new(scheme: &str, host_header: &str, path: &str, query: &str) -> Self {
        let scheme = scheme.to_ascii_lowercase();
        let (host, port) = split_host_port(host_header);
        let port = port.unwrap_or(if scheme == "https" { 443 } else { 80 });
        Self {
            host: host.to_ascii_lowercase(),
            port,
            path: normalized_path(path),
            query: url::form_urlencoded::parse(query.as_bytes()).into_owned().collect(),
            scheme,
        }
    }

    /// `scheme://host[:port]` (the port only when not the scheme's default).
    pub fn origin(&self) -> String {
        let default = if self.scheme == "https" { 443 } else { 80 };
        if self.port == default {
            format!("{}://{}", self.scheme, self.host)
        } else {
            format!("{}://{}:{}", self.scheme, self.host, self.port)
        }
    }

    /// Whether the audience `aud` names this URL (see the module docs).
    pub fn matches(&self, aud: &str) -> bool {
        let Ok(aud) = url::Url::parse(aud) else {
            return false;
        };
        let host = aud.host_str().unwrap_or_default();
        aud.scheme() == self.scheme
            && host.eq_ignore_ascii_case(&self.host)
            && aud.port().is_none_or(|port| port == self.port)
            && normalized_path(aud.path()) == self.path
            && aud
                .query_pairs()
                .all(|(k, v)| self.query.iter().any(|(qk, qv)| *qk == k && *qv == v))
    }
}

impl std::fmt::Display for RequestUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}{}", self.scheme, self.host, self.port, self.path)
    }
}

/// Splits a `Host` value into host and port (`[::1]:80` keeps its brackets).
fn split_host_port(value: &str) -> (&str, Option<u16>) {
    let split_at = match value.rfind(':') {
        Some(i) if !value[i..].contains(']') => i,
        _ => return (value, None),
    };
    match value[split_at + 1..].parse() {
        Ok(port) => (&value[..split_at], Some(port)),
        Err(_) => (value, None),
    }
}

/// A path percent-decoded, without a trailing slash (except the root).
fn normalized_path(path: &str) -> String {
    let mut bytes = Vec::with_capacity(path.len());
    let mut rest = path.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        let decoded = match tail {
            [h, l, ..] if b == b'%' => hex(*h).zip(hex(*l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match decoded {
            Some(byte) => {
                bytes.push(byte);
                rest = &tail[2..];
            }
            None => {
                bytes.push(b);
                rest = tail;
            }
        }
    }
    let decoded = String::from_utf8_lossy(&bytes);
    match decoded.trim_end_matches('/') {
        "" => "/".to_owned(),
        trimmed => trimmed.to_owned(),
    }
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::core::auth::unix_now;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const KEY: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

    fn send_url() -> RequestUrl {
        RequestUrl::new(
            "http",
            "hubwire.local:8080",
            "/api/hubs/chat/:send",
            "api-version=2022-06-01&excluded=c1&excluded=c2",
        )
    }

    #[test]
    fn the_2022_sdk_audience_without_port_and_with_its_query_matches() {
        let url = send_url();
        assert!(url.matches("http://hubwire.local/api/hubs/chat/:send?api-version=2022-06-01"));
        let with_app = RequestUrl::new(
            "http",
            "hubwire.local:8080",
            "/api/hubs/chat/:send",
            "application=shop&api-version=2022-06-01",
        );
        assert!(with_app.matches("http://hubwire.local/api/hubs/chat/:send?application=shop&api-version=2022-06-01"));
    }

    #[test]
    fn the_later_sdk_audience_with_port_and_without_query_matches() {
        assert!(send_url().matches("http://hubwire.local:8080/api/hubs/chat/:send"));
        assert!(send_url().matches("HTTP://HubWire.Local:8080/api/hubs/chat/:send/"));
        let default_port = RequestUrl::new("https", "hubwire.local", "/api/hubs/chat/:send", "");
        assert!(default_port.matches("https://hubwire.local/api/hubs/chat/:send"));
        assert!(default_port.matches("https://hubwire.local:443/api/hubs/chat/:send"));
    }

    #[test]
    fn another_url_does_not_match() {
        let url = send_url();
        assert!(!url.matches("http://hubwire.local:8081/api/hubs/chat/:send"));
        assert!(!url.matches("http://other.local/api/hubs/chat/:send"));
        assert!(!url.matches("https://hubwire.local/api/hubs/chat/:send"));
        assert!(!url.matches("http://hubwire.local/api/hubs/chat/users/u1/:send"));
        assert!(!url.matches("http://hubwire.local/api/hubs/chat/:send?api-version=2024-12-01"));
        assert!(!url.matches("http://hubwire.local/api/hubs/chat/:send?excluded=c3"));
        assert!(!url.matches("not a url"));
        assert!(!url.matches(""));
    }

    #[test]
    fn percent_encoding_is_compared_decoded() {
        let url = RequestUrl::new("http", "127.0.0.1:9", "/api/hubs/chat/users/a%40b%20c/:send", "");
        assert!(url.matches("http://127.0.0.1/api/hubs/chat/users/a@b%20c/:send"));
        assert!(url.matches("http://127.0.0.1/api/hubs/chat/users/a%40b%20c/:send"));
        assert!(!url.matches("http://127.0.0.1/api/hubs/chat/users/a%40b/:send"));
    }

    #[test]
    fn ipv6_hosts_keep_their_brackets() {
        assert_eq!(split_host_port("[::1]:8080"), ("[::1]", Some(8080)));
        assert_eq!(split_host_port("[::1]"), ("[::1]", None));
        assert_eq!(split_host_port("example.com"), ("example.com", None));
        let url = RequestUrl::new("http", "[::1]:8080", "/api/health", "");
        assert!(url.matches("http://[::1]/api/health"));
    }

    fn sign(claims: serde_json::Value, alg: Algorithm, key: &str) -> String {
        jsonwebtoken::encode(&Header::new(alg), &claims, &EncodingKey::from_secret(key.as_bytes())).unwrap()
    }

    fn sdk_claims(aud: &str, exp: u64) -> serde_json::Value {
        let now = unix_now();
        json!({ "nameid": "backend_1", "nbf": now, "exp": exp, "iat": now, "aud": aud })
    }

    #[test]
    fn sdk_tokens_verify() {
        let aud = "http://hubwire.local/api/hubs/chat/:send?api-version=2022-06-01";
        let token = sign(sdk_claims(aud, unix_now() + 3600), Algorithm::HS256, KEY);
        verify_access_token(&token, KEY, &send_url()).unwrap();
        let token = sign(sdk_claims(aud, unix_now() + 3600), Algorithm::HS512, KEY);
        verify_access_token(&token, KEY, &send_url()).unwrap();
        let many = json!({ "exp": unix_now() + 60, "aud": ["http://x/", aud] });
        verify_access_token(&sign(many, Algorithm::HS256, KEY), KEY, &send_url()).unwrap();
    }

    #[test]
    fn bad_tokens_are_refused() {
        let aud = "http://hubwire.local/api/hubs/chat/:send";
        let expired = sign(sdk_claims(aud, unix_now() - 3600), Algorithm::HS256, KEY);
        assert!(matches!(
            verify_access_token(&expired, KEY, &send_url()),
            Err(TokenError::Invalid(_))
        ));
        let foreign = sign(sdk_claims(aud, unix_now() + 60), Algorithm::HS256, "another key");
        assert!(matches!(
            verify_access_token(&foreign, KEY, &send_url()),
            Err(TokenError::Invalid(_))
        ));
        let early = json!({ "exp": unix_now() + 7200, "nbf": unix_now() + 3600, "aud": aud });
        let early = sign(early, Algorithm::HS256, KEY);
        assert!(matches!(
            verify_access_token(&early, KEY, &send_url()),
            Err(TokenError::Invalid(_))
        ));
        let no_exp = sign(json!({ "aud": aud }), Algorithm::HS256, KEY);
        assert!(matches!(
            verify_access_token(&no_exp, KEY, &send_url()),
            Err(TokenError::Invalid(_))
        ));
        let no_aud = sign(json!({ "exp": unix_now() + 60 }), Algorithm::HS256, KEY);
        assert!(matches!(
            verify_access_token(&no_aud, KEY, &send_url()),
            Err(TokenError::Audience { .. })
        ));
        let elsewhere = sign(
            sdk_claims("http://hubwire.local/api/hubs/chat/:closeConnections", unix_now() + 60),
            Algorithm::HS256,
            KEY,
        );
        assert!(matches!(
            verify_access_token(&elsewhere, KEY, &send_url()),
            Err(TokenError::Audience { .. })
        ));
        assert!(verify_access_token("garbage", KEY, &send_url()).is_err());
    }
}
