//! Notifications of notifications hubs, for backends: create one (or a
//! batch) for a user, a tenant, a channel or everyone — persisted, then
//! sent — and page a user's notifications or a channel's. A hub that is not of the
//! notifications kind answers 404 `Error.Hub.NotExisted`.
//!
//! One body per notification: `{"userId" | "tenant" | "channel" | "all":
//! true, "type", "title", "body"?, "data"?}` with exactly one audience field;
//! a batch is `{"notifications": [ ... ]}`.
//!
//! Sizes are the hub's (`notifications.max_*`, `limits.max_user_id_chars`):
//! a value beyond one answers 400 naming the limit, counted as
//! `notifications_input` in `hubwire_limit_refusals_total`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{Map, Value};

use super::body::read_limited;
use super::error::{Missing, RestError};
use super::params::{self, ChannelPath, HubPath, HubRequest, UserPath};
use crate::core::metrics::Limit;
use crate::hubs::notifications::{NotificationsError, NotificationsHub};
use crate::web::state::AppState;
use hubwire_backplane::HubName;
use hubwire_store::{Audience, MessageId, NewNotification, StoreError};

/// The page size when `limit` is absent.
const DEFAULT_LIMIT: usize = 50;
/// The largest page.
const MAX_PAGE: usize = 200;

/// The shape of one notification, for error messages.
const SHAPE: &str = r#"{"userId" | "tenant" | "channel" | "all": true, "type", "title", "body"?, "data"?}"#;

/// The notifications hub `hub` names.
fn hub_of<'a>(state: &'a AppState, hub: &HubName) -> Result<&'a NotificationsHub, RestError> {
    state
        .notifications
        .iter()
        .find(|n| n.definition().name == hub.as_str())
        .ok_or_else(|| RestError::not_found(Missing::Hub, format!("hub '{hub}' is not a notifications hub")))
}

impl From<NotificationsError> for RestError {
    fn from(error: NotificationsError) -> Self {
        match error {
            NotificationsError::Node(e) => e.into(),
            NotificationsError::Invalid(m) | NotificationsError::Store(StoreError::Invalid(m)) => {
                RestError::BadRequest(m)
            }
            NotificationsError::Store(e) => RestError::Database(e.to_string()),
        }
    }
}

/// `error` of an operation of `hub`: a refused input (a limit) is counted
/// in `hubwire_limit_refusals_total`.
fn counted(state: &AppState, hub: &HubName, error: NotificationsError) -> RestError {
    if matches!(error, NotificationsError::Invalid(_)) {
        state.node.metrics.refused(hub.as_str(), Limit::NotificationsInput);
    }
    error.into()
}

/// One notification of a body, checked (`at`: where it is, for messages).
fn notification(hub: &str, value: &Value, at: &str) -> Result<NewNotification, RestError> {
    let bad = |what: String| RestError::BadRequest(format!("{at}{what}; a notification is {SHAPE}"));
    let Value::Object(object) = value else {
        return Err(bad("must be a JSON object".into()));
    };
    if let Some(unknown) = object
        .keys()
        .find(|k| !["userId", "tenant", "channel", "all", "type", "title", "body", "data"].contains(&k.as_str()))
    {
        return Err(bad(format!("has an unknown field \"{unknown}\"")));
    }
    let audiences: Vec<&str> = ["userId", "tenant", "channel", "all"]
        .into_iter()
        .filter(|k| object.contains_key(*k))
        .collect();
    if audiences.len() != 1 {
        return Err(bad(format!(
            "must have exactly one audience field of \"userId\", \"tenant\", \"channel\", \"all\" (it has {})",
            if audiences.is_empty() {
                "none".to_owned()
            } else {
                audiences.join(", ")
            }
        )));
    }
    let text = |k: &str| -> Result<Option<String>, RestError> {
        match object.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(format!("\"{k}\" must be a string"))),
        }
    };
    let named = |k: &str| -> Result<String, RestError> {
        text(k)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad(format!("\"{k}\" must be a non-empty string")))
    };
    let audience = match audiences[0] {
        "userId" => Audience::User(named("userId")?),
        "tenant" => Audience::Tenant(named("tenant")?),
        "channel" => Audience::Channel(named("channel")?),
        _ => match object.get("all") {
            Some(Value::Bool(true)) => Audience::All,
            _ => return Err(bad("\"all\" must be true".into())),
        },
    };
    let data = match object.get("data") {
        None | Some(Value::Null) => None,
        Some(data) => Some(data.to_string()),
    };
    Ok(NewNotification {
        hub: hub.to_owned(),
        audience,
        kind: named("type")?,
        title: named("title")?,
        body: text("body")?,
        data,
    })
}

