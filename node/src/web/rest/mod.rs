//! The server REST API for backends, compatible with Azure SignalR Service's
//! data-plane REST API (api-version 2022-06-01 paths, the older v1 paths, and
//! the group listing of 2024-12-01), plus listings and counts Azure lacks.
//! A backend using Microsoft's Management SDK in Transient mode switches to
//! hubwire by connection string. `docs/rest-api.md` documents every route.
//!
//! # Layout
//! - [`auth`]: access-key tokens (audience = request URL) and admin JWTs.
//! - [`body`]: the send body (JSON with any property-name casing, or the
//!   SDK's MessagePack envelope), at most 1 MB.
//! - [`params`]: path segments, query parameters, hub resolution, and
//!   [`params::HubRequest`], the extractor every hub route starts with.
//! - [`send`], [`connections`], [`groups`], [`users`]: Azure's operations.
//! - [`azure`]: `:generateToken`, client tokens for Azure's `/client/` URL.
//! - [`query`]: hubwire's cluster-wide listings and counts.
//! - [`batch`]: many sends in one request (`:sendBatch`).
//! - [`conversations`]: conversations and participants of chat hubs.
//! - [`notifications`]: notifications of notifications hubs.
//! - [`rooms`]: room members (grants) of rooms hubs.
//! - [`error`]: error bodies and `x-ms-error-code`, and the one place where
//!   backplane errors become HTTP statuses.
//!
//! Every route but health requires authorization ([`auth::Authorized`]).
//! `api-version` is accepted and not checked: each path means one operation
//! in every version that has it. On v1 paths, operations that answer 200 or
//! 204 on newer paths answer 202, as the v1 API specifies.

pub mod auth;
pub mod azure;
pub mod batch;
pub mod body;
pub mod connections;
pub mod conversations;
pub mod error;
pub mod groups;
pub mod notifications;
pub mod params;
pub mod query;
pub mod rooms;
pub mod send;
pub mod users;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::web::state::AppState;

/// The success response of an operation: `status`, or 202 on v1 paths.
pub fn success(req: &HttpRequest, status: StatusCode) -> HttpResponse {
    let status = if params::is_v1(req) {
        StatusCode::ACCEPTED
    } else {
        status
    };
    HttpResponse::build(status).finish()
}

/// `HEAD` / `GET /api/health` and `/api/v1/health`: 200 without a token, or
/// 503 once the node is shutting down.
async fn health(state: web::Data<AppState>) -> HttpResponse {
    if state.node.is_shutting_down() {
        HttpResponse::ServiceUnavailable().finish()
    } else {
        HttpResponse::Ok().finish()
    }
}

