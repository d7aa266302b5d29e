//! Room members of rooms hubs, for backends: grant a user a room (`PUT`),
//! revoke it (`DELETE`: the user's live connections leave the room on every
//! node before the answer and are told), list the granted users (`GET`).
//! Grants are stored durably. A hub that is not of the rooms kind answers 404
//! `Error.Hub.NotExisted`. A room or user id beyond its limit
//! (`rooms.max_room_id_chars`, `limits.max_user_id_chars`) answers 400
//! naming it, counted as `rooms_input` in `hubwire_limit_refusals_total`.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Deserialize;
use serde_json::json;

use super::error::{Missing, RestError};
use super::params::{HubRequest, HubSegment};
use crate::core::metrics::Limit;
use crate::hubs::rooms::{RoomsError, RoomsHub};
use crate::web::state::AppState;
use hubwire_backplane::HubName;
use hubwire_store::StoreError;

/// `/hubs/{hub}/rooms/{room}/members/{user}`.
#[derive(Deserialize)]
pub struct MemberPath {
    /// The hub, as written in the URL.
    pub hub: String,
    /// The room id.
    pub room: String,
    /// The user id.
    pub user: String,
}

/// `/hubs/{hub}/rooms/{room}/members`.
#[derive(Deserialize)]
pub struct MembersPath {
    /// The hub, as written in the URL.
    pub hub: String,
    /// The room id.
    pub room: String,
}

impl HubSegment for MemberPath {
    fn hub_segment(&self) -> &str {
        &self.hub
    }
}

impl HubSegment for MembersPath {
    fn hub_segment(&self) -> &str {
        &self.hub
    }
}

impl From<RoomsError> for RestError {
    fn from(error: RoomsError) -> Self {
        match error {
            RoomsError::Invalid(m) => RestError::BadRequest(m),
            RoomsError::Node(e) => e.into(),
            RoomsError::Store(StoreError::Invalid(m)) => RestError::BadRequest(m),
            RoomsError::Store(e) => RestError::Database(e.to_string()),
        }
    }
}

/// `error` of an operation of `hub`: a refused id (a limit) is counted in
/// `hubwire_limit_refusals_total`.
fn counted(state: &AppState, hub: &HubName, error: RoomsError) -> RestError {
    if matches!(error, RoomsError::Invalid(_)) {
        state.node.metrics.refused(hub.as_str(), Limit::RoomsInput);
    }
    error.into()
}

/// The rooms hub `hub` names.
fn rooms<'a>(state: &'a AppState, hub: &HubName) -> Result<&'a RoomsHub, RestError> {
    state
        .rooms
        .iter()
        .find(|r| r.definition().name == hub.as_str())
        .ok_or_else(|| RestError::not_found(Missing::Hub, format!("hub '{hub}' is not a rooms hub")))
}

/// `PUT /api/hubs/{hub}/rooms/{room}/members/{user}`: 201 when granted now,
/// 200 when the user already had the grant.
pub async fn grant(HubRequest { state, path, hub }: HubRequest<MemberPath>) -> Result<HttpResponse, RestError> {
    let new = rooms(&state, &hub)?
        .grant(&path.room, &path.user)
        .await
        .map_err(|e| counted(&state, &hub, e))?;
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    Ok(HttpResponse::build(status).finish())
}

/// `DELETE /api/hubs/{hub}/rooms/{room}/members/{user}`: 200 (also when
/// there was no grant); the user's live connections were told
/// (`access_revoked`) and left the room's group on every node before the
/// answer.
pub async fn revoke(HubRequest { state, path, hub }: HubRequest<MemberPath>) -> Result<HttpResponse, RestError> {
    rooms(&state, &hub)?
        .revoke(&state.node, &path.room, &path.user)
        .await
        .map_err(|e| counted(&state, &hub, e))?;
    Ok(HttpResponse::Ok().finish())
}

/// `GET /api/hubs/{hub}/rooms/{room}/members`: 200 with
/// `{"members": ["user", ...]}`, the granted users by id.
pub async fn list(HubRequest { state, path, hub }: HubRequest<MembersPath>) -> Result<HttpResponse, RestError> {
    let members = rooms(&state, &hub)?
        .members(&path.room)
        .await
        .map_err(|e| counted(&state, &hub, e))?;
    Ok(HttpResponse::Ok().json(json!({ "members": members })))
}
