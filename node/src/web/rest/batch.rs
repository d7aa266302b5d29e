//! `POST /api/hubs/{hub}/:sendBatch`: many sends in one request, for a
//! backend that publishes often (seed 003 flushes its spend updates every
//! second).
//!
//! The body is JSON: `{"messages": [{"to", "id", "target", "arguments",
//! "excluded"}]}`, `to` one of `all`, `user`, `group`, `connection` (`id`
//! names the user, group or connection; none for `all`), `target` the client
//! method, `arguments` its arguments, `excluded` (`all` and `group` only)
//! connections skipped. The whole batch is checked before anything is sent:
//! a bad entry answers 400 naming its index and field (ids, targets and
//! excluded connection ids are at most 1,024 characters, as group names are
//! everywhere), and a batch of more than
//! `rest_batch_max_messages` entries (or a body beyond 1 MB, 413) is refused.
//! The entries are then sent one after the other, in order, each as its own
//! `:send` would be (published first): a recipient gets the messages meant
//! for it in the batch's order. The answer is 200 with the counts. A send
//! that fails (Redis unreachable) stops the batch: 503 with `sent`, the
//! number of entries delivered before it; the failed entry reached nobody.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::body::read_limited;
use super::error::RestError;
use super::params::{HubPath, HubRequest};
use crate::core::node::{SendOrder, MAX_GROUP_NAME_CHARS};
use hubwire_backplane::{ConnectionId, GroupName, Target, UserId};

/// One checked entry: where, what, except whom.
struct Entry {
    target: Target,
    method: String,
    arguments: Vec<Value>,
    except: Vec<ConnectionId>,
}

/// The recipient kinds, in the order of the answer's counts.
const KINDS: [&str; 4] = ["all", "user", "group", "connection"];

/// Checks entry `i` of a batch.
fn entry(i: usize, value: &Value) -> Result<(usize, Entry), RestError> {
    let bad = |why: &str| RestError::BadRequest(format!("messages[{i}]: {why}"));
    let Value::Object(fields) = value else {
        return Err(bad("must be an object with \"to\", \"target\" and \"arguments\""));
    };
    for key in fields.keys() {
        if !["to", "id", "target", "arguments", "excluded"].contains(&key.as_str()) {
            return Err(bad(&format!(
                "unknown property {key:?} (known: to, id, target, arguments, excluded)"
            )));
        }
    }
    let text = |key: &str| match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() > MAX_GROUP_NAME_CHARS => Err(bad(&format!(
            "\"{key}\" is longer than {MAX_GROUP_NAME_CHARS} characters"
        ))),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(bad(&format!("\"{key}\" must be a non-empty string"))),
    };
    let to = text("to")?.ok_or_else(|| bad("\"to\" is required: all, user, group or connection"))?;
    let kind = KINDS
        .iter()
        .position(|k| *k == to)
        .ok_or_else(|| bad(&format!("\"to\" is {to:?}: all, user, group or connection")))?;
    let id = text("id")?;
    let target = match (kind, id) {
        (0, None) => Target::All,
        (0, Some(_)) => return Err(bad("\"id\" is not taken by a send to all")),
        (_, None) => return Err(bad(&format!("\"id\" is required for a send to a {to}"))),
        (1, Some(id)) => Target::User(UserId::from(id.as_str())),
        (2, Some(id)) => Target::Group(GroupName::from(id.as_str())),
        (_, Some(id)) => Target::Connection(ConnectionId::from(id.as_str())),
    };
    let method = text("target")?.ok_or_else(|| bad("\"target\" (the client method) is required"))?;
    let arguments = match fields.get("arguments") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err(bad("\"arguments\" must be an array")),
    };
    let except = match fields.get("excluded") {
        None | Some(Value::Null) => Vec::new(),
        Some(_) if !matches!(kind, 0 | 2) => return Err(bad("\"excluded\" is taken only by sends to all or a group")),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) if s.chars().count() > MAX_GROUP_NAME_CHARS => Err(bad(&format!(
                    "\"excluded\" holds a connection id longer than {MAX_GROUP_NAME_CHARS} characters"
                ))),
                Value::String(s) => Ok(ConnectionId::from(s.as_str())),
                _ => Err(bad("\"excluded\" must be an array of connection ids")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("\"excluded\" must be an array of connection ids")),
    };
    Ok((
        kind,
        Entry {
            target,
            method,
            arguments,
            except,
        },
    ))
}

