//! The checks every transport makes of a request that opens a connection:
//! the hub at the request's path, the drain, the Origin, the token, and the
//! negotiated connection it claims. WebSockets ([`super::websocket`]) and the
//! first request of Server-Sent Events and Long Polling ([`super::sessions`])
//! answer them alike.

use std::sync::Arc;

use actix_http::header::HeaderMap;

use super::refusal::Refusal;
use crate::core::auth::Principal;
use crate::core::drain::Hold;
use crate::core::hub::{Hub, HubSet};
use crate::core::negotiations::ClaimError;
use crate::core::node::Node;
use crate::web::state::{authenticate, RequestAuth, Unauthorized};
use hubwire_backplane::{ConnectionId, HubName};

/// A request that may open a connection to `hub`.
pub(super) struct Checked {
    pub(super) hub: Arc<dyn Hub>,
    pub(super) hub_name: HubName,
    pub(super) principal: Option<Principal>,
    /// Graceful shutdown waits for the connection while it is alive.
    pub(super) hold: Hold,
}

/// The hub served at `path` (404), not draining (503), an allowed Origin
/// (403), a valid token, the backend's principal or an anonymous hub (401;
/// 403 and 503 from the backend: [`authenticate`]).
pub(super) async fn check(
    node: &Node,
    hubs: &HubSet,
    path: &str,
    headers: &HeaderMap,
    query: &str,
    peer: Option<std::net::IpAddr>,
    transport: &str,
) -> Result<Checked, Refusal> {
    let Some(hub) = hubs.at_path(path) else {
        return Err(Refusal::new(404, "Not Found", "No hub with that name."));
    };
    let hub_name = HubName::from(hub.name());
    // Taken before anything is reserved: a drain that began refuses here,
    // and one that begins later waits for this connection.
    let Some(hold) = node.drain.hold() else {
        return Err(Refusal::new(503, "Service Unavailable", "The server is shutting down."));
    };
    let origin = headers.get(actix_http::header::ORIGIN);
    if !crate::web::cors::origin_allowed(&node.config.allowed_origins, origin.map(|o| o.as_bytes())) {
        node.metrics.request_refused("origin");
        return Err(Refusal::new(403, "Forbidden", "Origin not allowed."));
    }
    let request = RequestAuth {
        headers,
        query,
        peer,
        transport: Some(transport),
    };
    let principal = authenticate(&request, node, &hub_name).await.map_err(refusal)?;
    Ok(Checked {
        hub,
        hub_name,
        principal,
        hold,
    })
}

/// The refusal of a request [`authenticate`] refused.
pub(super) fn refusal(refused: Unauthorized) -> Refusal {
    match refused {
        Unauthorized::Unauthenticated => Refusal {
            header: Some(("www-authenticate", "Bearer")),
            ..Refusal::new(401, "Unauthorized", "")
        },
        Unauthorized::Forbidden => Refusal::new(403, "Forbidden", "Forbidden."),
        Unauthorized::Unavailable => {
            Refusal::new(503, "Service Unavailable", "The authentication backend is unavailable.")
        }
    }
}

/// Claims the negotiated connection of `token` for `checked`'s user: its id,
/// or 404 (unknown, expired, another hub's — or negotiated on another node),
/// 403 (another user's), 409 (a transport already uses it).
pub(super) fn claim(node: &Node, token: &str, checked: &Checked) -> Result<ConnectionId, Refusal> {
    let user = checked.principal.as_ref().map(|p| &p.user);
    match node.negotiations.claim(token, &checked.hub_name, user) {
        Ok(id) => Ok(id),
        Err(ClaimError::WrongUser) => {
            node.metrics.request_refused("user_mismatch");
            Err(Refusal::new(
                403,
                "Forbidden",
                "The connection was negotiated by another user.",
            ))
        }
        Err(ClaimError::NotFound) => Err(Refusal::new(404, "Not Found", "No Connection with that ID")),
        Err(ClaimError::InUse) => Err(Refusal::new(409, "Conflict", "Connection ID already in use")),
    }
}
