//! Azure SignalR Service's client side: the `{url, accessToken}` that the
//! Management SDK's `NegotiateAsync` and Azure Functions' connection-info
//! binding hand to clients point at `<endpoint>/client/?hub=<hub>`, with a
//! token signed by the access key for that URL. This module serves that URL
//! and accepts those tokens.
//!
//! - [`client_path`]: `/client/negotiate?hub=h` and `/client/?hub=h` (and
//!   without the trailing slash) are rewritten to the hub's own negotiate and
//!   connect paths before routing (a middleware in `web::http`, which the
//!   WebSocket upgrade applies too), so every transport works there.
//! - [`verify_client_token`]: a token HS256-signed with `access_key`, `exp`
//!   required, whose `aud` names `/client/?hub=<this hub>` (scheme, host and
//!   port not compared: the backend names the endpoint as it reaches it,
//!   which behind a proxy is not what the node sees; `docs/decisions.md`).
//!   The user is `asrs.s.uid`, else `nameid`, else `sub`; `name`, `role`
//!   (one or many) and `asrs.s.gp` (the groups the connection joins as it
//!   connects, on every transport and hub kind) are read too.
//! - [`issue_client_token`]: such a token (`POST /api/hubs/{hub}/:generateToken`,
//!   `web::rest::azure`).

use actix_web::http::Uri;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::core::auth::Principal;
use crate::core::hub::HubSet;
use crate::core::node::Node;
use hubwire_backplane::{HubName, UserId};

/// The hub path (or its negotiate path) a `/client/...?hub=<hub>` request
/// stands for, with the query unchanged: `None` for any other path or an
/// unknown hub.
pub fn client_path(hubs: &HubSet, path: &str, query: &str) -> Option<String> {
    let rest = path.strip_prefix("/client")?;
    let negotiate = match rest.trim_end_matches('/') {
        "" => false,
        "/negotiate" => true,
        _ => return None,
    };
    let hub = query_value(query, "hub")?;
    let base = hubs.path_of(&hub)?;
    let path = if negotiate {
        format!("{base}/negotiate")
    } else {
        base.to_owned()
    };
    Some(if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    })
}

/// The rewritten URI of a `/client/...` request, if it is one.
pub fn rewritten(hubs: &HubSet, uri: &Uri) -> Option<Uri> {
    let target = client_path(hubs, uri.path(), uri.query().unwrap_or(""))?;
    target.parse().ok()
}

/// Seconds of clock skew tolerated on `exp` and `nbf` (as for REST tokens).
const LEEWAY_SECS: u64 = 30;

/// The first value of query parameter `name`, decoded.
fn query_value(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The claims of a client token as Azure issues them.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ClientClaims {
    /// The client URL (`<endpoint>/client/?hub=<hub>`); one or many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// The user id (Azure's `ClaimTypes.NameIdentifier`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nameid: Option<String>,
    /// The user id as Azure's service stores it in its own tokens.
    #[serde(rename = "asrs.s.uid", default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// A JWT subject, as a last resort for the user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Roles: one string or many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<serde_json::Value>,
    /// Groups the connection joins on connect, one string or many
    /// (`:generateToken`'s `group`; `core::node::Node::connected` joins them).
    #[serde(rename = "asrs.s.gp", default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<serde_json::Value>,
}

/// Strings of a claim that is one string or an array of them.
fn strings(value: Option<&serde_json::Value>) -> Vec<String> {
    match value {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

/// Whether the audience `aud` is the client URL of `hub`.
fn is_client_url_of(aud: &str, hub: &HubName) -> bool {
    let Ok(url) = url::Url::parse(aud) else {
        return false;
    };
    url.path().trim_end_matches('/').ends_with("/client")
        && url
            .query_pairs()
            .any(|(k, v)| k == "hub" && v.eq_ignore_ascii_case(hub.as_str()))
}

/// Why a client token was refused.
#[derive(Debug, thiserror::Error)]
pub enum ClientTokenError {
    /// The node has no access key.
    #[error("no access key is configured")]
    NoAccessKey,
    /// Malformed, badly signed or expired.
    #[error("invalid client token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// The audience is not this hub's client URL.
    #[error("the client token's audience is not /client/?hub={0}")]
    Audience(String),
    /// No user id, for a hub that requires one.
    #[error("the client token names no user")]
    NoUser,
}

/// Verifies a client token for `hub`: its principal, `None` for a token
/// without a user id (refused unless the hub is anonymous).
pub fn verify_client_token(token: &str, node: &Node, hub: &HubName) -> Result<Option<Principal>, ClientTokenError> {
    let key = node
        .config
        .access_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .ok_or(ClientTokenError::NoAccessKey)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.algorithms = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    let claims =
        jsonwebtoken::decode::<ClientClaims>(token, &DecodingKey::from_secret(key.as_bytes()), &validation)?.claims;
    let auds = strings(claims.aud.as_ref());
    if !auds.iter().any(|a| is_client_url_of(a, hub)) {
        return Err(ClientTokenError::Audience(hub.to_string()));
    }
    let user = [claims.uid, claims.nameid, claims.sub]
        .into_iter()
        .flatten()
        .find(|u| !u.trim().is_empty());
    let Some(user) = user else {
        return if node.config.hub_is_anonymous(hub.as_str()) {
            Ok(None)
        } else {
            Err(ClientTokenError::NoUser)
        };
    };
    Ok(Some(Principal {
        user: UserId::from(user),
        name: claims.name,
        tenant: None,
        roles: strings(claims.role.as_ref()),
        channels: Vec::new(),
        picture: None,
        expires: claims.exp,
        groups: strings(claims.groups.as_ref()),
    }))
}

/// The client URL of `hub` at `endpoint` (`scheme://host[:port]`), as the
/// Management SDK builds it.
pub fn client_url(endpoint: &str, hub: &str) -> String {
    format!(
        "{}/client/?hub={}",
        endpoint.trim_end_matches('/'),
        hub.to_ascii_lowercase()
    )
}

/// A client token for `audience`, HS256 with `key`, valid `minutes`.
pub fn issue_client_token(
    key: &str,
    audience: &str,
    user: Option<&str>,
    roles: Vec<String>,
    groups: Vec<String>,
    minutes: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = ClientClaims {
        aud: Some(serde_json::Value::String(audience.to_owned())),
        exp: now + minutes.saturating_mul(60),
        iat: Some(now),
        nameid: user.map(str::to_owned),
        role: (!roles.is_empty()).then(|| serde_json::json!(roles)),
        groups: (!groups.is_empty()).then(|| serde_json::json!(groups)),
        ..ClientClaims::default()
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn client_audiences_name_the_hub() {
        let hub = HubName::from("chat");
        assert!(is_client_url_of("https://x.service.signalr.net/client/?hub=chat", &hub));
        assert!(is_client_url_of("http://localhost:8080/client?hub=Chat", &hub));
        assert!(!is_client_url_of("http://localhost:8080/client/?hub=other", &hub));
        assert!(!is_client_url_of("http://localhost:8080/api/hubs/chat", &hub));
        assert!(!is_client_url_of("not a url", &hub));
    }

    #[test]
    fn claims_that_are_one_string_or_many() {
        assert_eq!(strings(Some(&serde_json::json!("a"))), vec!["a"]);
        assert_eq!(strings(Some(&serde_json::json!(["a", "b"]))), vec!["a", "b"]);
        assert!(strings(None).is_empty());
    }
}
