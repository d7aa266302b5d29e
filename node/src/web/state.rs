//! What every HTTP handler starts from: the app state, the token of a
//! request, and the authorization of a negotiate or connect request.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse};

use crate::core::auth::Principal;
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
pub fn token_from(headers: &actix_web::http::header::HeaderMap, query: &str) -> Option<String> {
    if let Some(value) = headers.get(actix_web::http::header::AUTHORIZATION) {
        if let Some(token) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) {
            return Some(token.trim().to_owned());
        }
    }
    query_value(query, "access_token")
}

/// A connection request without a valid token for a hub that requires one.
#[derive(Debug)]
pub struct Unauthorized;

impl Unauthorized {
    /// The 401 response, with the `WWW-Authenticate` challenge.
    pub fn response(&self) -> HttpResponse {
        HttpResponse::Unauthorized()
            .insert_header(("WWW-Authenticate", "Bearer"))
            .finish()
    }
}

/// Authenticates a negotiate or connect request for `hub`: the user, or `None`
/// for an anonymous hub without a token.
pub fn authorize_connection(req: &HttpRequest, node: &Node, hub: &HubName) -> Result<Option<Principal>, Unauthorized> {
    authorize_token(request_token(req), node, hub)
}

/// [`authorize_connection`] for a token already taken from the request.
pub fn authorize_token(token: Option<String>, node: &Node, hub: &HubName) -> Result<Option<Principal>, Unauthorized> {
    match token {
        Some(token) => match node.auth.verify(&token) {
            Ok(principal) => Ok(Some(principal)),
            Err(e) => {
                tracing::debug!(error = %e, hub = %hub, "connection refused");
                Err(Unauthorized)
            }
        },
        None if node.config.hub_is_anonymous(hub.as_str()) => Ok(None),
        None => Err(Unauthorized),
    }
}
