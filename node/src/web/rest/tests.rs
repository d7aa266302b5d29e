//! The route table against an in-process node: every route is reached (and
//! guarded), and the SDK's requests get the SDK's answers.

use std::sync::Arc;

use actix_web::dev::ServiceResponse;
use actix_web::http::{Method, StatusCode};
use actix_web::{test, web, App};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::error::ERROR_CODE_HEADER;
use super::routes;
use crate::core::auth::{unix_now, Authenticator, Claims};
use crate::core::config::Config;
use crate::core::hub::HubSet;
use crate::core::node::Node;
use crate::hubs::diagnostics::DiagnosticsHub;
use crate::web::state::AppState;
use hubwire_backplane::{AnyBackplane, LocalBackplane, NodeId};

const ACCESS_KEY: &str = "rest-unit-test-access-key-of-32-bytes";
const JWT_SECRET: &str = "rest-unit-test-jwt-secret-of-32-bytes";
const HOST: &str = "hubwire.local:8080";

fn node() -> Arc<Node> {
    node_with(|_| {})
}

fn node_with(edit: impl FnOnce(&mut Config)) -> Arc<Node> {
    let mut config = Config {
        jwt_secret: Some(JWT_SECRET.into()),
        access_key: Some(ACCESS_KEY.into()),
        ..Config::default()
    };
    edit(&mut config);
    let auth = Authenticator::from_config(&config).unwrap();
    let (backplane, _inbox) = LocalBackplane::single(NodeId::from("n1"));
    let hubs = HubSet::default().with(Arc::new(DiagnosticsHub));
    Arc::new(hubs.serve(config, auth, AnyBackplane::Local(backplane)))
}

/// A token as the 2022-06-01 Management SDK signs it: `aud` without the port.
fn sdk_token(path_and_query: &str) -> String {
    token_for(&format!("http://hubwire.local{path_and_query}"))
}

/// An access-key token for the audience `aud`.
fn token_for(aud: &str) -> String {
    let now = unix_now();
    let claims = json!({
        "nameid": "backend_0123",
        "nbf": now,
        "exp": now + 3600,
        "iat": now,
        "aud": aud,
    });
    let key = EncodingKey::from_secret(ACCESS_KEY.as_bytes());
    jsonwebtoken::encode(&Header::default(), &claims, &key).unwrap()
}

async fn call(method: Method, uri: &str, token: Option<String>, body: Option<&str>) -> ServiceResponse {
    let req = request(method, uri, token, body);
    send(node(), req).await
}

async fn send(node: Arc<Node>, req: test::TestRequest) -> ServiceResponse {
    let hubs = HubSet::default().with(Arc::new(DiagnosticsHub));
    let app = App::new()
        .app_data(web::Data::new(AppState {
            node,
            hubs,
            chats: Vec::new(),
            notifications: Vec::new(),
            rooms: Vec::new(),
            store: None,
            sessions: Default::default(),
        }))
        .configure(routes);
    let app = test::init_service(app).await;
    test::call_service(&app, req.to_request()).await
}

fn request(method: Method, uri: &str, token: Option<String>, body: Option<&str>) -> test::TestRequest {
    let mut req = test::TestRequest::default()
        .method(method)
        .uri(uri)
        .insert_header(("host", HOST));
    if let Some(token) = token {
        req = req.insert_header(("authorization", format!("Bearer {token}")));
    }
    if let Some(body) = body {
        req = req
            .insert_header(("content-type", "application/json; charset=utf-8"))
            .set_payload(body.to_owned());
    }
    req
}

