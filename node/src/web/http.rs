//! The HTTP surface: health, readiness and metrics routes, the actix app,
//! and [`run`], which serves a node on an already-bound listener until a
//! shutdown signal, then shuts down.
//!
//! # Shutdown order (the one place it is written; `e2e/test/shutdown.test.mjs` tests it)
//! 1. The drain begins ([`Node::begin_shutdown`]): `/readyz` answers 503,
//!    negotiate and connect answer 503, new upgrades are refused before their
//!    101. The listener keeps accepting, so that clients get that clear answer.
//!    After `shutdown_delay_secs` (0 by default; for load balancers that poll
//!    `/readyz`, Kubernetes uses `preStop` instead):
//! 2. Every connected client gets a Close with `allowReconnect: true`, in
//!    batches of `shutdown_close_batch` ([`Node::close_for_shutdown`]); one
//!    whose handshake completes after the drain began gets the same at once
//!    ([`Node::connected`]).
//! 3. Wait — for events, not by polling — until every connection's hold is
//!    dropped, which happens once its cluster cleanup (unsubscribe,
//!    unregister, offline hook) has finished, or until `shutdown_timeout_secs`
//!    (counted from step 2) passes: the one timeout of the drain; batches
//!    share it, a batch slower than its share does not hold up the next.
//! 4. Leave the cluster: the backplane removes what is left of this node from
//!    the keyspace (everything, after a clean drain).
//! 5. Stop actix: the listener closes, HTTP requests still in flight get
//!    [`HTTP_GRACE`]; connections still open after a timed-out drain are dropped.
//!
//! [`Node::begin_shutdown`]: crate::core::node::Node::begin_shutdown
//! [`Node::connected`]: crate::core::node::Node::connected
//! [`Node::close_for_shutdown`]: crate::core::node::Node::close_for_shutdown

use std::convert::Infallible;
use std::future::Future;
use std::net::TcpListener;
use std::time::Duration;

use actix_codec::Framed;
use actix_http::{h1, HttpService, Request};
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpResponse};
use tokio::net::TcpStream;

use crate::core::hub::HubSet;
use crate::core::telemetry::{self, Kind, TraceContext};
use crate::web::negotiate::negotiate;
use crate::web::state::AppState;
use crate::web::transport::{connect, sessions, websocket};

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.node.is_shutting_down() {
        return HttpResponse::ServiceUnavailable().body("shutting down");
    }
    if !state.node.cluster_ready() {
        return HttpResponse::ServiceUnavailable().body("backplane not ready");
    }
    if let Some(store) = &state.store {
        match tokio::time::timeout(READY_DATABASE_TIMEOUT, store.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "readiness: database not reachable");
                return HttpResponse::ServiceUnavailable().body("database not reachable");
            }
            Err(_) => return HttpResponse::ServiceUnavailable().body("database not answering"),
        }
    }
    HttpResponse::Ok().content_type("text/plain").body("ready")
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let pending = state.node.negotiations.pending();
    state
        .node
        .metrics
        .negotiations_pending
        .set(i64::try_from(pending).unwrap_or(i64::MAX));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.node.render_metrics())
}

/// Registers every route of a node serving `hubs`: negotiate and connect
/// under `/hubs/{hub}` (answering 404 for a hub not served there) and at
/// every hub path outside it; the handlers find the hub by the request's path.
pub fn routes(cfg: &mut web::ServiceConfig, hubs: &HubSet) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/hubs/{hub}/negotiate", web::post().to(negotiate))
        .route("/hubs/{hub}", web::get().to(connect::get))
        .route("/hubs/{hub}", web::post().to(sessions::post))
        .route("/hubs/{hub}", web::delete().to(sessions::delete));
    let elsewhere = hubs.paths().filter(|p| {
        let segment = p.strip_prefix("/hubs/");
        segment.is_none_or(|s| s.contains('/'))
    });
    for path in elsewhere {
        cfg.route(&format!("{path}/negotiate"), web::post().to(negotiate))
            .route(path, web::get().to(connect::get))
            .route(path, web::post().to(sessions::post))
            .route(path, web::delete().to(sessions::delete));
    }
    crate::web::rest::routes(cfg);
    crate::web::dev::routes(cfg);
}

/// Middleware: Azure's `/client/...?hub=<hub>` requests reach the hub's own
/// routes (`crate::web::azure`).
async fn client_paths(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.path().starts_with("/client") {
        let target = req
            .app_data::<web::Data<AppState>>()
            .and_then(|state| crate::web::azure::rewritten(&state.hubs, req.uri()));
        if let Some(uri) = target {
            req.match_info_mut().get_mut().update(&uri);
            req.head_mut().uri = uri;
        }
    }
    next.call(req).await
}

/// The actix application of a node: its routes behind the Origin / CORS
/// check and the security headers ([`crate::web::cors`]).
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let hubs = state.hubs.clone();
    App::new()
        .app_data(state)
        .wrap(from_fn(client_paths))
        .wrap(from_fn(crate::web::cors::cors))
        .wrap(from_fn(traced))
        .wrap(crate::web::cors::security_headers())
        .configure(|cfg| routes(cfg, &hubs))
}

