//! Server-Sent Events: `GET {hub}?id=<connectionToken>` with
//! `Accept: text/event-stream` opens the connection and stays open as its
//! server-to-client half; the client sends with `POST` ([`super::sessions`]).
//! Text only (JSON): a MessagePack handshake is refused as ASP.NET Core
//! refuses it. Each batch of records is one event of `data:` lines.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{BufMut, Bytes, BytesMut};

use super::session::{Kind, Session, Take};
use super::sessions::{no_cache, open, text};
use crate::web::state::AppState;

/// Ends the connection when the stream goes away (the client left).
struct StopOnDrop(Arc<Session>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.set();
    }
}

/// `GET` with `Accept: text/event-stream`: the event stream of a negotiated
/// connection; 409 if it already has one, 400 if it uses long polling.
pub async fn connect(req: HttpRequest, state: web::Data<AppState>, token: String) -> HttpResponse {
    if let Some(existing) = state.sessions.get(&token) {
        return match existing.kind {
            Kind::Sse => text(409, "Connection ID already in use"),
            Kind::LongPolling => text(400, "Cannot change transports mid-connection"),
        };
    }
    let session = match open(&req, &state, token, Kind::Sse).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    // A comment first, so that the client's EventSource opens at once.
    let first = Bytes::from_static(b":\r\n");
    let events = futures_util::stream::unfold((StopOnDrop(session), Some(first)), |(guard, first)| async move {
        if let Some(first) = first {
            return Some((Ok::<_, std::convert::Infallible>(first), (guard, None)));
        }
        match guard.0.outlet.take().await {
            Take::Data(records) => Some((Ok(event(&records)), (guard, None))),
            Take::End => None,
        }
    });
    let mut response = HttpResponse::Ok();
    no_cache(&mut response);
    response
        .content_type("text/event-stream")
        .insert_header(("content-encoding", "identity"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(events)
}

/// One event carrying `records`: a `data:` line per line of them.
fn event(records: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(records.len() + 16);
    for line in records.split(|b| *b == b'\n') {
        out.put_slice(b"data: ");
        out.put_slice(line);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_become_one_event_of_data_lines() {
        assert_eq!(&event(b"{\"type\":6}\x1e")[..], b"data: {\"type\":6}\x1e\r\n\r\n");
        assert_eq!(&event(b"a\nb")[..], b"data: a\r\ndata: b\r\n\r\n");
    }
}
