//! Azure SignalR Service's serverless upstream: a connection's `connected` /
//! `disconnected` events, and its invocations of methods its hub does not
//! define, POSTed to the app's backend at `upstream_url` — as Azure does, so
//! that a backend written for Azure's serverless mode (an Azure Functions
//! SignalR trigger, or its own handler) works unchanged.
//!
//! - The URL is the template with `{hub}`, `{category}` (`connections` or
//!   `messages`) and `{event}` (`connected`, `disconnected`, or the method's
//!   name) filled in, each percent-encoded.
//! - Headers: `X-ASRS-Connection-Id`, `X-ASRS-Hub`, `X-ASRS-Category`,
//!   `X-ASRS-Event`, `X-ASRS-User-Id` (when the connection has a user),
//!   `X-ASRS-User-Claims` (`type: value, type: value`, as Azure's Functions
//!   extension parses them) and `X-ASRS-Signature`: `sha256=<hex
//!   HMAC-SHA256(access_key, connection id)>` (none without an access key).
//! - Bodies, as the Azure SignalR emulator sends them: `connected`
//!   `{"Type":10}`, `disconnected` `{"Type":11}` (both `application/json`);
//!   an invocation is the client's Invocation message itself, framed, in the
//!   client's hub protocol: `application/json` (JSON text + `0x1E`) or
//!   `application/x-msgpack` (length prefix + MessagePack).
//! - The answer to an invocation: `200` with a body holding a Completion
//!   message in the client's protocol (as the Functions extension answers)
//!   gives its outcome; for a JSON client a body that is a plain JSON value
//!   is taken as the result; `200` with an empty body or `204` is a void
//!   result; any other status, an unreachable upstream, a body that is
//!   neither, or no whole answer within `upstream_timeout_ms` gives an error
//!   Completion. The connection stays either way.
//!
//! Events are fire-and-forget (their answers only logged). The HTTP client is
//! the node's one ([`crate::core::webhook::post`]). Every request is counted
//! and timed in `hubwire_hook_requests_total` / `hubwire_hook_duration_seconds`
//! (`hook` `upstream_connections` or `upstream_messages`).

use std::time::{Duration, Instant};

use crate::core::auth::Principal;
use crate::core::config::Config;
use crate::core::connection::ConnectionHandle;
use crate::core::metrics::{HookOutcome, Metrics};
use crate::core::webhook;
use hubwire_protocol::{CompletionOutcome, HubMessage, Invocation, Protocol};

/// The largest answer body an upstream may send (more is an error).
pub const MAX_ANSWER: usize = 1024 * 1024;

/// Whether `config` names an upstream.
pub fn configured(config: &Config) -> bool {
    config.upstream_url.as_deref().is_some_and(|u| !u.is_empty())
}

/// The upstream URL for one request: the template with its three
/// parameters filled in (percent-encoded).
pub fn url(template: &str, hub: &str, category: &str, event: &str) -> Result<url::Url, String> {
    let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let filled = template
        .replace("{hub}", &enc(hub))
        .replace("{category}", &enc(category))
        .replace("{event}", &enc(event));
    webhook::check_url(&filled)
}

/// `sha256=<hex>` of HMAC-SHA256 of the connection id with `key` (Azure's
/// `X-ASRS-Signature`).
pub fn signature(key: &str, connection_id: &str) -> String {
    webhook::signature(key.as_bytes(), connection_id.as_bytes())
}

/// The `X-ASRS-User-Claims` value of a principal: `type: value` pairs joined
/// by `, ` (`nameid` is the user id, as in Azure's client tokens).
pub fn claims(principal: &Principal) -> String {
    let mut pairs = vec![format!("nameid: {}", principal.user)];
    if let Some(name) = &principal.name {
        pairs.push(format!("name: {name}"));
    }
    if let Some(tenant) = &principal.tenant {
        pairs.push(format!("tenant: {tenant}"));
    }
    pairs.extend(principal.roles.iter().map(|r| format!("role: {r}")));
    pairs.extend(principal.channels.iter().map(|c| format!("channels: {c}")));
    if principal.expires > 0 {
        pairs.push(format!("exp: {}", principal.expires));
    }
    pairs.join(", ")
}

