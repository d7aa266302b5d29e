use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn message(body: ClusterBody) -> ClusterMessage {
    ClusterMessage {
        origin: NodeId::from("node-a"),
        hub: HubName::from("chat"),
        body,
    }
}

fn samples() -> Vec<ClusterMessage> {
    let targets = [
        Target::All,
        Target::Group("g:1 {x}".into()),
        Target::User("user-é".into()),
        Target::Connection("c1".into()),
    ];
    let mut out = Vec::new();
    for target in targets {
        out.push(message(ClusterBody::Deliver {
            target: target.clone(),
            except: vec!["c2".into(), "c3".into()],
            payload: Bytes::from_static(b"{\"type\":1}\x1e"),
            trace: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        }));
        out.push(message(ClusterBody::Deliver {
            target: target.clone(),
            except: Vec::new(),
            payload: Bytes::from(vec![0u8; 300]),
            trace: None,
        }));
        out.push(message(ClusterBody::AddToGroup {
            target: target.clone(),
            group: "room".into(),
            ack: None,
        }));
        out.push(message(ClusterBody::AddToGroup {
            target: target.clone(),
            group: "room".into(),
            ack: Some(u64::MAX),
        }));
        out.push(message(ClusterBody::RemoveFromGroup {
            target: target.clone(),
            group: "".into(),
            ack: Some(1),
        }));
        out.push(message(ClusterBody::Close {
            target: target.clone(),
            except: vec!["c9".into()],
            reason: Some("bye".into()),
            ack: Some(300),
        }));
        out.push(message(ClusterBody::Close {
            target,
            except: Vec::new(),
            reason: None,
            ack: None,
        }));
    }
    out.push(message(ClusterBody::Reply {
        to: NodeId::from("n9"),
        connection: ConnectionId::from("c7"),
        payload: Bytes::from_static(b"{\"type\":3,\"invocationId\":\"n1|x\",\"result\":1}\x1e"),
    }));
    out.push(message(ClusterBody::Ack {
        to: "node-é".into(),
        id: 42,
    }));
    out
}

#[test]
fn every_message_kind_round_trips() {
    for msg in samples() {
        let (origin, event) = decode(encode_message(&msg)).expect("decodes");
        assert_eq!(origin, msg.origin);
        assert_eq!(event, BackplaneEvent::Message(msg));
    }
}

#[test]
fn node_down_round_trips() {
    let node = NodeId::from("node-b");
    let removed = vec![
        ConnectionRecord {
            id: "c1".into(),
            node: node.clone(),
            hub: "chat".into(),
            user: Some("alice".into()),
            transport: "WebSockets".into(),
            since_ms: 1_732_000_000_123,
        },
        ConnectionRecord {
            id: "c2".into(),
            node: node.clone(),
            hub: "rooms".into(),
            user: None,
            transport: "LongPolling".into(),
            since_ms: 0,
        },
    ];
    let origin = NodeId::from("node-a");
    let (from, event) = decode(encode_node_down(&origin, &node, &removed)).expect("decodes");
    assert_eq!(from, origin);
    let swept_by = origin.clone();
    assert_eq!(
        event,
        BackplaneEvent::NodeDown {
            node,
            swept_by,
            removed
        }
    );
}

#[test]
fn a_group_send_is_compact() {
    let msg = message(ClusterBody::Deliver {
        target: Target::Group("room-42".into()),
        except: Vec::new(),
        payload: Bytes::from_static(b"0123456789"),
        trace: None,
    });
    // version, kind, 3 strings with one-byte lengths, target tag, count, payload, no trace.
    assert_eq!(encode_message(&msg).len(), 2 + 7 + 5 + 1 + 8 + 1 + 11 + 1);
}

#[test]
fn the_payload_is_a_slice_of_the_frame() {
    let msg = message(ClusterBody::Deliver {
        target: Target::All,
        except: Vec::new(),
        payload: Bytes::from(vec![7u8; 1000]),
        trace: None,
    });
    let frame = encode_message(&msg);
    let range = frame.as_ptr_range();
    let (_, event) = decode(frame.clone()).expect("decodes");
    let BackplaneEvent::Message(ClusterMessage {
        body: ClusterBody::Deliver { payload, .. },
        ..
    }) = event
    else {
        panic!("not a delivery: {event:?}");
    };
    assert!(range.contains(&payload.as_ptr()));
}

#[test]
fn every_truncation_is_an_error() {
    for msg in samples() {
        let frame = encode_message(&msg);
        for len in 0..frame.len() {
            assert!(decode(frame.slice(..len)).is_err(), "prefix of {len} bytes of {msg:?}");
        }
    }
}

#[test]
fn malformed_frames_are_refused() {
    let frame = encode_message(&samples()[0]).to_vec();

    let mut version = frame.clone();
    version[0] = 9;
    assert_eq!(decode(version.into()), Err(DecodeError::Version(9)));

    let mut previous = frame.clone();
    previous[0] = 1;
    assert_eq!(
        decode(previous.into()),
        Err(DecodeError::Version(1)),
        "frames without command ids"
    );
    let mut untraced = frame.clone();
    untraced[0] = 2;
    assert_eq!(
        decode(untraced.into()),
        Err(DecodeError::Version(2)),
        "frames without trace context"
    );

    let mut kind = frame.clone();
    kind[1] = 77;
    assert_eq!(decode(kind.into()), Err(DecodeError::Kind(77)));

    let mut trailing = frame.clone();
    trailing.push(0);
    assert_eq!(decode(trailing.into()), Err(DecodeError::Trailing(1)));

    // version, kind, origin "x", hub "h", target tag 9.
    let target = vec![3, 1, 1, b'x', 1, b'h', 9];
    assert_eq!(decode(target.into()), Err(DecodeError::Target(9)));

    let utf8 = vec![3, 1, 1, 0xff];
    assert_eq!(decode(utf8.into()), Err(DecodeError::Utf8));

    let varint = vec![3, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    assert_eq!(decode(varint.into()), Err(DecodeError::Varint));

    let huge_length = vec![3, 1, 0xff, 0xff, 0xff, 0xff, 0x0f];
    assert_eq!(decode(huge_length.into()), Err(DecodeError::Truncated));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        // Only a panic would fail: errors are the expected outcome.
        let _ = decode(Bytes::from(bytes));
    }

    #[test]
    fn arbitrary_deliveries_round_trip(
        origin in ".{0,20}",
        hub in "[a-z]{1,10}",
        group in ".{0,30}",
        except in proptest::collection::vec(".{0,12}", 0..4),
        payload in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let msg = ClusterMessage {
            origin: origin.into(),
            hub: hub.into(),
            body: ClusterBody::Deliver {
                target: Target::Group(group.into()),
                except: except.into_iter().map(ConnectionId::from).collect(),
                payload: payload.into(),
                trace: None,
            },
        };
        let (_, event) = decode(encode_message(&msg)).expect("decodes");
        prop_assert_eq!(event, BackplaneEvent::Message(msg));
    }
}
