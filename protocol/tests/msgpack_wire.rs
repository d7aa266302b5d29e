//! MessagePack encoding against the byte examples of the spec and the layouts
//! the JS client and ASP.NET write.
#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use hubwire_protocol::{
    Ack, CancelInvocation, Close, Completion, CompletionOutcome, Headers, HubMessage, Invocation, Protocol,
    ProtocolError, Sequence, StreamItem, Value,
};
use serde_json::json;

const P: Protocol = Protocol::MessagePack;

fn framed(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 128);
    let mut v = vec![payload.len() as u8];
    v.extend_from_slice(payload);
    v
}

fn decode(payload: &[u8]) -> Result<Option<HubMessage>, ProtocolError> {
    P.decode(payload)
}

fn xyz_invocation() -> Invocation {
    Invocation {
        invocation_id: Some("xyz".into()),
        target: "method".into(),
        arguments: vec![json!(42)],
        ..Invocation::default()
    }
}

fn completion(outcome: CompletionOutcome) -> HubMessage {
    HubMessage::Completion(Completion {
        headers: Headers::new(),
        invocation_id: "xyz".into(),
        outcome,
    })
}

/// Messages and their exact payloads (spec examples where our encoder matches them byte for byte).
fn cases() -> Vec<(HubMessage, Vec<u8>)> {
    let mut with_headers = xyz_invocation();
    with_headers.headers = [("x", "y"), ("z", "z")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    vec![
        (
            HubMessage::Invocation(xyz_invocation()),
            b"\x96\x01\x80\xa3xyz\xa6method\x91\x2a\x90".to_vec(),
        ),
        (
            HubMessage::Invocation(Invocation {
                invocation_id: None,
                ..xyz_invocation()
            }),
            b"\x96\x01\x80\xc0\xa6method\x91\x2a\x90".to_vec(),
        ),
        (
            HubMessage::Invocation(with_headers),
            b"\x96\x01\x82\xa1x\xa1y\xa1z\xa1z\xa3xyz\xa6method\x91\x2a\x90".to_vec(),
        ),
        (
            HubMessage::StreamInvocation(Invocation {
                stream_ids: vec!["a".into()],
                ..xyz_invocation()
            }),
            b"\x96\x04\x80\xa3xyz\xa6method\x91\x2a\x91\xa1a".to_vec(),
        ),
        (
            HubMessage::StreamItem(StreamItem {
                headers: Headers::new(),
                invocation_id: "xyz".into(),
                item: json!(42),
            }),
            b"\x94\x02\x80\xa3xyz\x2a".to_vec(),
        ),
        (
            completion(CompletionOutcome::Error("Error".into())),
            b"\x95\x03\x80\xa3xyz\x01\xa5Error".to_vec(),
        ),
        (completion(CompletionOutcome::Void), b"\x94\x03\x80\xa3xyz\x02".to_vec()),
        (
            completion(CompletionOutcome::Result(json!(42))),
            b"\x95\x03\x80\xa3xyz\x03\x2a".to_vec(),
        ),
        (
            completion(CompletionOutcome::Result(Value::Null)),
            b"\x95\x03\x80\xa3xyz\x03\xc0".to_vec(),
        ),
        (
            HubMessage::CancelInvocation(CancelInvocation {
                headers: Headers::new(),
                invocation_id: "xyz".into(),
            }),
            b"\x93\x05\x80\xa3xyz".to_vec(),
        ),
        (HubMessage::Ping, b"\x91\x06".to_vec()),
        (
            HubMessage::Close(Close {
                error: Some("xyz".into()),
                allow_reconnect: true,
            }),
            b"\x93\x07\xa3xyz\xc3".to_vec(),
        ),
        (HubMessage::Close(Close::default()), b"\x93\x07\xc0\xc2".to_vec()),
        (HubMessage::Ack(Ack { sequence_id: 36 }), b"\x92\x08\x24".to_vec()),
        (
            HubMessage::Sequence(Sequence { sequence_id: -1 }),
            b"\x92\x09\xff".to_vec(),
        ),
    ]
}

#[test]
fn encodes_every_message_type_exactly() {
    for (msg, payload) in cases() {
        assert_eq!(P.encode_to_bytes(&msg), framed(&payload), "{msg:?}");
    }
}

#[test]
fn decodes_every_message_type() {
    for (msg, payload) in cases() {
        let wire = framed(&payload);
        let (record, used) = P.next_record(&wire, 1 << 20).unwrap().unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(decode(record).unwrap(), Some(msg));
    }
}

#[test]
fn decodes_spec_examples_written_differently() {
    // Spec's Close without allowReconnect, and Ack/Sequence with a uint8 id.
    let close = decode(b"\x92\x07\xa3xyz").unwrap();
    assert_eq!(
        close,
        Some(HubMessage::Close(Close {
            error: Some("xyz".into()),
            allow_reconnect: false
        }))
    );
    assert_eq!(
        decode(b"\x92\x08\xcc\x24").unwrap(),
        Some(HubMessage::Ack(Ack { sequence_id: 36 }))
    );
    assert_eq!(
        decode(b"\x92\x09\xcc\x13").unwrap(),
        Some(HubMessage::Sequence(Sequence { sequence_id: 19 }))
    );
    // The JS client's Close: [7, null].
    assert_eq!(
        decode(b"\x92\x07\xc0").unwrap(),
        Some(HubMessage::Close(Close::default()))
    );
}

#[test]
fn accepts_older_and_newer_layouts() {
    // Five-element invocation from clients without upload streaming.
    assert_eq!(
        decode(b"\x95\x01\x80\xa3xyz\xa6method\x91\x2a").unwrap(),
        Some(HubMessage::Invocation(xyz_invocation()))
    );
    // Extra trailing elements from a future protocol version are ignored.
    assert_eq!(
        decode(b"\x97\x01\x80\xa3xyz\xa6method\x91\x2a\x90\xc3").unwrap(),
        Some(HubMessage::Invocation(xyz_invocation()))
    );
    assert_eq!(decode(b"\x92\x06\x01").unwrap(), Some(HubMessage::Ping));
    // An empty invocation id means non-blocking.
    let msg = decode(b"\x96\x01\x80\xa0\xa6method\x91\x2a\x90").unwrap();
    assert_eq!(
        msg,
        Some(HubMessage::Invocation(Invocation {
            invocation_id: None,
            ..xyz_invocation()
        }))
    );
}

#[test]
fn unknown_message_types_are_ignored() {
    assert_eq!(decode(b"\x91\x0a").unwrap(), None);
    assert_eq!(decode(b"\x93\x63\x80\xc0").unwrap(), None);
    assert_eq!(decode(b"\x91\xff").unwrap(), None);
}

#[test]
fn reports_malformed_messages() {
    let err = |p: &[u8]| decode(p).unwrap_err().to_string();
    assert!(matches!(decode(b""), Err(ProtocolError::InvalidPayload(_))));
    assert!(matches!(decode(b"\x06"), Err(ProtocolError::InvalidPayload(_))));
    assert!(matches!(decode(b"\x90"), Err(ProtocolError::InvalidPayload(_))));
    assert_eq!(err(b"\x91\xa1x"), "Expected 'messageType' to be of type Integer.");
    assert_eq!(
        err(b"\x94\x01\x80\xc0\xa6method"),
        "Invalid payload for Invocation message."
    );
    assert_eq!(err(b"\x93\x02\x80\xa3xyz"), "Invalid payload for StreamItem message.");
    assert_eq!(
        err(b"\x94\x03\x80\xa3xyz\x03"),
        "Invalid payload for Completion message."
    );
    assert_eq!(err(b"\x94\x03\x80\xa3xyz\x04"), "Invalid invocation result kind.");
    assert_eq!(
        err(b"\x96\x04\x80\xc0\xa6method\x90\x90"),
        "Missing required property 'invocationId'."
    );
    assert_eq!(
        err(b"\x94\x02\x80\xc0\x2a"),
        "Missing required property 'invocationId'."
    );
    assert_eq!(err(b"\x93\x05\xc0\xa3xyz"), "Expected 'headers' to be of type Map.");
    assert_eq!(
        err(b"\x93\x05\x81\xa1x\x01\xa3xyz"),
        "Expected 'headers' to be of type String."
    );
    assert_eq!(
        err(b"\x96\x01\x80\xc0\x01\x90\x90"),
        "Expected 'target' to be of type String."
    );
    assert_eq!(
        err(b"\x93\x07\xc0\x01"),
        "Expected 'allowReconnect' to be of type Boolean."
    );
    assert_eq!(
        err(b"\x92\x08\xcf\xff\xff\xff\xff\xff\xff\xff\xff"),
        "Expected 'sequenceId' to be of type Int64."
    );
    // Truncated data, bad UTF-8, reserved marker.
    for bad in [
        &b"\x96\x01\x80\xa3xy"[..],
        b"\x94\x02\x80\xa3xyz",
        b"\x94\x02\x80\xa1\xff\x01",
        b"\x94\x02\x80\xa1x\xc1",
        b"\x94\x02\x80\xa1x\xdd\xff\xff\xff\xff",
    ] {
        assert!(
            matches!(decode(bad), Err(ProtocolError::InvalidMessagePack(_))),
            "{bad:?}"
        );
    }
}

fn item_of(value_bytes: &[u8]) -> Result<Value, ProtocolError> {
    let mut payload = b"\x94\x02\x80\xa1x".to_vec();
    payload.extend_from_slice(value_bytes);
    match decode(&payload)? {
        Some(HubMessage::StreamItem(si)) => Ok(si.item),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn value_mapping() {
    assert_eq!(
        item_of(b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff").unwrap(),
        json!(u64::MAX)
    );
    assert_eq!(item_of(b"\xd3\x80\0\0\0\0\0\0\0").unwrap(), json!(i64::MIN));
    assert_eq!(item_of(b"\xca\x3f\xc0\0\0").unwrap(), json!(1.5));
    // NaN has no JSON form.
    assert_eq!(item_of(b"\xcb\x7f\xf8\0\0\0\0\0\0").unwrap(), Value::Null);
    // bin -> base64 string.
    assert_eq!(item_of(b"\xc4\x03foo").unwrap(), json!("Zm9v"));
    // Timestamp ext (-1), 32-bit seconds form.
    assert_eq!(
        item_of(b"\xd6\xff\x5f\x5e\x10\x00").unwrap(),
        json!("2020-09-13T12:26:40Z")
    );
    // Non-string map keys are stringified.
    assert_eq!(
        item_of(b"\x83\x01\xa1a\xc3\xa1b\xc0\xa1c").unwrap(),
        json!({"1": "a", "true": "b", "null": "c"})
    );
    assert_eq!(item_of(b"\xd4\x01\x00"), Err(ProtocolError::UnsupportedExtension(1)));
    // Nesting is bounded.
    let deep: Vec<u8> = std::iter::repeat_n(0x91, 200).chain([0xc0]).collect();
    assert!(matches!(item_of(&deep), Err(ProtocolError::InvalidMessagePack(_))));
    let ok: Vec<u8> = std::iter::repeat_n(0x91, 100).chain([0xc0]).collect();
    assert!(item_of(&ok).is_ok());
}

#[test]
fn long_records_get_a_multi_byte_prefix() {
    let msg = HubMessage::StreamItem(StreamItem {
        headers: Headers::new(),
        invocation_id: "1".into(),
        item: json!("x".repeat(300)),
    });
    let mut out = BytesMut::from(&b"prefix"[..]);
    P.encode(&msg, &mut out);
    P.encode(&HubMessage::Ping, &mut out);
    let buf = &out[6..];
    let (payload, used) = P.next_record(buf, 1 << 20).unwrap().unwrap();
    assert_eq!(&buf[..2], [payload.len() as u8 | 0x80, (payload.len() >> 7) as u8]);
    assert_eq!(decode(payload).unwrap(), Some(msg));
    let (payload, _) = P.next_record(&buf[used..], 1 << 20).unwrap().unwrap();
    assert_eq!(decode(payload).unwrap(), Some(HubMessage::Ping));
}
