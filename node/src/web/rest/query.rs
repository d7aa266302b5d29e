//! hubwire extensions (not in Azure's API): cluster-wide listings and counts.
//!
//! Answered from the shared keyspace, so they cover every node. A group's
//! users are the users of the connections in it right now (a user added to a
//! group with no connection open is not listed until one opens). Lists are
//! ordered and not paged.

use std::collections::BTreeMap;

use actix_web::HttpResponse;
use serde_json::json;

use super::error::RestError;
use super::params::{self, GroupPath, HubPath, HubRequest, UserPath};
use hubwire_backplane::{ConnectionRecord, UserId};

/// Users of a group's connections, with how many connections each has in it.
fn users_of(records: &[ConnectionRecord]) -> BTreeMap<&str, usize> {
    let mut users = BTreeMap::new();
    for user in records.iter().filter_map(|r| r.user.as_ref()) {
        *users.entry(user.as_str()).or_insert(0) += 1;
    }
    users
}

/// `GET /api/hubs/{hub}/groups/{group}/users`:
/// `{"value": [{"userId", "connectionCount"}]}`.
pub async fn group_users(HubRequest { state, path, hub }: HubRequest<GroupPath>) -> Result<HttpResponse, RestError> {
    let group = params::group(&path.group);
    let records = state.node.group_connections(&hub, &group).await?;
    let value: Vec<_> = users_of(&records)
        .into_iter()
        .map(|(user, count)| json!({ "userId": user, "connectionCount": count }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "value": value })))
}

/// `GET /api/hubs/{hub}/groups/{group}/count`: `{"connections", "users"}`.
pub async fn group_count(HubRequest { state, path, hub }: HubRequest<GroupPath>) -> Result<HttpResponse, RestError> {
    let group = params::group(&path.group);
    let records = state.node.group_connections(&hub, &group).await?;
    let users = users_of(&records).len();
    Ok(HttpResponse::Ok().json(json!({ "connections": records.len(), "users": users })))
}

/// `GET /api/hubs/{hub}/users/{user}/connections`: `{"value":
/// [{"connectionId", "userId", "transport", "node", "connectedAtMs"}]}`.
pub async fn user_connections(
    HubRequest { state, path, hub }: HubRequest<UserPath>,
) -> Result<HttpResponse, RestError> {
    let user = params::user(&path.user);
    let mut records = state.node.user_connections(&hub, &user).await?;
    records.sort_by(|a, b| (a.since_ms, &a.id).cmp(&(b.since_ms, &b.id)));
    let value: Vec<_> = records
        .iter()
        .map(|r| {
            json!({
                "connectionId": r.id.as_str(),
                "userId": r.user.as_ref().map(UserId::as_str),
                "transport": r.transport,
                "node": r.node.as_str(),
                "connectedAtMs": r.since_ms,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "value": value })))
}

/// `GET /api/hubs/{hub}/users/{user}/count`: `{"connections"}`.
pub async fn user_count(HubRequest { state, path, hub }: HubRequest<UserPath>) -> Result<HttpResponse, RestError> {
    let user = params::user(&path.user);
    let count = state.node.user_connections(&hub, &user).await?.len();
    Ok(HttpResponse::Ok().json(json!({ "connections": count })))
}

/// `GET /api/hubs/{hub}/nodes` (hubwire extension): every live node of the
/// cluster with its number of connections to the hub.
pub async fn node_counts(HubRequest { state, hub, .. }: HubRequest<HubPath>) -> Result<HttpResponse, RestError> {
    let nodes = state.node.node_connection_counts(&hub).await?;
    let value: Vec<_> = nodes
        .into_iter()
        .map(|(node, connections)| json!({ "node": node.as_str(), "connections": connections }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "value": value })))
}

/// `GET /api/hubs/{hub}/count`: `{"connections"}`, cluster-wide.
pub async fn hub_count(HubRequest { state, hub, .. }: HubRequest<HubPath>) -> Result<HttpResponse, RestError> {
    let count = state.node.hub_connection_count(&hub).await?;
    Ok(HttpResponse::Ok().json(json!({ "connections": count })))
}
