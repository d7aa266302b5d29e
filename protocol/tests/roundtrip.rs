//! Property tests: every message round-trips through both encodings, record
//! splitting is independent of how the stream is chunked, and arbitrary bytes
//! never panic the decoders.
#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use hubwire_protocol::{
    parse_handshake_request, parse_handshake_response, Ack, CancelInvocation, Close, Completion, CompletionOutcome,
    Headers, HubMessage, Invocation, Protocol, Sequence, StreamItem, Value,
};
use proptest::prelude::*;

const MAX: usize = 1 << 20;

/// Any finite float: `float_roundtrip` makes serde_json parse them exactly.
fn float() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |f| f.is_finite())
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        float().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn id() -> impl Strategy<Value = String> {
    ".{1,10}"
}

fn headers() -> impl Strategy<Value = Headers> {
    prop::collection::btree_map(".{0,6}", ".{0,6}", 0..3)
}

fn invocation(id_required: bool) -> impl Strategy<Value = Invocation> {
    let invocation_id = if id_required {
        id().prop_map(Some).boxed()
    } else {
        prop::option::of(id()).boxed()
    };
    (
        headers(),
        invocation_id,
        ".{0,12}",
        prop::collection::vec(value(), 0..4),
        prop::collection::vec(id(), 0..3),
    )
        .prop_map(|(headers, invocation_id, target, arguments, stream_ids)| Invocation {
            headers,
            invocation_id,
            target,
            arguments,
            stream_ids,
        })
}

fn message() -> impl Strategy<Value = HubMessage> {
    let outcome = prop_oneof![
        Just(CompletionOutcome::Void),
        value().prop_map(CompletionOutcome::Result),
        ".{0,12}".prop_map(CompletionOutcome::Error),
    ];
    prop_oneof![
        invocation(false).prop_map(HubMessage::Invocation),
        invocation(true).prop_map(HubMessage::StreamInvocation),
        (headers(), id(), value()).prop_map(|(headers, invocation_id, item)| {
            HubMessage::StreamItem(StreamItem {
                headers,
                invocation_id,
                item,
            })
        }),
        (headers(), id(), outcome).prop_map(|(headers, invocation_id, outcome)| {
            HubMessage::Completion(Completion {
                headers,
                invocation_id,
                outcome,
            })
        }),
        (headers(), id()).prop_map(|(headers, invocation_id)| {
            HubMessage::CancelInvocation(CancelInvocation { headers, invocation_id })
        }),
        Just(HubMessage::Ping),
        (prop::option::of(".{0,12}"), any::<bool>())
            .prop_map(|(error, allow_reconnect)| { HubMessage::Close(Close { error, allow_reconnect }) }),
        any::<i64>().prop_map(|sequence_id| HubMessage::Ack(Ack { sequence_id })),
        any::<i64>().prop_map(|sequence_id| HubMessage::Sequence(Sequence { sequence_id })),
    ]
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![Just(Protocol::Json), Just(Protocol::MessagePack)]
}

/// Feeds `chunks` one by one into a growing buffer, draining complete records.
fn feed(p: Protocol, chunks: &[&[u8]]) -> Vec<HubMessage> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some((payload, used)) = p.next_record(&buf, MAX).unwrap() {
            out.extend(p.decode(payload).unwrap());
            let _ = buf.split_to(used);
        }
    }
    assert!(buf.is_empty(), "left over: {buf:?}");
    out
}

/// Exercises every parser on `bytes`; only panics would fail the test.
fn poke(bytes: &[u8]) {
    for p in [Protocol::Json, Protocol::MessagePack] {
        let _ = p.decode(bytes);
        let mut rest = bytes;
        while let Ok(Some((payload, used))) = p.next_record(rest, 4096) {
            let _ = p.decode(payload);
            rest = &rest[used..];
        }
    }
    let _ = parse_handshake_request(bytes);
    let _ = parse_handshake_response(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_message_round_trips(p in protocol(), msg in message()) {
        let wire = p.encode_to_bytes(&msg);
        let (payload, used) = p.next_record(&wire, MAX).unwrap().unwrap();
        prop_assert_eq!(used, wire.len());
        prop_assert_eq!(p.decode(payload).unwrap(), Some(msg));
    }

    #[test]
    fn chunking_does_not_matter(
        p in protocol(),
        msgs in prop::collection::vec(message(), 0..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut stream = BytesMut::new();
        for msg in &msgs {
            p.encode(msg, &mut stream);
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        let chunks: Vec<&[u8]> = points.windows(2).map(|w| &stream[w[0]..w[1]]).collect();
        prop_assert_eq!(feed(p, &chunks), msgs);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        poke(&bytes);
    }

    #[test]
    fn mutated_records_never_panic(
        p in protocol(),
        msg in message(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut wire = p.encode_to_bytes(&msg).to_vec();
        for (at, byte) in flips {
            let i = at.index(wire.len());
            wire[i] = byte;
        }
        poke(&wire);
    }
}