/// `POST /api/hubs/{hub}/notifications`: one notification (201 with it, its
/// `id` included; sent as `notification_received`) or `{"notifications":
/// [...]}` (201 with `{"value": [...]}`; sent as one
/// `notification_batch_received` per audience). 400 naming what is wrong.
pub async fn create(
    req: HttpRequest,
    HubRequest { state, hub, .. }: HubRequest<HubPath>,
    payload: web::Payload,
) -> Result<HttpResponse, RestError> {
    let bytes = read_limited(&req, payload).await?;
    let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
        RestError::BadRequest(format!(
            "the body must be JSON, {SHAPE} or {{\"notifications\": [...]}}: {e}"
        ))
    })?;
    let target = hub_of(&state, &hub)?;
    let batch = match &body {
        Value::Object(object) if object.contains_key("notifications") => Some(batch_of(object)?),
        _ => None,
    };
    match batch {
        Some(items) => {
            let most = target.settings().max_batch;
            if items.is_empty() || items.len() > most {
                state.node.metrics.refused(hub.as_str(), Limit::NotificationsInput);
                return Err(RestError::BadRequest(format!(
                    "a batch holds 1 to {most} notifications (notifications.max_batch), not {}",
                    items.len()
                )));
            }
            let batch = items
                .iter()
                .enumerate()
                .map(|(i, item)| notification(hub.as_str(), item, &format!("notifications[{i}] ")))
                .collect::<Result<Vec<_>, _>>()?;
            let stored = target
                .create(&state.node, batch, true)
                .await
                .map_err(|e| counted(&state, &hub, e))?;
            Ok(HttpResponse::build(StatusCode::CREATED).json(serde_json::json!({ "value": stored })))
        }
        None => {
            let one = notification(hub.as_str(), &body, "the notification ")?;
            let mut stored = target
                .create(&state.node, vec![one], false)
                .await
                .map_err(|e| counted(&state, &hub, e))?;
            Ok(HttpResponse::build(StatusCode::CREATED).json(stored.pop().unwrap_or(Value::Null)))
        }
    }
}

/// The items of `{"notifications": [...]}` (no other field).
fn batch_of(object: &Map<String, Value>) -> Result<&Vec<Value>, RestError> {
    if object.len() != 1 {
        return Err(RestError::BadRequest(
            "a batch is {\"notifications\": [...]} with no other field".into(),
        ));
    }
    match &object["notifications"] {
        Value::Array(items) => Ok(items),
        _ => Err(RestError::BadRequest("\"notifications\" must be an array".into())),
    }
}

/// `GET /api/hubs/{hub}/users/{user}/notifications?unread=&tenant=&before=&limit=`:
/// `{"value": [notifications, newest first], "nextLink"}`: the user's own,
/// everyone's, and the tenant's when `tenant` is given; only unread ones with
/// `unread=true`; `before` an exclusive id cursor, `limit` 1–200 (default
/// 50); `nextLink` the next (older) page, or `null` after the last.
pub async fn of_user(
    req: HttpRequest,
    HubRequest { state, path, hub }: HubRequest<UserPath>,
) -> Result<HttpResponse, RestError> {
    let limit = params::bounded(&req, "limit", 1..=MAX_PAGE)?.unwrap_or(DEFAULT_LIMIT);
    let unread = match params::query_value(&req, "unread").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(RestError::BadRequest(format!(
                "unread must be true or false, not {other:?}"
            )))
        }
    };
    let before = before_of(&req)?;
    let tenant = params::query_value(&req, "tenant").filter(|t| !t.is_empty());
    let page = hub_of(&state, &hub)?
        .of_user(&path.user, tenant.as_deref(), unread, before, limit)
        .await
        .map_err(|e| counted(&state, &hub, e))?;
    let mut extra = String::new();
    if unread {
        extra.push_str("&unread=true");
    }
    if let Some(t) = &tenant {
        extra.push_str(&format!(
            "&tenant={}",
            url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>()
        ));
    }
    Ok(page_answer(&req, page, limit, &extra))
}

/// `GET /api/hubs/{hub}/channels/{channel}/notifications?before=&limit=`:
/// `{"value": [the notifications addressed to the channel, newest first],
/// "nextLink"}`, paged as a user's (`before`, `limit` 1–200, default 50);
/// no user's state (`acknowledgedAt`, `readAt` null): per-user state
/// belongs to the user's list.
pub async fn of_channel(
    req: HttpRequest,
    HubRequest { state, path, hub }: HubRequest<ChannelPath>,
) -> Result<HttpResponse, RestError> {
    let limit = params::bounded(&req, "limit", 1..=MAX_PAGE)?.unwrap_or(DEFAULT_LIMIT);
    let before = before_of(&req)?;
    let page = hub_of(&state, &hub)?
        .of_channel(&path.channel, before, limit)
        .await
        .map_err(|e| counted(&state, &hub, e))?;
    Ok(page_answer(&req, page, limit, ""))
}

/// The `before` cursor of a page request (a notification id), if given.
fn before_of(req: &HttpRequest) -> Result<Option<MessageId>, RestError> {
    match params::query_value(req, "before") {
        Some(text) => text
            .parse::<MessageId>()
            .map(Some)
            .map_err(|_| RestError::BadRequest(format!("before must be a notification id, not {text:?}"))),
        None => Ok(None),
    }
}

/// `{"value": page, "nextLink"}`: the next (older) page's link — this
/// path with `before` the page's last id, `limit`, and `extra` query
/// (`&name=value...`) — when the page is full, else `null`.
fn page_answer(req: &HttpRequest, page: Vec<Value>, limit: usize, extra: &str) -> HttpResponse {
    let next = match page.last().and_then(|n| n["id"].as_str()) {
        Some(last) if page.len() == limit => {
            Value::String(format!("{}?before={last}&limit={limit}{extra}", req.path()))
        }
        _ => Value::Null,
    };
    HttpResponse::Ok().json(serde_json::json!({ "value": page, "nextLink": next }))
}
