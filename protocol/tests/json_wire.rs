//! JSON encoding against literal records from the spec and the JS client.
#![allow(clippy::unwrap_used)]

use hubwire_protocol::{
    Ack, CancelInvocation, Close, Completion, CompletionOutcome, Headers, HubMessage, Invocation, Protocol,
    ProtocolError, Sequence, StreamItem, Value,
};
use serde_json::json;

const P: Protocol = Protocol::Json;

fn headers(pairs: &[(&str, &str)]) -> Headers {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn invocation(id: Option<&str>, target: &str, args: Vec<Value>) -> Invocation {
    Invocation {
        invocation_id: id.map(str::to_owned),
        target: target.to_owned(),
        arguments: args,
        ..Invocation::default()
    }
}

fn completion(id: &str, outcome: CompletionOutcome) -> HubMessage {
    HubMessage::Completion(Completion {
        headers: Headers::new(),
        invocation_id: id.to_owned(),
        outcome,
    })
}

/// Every message type with its exact JSON encoding (record separator included).
fn cases() -> Vec<(HubMessage, &'static str)> {
    vec![
        (
            HubMessage::Invocation(invocation(None, "Send", vec![json!(42)])),
            "{\"type\":1,\"target\":\"Send\",\"arguments\":[42]}\x1e",
        ),
        (
            HubMessage::Invocation(Invocation {
                headers: headers(&[("Foo", "Bar")]),
                stream_ids: vec!["1".into()],
                ..invocation(Some("123"), "Send", vec![json!(42), json!("Test Message")])
            }),
            "{\"type\":1,\"headers\":{\"Foo\":\"Bar\"},\"invocationId\":\"123\",\"target\":\"Send\",\"arguments\":[42,\"Test Message\"],\"streamIds\":[\"1\"]}\x1e",
        ),
        (
            HubMessage::StreamInvocation(invocation(Some("123"), "Send", vec![json!(42)])),
            "{\"type\":4,\"invocationId\":\"123\",\"target\":\"Send\",\"arguments\":[42]}\x1e",
        ),
        (
            HubMessage::StreamItem(StreamItem {
                headers: Headers::new(),
                invocation_id: "123".into(),
                item: json!(42),
            }),
            "{\"type\":2,\"invocationId\":\"123\",\"item\":42}\x1e",
        ),
        (
            HubMessage::StreamItem(StreamItem {
                headers: Headers::new(),
                invocation_id: "123".into(),
                item: Value::Null,
            }),
            "{\"type\":2,\"invocationId\":\"123\",\"item\":null}\x1e",
        ),
        (
            completion("123", CompletionOutcome::Void),
            "{\"type\":3,\"invocationId\":\"123\"}\x1e",
        ),
        (
            completion("123", CompletionOutcome::Result(json!(42))),
            "{\"type\":3,\"invocationId\":\"123\",\"result\":42}\x1e",
        ),
        (
            completion("123", CompletionOutcome::Result(Value::Null)),
            "{\"type\":3,\"invocationId\":\"123\",\"result\":null}\x1e",
        ),
        (
            completion("123", CompletionOutcome::Error("It didn't work!".into())),
            "{\"type\":3,\"invocationId\":\"123\",\"error\":\"It didn't work!\"}\x1e",
        ),
        (
            HubMessage::CancelInvocation(CancelInvocation {
                headers: Headers::new(),
                invocation_id: "123".into(),
            }),
            "{\"type\":5,\"invocationId\":\"123\"}\x1e",
        ),
        (HubMessage::Ping, "{\"type\":6}\x1e"),
        (HubMessage::Close(Close::default()), "{\"type\":7}\x1e"),
        (
            HubMessage::Close(Close {
                error: Some("Connection closed because of an error!".into()),
                allow_reconnect: true,
            }),
            "{\"type\":7,\"error\":\"Connection closed because of an error!\",\"allowReconnect\":true}\x1e",
        ),
        (
            HubMessage::Ack(Ack { sequence_id: 1394 }),
            "{\"type\":8,\"sequenceId\":1394}\x1e",
        ),
        (
            HubMessage::Sequence(Sequence { sequence_id: 1234 }),
            "{\"type\":9,\"sequenceId\":1234}\x1e",
        ),
    ]
}

fn decode_str(s: &str) -> Result<Option<HubMessage>, ProtocolError> {
    P.decode(s.as_bytes())
}

#[test]
fn encodes_every_message_type_exactly() {
    for (msg, wire) in cases() {
        assert_eq!(P.encode_to_bytes(&msg), wire.as_bytes(), "{msg:?}");
    }
}

#[test]
fn decodes_every_message_type() {
    for (msg, wire) in cases() {
        let (payload, used) = P.next_record(wire.as_bytes(), 1 << 20).unwrap().unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(P.decode(payload).unwrap(), Some(msg));
    }
}

#[test]
fn decodes_pretty_printed_spec_examples_in_any_property_order() {
    let msg = decode_str(
        r#"{
            "arguments": [42, "Test Message"],
            "target": "Send",
            "headers": { "Foo": "Bar" },
            "invocationId": "123",
            "type": 1
        }"#,
    )
    .unwrap();
    let expected = HubMessage::Invocation(Invocation {
        headers: headers(&[("Foo", "Bar")]),
        ..invocation(Some("123"), "Send", vec![json!(42), json!("Test Message")])
    });
    assert_eq!(msg, Some(expected));
}