/// A header value without line breaks (a user id or claim holding one
/// cannot end the request's head).
fn header_value(value: &str) -> String {
    value.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The `X-ASRS-*` headers of a request about `handle`.
fn headers(config: &Config, handle: &ConnectionHandle, category: &str, event: &str) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("X-ASRS-Connection-Id", header_value(handle.id.as_str())),
        ("X-ASRS-Hub", header_value(handle.hub.as_str())),
        ("X-ASRS-Category", category.to_owned()),
        ("X-ASRS-Event", header_value(event)),
    ];
    if let Some(principal) = &handle.principal {
        headers.push(("X-ASRS-User-Id", header_value(principal.user.as_str())));
        headers.push(("X-ASRS-User-Claims", header_value(&claims(principal))));
    }
    if let Some(key) = config.access_key.as_deref().filter(|k| !k.is_empty()) {
        headers.push(("X-ASRS-Signature", signature(key, handle.id.as_str())));
    }
    headers
}

/// One POST to the upstream, bounded by `upstream_timeout_ms`, counted.
async fn post(
    (config, metrics): (&Config, &Metrics),
    handle: &ConnectionHandle,
    category: &str,
    event: &str,
    content_type: &str,
    body: &[u8],
) -> Result<webhook::Answer, String> {
    let template = config.upstream_url.as_deref().unwrap_or_default();
    let url = url(template, handle.hub.as_str(), category, event)?;
    let headers = headers(config, handle, category, event);
    let extra: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let timeout = Duration::from_millis(config.upstream_timeout_ms.max(1));
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, webhook::post(&url, content_type, &extra, body, MAX_ANSWER)).await;
    let outcome = HookOutcome::of(&result, |answer| answer.status);
    let hook = if category == "connections" {
        "upstream_connections"
    } else {
        "upstream_messages"
    };
    metrics.hook(handle.hub.as_str(), hook).record(outcome, started);
    match result {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(format!("the upstream could not be reached: {e}")),
        Err(_) => Err(format!("the upstream did not answer within {} ms", timeout.as_millis())),
    }
}

/// Tells the upstream that `handle` connected (`connected`) or left
/// (`disconnected`); the answer is only logged.
pub async fn event(config: &Config, metrics: &Metrics, handle: &ConnectionHandle, event: &str) {
    let body: &[u8] = if event == "connected" {
        br#"{"Type":10}"#
    } else {
        br#"{"Type":11}"#
    };
    match post(
        (config, metrics),
        handle,
        "connections",
        event,
        "application/json",
        body,
    )
    .await
    {
        Ok(answer) if (200..300).contains(&answer.status) => {}
        Ok(answer) => {
            tracing::info!(connection = %handle.id, event, status = answer.status, "upstream refused a connection event");
        }
        Err(e) => tracing::info!(connection = %handle.id, event, error = %e, "upstream connection event failed"),
    }
}

/// The content type of a hub protocol's upstream bodies.
pub fn content_type(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Json => "application/json",
        Protocol::MessagePack => "application/x-msgpack",
    }
}

/// Forwards an invocation to the upstream; its outcome for the client.
pub async fn invoke(
    config: &Config,
    metrics: &Metrics,
    handle: &ConnectionHandle,
    invocation: Invocation,
) -> CompletionOutcome {
    let protocol = handle.protocol;
    let target = invocation.target.clone();
    let body = protocol.encode_to_bytes(&HubMessage::Invocation(invocation));
    let answer = match post(
        (config, metrics),
        handle,
        "messages",
        &target,
        content_type(protocol),
        &body,
    )
    .await
    {
        Ok(answer) => answer,
        Err(e) => {
            tracing::info!(connection = %handle.id, method = %target, error = %e, "upstream invocation failed");
            return CompletionOutcome::Error(format!("Invocation failed, {e}."));
        }
    };
    outcome(protocol, &answer)
}

