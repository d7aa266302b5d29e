//! Handshake request/response parsing and writing.
#![allow(clippy::unwrap_used)]

use hubwire_protocol::{
    encode_handshake_request, encode_handshake_response, parse_handshake_request, parse_handshake_response,
    HandshakeRequest, HubMessage, Protocol, ProtocolError,
};

fn request(protocol: &str, version: u32) -> HandshakeRequest {
    HandshakeRequest {
        protocol: protocol.into(),
        version,
    }
}

#[test]
fn parses_requests_and_reports_consumed_bytes() {
    let buf = b"{\"protocol\":\"messagepack\",\"version\":1}\x1e";
    assert_eq!(
        parse_handshake_request(buf).unwrap(),
        Some((request("messagepack", 1), buf.len()))
    );
    // Pretty-printed, extra properties, any order.
    let buf = b"{ \"version\": 2, \"extra\": [1], \"protocol\": \"json\" }\x1e";
    assert_eq!(
        parse_handshake_request(buf).unwrap(),
        Some((request("json", 2), buf.len()))
    );
}

#[test]
fn leaves_following_hub_messages_in_the_buffer() {
    let buf = b"{\"protocol\":\"json\",\"version\":1}\x1e{\"type\":6}\x1e";
    let (req, used) = parse_handshake_request(buf).unwrap().unwrap();
    assert_eq!(req, request("json", 1));
    let (payload, _) = Protocol::Json.next_record(&buf[used..], 1024).unwrap().unwrap();
    assert_eq!(Protocol::Json.decode(payload).unwrap(), Some(HubMessage::Ping));
}

#[test]
fn waits_for_a_complete_record() {
    assert_eq!(parse_handshake_request(b"").unwrap(), None);
    assert_eq!(
        parse_handshake_request(b"{\"protocol\":\"json\",\"version\":1}").unwrap(),
        None
    );
    assert_eq!(parse_handshake_response(b"{}").unwrap(), None);
}

#[test]
fn rejects_bad_requests() {
    let err = |b: &[u8]| match parse_handshake_request(b) {
        Err(ProtocolError::InvalidHandshake(m)) => m,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(err(b"{\"version\":1}\x1e"), "Missing required property 'protocol'.");
    assert_eq!(
        err(b"{\"protocol\":\"json\"}\x1e"),
        "Missing required property 'version'."
    );
    assert_eq!(
        err(b"{\"protocol\":1,\"version\":1}\x1e"),
        "Expected 'protocol' to be of type String."
    );
    assert_eq!(
        err(b"{\"protocol\":\"json\",\"version\":\"1\"}\x1e"),
        "Expected 'version' to be of type Number."
    );
    assert_eq!(
        err(b"{\"protocol\":\"json\",\"version\":-1}\x1e"),
        "Expected 'version' to be a non-negative integer."
    );
    assert_eq!(err(b"[1]\x1e"), "expected a JSON object");
    // A MessagePack client that skipped the handshake.
    err(b"\x03\x91\x06\x1e");
    err(b"{\"protocol\":\x1e");
}

#[test]
fn protocol_names_and_versions() {
    assert_eq!(Protocol::from_name("json"), Some(Protocol::Json));
    assert_eq!(Protocol::from_name("MessagePack"), Some(Protocol::MessagePack));
    assert_eq!(Protocol::from_name("blazorpack"), None);
    for p in [Protocol::Json, Protocol::MessagePack] {
        assert_eq!(Protocol::from_name(p.name()), Some(p));
        assert_eq!(p.version(), 2);
        assert!(p.is_version_supported(1));
        assert!(p.is_version_supported(2));
        assert!(!p.is_version_supported(3));
    }
    assert!(Protocol::MessagePack.is_binary());
    assert!(!Protocol::Json.is_binary());
}

#[test]
fn encodes_requests_that_parse_back() {
    assert_eq!(
        encode_handshake_request(Protocol::Json),
        &b"{\"protocol\":\"json\",\"version\":2}\x1e"[..]
    );
    let bytes = encode_handshake_request(Protocol::MessagePack);
    assert_eq!(
        parse_handshake_request(&bytes).unwrap(),
        Some((request("messagepack", 2), bytes.len()))
    );
}

#[test]
fn encodes_and_parses_responses() {
    assert_eq!(encode_handshake_response(None), &b"{}\x1e"[..]);
    assert_eq!(encode_handshake_response(Some("")), &b"{}\x1e"[..]);
    let failure = encode_handshake_response(Some("Requested protocol 'messagepack' is not available."));
    assert_eq!(
        failure,
        &b"{\"error\":\"Requested protocol 'messagepack' is not available.\"}\x1e"[..]
    );
    assert_eq!(
        parse_handshake_response(&failure).unwrap(),
        Some((
            Some("Requested protocol 'messagepack' is not available.".into()),
            failure.len()
        ))
    );
    // A successful response followed by a hub message in the same read.
    let buf = b"{}\x1e{\"type\":6}\x1e";
    assert_eq!(parse_handshake_response(buf).unwrap(), Some((None, 3)));
    assert_eq!(
        parse_handshake_response(b"{\"error\":null}\x1e").unwrap(),
        Some((None, 15))
    );
}

#[test]
fn rejects_a_hub_message_in_place_of_the_response() {
    assert_eq!(
        parse_handshake_response(b"{\"type\":6}\x1e"),
        Err(ProtocolError::InvalidHandshake(
            "Expected a handshake response from the server.".into()
        ))
    );
    assert!(parse_handshake_response(b"{\"error\":1}\x1e").is_err());
}
