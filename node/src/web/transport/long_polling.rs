//! Long Polling: `GET {hub}?id=<connectionToken>` polls for what the server
//! has to send; the client sends with `POST` ([`super::sessions`]). The first
//! poll opens the connection and is answered at once, empty (the official
//! client ignores its body); a later poll is answered with the records that
//! wait (`application/octet-stream`: JSON or MessagePack), `200` empty after
//! `long_poll_timeout_secs` without any, `204` once the connection is over.
//! A newer poll supersedes one still waiting, which is answered `204`.

use std::sync::atomic::Ordering;

use actix_web::{web, HttpRequest, HttpResponse};

use super::session::{Kind, Session, Take};
use super::sessions::{check_user, no_cache, open, text};
use crate::web::state::AppState;

/// A poll (`GET` without `Accept: text/event-stream`).
pub async fn poll(req: HttpRequest, state: web::Data<AppState>, token: String) -> HttpResponse {
    let Some(session) = state.sessions.get(&token) else {
        return match open(&req, &state, token, Kind::LongPolling).await {
            Ok(_) => {
                let mut response = HttpResponse::Ok();
                no_cache(&mut response);
                response.content_type("application/octet-stream").body("")
            }
            Err(response) => response,
        };
    };
    if session.kind != Kind::LongPolling {
        return text(400, "Cannot change transports mid-connection");
    }
    if let Err(refusal) = check_user(&req, &state.node, &session).await {
        return refusal.response();
    }
    let mut response = answer(&session, state.node.config.long_poll_timeout()).await;
    for (name, value) in [
        ("cache-control", "no-cache, no-store"),
        ("pragma", "no-cache"),
        ("expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
    ] {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static(name),
            actix_web::http::header::HeaderValue::from_static(value),
        );
    }
    response
}

/// Waits for records, the end, the poll timeout or a newer poll.
async fn answer(session: &Session, poll_timeout: std::time::Duration) -> HttpResponse {
    let polls = &session.polls;
    let mine = polls.generation.fetch_add(1, Ordering::AcqRel) + 1;
    polls.superseded.notify_waiters();
    let _slot = polls.slot.lock().await;
    let _outstanding = polls.begin();
    let expiry = tokio::time::sleep(poll_timeout);
    tokio::pin!(expiry);
    loop {
        let superseded = polls.superseded.notified();
        tokio::pin!(superseded);
        superseded.as_mut().enable();
        if polls.generation.load(Ordering::Acquire) != mine {
            return HttpResponse::NoContent().content_type("text/plain").finish();
        }
        tokio::select! {
            taken = session.outlet.take() => return match taken {
                Take::Data(records) => HttpResponse::Ok().content_type("application/octet-stream").body(records),
                Take::End => HttpResponse::NoContent().content_type("text/plain").finish(),
            },
            () = &mut superseded => {}
            () = &mut expiry => return HttpResponse::Ok().content_type("text/plain").body(""),
        }
    }
}
