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
use crate::auth::{unix_now, Authenticator, Claims};
use crate::config::Config;
use crate::http::AppState;
use crate::hubs::diagnostics::DiagnosticsHub;
use crate::hubs::HubSet;
use crate::node::Node;
use hubwire_backplane::{AnyBackplane, LocalBackplane, NodeId};

const ACCESS_KEY: &str = "test-access-key";
const HOST: &str = "hubwire.local:8080";

fn node() -> Arc<Node> {
    let config = Config {
        jwt_secret: Some("test-jwt-secret".into()),
        access_key: Some(ACCESS_KEY.into()),
        ..Config::default()
    };
    let auth = Authenticator::from_config(&config).unwrap();
    let (backplane, _inbox) = LocalBackplane::single(NodeId::from("n1"));
    let hubs = HubSet::default().with(Arc::new(DiagnosticsHub));
    Arc::new(Node::new(config, auth, AnyBackplane::Local(backplane), hubs))
}

/// A token as the 2022-06-01 Management SDK signs it: `aud` without the port.
fn sdk_token(path_and_query: &str) -> String {
    let now = unix_now();
    let claims = json!({
        "nameid": "backend_0123",
        "nbf": now,
        "exp": now + 3600,
        "iat": now,
        "aud": format!("http://hubwire.local{path_and_query}"),
    });
    let key = EncodingKey::from_secret(ACCESS_KEY.as_bytes());
    jsonwebtoken::encode(&Header::default(), &claims, &key).unwrap()
}

async fn call(method: Method, uri: &str, token: Option<String>, body: Option<&str>) -> ServiceResponse {
    let app = App::new()
        .app_data(web::Data::new(AppState { node: node() }))
        .configure(routes);
    let app = test::init_service(app).await;
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
    test::call_service(&app, req.to_request()).await
}

fn error_code(response: &ServiceResponse) -> &str {
    response
        .headers()
        .get(ERROR_CODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[actix_web::test]
async fn every_route_is_reached_and_guarded() {
    let h = "/api/hubs/diagnostics";
    let v1 = "/api/v1/hubs/diagnostics";
    let routes = [
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
        (Method::POST, v1.to_owned()),
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
    ];
    for (method, path) in routes {
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
        jwt_secret: Some("test-jwt-secret".into()),
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
