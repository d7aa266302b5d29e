//! What every HTTP handler starts from: the app state, the token of a
//! request, and the authorization of a negotiate or connect request.

use std::sync::Arc;

use std::net::IpAddr;

use actix_web::http::header::HeaderMap;
use actix_web::{HttpRequest, HttpResponse};

use crate::core::auth::Principal;
use crate::core::backend::{AuthAnswer, Credentials};
use crate::core::hub::HubSet;
use crate::core::node::Node;
use crate::hubs::chat::ChatHub;
use crate::hubs::rooms::RoomsHub;
use crate::web::transport::session::Sessions;
use hubwire_backplane::HubName;
use hubwire_store::Store;

/// What every handler gets: the node and the hubs it serves.
pub struct AppState {
    /// The node.
    pub node: Arc<Node>,
    /// The hubs served (the same names as [`Node::hub`] knows).
    pub hubs: HubSet,
    /// The hubs of the chat kind among them (the REST API's conversations).
    pub chats: Vec<ChatHub>,
    /// The hubs of the notifications kind (the REST API's notifications).
    pub notifications: Vec<crate::hubs::notifications::NotificationsHub>,
    /// The hubs of the rooms kind among them (the REST API's room members).
    pub rooms: Vec<RoomsHub>,
    /// The database (conversations, messages, receipts): `/readyz` checks it.
    /// `None` only in unit tests of the web layer, which need no database.
    pub store: Option<Store>,
    /// The Server-Sent Events and long-polling connections of this node.
    pub sessions: Arc<Sessions>,
}

/// The value of parameter `name` in a query string.
pub fn query_value(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The token of a request: `Authorization: Bearer`, else the `access_token` query
/// parameter (browsers cannot set headers on WebSocket and EventSource requests).
pub fn request_token(req: &HttpRequest) -> Option<String> {
    token_from(req.headers(), req.query_string())
}

/// The bearer token of a request given by its headers and query string:
/// `Authorization: Bearer` first, then the `access_token` query parameter.
pub fn token_from(headers: &HeaderMap, query: &str) -> Option<String> {
    if let Some(value) = headers.get(actix_web::http::header::AUTHORIZATION) {
        if let Some(token) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) {
            return Some(token.trim().to_owned());
        }
    }
    query_value(query, "access_token")
}

/// Why a negotiate or connect request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthorized {
    /// No valid token, and the backend (if asked) did not sign it in: 401.
    Unauthenticated,
    /// The backend's authentication hook refused it: 403.
    Forbidden,
    /// The backend's authentication hook could not be asked in time: 503.
    Unavailable,
}

impl Unauthorized {
    /// The status code.
    pub fn status(self) -> u16 {
        match self {
            Unauthorized::Unauthenticated => 401,
            Unauthorized::Forbidden => 403,
            Unauthorized::Unavailable => 503,
        }
    }

    /// The response: 401 with the `WWW-Authenticate` challenge, 403, 503.
    pub fn response(self) -> HttpResponse {
        match self {
            Unauthorized::Unauthenticated => HttpResponse::Unauthorized()
                .insert_header(("WWW-Authenticate", "Bearer"))
                .finish(),
            Unauthorized::Forbidden => HttpResponse::Forbidden().body("Forbidden."),
            Unauthorized::Unavailable => {
                HttpResponse::ServiceUnavailable().body("The authentication backend is unavailable.")
            }
        }
    }
}

/// What of a request authentication looks at.
pub struct RequestAuth<'a> {
    /// Its headers.
    pub headers: &'a HeaderMap,
    /// Its query string.
    pub query: &'a str,
    /// The client's address.
    pub peer: Option<IpAddr>,
    /// The transport (`WebSockets`, ...); none for negotiate.
    pub transport: Option<&'a str>,
}

/// Authenticates a negotiate or connect request for `hub`: the user, or `None`
/// for an anonymous hub without a token.
pub async fn authorize_connection(
    req: &HttpRequest,
    node: &Node,
    hub: &HubName,
    transport: Option<&str>,
) -> Result<Option<Principal>, Unauthorized> {
    let request = RequestAuth {
        headers: req.headers(),
        query: req.query_string(),
        peer: req.peer_addr().map(|a| a.ip()),
        transport,
    };
    authenticate(&request, node, hub).await
}

/// Authenticates `request` for `hub`: a valid JWT (`Authorization: Bearer`
/// or `access_token`) stands for its user; without one — or always, with
/// `authenticate_always` — a hub with an authentication hook asks the
/// app's backend (`crate::core::backend`), whose 401 leaves an anonymous
/// hub anonymous. Otherwise an anonymous hub takes the request without a
/// user, and any other refuses it.
pub async fn authenticate(
    request: &RequestAuth<'_>,
    node: &Node,
    hub: &HubName,
) -> Result<Option<Principal>, Unauthorized> {
    let principal = identify(request, node, hub).await?;
    // The hub's own connect rule (a groups hub's `connect_role`).
    if !node.admits(hub, principal.as_ref()) {
        tracing::debug!(hub = %hub, "connection refused by the hub's connect rule");
        return Err(Unauthorized::Unauthenticated);
    }
    Ok(principal)
}

/// Who `request` is for `hub` (see [`authenticate`]), before the hub's own rule.
async fn identify(request: &RequestAuth<'_>, node: &Node, hub: &HubName) -> Result<Option<Principal>, Unauthorized> {
    let token = token_from(request.headers, request.query);
    let hook = node.backend.authenticates(hub.as_str());
    if let Some(token) = &token {
        if hook != Some(true) {
            // A JWT of ours, else an Azure client token signed with the access key.
            let verified = node
                .auth
                .verify(token)
                .map(Some)
                .or_else(|e| crate::web::azure::verify_client_token(token, node, hub).map_err(|azure| (e, azure)));
            match verified {
                Ok(principal) => return Ok(principal),
                Err((e, azure)) if hook.is_none() => {
                    tracing::debug!(error = %e, azure = %azure, hub = %hub, "connection refused");
                    return Err(Unauthorized::Unauthenticated);
                }
                Err((e, _)) => tracing::debug!(error = %e, hub = %hub, "no valid token: asking the backend"),
            }
        }
    }
    let anonymous = node.config.hub_is_anonymous(hub.as_str());
    if hook.is_none() {
        return if anonymous {
            Ok(None)
        } else {
            Err(Unauthorized::Unauthenticated)
        };
    }
    let header = |name: actix_web::http::header::HeaderName| request.headers.get(name).and_then(|v| v.to_str().ok());
    let credentials = Credentials {
        cookie: header(actix_web::http::header::COOKIE),
        authorization: header(actix_web::http::header::AUTHORIZATION),
        access_token: token.as_deref(),
        remote_addr: request.peer,
        transport: request.transport,
    };
    match node.backend.authenticate(hub.as_str(), &credentials).await {
        Ok(AuthAnswer::Accepted(principal)) => Ok(Some(principal)),
        Ok(AuthAnswer::Unauthorized) if anonymous => Ok(None),
        Ok(AuthAnswer::Unauthorized) => Err(Unauthorized::Unauthenticated),
        Ok(AuthAnswer::Forbidden) => {
            node.metrics.request_refused("backend_forbidden");
            Err(Unauthorized::Forbidden)
        }
        Err(e) => {
            tracing::warn!(error = %e, hub = %hub, "authentication backend unavailable: refusing the request");
            node.metrics.request_refused("backend_unavailable");
            Err(Unauthorized::Unavailable)
        }
    }
}
