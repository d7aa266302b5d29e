//! Browser-facing HTTP policy: the `allowed_origins` check, CORS for
//! negotiate and the REST API, and the security headers of every response.
//!
//! With `allowed_origins` empty (the default) there is no Origin check and no
//! CORS header, as before. Otherwise a request under `/hubs/`, `/api/` or a
//! hub's own path whose `Origin` is not listed is refused with 403 (the
//! WebSocket upgrade does the same check in `transport::websocket`), a preflight from a listed origin is
//! answered with 204, and responses to listed origins carry
//! `Access-Control-Allow-Origin` with that origin and `-Allow-Credentials`
//! (the SignalR browser client sends credentials, so `*` is never echoed).
//! Requests without `Origin` (non-browser clients) are not checked.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use crate::web::state::AppState;

/// Methods a preflight may ask for.
const ALLOW_METHODS: &str = "GET, POST, PUT, DELETE, HEAD, OPTIONS";
/// Request headers the SignalR browser client and REST callers send.
const ALLOW_HEADERS: &str = "authorization, content-type, x-requested-with, x-signalr-user-agent";

/// Whether a request with this `Origin` (none: not a browser) may proceed.
pub fn origin_allowed(allowed: &[String], origin: Option<&[u8]>) -> bool {
    let Some(origin) = origin else { return true };
    if allowed.is_empty() {
        return true;
    }
    let origin = String::from_utf8_lossy(origin);
    let origin = origin.trim_end_matches('/');
    allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// Adds `X-Content-Type-Options: nosniff` and `X-Frame-Options: DENY`.
pub fn security_headers() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
}

fn add_cors_headers(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// The Origin check and CORS (see the module docs), as an actix middleware.
pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // The state is cloned (an `Arc`) so that the request can move on to `next`.
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let allowed = state.as_ref().map_or(&[][..], |s| &s.node.config.allowed_origins[..]);
    let origin = req.headers().get(header::ORIGIN).cloned();
    let path = req.path();
    let hub_path = |s: &AppState| {
        let path = path.trim_end_matches('/');
        let path = path.strip_suffix("/negotiate").unwrap_or(path);
        s.hubs.at_path(path).is_some()
    };
    let checked =
        path.starts_with("/hubs/") || path.starts_with("/api/") || state.as_ref().is_some_and(|s| hub_path(s));
    let (Some(origin), false, true) = (origin, allowed.is_empty(), checked) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    if !origin_allowed(allowed, Some(origin.as_bytes())) {
        if let Some(state) = &state {
            state.node.metrics.request_refused("origin");
        }
        tracing::debug!(origin = ?origin, path, "request from an origin not allowed");
        let refused = HttpResponse::Forbidden().body("Origin not allowed.");
        return Ok(req.into_response(refused).map_into_right_body());
    }
    let preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let mut answer = HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
            .finish();
        add_cors_headers(answer.headers_mut(), origin);
        return Ok(req.into_response(answer).map_into_right_body());
    }
    let mut response = next.call(req).await?;
    add_cors_headers(response.headers_mut(), origin);
    Ok(response.map_into_left_body())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use actix_web::test::{call_service, init_service, TestRequest};

    async fn state(allowed: &[&str]) -> AppState {
        let dir = std::env::temp_dir().join(format!("hubwire-cors-test-{}", std::process::id()));
        let config = crate::core::config::Config {
            jwt_secret: Some("cors-unit-test-secret-of-32-bytes".into()),
            anonymous_hubs: vec!["diagnostics".into()],
            diagnostics_hub: true,
            allowed_origins: allowed.iter().map(|&o| o.to_owned()).collect(),
            data_dir: dir,
            ..crate::core::config::Config::default()
        };
        crate::build(config).await.unwrap()
    }

    #[actix_web::test]
    async fn listed_origins_get_cors_others_403_and_every_response_the_security_headers() {
        let state = web::Data::new(state(&["https://app.example.com"]).await);
        let app = init_service(crate::web::http::app(state.clone())).await;
        let negotiate = |origin: &str| {
            TestRequest::post()
                .uri("/hubs/diagnostics/negotiate?negotiateVersion=1")
                .insert_header(("origin", origin))
                .to_request()
        };
        let ok = call_service(&app, negotiate("https://app.example.com")).await;
        assert_eq!(ok.status(), 200);
        let headers = ok.headers();
        assert_eq!(
            headers.get("access-control-allow-origin").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(headers.get("access-control-allow-credentials").unwrap(), "true");
        assert_eq!(headers.get("x-content-type-options").unwrap(), "nosniff");
        assert_eq!(headers.get("x-frame-options").unwrap(), "DENY");

        let refused = call_service(&app, negotiate("https://evil.example.com")).await;
        assert_eq!(refused.status(), 403);
        assert!(refused.headers().get("access-control-allow-origin").is_none());
        let rest = TestRequest::get()
            .uri("/api/hubs/diagnostics/count")
            .insert_header(("origin", "https://evil.example.com"))
            .to_request();
        assert_eq!(call_service(&app, rest).await.status(), 403);

        let preflight = TestRequest::default()
            .method(Method::OPTIONS)
            .uri("/hubs/diagnostics/negotiate?negotiateVersion=1")
            .insert_header(("origin", "https://app.example.com"))
            .insert_header(("access-control-request-method", "POST"))
            .insert_header(("access-control-request-headers", "authorization, x-signalr-user-agent"))
            .to_request();
        let answer = call_service(&app, preflight).await;
        assert_eq!(answer.status(), 204);
        let headers = answer.headers();
        assert_eq!(
            headers.get("access-control-allow-origin").unwrap(),
            "https://app.example.com"
        );
        let methods = headers.get("access-control-allow-methods").unwrap().to_str().unwrap();
        assert!(methods.contains("POST"), "{methods}");
        let allowed = headers.get("access-control-allow-headers").unwrap().to_str().unwrap();
        for h in [
            "authorization",
            "x-requested-with",
            "x-signalr-user-agent",
            "content-type",
        ] {
            assert!(allowed.contains(h), "{allowed}");
        }
        assert_eq!(headers.get("x-frame-options").unwrap(), "DENY");

        // Without Origin (not a browser) nothing is checked; health is never checked.
        let plain = TestRequest::post()
            .uri("/hubs/diagnostics/negotiate?negotiateVersion=1")
            .to_request();
        assert_eq!(call_service(&app, plain).await.status(), 200);
        let health = TestRequest::get()
            .uri("/healthz")
            .insert_header(("origin", "https://evil.example.com"))
            .to_request();
        let health = call_service(&app, health).await;
        assert_eq!(health.status(), 200);
        assert_eq!(health.headers().get("x-content-type-options").unwrap(), "nosniff");
        let text = state.node.render_metrics();
        assert!(
            text.contains("hubwire_requests_refused_total{reason=\"origin\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn origins_match_exactly_or_by_wildcard_and_absent_origins_pass() {
        let allowed = vec!["https://app.example.com".to_owned()];
        assert!(origin_allowed(&allowed, Some(b"https://app.example.com")));
        assert!(origin_allowed(&allowed, Some(b"HTTPS://App.Example.com/")));
        assert!(!origin_allowed(&allowed, Some(b"https://evil.example.com")));
        assert!(!origin_allowed(&allowed, Some(b"https://app.example.com.evil.net")));
        assert!(origin_allowed(&allowed, None), "not a browser");
        assert!(origin_allowed(&[], Some(b"https://anyone")), "no list: no check");
        assert!(origin_allowed(&["*".to_owned()], Some(b"https://anyone")));
    }
}