fn error_code(response: &ServiceResponse) -> &str {
    response
        .headers()
        .get(ERROR_CODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Every route of hub `hub` but health, with a method it answers.
fn hub_routes(hub: &str) -> Vec<(Method, String)> {
    let h = format!("/api/hubs/{hub}");
    let v1 = format!("/api/v1/hubs/{hub}");
    vec![
        (Method::POST, format!("{h}/:send")),
        (Method::POST, format!("{h}/users/u1/:send")),
        (Method::POST, format!("{h}/groups/g1/:send")),
        (Method::POST, format!("{h}/connections/c1/:send")),
        (Method::HEAD, format!("{h}/connections/c1")),
        (Method::GET, format!("{h}/connections/c1")),
        (Method::DELETE, format!("{h}/connections/c1")),
        (Method::DELETE, format!("{h}/connections/c1/groups")),
        (Method::POST, format!("{h}/:closeConnections")),
        (Method::POST, format!("{h}/groups/g1/:closeConnections")),
        (Method::POST, format!("{h}/users/u1/:closeConnections")),
        (Method::HEAD, format!("{h}/groups/g1")),
        (Method::GET, format!("{h}/groups/g1")),
        (Method::GET, format!("{h}/groups/g1/connections")),
        (Method::PUT, format!("{h}/groups/g1/connections/c1")),
        (Method::DELETE, format!("{h}/groups/g1/connections/c1")),
        (Method::HEAD, format!("{h}/users/u1")),
        (Method::GET, format!("{h}/users/u1")),
        (Method::PUT, format!("{h}/users/u1/groups/g1")),
        (Method::HEAD, format!("{h}/users/u1/groups/g1")),
        (Method::GET, format!("{h}/users/u1/groups/g1")),
        (Method::DELETE, format!("{h}/users/u1/groups/g1")),
        (Method::DELETE, format!("{h}/users/u1/groups")),
        (Method::GET, format!("{h}/count")),
        (Method::GET, format!("{h}/groups/g1/users")),
        (Method::GET, format!("{h}/groups/g1/count")),
        (Method::GET, format!("{h}/users/u1/connections")),
        (Method::GET, format!("{h}/users/u1/count")),
        (Method::POST, format!("{h}/conversations")),
        (Method::GET, format!("{h}/conversations/k1")),
        (Method::POST, format!("{h}/conversations/k1/messages")),
        (Method::GET, format!("{h}/conversations/k1/messages")),
        (Method::PUT, format!("{h}/conversations/k1/participants/u1")),
        (Method::DELETE, format!("{h}/conversations/k1/participants/u1")),
        (Method::GET, format!("{h}/users/u1/conversations")),
        (Method::GET, format!("{h}/presence")),
        (Method::POST, v1.clone()),
        (Method::POST, format!("{v1}/users/u1")),
        (Method::POST, format!("{v1}/groups/g1")),
        (Method::POST, format!("{v1}/connections/c1")),
        (Method::DELETE, format!("{v1}/connections/c1")),
        (Method::DELETE, format!("{v1}/users/u1/groups")),
        (Method::GET, format!("{v1}/groups/g1/users/u1")),
        (Method::PUT, format!("{v1}/users/u1/groups/g1")),
        (Method::DELETE, format!("{v1}/groups/g1/users/u1")),
        (Method::PUT, format!("{v1}/groups/g1/connections/c1")),
        (Method::DELETE, format!("{v1}/connections/c1/groups/g1")),
    ]
}

#[actix_web::test]
async fn every_route_is_reached_and_guarded() {
    // Authorization comes before the hub: an unknown hub is a 401 too.
    for (method, path) in [hub_routes("diagnostics"), hub_routes("nosuchhub")].concat() {
        let uri = format!("{path}?api-version=2022-06-01");
        let response = call(method.clone(), &uri, None, None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(error_code(&response), "Error.Request.Unauthorized");
    }
    for path in ["/api/health?api-version=2022-06-01", "/api/v1/health"] {
        assert_eq!(call(Method::HEAD, path, None, None).await.status(), StatusCode::OK);
        assert_eq!(call(Method::GET, path, None, None).await.status(), StatusCode::OK);
    }
}

#[actix_web::test]
async fn every_route_of_an_unknown_hub_answers_hub_not_existed() {
    for (method, path) in hub_routes("nosuchhub") {
        let uri = format!("{path}?api-version=2022-06-01");
        let status_and_code = |r: ServiceResponse| (r.status(), error_code(&r).to_owned());
        let response = call(method.clone(), &uri, Some(sdk_token(&uri)), None).await;
        let expected = (StatusCode::NOT_FOUND, "Error.Hub.NotExisted".to_owned());
        assert_eq!(status_and_code(response), expected, "{method} {path}");
    }
}

#[actix_web::test]
async fn an_sdk_send_is_accepted() {
    let uri = "/api/hubs/diagnostics/:send?api-version=2022-06-01";
    let body = r#"{"Target":"news","Arguments":null}"#;
    let response = call(Method::POST, uri, Some(sdk_token(uri)), Some(body)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let uri = "/api/hubs/diagnostics/:send?api-version=2022-06-01&excluded=a&excluded=b";
    let token = sdk_token("/api/hubs/diagnostics/:send?api-version=2022-06-01");
    let response = call(Method::POST, uri, Some(token), Some(body)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

#[actix_web::test]
async fn a_token_for_another_url_is_refused() {
    let uri = "/api/hubs/diagnostics/:send?api-version=2022-06-01";
    let token = sdk_token("/api/hubs/diagnostics/:closeConnections?api-version=2022-06-01");
    let response = call(Method::POST, uri, Some(token), Some(r#"{"target":"x"}"#)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn unknown_hubs_and_connections_answer_with_their_codes() {
    let uri = "/api/hubs/nosuchhub/:send?api-version=2022-06-01";
    let response = call(Method::POST, uri, Some(sdk_token(uri)), Some(r#"{"target":"x"}"#)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&response), "Error.Hub.NotExisted");
    let uri = "/api/hubs/diagnostics/connections/nope?api-version=2022-06-01";
    let response = call(Method::HEAD, uri, Some(sdk_token(uri)), None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&response), "Warning.Connection.NotExisted");
    let uri = "/api/hubs/diagnostics/groups/g1/connections/nope?api-version=2022-06-01";
    let response = call(Method::PUT, uri, Some(sdk_token(uri)), None).await;
    assert_eq!(error_code(&response), "Error.Connection.NotExisted");
}

#[actix_web::test]
async fn admin_user_tokens_are_accepted_and_others_refused() {
    let auth = Authenticator::from_config(&Config {
        jwt_secret: Some(JWT_SECRET.into()),
        ..Config::default()
    })
    .unwrap();
    let admin = auth
        .issue(&Claims::new("ops", 60).with_roles(vec!["admin".into()]))
        .unwrap();
    let user = auth.issue(&Claims::new("alice", 60)).unwrap();
    let uri = "/api/hubs/Diagnostics/count";
    let response = call(Method::GET, uri, Some(admin), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        test::read_body_json::<serde_json::Value, _>(response).await,
        json!({ "connections": 0 })
    );
    let response = call(Method::GET, uri, Some(user), None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn v1_answers_202_and_finds_application_prefixed_hubs() {
    let uri = "/api/v1/hubs/shop_diagnostics/users/u1/groups/g1";
    let response = call(Method::PUT, uri, Some(sdk_token(uri)), None).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let uri = "/api/v1/hubs/shop_diagnostics/groups/g1/users/u1";
    let response = call(Method::GET, uri, Some(sdk_token(uri)), None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&response), "Info.User.NotInGroup");
}

#[actix_web::test]
async fn an_empty_group_lists_no_connections() {
    let uri = "/api/hubs/diagnostics/groups/g1/connections?api-version=2024-12-01&maxPageSize=10";
    let response = call(Method::GET, uri, Some(sdk_token(uri)), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = test::read_body_json(response).await;
    assert_eq!(body, json!({ "value": [], "nextLink": null }));
    let uri = "/api/hubs/diagnostics/groups/g1/connections?maxpagesize=0";
    let response = call(Method::GET, uri, Some(sdk_token(uri)), None).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[actix_web::test]
async fn unauthorized_answers_say_nothing_about_the_configuration_or_the_caller() {
    let auth = Authenticator::from_config(&Config {
        jwt_secret: Some(JWT_SECRET.into()),
        ..Config::default()
    })
    .unwrap();
    let not_admin = auth.issue(&Claims::new("alice-the-caller", 60)).unwrap();
    let alg_none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJtYWxsb3J5In0.".to_owned();
    let uri = "/api/hubs/diagnostics/count";
    for token in [
        None,
        Some(not_admin),
        Some(alg_none),
        Some(token_for("http://elsewhere/")),
    ] {
        let response = call(Method::GET, uri, token, None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(&response), "Error.Request.Unauthorized");
        let body: serde_json::Value = test::read_body_json(response).await;
        assert_eq!(body["message"], "Unauthorized.", "{body}");
        assert_eq!(body["code"], "Error.Request.Unauthorized");
    }
    let keyless = node_with(|c| c.access_key = None);
    let response = send(keyless, request(Method::GET, uri, Some("x.y.z".into()), None)).await;
    let body: serde_json::Value = test::read_body_json(response).await;
    assert_eq!(body["message"], "Unauthorized.", "no word of the missing access key");
}

#[actix_web::test]
async fn forwarded_hosts_count_only_from_trusted_proxies_and_public_url_wins() {
    let uri = "/api/hubs/diagnostics/count";
    let forwarded_token = token_for("https://public.example/api/hubs/diagnostics/count");
    let forwarded = || {
        request(Method::GET, uri, Some(forwarded_token.clone()), None)
            .peer_addr("10.0.0.7:5000".parse().unwrap())
            .insert_header(("x-forwarded-host", "public.example"))
            .insert_header(("x-forwarded-proto", "https"))
    };
    let status = send(node(), forwarded()).await.status();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "forwarded headers from anyone");
    let trusting = node_with(|c| c.trusted_proxies = vec!["10.0.0.0/24".into()]);
    assert_eq!(send(trusting, forwarded()).await.status(), StatusCode::OK);
    let other_proxy = node_with(|c| c.trusted_proxies = vec!["10.0.1.0/24".into()]);
    assert_eq!(send(other_proxy, forwarded()).await.status(), StatusCode::UNAUTHORIZED);
    // The direct Host still works without proxies.
    let direct = call(Method::GET, uri, Some(sdk_token(uri)), None).await;
    assert_eq!(direct.status(), StatusCode::OK);

    let public = || node_with(|c| c.public_url = Some("https://signalr.example.com/prefix/".into()));
    let public_token = token_for("https://signalr.example.com/prefix/api/hubs/diagnostics/count");
    let response = send(public(), request(Method::GET, uri, Some(public_token), None)).await;
    assert_eq!(response.status(), StatusCode::OK, "aud = public_url + path");
    let host_token = request(Method::GET, uri, Some(sdk_token(uri)), None);
    assert_eq!(send(public(), host_token).await.status(), StatusCode::UNAUTHORIZED);
}
