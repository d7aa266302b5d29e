//! Groups by connection: add, remove, whether a group has anyone, and the
//! paged list of a group's connections (api-version 2024-12-01).
//!
//! The list is ordered by connection id; a continuation token is the last id
//! of the previous page (base64url), so paging neither repeats nor skips a
//! connection that stays in the group while the pages are read.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;

use super::error::{Missing, RestError};
use super::params::{self, ConnectionGroupPath, GroupPath, HubRequest};
use super::success;
use hubwire_backplane::{ConnectionId, ConnectionRecord, UserId};

/// The page size of a group's connection list when `maxpagesize` is absent.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest `maxpagesize` (Azure's).
pub const MAX_PAGE_SIZE: usize = 200;

/// `PUT /api/hubs/{hub}/groups/{group}/connections/{id}`: 200, or 404
/// `Error.Connection.NotExisted` when no such connection is in the hub.
pub async fn add_connection(
    req: HttpRequest,
    HubRequest { state, path, hub }: HubRequest<ConnectionGroupPath>,
) -> Result<HttpResponse, RestError> {
    let group = params::group(&path.group);
    let id = ConnectionId::from(path.id.as_str());
    if state.node.add_to_group(&hub, &group, &id).await? {
        Ok(success(&req, StatusCode::OK))
    } else {
        Err(RestError::not_found(
            Missing::ConnectionToAdd,
            format!("connection '{}' does not exist", path.id),
        ))
    }
}

/// `DELETE /api/hubs/{hub}/groups/{group}/connections/{id}`: 200, also when
/// the connection was not a member (the SDK treats any 404 here as a failure).
pub async fn remove_connection(
    req: HttpRequest,
    HubRequest { state, path, hub }: HubRequest<ConnectionGroupPath>,
) -> Result<HttpResponse, RestError> {
    let group = params::group(&path.group);
    let id = ConnectionId::from(path.id.as_str());
    state.node.remove_from_group(&hub, &group, &id).await?;
    Ok(success(&req, StatusCode::OK))
}

/// `HEAD` / `GET /api/hubs/{hub}/groups/{group}`: 200 when the group has a
/// connection, or 404 `Warning.Group.NotExisted`.
pub async fn exists(HubRequest { state, path, hub }: HubRequest<GroupPath>) -> Result<HttpResponse, RestError> {
    let group = params::group(&path.group);
    if state.node.group_connections(&hub, &group).await?.is_empty() {
        Err(RestError::not_found(
            Missing::Group,
            format!("group '{}' has no connection", path.group),
        ))
    } else {
        Ok(HttpResponse::Ok().finish())
    }
}

/// `GET /api/hubs/{hub}/groups/{group}/connections` (`maxpagesize` 1–200,
/// default 100; `top`; `continuationToken`): `{"value": [{"connectionId",
/// "userId"}], "nextLink"}`, `nextLink` being the absolute URL of the next
/// page, or `null` after the last.
pub async fn list_connections(
    req: HttpRequest,
    HubRequest { state, path, hub }: HubRequest<GroupPath>,
) -> Result<HttpResponse, RestError> {
    let group = params::group(&path.group);
    let page_size = params::bounded(&req, "maxpagesize", 1..=MAX_PAGE_SIZE)?.unwrap_or(DEFAULT_PAGE_SIZE);
    let top = params::bounded(&req, "top", 0..=usize::MAX)?;
    let after = params::query_value(&req, "continuationToken")
        .map(|token| decode_token(&token))
        .transpose()?;
    let mut records = state.node.group_connections(&hub, &group).await?;
    records.sort_by(|a, b| a.id.cmp(&b.id));
    let start = after.map_or(0, |after| records.partition_point(|r| r.id.as_str() <= after.as_str()));
    let remaining = &records[start..];
    let page = &remaining[..page_size.min(top.unwrap_or(usize::MAX)).min(remaining.len())];
    let left = top.map(|top| top - page.len());
    let more = remaining.len() > page.len() && left != Some(0);
    let next_link = match page.last() {
        Some(last) if more => Some(next_link(&req, page_size, left, &last.id)),
        _ => None,
    };
    let value: Vec<_> = page.iter().map(member).collect();
    Ok(HttpResponse::Ok().json(json!({ "value": value, "nextLink": next_link })))
}

fn member(record: &ConnectionRecord) -> serde_json::Value {
    json!({ "connectionId": record.id.as_str(), "userId": record.user.as_ref().map(UserId::as_str) })
}

fn decode_token(token: &str) -> Result<String, RestError> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| RestError::BadRequest("invalid continuationToken".into()))
}

/// The absolute URL of the next page: this request's, with the paging
/// parameters replaced.
fn next_link(req: &HttpRequest, page_size: usize, top: Option<usize>, last: &ConnectionId) -> String {
    let paging = ["maxpagesize", "top", "continuationtoken"];
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        if !paging.contains(&k.to_ascii_lowercase().as_str()) {
            query.append_pair(&k, &v);
        }
    }
    query.append_pair("maxpagesize", &page_size.to_string());
    if let Some(top) = top {
        query.append_pair("top", &top.to_string());
    }
    query.append_pair("continuationToken", &URL_SAFE_NO_PAD.encode(last.as_str()));
    let info = req.connection_info();
    format!("{}://{}{}?{}", info.scheme(), info.host(), req.path(), query.finish())
}
