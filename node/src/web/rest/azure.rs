//! `POST /api/hubs/{hub}/:generateToken` (api-version 2024-12-01): a client
//! token for the hub's client URL (`web::azure`), as Azure issues them.
//!
//! Query: `userId` (optional; the token's `nameid`), `minutesToExpire`
//! (default 60, 1 to 1440), `role` and `group` (repeatable; carried in the
//! token as `role` and `asrs.s.gp`). Answer `200 {"token": "..."}`. The
//! audience is `<scheme>://<host>[:port]/client/?hub=<hub>` of the request.

use actix_web::HttpResponse;

use super::auth::RequestUrl;
use super::error::RestError;
use super::params::{query_value, query_values, HubPath, HubRequest};

/// Longest token lifetime `minutesToExpire` may ask for.
pub const MAX_MINUTES: u64 = 24 * 60;

/// `POST /api/hubs/{hub}/:generateToken`.
pub async fn generate_token(
    req: actix_web::HttpRequest,
    HubRequest { state, hub, .. }: HubRequest<HubPath>,
) -> Result<HttpResponse, RestError> {
    let node = &state.node;
    let key = node
        .config
        .access_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            RestError::BadRequest(
                "no access key is configured (HUBWIRE_ACCESS_KEY): no client token can be signed".into(),
            )
        })?;
    let minutes = match query_value(&req, "minutesToExpire").filter(|m| !m.is_empty()) {
        Some(m) => m
            .parse::<u64>()
            .ok()
            .filter(|m| (1..=MAX_MINUTES).contains(m))
            .ok_or_else(|| RestError::BadRequest(format!("minutesToExpire must be 1 to {MAX_MINUTES}")))?,
        None => 60,
    };
    let user = query_value(&req, "userId").filter(|u| !u.is_empty());
    let endpoint = RequestUrl::of(&req, &node.config).origin();
    let audience = crate::web::azure::client_url(&endpoint, hub.as_str());
    let token = crate::web::azure::issue_client_token(
        key,
        &audience,
        user.as_deref(),
        query_values(&req, "role"),
        query_values(&req, "group"),
        minutes,
    )
    .map_err(|e| RestError::BadRequest(format!("the token could not be signed: {e}")))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "token": token })))
}
