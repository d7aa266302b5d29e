//! Requests refused before a connection opens: for WebSocket upgrades, plain
//! HTTP/1.1 responses with a short text written on the socket by
//! [`super::websocket`] (actix's response machinery is out of the picture once
//! a request is handed over as an upgrade); for the HTTP transports the same
//! refusal as an actix response.

use actix_http::ws::HandshakeError;

use crate::core::metrics::RefusalReason;

/// The security headers every HTTP response carries (`crate::web::cors`).
const SECURITY_HEADERS: &str = "x-content-type-options: nosniff\r\nx-frame-options: DENY\r\n";

/// A refused upgrade, written as a plain HTTP/1.1 response.
pub(super) struct Refusal {
    /// The status code.
    pub(super) status: u16,
    /// The reason phrase.
    pub(super) reason: &'static str,
    /// One extra header.
    pub(super) header: Option<(&'static str, &'static str)>,
    /// The text.
    pub(super) body: &'static str,
}

impl Refusal {
    /// A refusal without extra headers.
    pub(super) fn new(status: u16, reason: &'static str, body: &'static str) -> Self {
        Self {
            status,
            reason,
            header: None,
            body,
        }
    }

    /// The same refusal as an actix response (the HTTP transports' requests).
    pub(super) fn response(&self) -> actix_web::HttpResponse {
        let status = actix_web::http::StatusCode::from_u16(self.status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = actix_web::HttpResponse::build(status);
        response.content_type("text/plain; charset=utf-8");
        if let Some(header) = self.header {
            response.insert_header(header);
        }
        response.body(self.body)
    }

    /// The response as sent.
    pub(super) fn bytes(&self) -> Vec<u8> {
        let extra = self.header.map(|(k, v)| format!("{k}: {v}\r\n")).unwrap_or_default();
        format!(
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n{SECURITY_HEADERS}{extra}\r\n{}",
            self.status,
            self.reason,
            self.body.len(),
            self.body
        )
        .into_bytes()
    }
}

/// The answer to a request that is not a valid WebSocket upgrade.
pub(super) fn handshake_refusal(error: HandshakeError) -> Refusal {
    match error {
        HandshakeError::GetMethodRequired => Refusal {
            header: Some(("allow", "GET")),
            ..Refusal::new(405, "Method Not Allowed", "")
        },
        HandshakeError::UnsupportedVersion => Refusal {
            header: Some(("sec-websocket-version", "13")),
            ..Refusal::new(426, "Upgrade Required", "Unsupported WebSocket version.")
        },
        HandshakeError::NoWebsocketUpgrade => Refusal::new(400, "Bad Request", "No WebSocket Upgrade header found."),
        HandshakeError::NoConnectionUpgrade => Refusal::new(400, "Bad Request", "No Connection upgrade."),
        HandshakeError::NoVersionHeader => Refusal::new(400, "Bad Request", "WebSocket version header is required."),
        HandshakeError::BadWebsocketKey => Refusal::new(400, "Bad Request", "Handshake error."),
    }
}

/// The answer to an upgrade refused by admission or by the per-user limit.
pub(super) fn admission_refusal(reason: RefusalReason) -> Refusal {
    match reason {
        RefusalReason::NodeFull => Refusal::new(503, "Service Unavailable", "The server is at its connection limit."),
        RefusalReason::Handshakes => Refusal::new(503, "Service Unavailable", "Too many connections are being opened."),
        RefusalReason::HandshakesPerIp => {
            Refusal::new(429, "Too Many Requests", "Too many handshakes from this address.")
        }
        RefusalReason::UserLimit => Refusal::new(
            429,
            "Too Many Requests",
            "The user already has the maximum number of connections.",
        ),
        RefusalReason::Backplane => Refusal::new(
            503,
            "Service Unavailable",
            "The server cannot register connections right now.",
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_complete_http_responses() {
        let refusal = Refusal {
            header: Some(("www-authenticate", "Bearer")),
            ..Refusal::new(401, "Unauthorized", "")
        };
        let text = String::from_utf8(refusal.bytes()).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 401 Unauthorized\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 0\r\nconnection: close\r\nx-content-type-options: nosniff\r\nx-frame-options: DENY\r\nwww-authenticate: Bearer\r\n\r\n"
        );
        let text = String::from_utf8(Refusal::new(409, "Conflict", "Connection ID already in use").bytes()).unwrap();
        assert!(text.starts_with("HTTP/1.1 409 Conflict\r\n"), "{text}");
        assert!(text.ends_with("x-frame-options: DENY\r\n\r\nConnection ID already in use"));
    }

    #[test]
    fn handshake_refusals_keep_their_status() {
        assert_eq!(handshake_refusal(HandshakeError::GetMethodRequired).status, 405);
        assert_eq!(handshake_refusal(HandshakeError::UnsupportedVersion).status, 426);
        assert_eq!(handshake_refusal(HandshakeError::BadWebsocketKey).status, 400);
    }
    #[test]
    fn admission_refusals_are_503_or_429() {
        assert_eq!(admission_refusal(RefusalReason::NodeFull).status, 503);
        assert_eq!(admission_refusal(RefusalReason::Handshakes).status, 503);
        assert_eq!(admission_refusal(RefusalReason::HandshakesPerIp).status, 429);
        assert_eq!(admission_refusal(RefusalReason::UserLimit).status, 429);
        assert_eq!(admission_refusal(RefusalReason::Backplane).status, 503);
    }
}