/// A server span per HTTP request (negotiate, the REST API; not the probes
/// and scrapes of `/healthz`, `/readyz`, `/metrics`, nor `/api/health`) when
/// tracing is on: `{method} {route}`, as ASP.NET Core's hosting names them,
/// the parent from the request's `traceparent`; sends a REST call makes
/// carry its context to other nodes.
async fn traced(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if !telemetry::enabled()
        || matches!(
            req.path(),
            "/healthz" | "/readyz" | "/metrics" | "/api/health" | "/api/v1/health"
        )
    {
        return next.call(req).await;
    }
    let parent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse);
    let route = req.match_pattern().unwrap_or_else(|| req.path().to_owned());
    let mut span = telemetry::span(format!("{} {route}", req.method()), Kind::Server, parent);
    if let Some(span) = span.as_mut() {
        span.set("http.request.method", req.method().as_str());
        span.set("http.route", route);
        span.set("url.path", req.path());
    }
    let context = span.as_ref().map(telemetry::Span::context);
    let response = telemetry::within(context, next.call(req)).await;
    if let (Some(span), Ok(response)) = (span.as_mut(), &response) {
        span.set("http.response.status_code", response.status().as_u16());
        if response.status().is_server_error() {
            span.fail(response.status().to_string());
        }
    }
    response
}

/// How long `/readyz` waits for the database's answer.
const READY_DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long HTTP requests still in flight after the drain may take to finish.
pub const HTTP_GRACE: Duration = Duration::from_secs(1);

/// Serves `state` on `listener` until `shutdown` resolves, then shuts down in
/// the order documented above.
pub async fn run(listener: TcpListener, state: AppState, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let node = state.node.clone();
    let workers = node
        .config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let state = web::Data::new(state);
    let nodelay = node.config.tcp_nodelay;
    let upgrades = state.clone();
    // actix-web's `HttpServer` spelled out, to add the upgrade service: WebSocket
    // requests reach `websocket::upgrade` with the socket itself (docs/decisions.md).
    let server = actix_server::Server::build()
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(HTTP_GRACE.as_secs())
        .listen("hubwire", listener, move || {
            let state = state.clone();
            let upgrades = upgrades.clone();
            let app = app(state).into_factory().map_err(|e| e.error_response());
            HttpService::build()
                .tcp_nodelay(nodelay)
                .upgrade(fn_service(
                    move |(mut req, framed): (Request, Framed<TcpStream, h1::Codec>)| {
                        let state = upgrades.clone();
                        if let Some(uri) = crate::web::azure::rewritten(&state.hubs, req.uri()) {
                            req.head_mut().uri = uri;
                        }
                        async move {
                            websocket::upgrade(state, req, framed).await;
                            Ok::<_, Infallible>(())
                        }
                    },
                ))
                .finish(map_config(app, |_| AppConfig::default()))
                .tcp()
        })?
        .run();
    let handle = server.handle();
    let server = actix_web::rt::spawn(server);
    shutdown.await;
    tracing::info!(connections = node.registry.len(), "shutting down");
    node.begin_shutdown();
    tokio::time::sleep(Duration::from_secs(node.config.shutdown_delay_secs)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(node.config.shutdown_timeout_secs);
    let drained = node.close_for_shutdown(deadline).await;
    if !drained {
        tracing::warn!(
            connections = node.registry.len(),
            "shutdown timeout: leaving with connections still open"
        );
    }
    node.leave_cluster().await;
    // Graceful only after a clean drain: a connection still open would make
    // actix wait for it as for a request in flight.
    handle.stop(drained).await;
    server.await.map_err(std::io::Error::other)?
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use actix_web::test;

    #[actix_web::test]
    async fn after_shutdown_begins_new_connections_and_readiness_are_refused() {
        let dir = std::env::temp_dir().join(format!("hubwire-http-test-{}", std::process::id()));
        let config = crate::core::config::Config {
            jwt_secret: Some("http-unit-test-secret-of-32-bytes".into()),
            anonymous_hubs: vec!["diagnostics".into()],
            data_dir: dir,
            diagnostics_hub: true,
            ..crate::core::config::Config::default()
        };
        let state = web::Data::new(crate::build(config).await.unwrap());
        let node = state.node.clone();
        let app = test::init_service(app(state)).await;
        let negotiate = || {
            test::TestRequest::post()
                .uri("/hubs/diagnostics/negotiate?negotiateVersion=1")
                .to_request()
        };
        assert_eq!(test::call_service(&app, negotiate()).await.status(), 200);
        let ready = test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
        assert_eq!(ready.status(), 200);

        node.begin_shutdown();
        assert_eq!(test::call_service(&app, negotiate()).await.status(), 503);
        let ready = test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
        assert_eq!(ready.status(), 503);
        // (The WebSocket upgrade's own refusal is tested in transport::websocket.)
        let connect = test::TestRequest::get().uri("/hubs/diagnostics").to_request();
        assert_eq!(test::call_service(&app, connect).await.status(), 503);
        let health = test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
        assert_eq!(health.status(), 200, "alive while draining");
    }
}