#[test]
fn lenient_where_the_reference_parsers_are() {
    // Unknown properties are ignored, `type` may be written as 1.0, null means absent.
    let msg = decode_str(r#"{"type":1.0,"future":{"x":[1]},"invocationId":null,"target":"A","arguments":[]}"#).unwrap();
    assert_eq!(msg, Some(HubMessage::Invocation(invocation(None, "A", vec![]))));
    // An empty invocation id means non-blocking.
    let msg = decode_str(r#"{"type":1,"invocationId":"","target":"A","arguments":[]}"#).unwrap();
    assert_eq!(msg, Some(HubMessage::Invocation(invocation(None, "A", vec![]))));
    // Close without error, allowReconnect false.
    let msg = decode_str(r#"{"type":7,"error":null,"allowReconnect":false}"#).unwrap();
    assert_eq!(msg, Some(HubMessage::Close(Close::default())));
}

#[test]
fn unknown_message_types_are_ignored() {
    assert_eq!(decode_str(r#"{"type":10,"whatever":true}"#).unwrap(), None);
    assert_eq!(decode_str(r#"{"type":0}"#).unwrap(), None);
    assert_eq!(decode_str(r#"{"type":-1}"#).unwrap(), None);
}

#[test]
fn reports_missing_and_ill_typed_properties() {
    let err = |s: &str| decode_str(s).unwrap_err().to_string();
    assert_eq!(err(r#"{"target":"A"}"#), "Missing required property 'type'.");
    assert_eq!(err(r#"{"type":"1"}"#), "Expected 'type' to be of type Number.");
    assert_eq!(
        err(r#"{"type":1,"arguments":[]}"#),
        "Missing required property 'target'."
    );
    assert_eq!(
        err(r#"{"type":1,"target":5,"arguments":[]}"#),
        "Expected 'target' to be of type String."
    );
    assert_eq!(
        err(r#"{"type":1,"target":"A"}"#),
        "Missing required property 'arguments'."
    );
    assert_eq!(
        err(r#"{"type":1,"target":"A","arguments":{}}"#),
        "Expected 'arguments' to be of type Array."
    );
    assert_eq!(
        err(r#"{"type":1,"target":"A","arguments":[],"streamIds":[1]}"#),
        "Expected 'streamIds' to be of type Array of String."
    );
    assert_eq!(
        err(r#"{"type":4,"target":"A","arguments":[]}"#),
        "Missing required property 'invocationId'."
    );
    assert_eq!(
        err(r#"{"type":2,"invocationId":"1"}"#),
        "Missing required property 'item'."
    );
    assert_eq!(
        err(r#"{"type":2,"item":1}"#),
        "Missing required property 'invocationId'."
    );
    assert_eq!(
        err(r#"{"type":3,"invocationId":"","result":1}"#),
        "Missing required property 'invocationId'."
    );
    assert_eq!(
        err(r#"{"type":3,"invocationId":"1","result":42,"error":"It didn't work!"}"#),
        "The 'error' and 'result' properties are mutually exclusive."
    );
    assert_eq!(err(r#"{"type":5}"#), "Missing required property 'invocationId'.");
    assert_eq!(
        err(r#"{"type":5,"invocationId":"1","headers":{"a":1}}"#),
        "Expected 'headers' to be of type Object with String values."
    );
    assert_eq!(
        err(r#"{"type":7,"allowReconnect":"yes"}"#),
        "Expected 'allowReconnect' to be of type Boolean."
    );
    assert_eq!(err(r#"{"type":8}"#), "Missing required property 'sequenceId'.");
    assert_eq!(
        err(r#"{"type":9,"sequenceId":1.5}"#),
        "Expected 'sequenceId' to be of type Integer."
    );
}

#[test]
fn rejects_non_objects_and_invalid_json() {
    for bad in ["", "  ", "[1]", "42", "null", "\"x\""] {
        assert!(
            matches!(decode_str(bad), Err(ProtocolError::InvalidPayload(_))),
            "{bad:?}"
        );
    }
    for bad in ["{", "{\"type\":1,}", "{\"type\":6}x", "{\"type\":6,\"type\":6}"] {
        assert!(matches!(decode_str(bad), Err(ProtocolError::InvalidJson(_))), "{bad:?}");
    }
    assert!(P.decode(b"{\"type\":6,\"x\":\"\xff\"}").is_err());
}

#[test]
fn splits_several_records_in_one_frame() {
    let frame = b"{\"type\":6}\x1e{\"type\":5,\"invocationId\":\"1\"}\x1e{\"type\":6";
    let mut rest = &frame[..];
    let mut decoded = Vec::new();
    while let Some((payload, used)) = P.next_record(rest, 1024).unwrap() {
        decoded.push(P.decode(payload).unwrap().unwrap());
        rest = &rest[used..];
    }
    assert_eq!(decoded.len(), 2);
    assert_eq!(decoded[0], HubMessage::Ping);
    assert_eq!(rest, b"{\"type\":6");
}

#[test]
fn strings_are_escaped_and_unicode_survives() {
    let msg = HubMessage::Invocation(invocation(
        Some("a\"b"),
        "Sénd\u{1e}",
        vec![json!("line\nbreak \u{1F600}")],
    ));
    let wire = P.encode_to_bytes(&msg);
    // The separator inside a string is escaped, so the record ends at the real one.
    assert_eq!(wire.iter().filter(|&&b| b == 0x1e).count(), 1);
    let (payload, _) = P.next_record(&wire, 1024).unwrap().unwrap();
    assert_eq!(P.decode(payload).unwrap(), Some(msg));
}
