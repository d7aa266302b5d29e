//! Errors of the REST API and how they look on the wire.
//!
//! Every failure answers with a JSON body shaped like Azure SignalR Service's
//! `ServiceResponse` (`code`, `level`, `scope`, `errorKind`, `message`) and the
//! same code in the `x-ms-error-code` header. The Management SDK reads only the
//! header: a 404 counts as "false" (not an error) when the header carries the
//! code it expects for that operation, so those codes are Azure's own. Codes
//! are `Level.Scope.Kind`; the body's `level`, `scope` and `errorKind` are the
//! three parts of the code.
//!
//! Backplane failures are mapped to HTTP here and nowhere else.

use crate::core::client_results::ClientResultError;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::core::node::NodeError;
use crate::hubs::chat::backend::ConversationsError;
use hubwire_backplane::BackplaneError;
use hubwire_store::StoreError;

/// The response header carrying the error code (as Azure sends it).
pub const ERROR_CODE_HEADER: &str = "x-ms-error-code";

/// What a 404 says is missing; each maps to the code the Management SDK expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// No hub of that name (hubwire's code; Azure creates hubs on demand).
    Hub,
    /// No such connection in the hub (connection exists, close connection).
    Connection,
    /// No such connection to add to a group (add connection to group).
    ConnectionToAdd,
    /// The user has no connection in the hub (user exists).
    User,
    /// The group has no connection (group exists).
    Group,
    /// The user is not a member of the group (user in group).
    UserInGroup,
    /// No such conversation (chat hubs).
    Conversation,
}

impl Missing {
    /// The `x-ms-error-code` for this case.
    pub fn code(self) -> &'static str {
        match self {
            Missing::Hub => "Error.Hub.NotExisted",
            Missing::Connection => "Warning.Connection.NotExisted",
            Missing::ConnectionToAdd => "Error.Connection.NotExisted",
            Missing::User => "Warning.User.NotExisted",
            Missing::Group => "Warning.Group.NotExisted",
            Missing::UserInGroup => "Info.User.NotInGroup",
            Missing::Conversation => "Error.Conversation.NotExisted",
        }
    }
}

/// Why a REST request failed.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// Malformed body or query parameter: 400.
    #[error("{0}")]
    BadRequest(String),
    /// No valid access-key token or admin JWT: 401. The body says no more
    /// (why is logged at debug): which mechanisms are configured, who the
    /// token names and the JWT library's words are nobody else's business.
    #[error("Unauthorized.")]
    Unauthorized,
    /// The hub, connection, user, group or membership does not exist: 404.
    #[error("{message}")]
    NotFound {
        /// What is missing (decides the error code).
        what: Missing,
        /// A sentence naming it.
        message: String,
    },
    /// The body is larger than the limit: 413.
    #[error("the request body is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body's content type is neither JSON nor the SDK's MessagePack: 415.
    #[error("unsupported content type {0:?}: send application/json or application/octet-stream (MessagePack)")]
    UnsupportedMediaType(String),
    /// The connection is in as many groups as it may be: 409.
    #[error("{0}")]
    TooManyGroups(String),
    /// The cluster could not carry out the operation: 503 (or 409).
    #[error(transparent)]
    Backplane(#[from] BackplaneError),
    /// Nodes holding the connections did not confirm the command in time: 503.
    #[error("{0}")]
    NotAcknowledged(String),
    /// The client answered a client-result invocation with an error: 400.
    #[error("{0}")]
    ClientFailed(String),
    /// The client did not answer a client-result invocation in time: 504.
    #[error("{0}")]
    ClientTimeout(String),
    /// The request contradicts what is stored (a conversation id taken by
    /// other participants): 409.
    #[error("{0}")]
    Conflict(String),
    /// The request breaks a rule of the hub (a sender who is not a
    /// participant): 403.
    #[error("{0}")]
    Forbidden(String),
    /// The database cannot be reached or failed: 503.
    #[error("{0}")]
    Database(String),
}

impl From<ConversationsError> for RestError {
    fn from(error: ConversationsError) -> Self {
        match error {
            ConversationsError::Node(e) => e.into(),
            ConversationsError::InvalidContent(m) | ConversationsError::Limit(m) => RestError::BadRequest(m),
            ConversationsError::NotParticipant(m) => RestError::Forbidden(m),
            ConversationsError::Store(StoreError::Conflict(m)) => RestError::Conflict(m),
            ConversationsError::Store(StoreError::Invalid(m)) => RestError::BadRequest(m),
            ConversationsError::Store(StoreError::NotFound(m)) => RestError::not_found(Missing::Conversation, m),
            ConversationsError::Store(e) => RestError::Database(e.to_string()),
        }
    }
}

impl From<ClientResultError> for RestError {
    fn from(error: ClientResultError) -> Self {
        match error {
            ClientResultError::NotFound(_) | ClientResultError::Disconnected(_) => {
                RestError::not_found(Missing::Connection, error.to_string())
            }
            ClientResultError::Timeout { .. } => RestError::ClientTimeout(error.to_string()),
            ClientResultError::Client(message) => RestError::ClientFailed(message),
            ClientResultError::Backplane(e) => RestError::Backplane(e),
        }
    }
}

impl From<NodeError> for RestError {
    fn from(error: NodeError) -> Self {
        match error {
            NodeError::GroupName => RestError::BadRequest(error.to_string()),
            NodeError::TooManyGroups { .. } => RestError::TooManyGroups(error.to_string()),
            NodeError::Backplane(e) => RestError::Backplane(e),
            NodeError::NotAcknowledged { .. } => RestError::NotAcknowledged(error.to_string()),
        }
    }
}