/// The outcome an upstream's answer gives an invocation.
pub(crate) fn outcome(protocol: Protocol, answer: &webhook::Answer) -> CompletionOutcome {
    match answer.status {
        204 => return CompletionOutcome::Void,
        200 if answer.body.is_empty() => return CompletionOutcome::Void,
        200 => {}
        status => return CompletionOutcome::Error(format!("Invocation failed, status code {status}")),
    }
    let completion = protocol
        .next_record(&answer.body, MAX_ANSWER)
        .ok()
        .flatten()
        .and_then(|(record, _)| protocol.decode(record).ok().flatten());
    match completion {
        Some(HubMessage::Completion(completion)) => completion.outcome,
        _ => match protocol {
            Protocol::Json => match serde_json::from_slice(&answer.body) {
                Ok(value) => CompletionOutcome::Result(value),
                Err(_) => not_a_completion(),
            },
            Protocol::MessagePack => not_a_completion(),
        },
    }
}

fn not_a_completion() -> CompletionOutcome {
    CompletionOutcome::Error("Invocation failed, the upstream's answer is not a completion message.".into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hubwire_protocol::Completion;
    use serde_json::json;

    fn answer(status: u16, body: &[u8]) -> webhook::Answer {
        webhook::Answer {
            status,
            content_type: None,
            body: body.to_vec(),
        }
    }

    #[test]
    fn the_url_template_is_filled_and_encoded() {
        let url = url(
            "http://fn.local:7071/api/{hub}/{category}/{event}?code=x",
            "Chat",
            "messages",
            "a b",
        )
        .unwrap();
        assert_eq!(url.as_str(), "http://fn.local:7071/api/Chat/messages/a+b?code=x");
        assert!(super::url("https://x/{hub}", "h", "c", "e").is_err());
    }

    #[test]
    fn the_signature_is_azures_hex_hmac_of_the_connection_id() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
        assert_eq!(
            signature("key", "The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn an_answer_becomes_the_outcome() {
        let completion = |outcome| {
            Protocol::Json.encode_to_bytes(&HubMessage::Completion(Completion {
                invocation_id: "1".into(),
                outcome,
                ..Completion::default()
            }))
        };
        let with_result = completion(CompletionOutcome::Result(json!({"a": 1})));
        assert_eq!(
            outcome(Protocol::Json, &answer(200, &with_result)),
            CompletionOutcome::Result(json!({"a": 1}))
        );
        let with_error = completion(CompletionOutcome::Error("no".into()));
        assert_eq!(
            outcome(Protocol::Json, &answer(200, &with_error)),
            CompletionOutcome::Error("no".into())
        );
        assert_eq!(
            outcome(Protocol::Json, &answer(200, b"[1,2]")),
            CompletionOutcome::Result(json!([1, 2]))
        );
        assert_eq!(outcome(Protocol::Json, &answer(204, b"")), CompletionOutcome::Void);
        assert_eq!(
            outcome(Protocol::MessagePack, &answer(200, b"")),
            CompletionOutcome::Void
        );
        assert_eq!(
            outcome(Protocol::Json, &answer(500, b"x")),
            CompletionOutcome::Error("Invocation failed, status code 500".into())
        );
        assert!(matches!(
            outcome(Protocol::MessagePack, &answer(200, b"\x01\xff")),
            CompletionOutcome::Error(_)
        ));
        let packed = Protocol::MessagePack.encode_to_bytes(&HubMessage::Completion(Completion {
            invocation_id: "1".into(),
            outcome: CompletionOutcome::Result(json!("ok")),
            ..Completion::default()
        }));
        assert_eq!(
            outcome(Protocol::MessagePack, &answer(200, &packed)),
            CompletionOutcome::Result(json!("ok"))
        );
    }
}