/// Registers the REST API's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use web::{delete, get, head, post, put};
    for path in ["/api/health", "/api/v1/health"] {
        cfg.route(path, head().to(health)).route(path, get().to(health));
    }
    // api-version 2022-06-01 (and 2024-12-01's group listing).
    cfg.route("/api/hubs/{hub}/:send", post().to(send::to_all))
        .route("/api/hubs/{hub}/users/{user}/:send", post().to(send::to_user))
        .route("/api/hubs/{hub}/groups/{group}/:send", post().to(send::to_group))
        .route("/api/hubs/{hub}/connections/{id}/:send", post().to(send::to_connection))
        .route("/api/hubs/{hub}/connections/{id}/:invoke", post().to(send::invoke))
        .route("/api/hubs/{hub}/:generateToken", post().to(azure::generate_token))
        .route("/api/hubs/{hub}/connections/{id}", head().to(connections::exists))
        .route("/api/hubs/{hub}/connections/{id}", get().to(connections::exists))
        .route("/api/hubs/{hub}/connections/{id}", delete().to(connections::close))
        .route(
            "/api/hubs/{hub}/connections/{id}/groups",
            delete().to(connections::leave_all_groups),
        )
        .route("/api/hubs/{hub}/:closeConnections", post().to(connections::close_all))
        .route(
            "/api/hubs/{hub}/groups/{group}/:closeConnections",
            post().to(connections::close_group),
        )
        .route(
            "/api/hubs/{hub}/users/{user}/:closeConnections",
            post().to(connections::close_user),
        )
        .route("/api/hubs/{hub}/groups/{group}", head().to(groups::exists))
        .route("/api/hubs/{hub}/groups/{group}", get().to(groups::exists))
        .route(
            "/api/hubs/{hub}/groups/{group}/connections",
            get().to(groups::list_connections),
        )
        .route(
            "/api/hubs/{hub}/groups/{group}/connections/{id}",
            put().to(groups::add_connection),
        )
        .route(
            "/api/hubs/{hub}/groups/{group}/connections/{id}",
            delete().to(groups::remove_connection),
        )
        .route("/api/hubs/{hub}/users/{user}", head().to(users::exists))
        .route("/api/hubs/{hub}/users/{user}", get().to(users::exists))
        .route(
            "/api/hubs/{hub}/users/{user}/groups/{group}",
            put().to(users::add_to_group),
        )
        .route(
            "/api/hubs/{hub}/users/{user}/groups/{group}",
            head().to(users::in_group),
        )
        .route("/api/hubs/{hub}/users/{user}/groups/{group}", get().to(users::in_group))
        .route(
            "/api/hubs/{hub}/users/{user}/groups/{group}",
            delete().to(users::remove_from_group),
        )
        .route(
            "/api/hubs/{hub}/users/{user}/groups",
            delete().to(users::remove_from_all_groups),
        );
    // hubwire extensions.
    cfg.route("/api/hubs/{hub}/:sendBatch", post().to(batch::send_batch));
    cfg.route("/api/hubs/{hub}/count", get().to(query::hub_count))
        .route("/api/hubs/{hub}/nodes", get().to(query::node_counts))
        .route("/api/hubs/{hub}/groups/{group}/users", get().to(query::group_users))
        .route("/api/hubs/{hub}/groups/{group}/count", get().to(query::group_count))
        .route(
            "/api/hubs/{hub}/users/{user}/connections",
            get().to(query::user_connections),
        )
        .route("/api/hubs/{hub}/users/{user}/count", get().to(query::user_count))
        .route("/api/hubs/{hub}/conversations", post().to(conversations::create))
        .route(
            "/api/hubs/{hub}/users/{user}/conversations",
            get().to(conversations::inbox),
        )
        .route("/api/hubs/{hub}/presence", get().to(conversations::presence))
        .route("/api/hubs/{hub}/notifications", post().to(notifications::create))
        .route(
            "/api/hubs/{hub}/users/{user}/notifications",
            get().to(notifications::of_user),
        )
        .route(
            "/api/hubs/{hub}/channels/{channel}/notifications",
            get().to(notifications::of_channel),
        )
        .route("/api/hubs/{hub}/conversations/{id}", get().to(conversations::get))
        .route(
            "/api/hubs/{hub}/conversations/{id}/messages",
            post().to(conversations::post_message),
        )
        .route(
            "/api/hubs/{hub}/conversations/{id}/messages",
            get().to(conversations::list_messages),
        )
        .route(
            "/api/hubs/{hub}/conversations/{id}/participants/{user}",
            put().to(conversations::add_participant),
        )
        .route(
            "/api/hubs/{hub}/conversations/{id}/participants/{user}",
            delete().to(conversations::remove_participant),
        )
        .route("/api/hubs/{hub}/rooms/{room}/members/{user}", put().to(rooms::grant))
        .route(
            "/api/hubs/{hub}/rooms/{room}/members/{user}",
            delete().to(rooms::revoke),
        )
        .route("/api/hubs/{hub}/rooms/{room}/members", get().to(rooms::list));
    // v1.
    cfg.route("/api/v1/hubs/{hub}", post().to(send::to_all))
        .route("/api/v1/hubs/{hub}/users/{user}", post().to(send::to_user))
        .route("/api/v1/hubs/{hub}/groups/{group}", post().to(send::to_group))
        .route("/api/v1/hubs/{hub}/connections/{id}", post().to(send::to_connection))
        .route("/api/v1/hubs/{hub}/connections/{id}", delete().to(connections::close))
        .route(
            "/api/v1/hubs/{hub}/users/{user}/groups",
            delete().to(users::remove_from_all_groups),
        );
    for path in [
        "/api/v1/hubs/{hub}/groups/{group}/users/{user}",
        "/api/v1/hubs/{hub}/users/{user}/groups/{group}",
    ] {
        cfg.route(path, get().to(users::in_group))
            .route(path, head().to(users::in_group))
            .route(path, put().to(users::add_to_group))
            .route(path, delete().to(users::remove_from_group));
    }
    for path in [
        "/api/v1/hubs/{hub}/groups/{group}/connections/{id}",
        "/api/v1/hubs/{hub}/connections/{id}/groups/{group}",
    ] {
        cfg.route(path, put().to(groups::add_connection))
            .route(path, delete().to(groups::remove_connection));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
