//! `GET {hub}` that is not a WebSocket upgrade (those go to
//! [`super::websocket`] with their socket): an SSE stream or a long poll.

use actix_web::{web, HttpRequest, HttpResponse};

use super::sessions::{no_cache, text};
use crate::web::state::{query_value, AppState};

/// `GET {hub}` that is not a WebSocket upgrade: Server-Sent Events when it
/// accepts `text/event-stream`, else a long poll.
pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if state.hubs.at_path(req.path()).is_none() {
        return text(404, "No hub with that name.");
    }
    let Some(token) = query_value(req.query_string(), "id").filter(|t| !t.is_empty()) else {
        if state.node.is_shutting_down() {
            return text(503, "The server is shutting down.");
        }
        let mut response = HttpResponse::BadRequest();
        no_cache(&mut response);
        return response.content_type("text/plain").body("Connection ID required");
    };
    let sse = req
        .headers()
        .get_all(actix_web::http::header::ACCEPT)
        .any(|v| v.to_str().is_ok_and(|v| v.contains("text/event-stream")));
    if sse {
        super::sse::connect(req, state, token).await
    } else {
        super::long_polling::poll(req, state, token).await
    }
}
