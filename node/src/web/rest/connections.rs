//! Connections: whether one exists, closing one or many, and leaving every
//! group. Existence is asked of the cluster-wide keyspace, so a connection
//! held by any node counts; a connection of another hub does not.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};

use super::error::{Missing, RestError};
use super::params::{self, ConnectionPath, GroupPath, HubPath, HubRequest, UserPath};
use super::success;
use crate::core::node::Node;
use crate::web::state::AppState;
use hubwire_backplane::{ConnectionId, HubName, Target};

/// Whether connection `id` is connected to `hub` anywhere in the cluster.
pub async fn exists_in(node: &Node, hub: &HubName, id: &ConnectionId) -> Result<bool, RestError> {
    let record = node.connection_record(id).await?;
    Ok(record.is_some_and(|r| r.hub == *hub))
}

fn no_such_connection(id: &str) -> RestError {
    RestError::not_found(Missing::Connection, format!("connection '{id}' does not exist"))
}

/// `HEAD` / `GET /api/hubs/{hub}/connections/{id}`: 200, or 404
/// `Warning.Connection.NotExisted`.
pub async fn exists(HubRequest { state, path, hub }: HubRequest<ConnectionPath>) -> Result<HttpResponse, RestError> {
    let id = ConnectionId::from(path.id.as_str());
    if exists_in(&state.node, &hub, &id).await? {
        Ok(HttpResponse::Ok().finish())
    } else {
        Err(no_such_connection(&path.id))
    }
}

/// `DELETE /api/hubs/{hub}/connections/{id}` (`reason`): closes the
/// connection (the client gets a Close message carrying the reason); 200, or
/// 404 `Warning.Connection.NotExisted`.
pub async fn close(
    req: HttpRequest,
    HubRequest { state, path, hub }: HubRequest<ConnectionPath>,
) -> Result<HttpResponse, RestError> {
    let id = ConnectionId::from(path.id.as_str());
    if !exists_in(&state.node, &hub, &id).await? {
        return Err(no_such_connection(&path.id));
    }
    let target = Target::Connection(id);
    state.node.close(&hub, target, Vec::new(), params::reason(&req)).await?;
    Ok(success(&req, StatusCode::OK))
}

/// `DELETE /api/hubs/{hub}/connections/{id}/groups`: the connection leaves
/// every group of the hub; 200 (also when it was in none).
pub async fn leave_all_groups(
    req: HttpRequest,
    HubRequest { state, path, hub }: HubRequest<ConnectionPath>,
) -> Result<HttpResponse, RestError> {
    let id = ConnectionId::from(path.id.as_str());
    state.node.remove_from_all_groups(&hub, &id).await?;
    Ok(success(&req, StatusCode::OK))
}

async fn close_target(
    state: &AppState,
    req: &HttpRequest,
    hub: &HubName,
    target: Target,
) -> Result<HttpResponse, RestError> {
    let except = params::excluded(req);
    state.node.close(hub, target, except, params::reason(req)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/hubs/{hub}/:closeConnections` (`excluded`, `reason`): 204.
pub async fn close_all(
    req: HttpRequest,
    HubRequest { state, hub, .. }: HubRequest<HubPath>,
) -> Result<HttpResponse, RestError> {
    close_target(&state, &req, &hub, Target::All).await
}

/// `POST /api/hubs/{hub}/groups/{group}/:closeConnections` (`excluded`,
/// `reason`): 204.
pub async fn close_group(
    req: HttpRequest,
    HubRequest { state, path, hub }: HubRequest<GroupPath>,
) -> Result<HttpResponse, RestError> {
    let target = Target::Group(params::group(&path.group));
    close_target(&state, &req, &hub, target).await
}

/// `POST /api/hubs/{hub}/users/{user}/:closeConnections` (`excluded`,
/// `reason`): 204.
pub async fn close_user(
    req: HttpRequest,
    HubRequest { state, path, hub }: HubRequest<UserPath>,
) -> Result<HttpResponse, RestError> {
    let target = Target::User(params::user(&path.user));
    close_target(&state, &req, &hub, target).await
}
