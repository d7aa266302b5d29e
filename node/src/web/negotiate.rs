//! `POST {hub path}/negotiate` (`/hubs/{hub}/negotiate` for most hubs): hands out a connection id (and in version 1
//! a secret connection token) from the node's [`Negotiations`](crate::core::negotiations::Negotiations) table.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::core::negotiations::NegotiateError;
use crate::web::state::{authorize_connection, AppState};

/// `POST {hub path}/negotiate[?negotiateVersion=N]`
pub async fn negotiate(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let node = &state.node;
    let hub_path = req.path().trim_end_matches('/').trim_end_matches("/negotiate");
    let hub = match state.hubs.at_path(hub_path).and_then(|hub| node.hub(hub.name())) {
        Some(hub) => hub,
        None => return HttpResponse::NotFound().body("No hub with that name."),
    };
    if node.is_shutting_down() {
        return HttpResponse::ServiceUnavailable().body("The server is shutting down.");
    }
    let principal = match authorize_connection(&req, node, &hub, None).await {
        Ok(principal) => principal,
        Err(refused) => return refused.response(),
    };
    let version = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "negotiateVersion")
        .and_then(|(_, v)| v.parse::<u32>().ok())
        .unwrap_or(0)
        .min(1);
    let user = principal.as_ref().map(|p| &p.user);
    let (id, token) = match node.negotiations.create(&hub, version, user) {
        Ok(created) => created,
        Err(NegotiateError::UserLimit) => {
            node.metrics.request_refused("negotiate_user_limit");
            return HttpResponse::TooManyRequests().body("Too many negotiated connections waiting for this user.");
        }
        Err(NegotiateError::NodeLimit) => {
            node.metrics.request_refused("negotiate_node_limit");
            return HttpResponse::ServiceUnavailable().body("Too many negotiated connections waiting.");
        }
    };
    let stateful = stateful_reconnect(&req, node, &token);
    let transports = json!([
        { "transport": "WebSockets", "transferFormats": ["Text", "Binary"] },
        { "transport": "ServerSentEvents", "transferFormats": ["Text"] },
        { "transport": "LongPolling", "transferFormats": ["Text", "Binary"] },
    ]);
    let mut body = if version >= 1 {
        json!({ "negotiateVersion": 1, "connectionId": id.as_str(), "connectionToken": token, "availableTransports": transports })
    } else {
        json!({ "negotiateVersion": 0, "connectionId": id.as_str(), "availableTransports": transports })
    };
    if stateful {
        body["useStatefulReconnect"] = json!(true);
    }
    HttpResponse::Ok().json(body)
}

/// Stateful reconnect (`crate::core::replay`): offered when the client asks
/// with `?useStatefulReconnect=true` and the node allows it; the token
/// remembers it for the WebSocket that claims it.
fn stateful_reconnect(req: &HttpRequest, node: &crate::core::node::Node, token: &str) -> bool {
    let asked = url::form_urlencoded::parse(req.query_string().as_bytes())
        .any(|(k, v)| k == "useStatefulReconnect" && v.eq_ignore_ascii_case("true"));
    if asked && node.config.stateful_reconnect {
        node.negotiations.allow_stateful_reconnect(token);
    }
    asked && node.config.stateful_reconnect
}
