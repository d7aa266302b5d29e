//! Conversations of chat hubs, for backends: create one with its
//! participants (idempotent for the same id and participants), read one, add
//! and remove participants, post a message and page the history; a user's
//! conversations (inbox) and users' presence. A removed
//! participant's live connections leave the conversation's group at once
//! and are told (`user_left_conversation`).
//! A hub that is not of the chat kind answers 404 `Error.Hub.NotExisted`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::body::read_limited;
use super::error::{Missing, RestError};
use super::params::{self, ConversationPath, HubPath, HubRequest, ParticipantPath, UserPath};
use crate::hubs::chat::backend::{conversation_json, PostedMessage};
use crate::hubs::chat::ChatHub;
use crate::web::state::AppState;
use hubwire_backplane::HubName;
use hubwire_store::MessageId;

/// The body of `POST /api/hubs/{hub}/conversations`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewConversation {
    /// The app's own id (a GUID from its database...); absent: generated.
    id: Option<String>,
    /// The kind (`group`, `direct`, `customer-support`, ...); default `group`.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// The participants' user ids.
    participants: Vec<String>,
}

/// The chat hub `hub` names.
fn chat<'a>(state: &'a AppState, hub: &HubName) -> Result<&'a ChatHub, RestError> {
    state
        .chats
        .iter()
        .find(|c| c.definition().name == hub.as_str())
        .ok_or_else(|| RestError::not_found(Missing::Hub, format!("hub '{hub}' is not a chat hub")))
}

/// `POST /api/hubs/{hub}/conversations` (`{"id"?, "type"?, "participants"}`):
/// 201 with the conversation, also when one with the same id, type and
/// participants exists; 409 when the id is taken otherwise.
pub async fn create(
    req: HttpRequest,
    HubRequest { state, hub, .. }: HubRequest<HubPath>,
    payload: web::Payload,
) -> Result<HttpResponse, RestError> {
    let bytes = read_limited(&req, payload).await?;
    let body: NewConversation = serde_json::from_slice(&bytes).map_err(|e| {
        RestError::BadRequest(format!(
            "the body must be {{\"id\"?, \"type\"?, \"participants\": [...]}}: {e}"
        ))
    })?;
    if body.participants.iter().any(String::is_empty) {
        return Err(RestError::BadRequest("participant ids must not be empty".into()));
    }
    let conversation = chat(&state, &hub)?
        .create_conversation(
            &state.node,
            body.id.as_deref(),
            body.kind.as_deref(),
            &body.participants,
        )
        .await?;
    Ok(HttpResponse::build(StatusCode::CREATED).json(conversation_json(&conversation)))
}

/// `GET /api/hubs/{hub}/conversations/{id}`: 200 with the conversation, or
/// 404 `Error.Conversation.NotExisted`.
pub async fn get(HubRequest { state, path, hub }: HubRequest<ConversationPath>) -> Result<HttpResponse, RestError> {
    match chat(&state, &hub)?.conversation(&path.id).await? {
        Some(conversation) => Ok(HttpResponse::Ok().json(conversation_json(&conversation))),
        None => Err(RestError::not_found(
            Missing::Conversation,
            format!("conversation '{}' does not exist", path.id),
        )),
    }
}

/// `PUT /api/hubs/{hub}/conversations/{id}/participants/{user}`: 200 (also
/// when already a participant), or 404 `Error.Conversation.NotExisted`.
pub async fn add_participant(
    HubRequest { state, path, hub }: HubRequest<ParticipantPath>,
) -> Result<HttpResponse, RestError> {
    chat(&state, &hub)?
        .add_participant(&state.node, &path.id, &path.user)
        .await?;
    Ok(HttpResponse::Ok().finish())
}

/// `DELETE /api/hubs/{hub}/conversations/{id}/participants/{user}`: 200 (also
/// when not a participant); the user's live connections leave the
/// conversation's group on every node before the answer.
pub async fn remove_participant(
    HubRequest { state, path, hub }: HubRequest<ParticipantPath>,
) -> Result<HttpResponse, RestError> {
    chat(&state, &hub)?
        .remove_participant(&state.node, &path.id, &path.user)
        .await?;
    Ok(HttpResponse::Ok().finish())
}

/// The body of `POST /api/hubs/{hub}/conversations/{id}/messages`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewMessageBody {
    sender_id: String,
    sender_name: Option<String>,
    content: String,
    client_message_id: Option<String>,
    attachments: Option<serde_json::Value>,
    message_type: Option<String>,
}

