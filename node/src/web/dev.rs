//! Development mode (`dev_mode`, off by default): the transport check page
//! at `/dev/` (`node/dev/transports.html`, ours, built into the binary) and
//! the official SignalR browser bundle it loads, served from
//! `dev_signalr_dir` at `/dev/signalr/` (the bundle is not part of the
//! repository). Without `dev_mode` both answer 404.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::web::state::AppState;

/// The page.
const PAGE: &str = include_str!("../../dev/transports.html");
/// The only files served from `dev_signalr_dir`.
const BUNDLE_FILES: [&str; 4] = ["signalr.js", "signalr.js.map", "signalr.min.js", "signalr.min.js.map"];

/// Registers the development routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/dev/", web::get().to(page))
        .route("/dev/signalr/{file}", web::get().to(bundle));
}

async fn page(state: web::Data<AppState>) -> HttpResponse {
    if !state.node.config.dev_mode {
        return HttpResponse::NotFound().finish();
    }
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(PAGE)
}

async fn bundle(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let config = &state.node.config;
    let file = req.match_info().get("file").unwrap_or("");
    let (true, Some(dir), true) = (config.dev_mode, &config.dev_signalr_dir, BUNDLE_FILES.contains(&file)) else {
        return HttpResponse::NotFound().finish();
    };
    // Development only, one small file: read on the worker.
    match std::fs::read(dir.join(file)) {
        Ok(bytes) => HttpResponse::Ok()
            .content_type("application/javascript; charset=utf-8")
            .body(bytes),
        Err(e) => {
            tracing::warn!(path = %dir.join(file).display(), error = %e, "dev_signalr_dir: cannot read the bundle");
            HttpResponse::NotFound().finish()
        }
    }
}