/// Checks a whole batch body against the cap.
fn parse(bytes: &[u8], max: usize) -> Result<Vec<(usize, Entry)>, RestError> {
    let body: Value =
        serde_json::from_slice(bytes).map_err(|e| RestError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    let Some(Value::Array(messages)) = body.get("messages") else {
        return Err(RestError::BadRequest(
            "the body must be a JSON object with a \"messages\" array".into(),
        ));
    };
    if messages.len() > max {
        return Err(RestError::BadRequest(format!(
            "a batch carries at most {max} messages (rest_batch_max_messages); this one has {}",
            messages.len()
        )));
    }
    messages.iter().enumerate().map(|(i, m)| entry(i, m)).collect()
}

/// `POST /api/hubs/{hub}/:sendBatch`: 200 `{"sent", "all", "user", "group",
/// "connection"}` once every entry was sent, in order.
pub async fn send_batch(
    req: HttpRequest,
    HubRequest { state, hub, .. }: HubRequest<HubPath>,
    payload: web::Payload,
) -> Result<HttpResponse, RestError> {
    let bytes = read_limited(&req, payload).await?;
    let entries = parse(&bytes, state.node.config.rest_batch_max_messages)?;
    let mut counts = [0usize; 4];
    for (sent, (kind, e)) in entries.into_iter().enumerate() {
        let result = state
            .node
            .send(
                &hub,
                e.target,
                e.except,
                (&e.method, e.arguments),
                SendOrder::PublishFirst,
            )
            .await;
        if let Err(error) = result {
            let error = RestError::from(error);
            tracing::warn!(hub = %hub, sent, error = %error, "batch send stopped");
            return Ok(HttpResponse::ServiceUnavailable()
                .insert_header(("x-ms-error-code", error.code()))
                .json(json!({ "code": error.code(), "message": error.to_string(), "sent": sent })));
        }
        counts[kind] += 1;
    }
    let total: usize = counts.iter().sum();
    Ok(HttpResponse::Ok().json(json!({
        "sent": total,
        "all": counts[0],
        "user": counts[1],
        "group": counts[2],
        "connection": counts[3],
    })))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn error_of(body: &str, max: usize) -> String {
        match parse(body.as_bytes(), max) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{body} must be refused"),
        }
    }

    #[test]
    fn a_batch_is_checked_as_a_whole_naming_the_bad_entry() {
        let ok = parse(
            br#"{"messages": [
                {"to": "group", "id": "vkey-1", "target": "SpendUpdate", "arguments": [{"delta": 1}]},
                {"to": "all", "target": "ProviderHealthChanged"},
                {"to": "user", "id": "u", "target": "x", "arguments": []},
                {"to": "connection", "id": "c", "target": "x", "arguments": null}
            ]}"#,
            10,
        )
        .unwrap();
        let kinds: Vec<_> = ok.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, [2, 0, 1, 3]);
        assert_eq!(ok[0].1.arguments.len(), 1);
        assert!(error_of(
            r#"{"messages": [{"to": "all", "target": "a"}, {"to": "room", "id": "r", "target": "a"}]}"#,
            10
        )
        .starts_with("messages[1]: "));
        assert!(error_of(r#"{"messages": [{"to": "group", "target": "a"}]}"#, 10).contains("\"id\" is required"));
        assert!(error_of(r#"{"messages": [{"to": "group", "id": "g"}]}"#, 10).contains("\"target\""));
        assert!(error_of(
            r#"{"messages": [{"to": "user", "id": "u", "target": "a", "excluded": ["c"]}]}"#,
            10
        )
        .contains("excluded"));
        assert!(error_of(r#"{"messages": [{"to": "all", "target": "a", "colour": 1}]}"#, 10).contains("colour"));
        let long = format!(
            r#"{{"messages": [{{"to": "group", "id": "{}", "target": "a"}}]}}"#,
            "g".repeat(1025)
        );
        assert!(error_of(&long, 10).contains("\"id\" is longer than 1024 characters"));
        let long_user = format!(
            r#"{{"messages": [{{"to": "user", "id": "{}", "target": "a"}}]}}"#,
            "u".repeat(1025)
        );
        assert!(error_of(&long_user, 10).starts_with("messages[0]: \"id\" is longer than 1024"));
        let long_target = format!(r#"{{"messages": [{{"to": "all", "target": "{}"}}]}}"#, "t".repeat(1025));
        assert!(error_of(&long_target, 10).contains("\"target\" is longer than 1024"));
        let long_excluded = format!(
            r#"{{"messages": [{{"to": "all", "target": "a", "excluded": ["{}"]}}]}}"#,
            "c".repeat(1025)
        );
        assert!(error_of(&long_excluded, 10).contains("\"excluded\" holds a connection id longer than 1024"));
        let three = r#"{"messages": [{"to": "all", "target": "a"}, {"to": "all", "target": "a"}, {"to": "all", "target": "a"}]}"#;
        assert!(error_of(three, 2).contains("at most 2 messages"));
        assert!(error_of("[1]", 2).contains("\"messages\""));
    }
}