/// `POST /api/hubs/{hub}/conversations/{id}/messages` (`{"senderId",
/// "content", "clientMessageId"?, "attachments"?, "senderName"?,
/// "messageType"?}`): persisted, then broadcast to the conversation's group
/// and the sender's connections; 201 with the message (200 with the stored
/// one for a repeated `clientMessageId`, broadcast again only when the first
/// broadcast was not marked done).
pub async fn post_message(
    req: HttpRequest,
    HubRequest { state, path, hub }: HubRequest<ConversationPath>,
    payload: web::Payload,
) -> Result<HttpResponse, RestError> {
    let bytes = read_limited(&req, payload).await?;
    let body: NewMessageBody = serde_json::from_slice(&bytes).map_err(|e| {
        RestError::BadRequest(format!(
            "the body must be {{\"senderId\", \"content\", \"clientMessageId\"?, \"attachments\"?, \"senderName\"?, \"messageType\"?}}: {e}"
        ))
    })?;
    let post = PostedMessage {
        sender_id: body.sender_id,
        sender_name: body.sender_name,
        content: body.content,
        client_message_id: body.client_message_id,
        attachments: body.attachments,
        message_type: body.message_type,
    };
    let (message, inserted) = chat(&state, &hub)?.post_message(&state.node, &path.id, post).await?;
    let status = if inserted { StatusCode::CREATED } else { StatusCode::OK };
    Ok(HttpResponse::build(status).json(message))
}

/// `GET /api/hubs/{hub}/conversations/{id}/messages?before=&limit=`: `{"value":
/// [messages, newest first], "nextLink"}`; `before` is an exclusive message-id
/// cursor, `limit` 1–200 (default 50); `nextLink` is the path and query of
/// the next (older) page, or `null` after the last.
pub async fn list_messages(
    req: HttpRequest,
    HubRequest { state, path, hub }: HubRequest<ConversationPath>,
) -> Result<HttpResponse, RestError> {
    let limit = params::bounded(&req, "limit", 1..=crate::hubs::chat::backend::MAX_PAGE)?.unwrap_or(DEFAULT_LIMIT);
    let before = match params::query_value(&req, "before") {
        Some(text) => Some(
            text.parse::<MessageId>()
                .map_err(|_| RestError::BadRequest(format!("before must be a message id, not {text:?}")))?,
        ),
        None => None,
    };
    let chat = chat(&state, &hub)?;
    if chat.conversation(&path.id).await?.is_none() {
        return Err(RestError::not_found(
            Missing::Conversation,
            format!("conversation '{}' does not exist", path.id),
        ));
    }
    let page = chat.history(&path.id, before, limit).await?;
    let next = match page.last().and_then(|m| m["id"].as_str()) {
        Some(last) if page.len() == limit => {
            serde_json::Value::String(format!("{}?before={last}&limit={limit}", req.path()))
        }
        _ => serde_json::Value::Null,
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({ "value": page, "nextLink": next })))
}

/// `GET /api/hubs/{hub}/users/{user}/conversations`: `{"value": [{id, type,
/// createdAt, participants, lastMessage, unreadCount}]}`, most recently
/// active first (none: an empty list).
pub async fn inbox(HubRequest { state, path, hub }: HubRequest<UserPath>) -> Result<HttpResponse, RestError> {
    let inbox = chat(&state, &hub)?.inbox(&path.user).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "value": inbox })))
}

/// `GET /api/hubs/{hub}/presence?userId=a&userId=b`: `[{userId, isOnline,
/// lastSeen, connections}]` in the order asked, as `GetPresence` answers;
/// 1 to 100 users.
pub async fn presence(
    req: HttpRequest,
    HubRequest { state, hub, .. }: HubRequest<HubPath>,
) -> Result<HttpResponse, RestError> {
    let users = params::query_values(&req, "userId");
    let most = crate::hubs::chat::presence::MAX_PRESENCE_USERS;
    if users.is_empty() || users.len() > most || users.iter().any(String::is_empty) {
        return Err(RestError::BadRequest(format!(
            "give 1 to {most} non-empty userId query parameters"
        )));
    }
    let presence = chat(&state, &hub)?.presence(&state.node, &users).await?;
    Ok(HttpResponse::Ok().json(presence))
}

/// The page size of the history when `limit` is absent.
pub const DEFAULT_LIMIT: usize = 50;
