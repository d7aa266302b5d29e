//! The HTTP surface: routes, shared request helpers, and [`run`], which serves a
//! node on an already-bound listener until a shutdown signal.
//!
//! Shutdown order (tested by the end-to-end suite's restart test and documented
//! in `docs/decisions.md`): 1. stop accepting (actix stops its listeners),
//! 2. refuse negotiate / connect with 503, 3. send every client a Close with
//! `allowReconnect: true`, 4. wait for connections to leave the registry and
//! for their cluster cleanup (unregister, offline hook) to finish (at
//! most the configured shutdown timeout), 5. leave the cluster (the backplane
//! removes what is left of this node from the keyspace), 6. stop the workers.

use std::convert::Infallible;
use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_codec::Framed;
use actix_http::{h1, HttpService, Request};
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpRequest, HttpResponse};
use tokio::net::TcpStream;

use crate::auth::{request_token, Principal};
use crate::negotiate::negotiate;
use crate::node::Node;
use crate::transport::websocket;
use hubwire_backplane::{Backplane, HubName};

/// What every handler gets.
pub struct AppState {
    /// The node.
    pub node: Arc<Node>,
}

/// The value of parameter `name` in a query string.
pub fn query_value(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A connection request without a valid token for a hub that requires one.
#[derive(Debug)]
pub struct Unauthorized;

impl Unauthorized {
    /// The 401 response, with the `WWW-Authenticate` challenge.
    pub fn response(&self) -> HttpResponse {
        HttpResponse::Unauthorized()
            .insert_header(("WWW-Authenticate", "Bearer"))
            .finish()
    }
}

/// Authenticates a negotiate or connect request for `hub`: the user, or `None`
/// for an anonymous hub without a token.
pub fn authorize_connection(req: &HttpRequest, node: &Node, hub: &HubName) -> Result<Option<Principal>, Unauthorized> {
    authorize_token(request_token(req), node, hub)
}

/// [`authorize_connection`] for a token already taken from the request.
pub fn authorize_token(token: Option<String>, node: &Node, hub: &HubName) -> Result<Option<Principal>, Unauthorized> {
    match token {
        Some(token) => match node.auth.verify(&token) {
            Ok(principal) => Ok(Some(principal)),
            Err(e) => {
                tracing::debug!(error = %e, hub = %hub, "connection refused");
                Err(Unauthorized)
            }
        },
        None if node.config.hub_is_anonymous(hub.as_str()) => Ok(None),
        None => Err(Unauthorized),
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.node.is_shutting_down() {
        return HttpResponse::ServiceUnavailable().body("shutting down");
    }
    if !state.node.backplane.is_ready() {
        return HttpResponse::ServiceUnavailable().body("backplane not ready");
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
        .body(state.node.metrics.render(&state.node.backplane))
}

/// Registers every route of a node.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/hubs/{hub}/negotiate", web::post().to(negotiate))
        .route("/hubs/{hub}", web::get().to(websocket::connect));
    crate::rest::routes(cfg);
}

/// The actix application of a node: its routes behind the Origin / CORS
/// check and the security headers ([`crate::cors`]).
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
    App::new()
        .app_data(state)
        .wrap(from_fn(crate::cors::cors))
        .wrap(crate::cors::security_headers())
        .configure(routes)
}

/// Serves `node` on `listener` until `shutdown` resolves, then shuts down in
/// the order documented above.
pub async fn run(listener: TcpListener, node: Arc<Node>, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let workers = node
        .config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let state = web::Data::new(AppState { node: node.clone() });
    let shutdown_timeout = node.config.shutdown_timeout_secs;
    let nodelay = node.config.tcp_nodelay;
    let upgrades = node.clone();
    // actix-web's `HttpServer` spelled out, to add the upgrade service: WebSocket
    // requests reach `websocket::upgrade` with the socket itself (docs/decisions.md).
    let server = actix_server::Server::build()
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(shutdown_timeout)
        .listen("hubwire", listener, move || {
            let state = state.clone();
            let node = upgrades.clone();
            let app = app(state).into_factory().map_err(|e| e.error_response());
            HttpService::build()
                .tcp_nodelay(nodelay)
                .upgrade(fn_service(
                    move |(req, framed): (Request, Framed<TcpStream, h1::Codec>)| {
                        let node = node.clone();
                        async move {
                            websocket::upgrade(node, req, framed).await;
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(node.config.shutdown_timeout_secs);
    while !node.is_drained() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Err(e) = node.backplane.shutdown().await {
        tracing::warn!(error = %e, "could not leave the cluster cleanly; the others will sweep this node");
    }
    handle.stop(true).await;
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
        let config = crate::config::Config {
            jwt_secret: Some("http-unit-test-secret-of-32-bytes".into()),
            anonymous_hubs: vec!["diagnostics".into()],
            data_dir: dir,
            diagnostics_hub: true,
            ..crate::config::Config::default()
        };
        let node = crate::build_node(config).await.unwrap();
        let state = web::Data::new(AppState { node: node.clone() });
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
