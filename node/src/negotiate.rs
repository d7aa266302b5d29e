//! `POST /hubs/{hub}/negotiate` and the table of negotiated connections.
//!
//! Negotiate version 1 hands out a public `connectionId` and a secret
//! `connectionToken`; the transport request carries the token as `?id=`, so a
//! connection id seen by other clients (or the REST API) cannot be used to
//! hijack the connection. Version 0 has only the id, which is also the token.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use parking_lot::Mutex;
use rand::RngCore;
use serde_json::json;

use crate::http::{authorize_connection, AppState};
use hubwire_backplane::{ConnectionId, HubName};

/// How long a negotiated connection waits for its transport.
const PENDING_TTL: Duration = Duration::from_secs(60);

/// A fresh random id (16 random bytes, URL-safe base64).
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

struct Pending {
    connection_id: ConnectionId,
    hub: HubName,
    created: Instant,
    active: bool,
}

/// Why a transport request cannot use a connection token.
#[derive(Debug, PartialEq, Eq)]
pub enum ClaimError {
    /// No such negotiated connection (or another hub's): 404.
    NotFound,
    /// A transport is already connected with it: 409.
    InUse,
}

/// How often abandoned negotiations are swept (a sweep walks the whole table).
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Negotiated connections by token.
#[derive(Default)]
pub struct Negotiations {
    pending: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    by_token: HashMap<String, Pending>,
    last_sweep: Option<Instant>,
}

impl Negotiations {
    /// Records a negotiation; returns `(connection id, connection token)`.
    pub fn create(&self, hub: &HubName, version: u32) -> (ConnectionId, String) {
        let id = random_id();
        let token = if version >= 1 { random_id() } else { id.clone() };
        let mut table = self.pending.lock();
        let now = Instant::now();
        if table.last_sweep.is_none_or(|at| now.duration_since(at) >= SWEEP_EVERY) {
            table
                .by_token
                .retain(|_, p| p.active || now.duration_since(p.created) < PENDING_TTL);
            table.last_sweep = Some(now);
        }
        table.by_token.insert(
            token.clone(),
            Pending {
                connection_id: ConnectionId::from(id.clone()),
                hub: hub.clone(),
                created: now,
                active: false,
            },
        );
        (ConnectionId::from(id), token)
    }

    /// Marks a token as connected and returns its connection id.
    pub fn claim(&self, token: &str, hub: &HubName) -> Result<ConnectionId, ClaimError> {
        let mut table = self.pending.lock();
        let p = table
            .by_token
            .get_mut(token)
            .filter(|p| p.hub == *hub)
            .ok_or(ClaimError::NotFound)?;
        if p.active {
            return Err(ClaimError::InUse);
        }
        p.active = true;
        Ok(p.connection_id.clone())
    }

    /// Forgets a token once its connection ended (it cannot be reused).
    pub fn release(&self, token: &str) {
        self.pending.lock().by_token.remove(token);
    }
}

/// `POST /hubs/{hub}/negotiate[?negotiateVersion=N]`
pub async fn negotiate(req: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let node = &state.node;
    let hub = match node.hubs.get(&path) {
        Some(hub) => HubName::from(hub.name()),
        None => return HttpResponse::NotFound().body("No hub with that name."),
    };
    if node.is_shutting_down() {
        return HttpResponse::ServiceUnavailable().body("The server is shutting down.");
    }
    if let Err(refused) = authorize_connection(&req, node, &hub) {
        return refused.response();
    }
    let version = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "negotiateVersion")
        .and_then(|(_, v)| v.parse::<u32>().ok())
        .unwrap_or(0)
        .min(1);
    let (id, token) = node.negotiations.create(&hub, version);
    let transports = json!([{ "transport": "WebSockets", "transferFormats": ["Text", "Binary"] }]);
    let body = if version >= 1 {
        json!({ "negotiateVersion": 1, "connectionId": id.as_str(), "connectionToken": token, "availableTransports": transports })
    } else {
        json!({ "negotiateVersion": 0, "connectionId": id.as_str(), "availableTransports": transports })
    };
    HttpResponse::Ok().json(body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_token_connects_once_and_only_to_its_hub() {
        let table = Negotiations::default();
        let hub = HubName::from("chat");
        let (id, token) = table.create(&hub, 1);
        assert_ne!(id.as_str(), token, "version 1 keeps the token secret");
        assert_eq!(table.claim(&token, &HubName::from("other")), Err(ClaimError::NotFound));
        assert_eq!(table.claim(&token, &hub), Ok(id));
        assert_eq!(table.claim(&token, &hub), Err(ClaimError::InUse));
        table.release(&token);
        assert_eq!(table.claim(&token, &hub), Err(ClaimError::NotFound));
        let (id0, token0) = table.create(&hub, 0);
        assert_eq!(id0.as_str(), token0);
    }
}
