//! Sends: a client method invocation to everyone in a hub, a group, a user's
//! connections, or one connection, on every node of the cluster.
//!
//! Each answers 202 once the node has published the message to the other
//! nodes and then queued it to its own recipients; like Azure, a send to a
//! user, group or connection with no one behind it is not an error. A failed
//! publish answers 503 before any local delivery, so that nobody received the
//! message and a retry cannot duplicate it (`docs/rest-api.md`).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::body::read_message;
use super::error::RestError;
use super::params::{self, ConnectionPath, GroupPath, HubPath, HubRequest, UserPath};
use super::success;
use crate::core::node::SendOrder;
use crate::web::state::AppState;
use hubwire_backplane::{ConnectionId, HubName, Target};

async fn deliver(
    state: &AppState,
    req: &HttpRequest,
    hub: &HubName,
    target: Target,
    payload: web::Payload,
) -> Result<HttpResponse, RestError> {
    let message = read_message(req, payload).await?;
    let except = params::excluded(req);
    state
        .node
        .send(
            hub,
            target,
            except,
            (&message.target, message.arguments),
            SendOrder::PublishFirst,
        )
        .await?;
    Ok(success(req, StatusCode::ACCEPTED))
}

/// `POST /api/hubs/{hub}/:send` (`excluded`): to every connection of the hub.
pub async fn to_all(
    req: HttpRequest,
    HubRequest { state, hub, .. }: HubRequest<HubPath>,
    payload: web::Payload,
) -> Result<HttpResponse, RestError> {
    deliver(&state, &req, &hub, Target::All, payload).await
}

/// `POST /api/hubs/{hub}/users/{user}/:send`: to every connection of a user.
pub async fn to_user(
    req: HttpRequest,
    HubRequest { state, path, hub }: HubRequest<UserPath>,
    payload: web::Payload,
) -> Result<HttpResponse, RestError> {
    let target = Target::User(params::user(&path.user));
    deliver(&state, &req, &hub, target, payload).await
}

/// `POST /api/hubs/{hub}/groups/{group}/:send` (`excluded`): to a group.
pub async fn to_group(
    req: HttpRequest,
    HubRequest { state, path, hub }: HubRequest<GroupPath>,
    payload: web::Payload,
) -> Result<HttpResponse, RestError> {
    let target = Target::Group(params::group(&path.group));
    deliver(&state, &req, &hub, target, payload).await
}

/// `POST /api/hubs/{hub}/connections/{id}/:invoke` (Azure's 2024-12-01 client
/// result): invokes `target(arguments)` on the connection, wherever it is in
/// the cluster, and answers 200 `{"result", "protocol"}` with the client's
/// answer (`protocol` is `json`: the result as JSON, whatever the client
/// speaks); 404 when the connection does not exist or closes before
/// answering, 400 `Error.Invocation.Failed` with the client's error, 504
/// after `client_result_timeout_secs`.
pub async fn invoke(
    req: HttpRequest,
    HubRequest { state, path, hub }: HubRequest<ConnectionPath>,
    payload: web::Payload,
) -> Result<HttpResponse, RestError> {
    let message = read_message(&req, payload).await?;
    let id = ConnectionId::from(path.id.as_str());
    let result = state
        .node
        .invoke_client(&hub, &id, &message.target, message.arguments)
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "result": result, "protocol": "json" })))
}

/// `POST /api/hubs/{hub}/connections/{id}/:send`: to one connection.
pub async fn to_connection(
    req: HttpRequest,
    HubRequest { state, path, hub }: HubRequest<ConnectionPath>,
    payload: web::Payload,
) -> Result<HttpResponse, RestError> {
    let target = Target::Connection(ConnectionId::from(path.id.as_str()));
    deliver(&state, &req, &hub, target, payload).await
}