impl RestError {
    /// A 404 for `what`, with a message.
    pub fn not_found(what: Missing, message: impl Into<String>) -> Self {
        RestError::NotFound {
            what,
            message: message.into(),
        }
    }

    /// The error code sent in the header and the body.
    pub fn code(&self) -> &'static str {
        match self {
            RestError::BadRequest(_) => "Error.Request.Invalid",
            RestError::Unauthorized => "Error.Request.Unauthorized",
            RestError::NotFound { what, .. } => what.code(),
            RestError::TooLarge { .. } => "Error.Request.TooLarge",
            RestError::UnsupportedMediaType(_) => "Error.Request.UnsupportedMediaType",
            RestError::TooManyGroups(_) => "Error.Connection.GroupLimitReached",
            RestError::Backplane(BackplaneError::Unavailable(_)) => "Error.Backplane.Unavailable",
            RestError::Backplane(BackplaneError::UserLimit { .. }) => "Error.User.LimitReached",
            RestError::NotAcknowledged(_) => "Error.Cluster.NotAcknowledged",
            RestError::Conflict(_) => "Error.Conversation.Conflict",
            RestError::Forbidden(_) => "Error.Conversation.NotParticipant",
            RestError::Database(_) => "Error.Database.Unavailable",
            RestError::ClientFailed(_) => "Error.Invocation.Failed",
            RestError::ClientTimeout(_) => "Error.Invocation.Timeout",
        }
    }
}

impl ResponseError for RestError {
    fn status_code(&self) -> StatusCode {
        match self {
            RestError::BadRequest(_) => StatusCode::BAD_REQUEST,
            RestError::Unauthorized => StatusCode::UNAUTHORIZED,
            RestError::NotFound { .. } => StatusCode::NOT_FOUND,
            RestError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            RestError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RestError::TooManyGroups(_) => StatusCode::CONFLICT,
            RestError::Backplane(BackplaneError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            RestError::Backplane(BackplaneError::UserLimit { .. }) => StatusCode::CONFLICT,
            RestError::NotAcknowledged(_) | RestError::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
            RestError::Conflict(_) => StatusCode::CONFLICT,
            RestError::Forbidden(_) => StatusCode::FORBIDDEN,
            RestError::ClientFailed(_) => StatusCode::BAD_REQUEST,
            RestError::ClientTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let code = self.code();
        let mut parts = code.splitn(3, '.');
        let (level, scope, kind) = (parts.next(), parts.next(), parts.next());
        if let RestError::Backplane(e) = self {
            tracing::warn!(error = %e, "REST operation failed in the backplane");
        }
        if let RestError::Database(e) = self {
            tracing::warn!(error = %e, "REST operation failed in the database");
        }
        if let RestError::NotAcknowledged(e) = self {
            tracing::warn!(error = %e, "REST operation not confirmed by the cluster");
        }
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((ERROR_CODE_HEADER, code));
        if matches!(self, RestError::Unauthorized) {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(json!({
            "code": code,
            "level": level,
            "scope": scope,
            "errorKind": kind,
            "message": self.to_string(),
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn body_of(response: HttpResponse) -> serde_json::Value {
        let bytes = response.into_body().try_into_bytes().unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn not_found_carries_the_sdk_code_in_header_and_body() {
        let error = RestError::not_found(Missing::Connection, "connection 'c1' does not exist");
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let header = response.headers().get(ERROR_CODE_HEADER).unwrap();
        assert_eq!(header, "Warning.Connection.NotExisted");
        let body = body_of(response);
        assert_eq!(body["code"], "Warning.Connection.NotExisted");
        assert_eq!(body["level"], "Warning");
        assert_eq!(body["scope"], "Connection");
        assert_eq!(body["errorKind"], "NotExisted");
        assert_eq!(body["message"], "connection 'c1' does not exist");
    }

    #[test]
    fn every_missing_case_has_its_azure_code() {
        let codes: Vec<_> = [
            Missing::Connection,
            Missing::ConnectionToAdd,
            Missing::User,
            Missing::Group,
            Missing::UserInGroup,
            Missing::Conversation,
        ]
        .into_iter()
        .map(Missing::code)
        .collect();
        assert_eq!(
            codes,
            [
                "Warning.Connection.NotExisted",
                "Error.Connection.NotExisted",
                "Warning.User.NotExisted",
                "Warning.Group.NotExisted",
                "Info.User.NotInGroup",
                "Error.Conversation.NotExisted",
            ]
        );
    }

    #[test]
    fn unauthorized_asks_for_a_bearer_token() {
        let response = RestError::Unauthorized.error_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers().get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
        assert_eq!(
            response.headers().get(ERROR_CODE_HEADER).unwrap(),
            "Error.Request.Unauthorized"
        );
        let body = body_of(response);
        assert_eq!(body["code"], "Error.Request.Unauthorized");
        assert_eq!(body["message"], "Unauthorized.");
    }

    #[test]
    fn an_unacknowledged_command_is_a_503_of_its_own() {
        let error = RestError::from(NodeError::NotAcknowledged {
            nodes: vec!["node-2".into()],
            timeout_ms: 5000,
        });
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = body_of(response);
        assert_eq!(body["code"], "Error.Cluster.NotAcknowledged");
        assert!(body["message"].as_str().unwrap().contains("node-2"), "{body}");
    }

    #[test]
    fn an_unavailable_backplane_is_a_503() {
        let error = RestError::from(BackplaneError::Unavailable("redis down".into()));
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = body_of(response);
        assert_eq!(body["code"], "Error.Backplane.Unavailable");
        assert_eq!(body["message"], "backplane unavailable: redis down");
    }
}
