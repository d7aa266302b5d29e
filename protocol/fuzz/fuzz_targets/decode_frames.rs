//! Feeds arbitrary bytes to the handshake parsers and to the record-splitting
//! and decoding loop of both protocols. Beyond "never panics", every message
//! that decodes must survive re-encoding unchanged (same protocol), and a
//! MessagePack message must also survive a trip through JSON.
#![no_main]

use hubwire_protocol::{parse_handshake_request, parse_handshake_response, HubMessage, Protocol};
use libfuzzer_sys::fuzz_target;

fn reencode(msg: &HubMessage, via: Protocol) -> HubMessage {
    let wire = via.encode_to_bytes(msg);
    let (payload, used) = via
        .next_record(&wire, usize::MAX)
        .expect("own encoding frames")
        .expect("own encoding is complete");
    assert_eq!(used, wire.len());
    via.decode(payload)
        .expect("own encoding decodes")
        .expect("own encoding has a known type")
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_handshake_request(data);
    let _ = parse_handshake_response(data);
    for protocol in [Protocol::Json, Protocol::MessagePack] {
        let mut rest = data;
        while let Ok(Some((payload, used))) = protocol.next_record(rest, 1 << 16) {
            if let Ok(Some(msg)) = protocol.decode(payload) {
                assert_eq!(reencode(&msg, protocol), msg);
                if protocol == Protocol::MessagePack {
                    assert_eq!(reencode(&msg, Protocol::Json), msg);
                }
            }
            rest = &rest[used..];
        }
    }
});
