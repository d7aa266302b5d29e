//! Unit tests of the frame reader, and the Autobahn TestSuite's framing
//! cases (sections 1–7) that apply to a server's reader, one test per section:
//! 1 payload lengths, 2 pings and pongs, 3 reserved bits, 4 opcodes,
//! 5 fragmentation, 6 UTF-8, 7 close frames. (What a server sends back is
//! covered by e2e/test/websocket.test.mjs.)
#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;

/// A client frame as a browser would send it.
fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Feeds everything, in chunks of `step`, collecting data and controls.
fn run(reader: &mut FrameReader, input: &[u8], step: usize) -> Result<(Vec<u8>, Vec<Control>), FrameError> {
    let mut data = BytesMut::new();
    let mut controls = Vec::new();
    for chunk in input.chunks(step.max(1)) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let (used, control) = reader.feed(rest, &mut data)?;
            controls.extend(control);
            rest = &rest[used..];
        }
    }
    Ok((data.to_vec(), controls))
}

#[test]
fn text_binary_and_fragments_are_one_byte_stream() {
    let mut input = client_frame(true, OP_TEXT, b"{\"type\":6}\x1e", [1, 2, 3, 4]);
    input.extend(client_frame(false, OP_BINARY, b"abc", [9, 8, 7, 6]));
    input.extend(client_frame(true, OP_CONTINUATION, b"def", [5, 5, 5, 5]));
    let (data, controls) = run(&mut FrameReader::new(1024), &input, 1).unwrap();
    assert_eq!(data, b"{\"type\":6}\x1eabcdef");
    assert!(controls.is_empty());
}

#[test]
fn control_frames_in_the_middle_of_a_fragmented_message() {
    let mut input = client_frame(false, OP_TEXT, b"ab", [1, 1, 1, 1]);
    input.extend(client_frame(true, OP_PING, b"hi", [3, 1, 4, 1]));
    input.extend(client_frame(true, OP_PONG, b"", [0, 0, 0, 0]));
    input.extend(client_frame(true, OP_CONTINUATION, b"cd", [2, 2, 2, 2]));
    input.extend(client_frame(true, OP_CLOSE, &1001u16.to_be_bytes(), [7, 7, 7, 7]));
    let (data, controls) = run(&mut FrameReader::new(1024), &input, 3).unwrap();
    assert_eq!(data, b"abcd");
    assert_eq!(
        controls,
        vec![Control::Ping(b"hi".to_vec()), Control::Pong, Control::Close(Some(1001))]
    );
}

#[test]
fn extended_lengths() {
    for len in [125, 126, 127, 65_535, 65_536, 200_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let input = client_frame(true, OP_BINARY, &payload, [0xde, 0xad, 0xbe, 0xef]);
        let (data, _) = run(&mut FrameReader::new(1 << 20), &input, 4096).unwrap();
        assert_eq!(data, payload, "length {len}");
    }
}

#[test]
fn rule_breaks_are_errors() {
    let unmasked = vec![0x81, 0x01, b'a'];
    let reserved_bit = vec![0xc1, 0x81, 0, 0, 0, 0, b'a'];
    let reserved_opcode = client_frame(true, 0x3, b"a", [0; 4]);
    let lone_continuation = client_frame(true, OP_CONTINUATION, b"a", [0; 4]);
    let fragmented_ping = client_frame(false, OP_PING, b"a", [0; 4]);
    let long_ping = client_frame(true, OP_PING, &[0; 126], [0; 4]);
    let mut interleaved = client_frame(false, OP_TEXT, b"a", [0; 4]);
    interleaved.extend(client_frame(true, OP_TEXT, b"b", [0; 4]));
    for (name, input) in [
        ("unmasked", unmasked),
        ("reserved bit", reserved_bit),
        ("reserved opcode", reserved_opcode),
        ("lone continuation", lone_continuation),
        ("fragmented ping", fragmented_ping),
        ("long ping", long_ping),
        ("new message inside a fragmented one", interleaved),
    ] {
        let result = run(&mut FrameReader::new(1024), &input, 1);
        assert!(matches!(result, Err(FrameError::Protocol(_))), "{name}: {result:?}");
        assert_eq!(result.unwrap_err().close_code(), CLOSE_PROTOCOL_ERROR);
    }
}

#[test]
fn too_large_fails_at_the_header() {
    let input = client_frame(true, OP_TEXT, &[b'x'; 2000], [1, 2, 3, 4]);
    let mut reader = FrameReader::new(1000);
    let mut data = BytesMut::new();
    let result = reader.feed(&input[..8], &mut data);
    assert_eq!(
        result,
        Err(FrameError::TooLarge {
            size: 2000,
            limit: 1000
        })
    );
    assert!(data.is_empty());
    assert_eq!(result.unwrap_err().close_code(), CLOSE_TOO_BIG);
}

#[test]
fn server_headers() {
    assert_eq!(header(OP_TEXT, 5), ([0x81, 5, 0, 0, 0, 0, 0, 0, 0, 0], 2));
    let (h, n) = header(OP_BINARY, 300);
    assert_eq!(&h[..n], &[0x82, 126, 1, 44]);
    let (h, n) = header(OP_BINARY, 70_000);
    assert_eq!(&h[..n], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
}

proptest! {
    #[test]
    fn any_split_of_any_frames_gives_the_payloads(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..6),
        masks in proptest::collection::vec(any::<[u8; 4]>(), 6),
        step in 1usize..64,
    ) {
        let mut input = Vec::new();
        let mut expected = Vec::new();
        for (i, payload) in payloads.iter().enumerate() {
            input.extend(client_frame(true, OP_BINARY, payload, masks[i]));
            input.extend(client_frame(true, OP_PING, &payload[..payload.len().min(125)], masks[5 - i]));
            expected.extend_from_slice(payload);
        }
        let (data, controls) = run(&mut FrameReader::new(1024), &input, step).unwrap();
        prop_assert_eq!(data, expected);
        prop_assert_eq!(controls.len(), payloads.len());
    }

    #[test]
    fn random_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..400), step in 1usize..50) {
        let _ = run(&mut FrameReader::new(256), &input, step);
    }
}

/// The first error of feeding `input` in chunks of `step`, if any.
fn error_of(input: &[u8], step: usize) -> Option<FrameError> {
    run(&mut FrameReader::new(1 << 20), input, step).err()
}

fn frames(list: &[(bool, u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (fin, opcode, payload)) in list.iter().enumerate() {
        out.extend(client_frame(*fin, *opcode, payload, [i as u8, 0x5a, 0xa5, 0xff]));
    }
    out
}

#[test]
fn autobahn_1_framing_text_and_binary_of_every_length_class() {
    // 1.1.1–1.1.8 (text) and 1.2.1–1.2.8 (binary): 0, 125, 126, 127, 128,
    // 65535 and 65536 bytes, and 65536 bytes arriving 997 at a time.
    for opcode in [OP_TEXT, OP_BINARY] {
        for (len, step) in [
            (0, 1),
            (125, 7),
            (126, 7),
            (127, 7),
            (128, 7),
            (65_535, 4096),
            (65_536, 4096),
            (65_536, 997),
        ] {
            let payload = vec![if opcode == OP_TEXT { b'*' } else { 0xfe }; len];
            let (data, controls) = run(
                &mut FrameReader::new(1 << 20),
                &client_frame(true, opcode, &payload, [1, 2, 3, 4]),
                step,
            )
            .unwrap();
            assert_eq!(data, payload, "opcode {opcode} length {len}");
            assert!(controls.is_empty());
        }
    }
}

#[test]
fn autobahn_2_pings_and_pongs() {
    let binary: Vec<u8> = (0..=255u8).cycle().take(125).collect();
    // 2.1 empty ping, 2.2 text payload, 2.3 binary payload, 2.4 125 bytes,
    // 2.6 125 bytes one byte at a time.
    for (payload, step) in [
        (&b""[..], 1),
        (b"Hello, world!", 3),
        (&[0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff], 2),
        (&binary, 64),
        (&binary, 1),
    ] {
        let (_, controls) = run(
            &mut FrameReader::new(1024),
            &client_frame(true, OP_PING, payload, [4, 3, 2, 1]),
            step,
        )
        .unwrap();
        assert_eq!(controls, vec![Control::Ping(payload.to_vec())]);
    }
    // 2.5 a ping of 126 bytes fails the connection.
    assert_eq!(
        error_of(&client_frame(true, OP_PING, &[b'x'; 126], [0; 4]), 1).map(|e| e.close_code()),
        Some(CLOSE_PROTOCOL_ERROR)
    );
    // 2.7 unsolicited empty pong, 2.8 pong with payload, 2.9 pong then ping: ignored / answered.
    let input = frames(&[
        (true, OP_PONG, b""),
        (true, OP_PONG, b"unsolicited"),
        (true, OP_PING, b"ping"),
    ]);
    let (_, controls) = run(&mut FrameReader::new(1024), &input, 5).unwrap();
    assert_eq!(
        controls,
        vec![Control::Pong, Control::Pong, Control::Ping(b"ping".to_vec())]
    );
    // 2.10 / 2.11 ten pings in a row, whole and byte by byte: ten Pings, in order.
    let pings: Vec<Vec<u8>> = (0..10).map(|i| format!("payload-{i}").into_bytes()).collect();
    let input: Vec<u8> = pings
        .iter()
        .flat_map(|p| client_frame(true, OP_PING, p, [9, 9, 9, 9]))
        .collect();
    for step in [input.len(), 1] {
        let (_, controls) = run(&mut FrameReader::new(1024), &input, step).unwrap();
        assert_eq!(controls, pings.iter().cloned().map(Control::Ping).collect::<Vec<_>>());
    }
}

#[test]
fn autobahn_3_reserved_bits_fail_the_connection() {
    // 3.1–3.7: RSV = 1..7 on a text, binary, ping, pong and close frame; the
    // valid text frame before the bad one still gets through (3.2–3.4).
    for (rsv, opcode) in [
        (1, OP_TEXT),
        (2, OP_TEXT),
        (3, OP_TEXT),
        (4, OP_BINARY),
        (5, OP_PING),
        (6, OP_CLOSE),
        (7, OP_PONG),
    ] {
        let mut input = client_frame(true, OP_TEXT, b"Hello, world!", [1, 1, 1, 1]);
        let mut bad = client_frame(true, opcode, b"", [2, 2, 2, 2]);
        bad[0] |= rsv << 4;
        input.extend(bad);
        let mut reader = FrameReader::new(1024);
        let mut data = BytesMut::new();
        let mut rest = &input[..];
        let error = loop {
            match reader.feed(rest, &mut data) {
                Ok((used, _)) => rest = &rest[used..],
                Err(e) => break e,
            }
        };
        assert_eq!(error.close_code(), CLOSE_PROTOCOL_ERROR, "rsv {rsv} opcode {opcode}");
        assert_eq!(&data[..], b"Hello, world!");
    }
}

#[test]
fn autobahn_4_reserved_opcodes_fail_the_connection() {
    // 4.1.1–4.1.5 non-control opcodes 3–7, 4.2.1–4.2.5 control opcodes 11–15,
    // empty and with a payload, alone and after a valid frame.
    for opcode in (3..=7).chain(11..=15) {
        for payload in [&b""[..], b"reserved"] {
            let input = frames(&[(true, OP_TEXT, b"ok"), (true, opcode, payload), (true, OP_PING, b"")]);
            assert_eq!(
                error_of(&input, 1).map(|e| e.close_code()),
                Some(CLOSE_PROTOCOL_ERROR),
                "opcode {opcode}"
            );
        }
    }
}

#[test]
fn autobahn_5_fragmentation() {
    // 5.1 / 5.2 fragmented ping and pong.
    for opcode in [OP_PING, OP_PONG] {
        let input = frames(&[(false, opcode, b"frag"), (true, OP_CONTINUATION, b"ment")]);
        assert_eq!(error_of(&input, 1).map(|e| e.close_code()), Some(CLOSE_PROTOCOL_ERROR));
    }
    // 5.3–5.5 a text message in two fragments, also byte by byte; 5.6–5.8 with
    // a ping between them; 5.19 / 5.20 five fragments with pings in between.
    let cases: [&[(bool, u8, &[u8])]; 3] = [
        &[(false, OP_TEXT, b"frag"), (true, OP_CONTINUATION, b"ment1")],
        &[
            (false, OP_TEXT, b"frag"),
            (true, OP_PING, b"ping"),
            (true, OP_CONTINUATION, b"ment1"),
        ],
        &[
            (false, OP_TEXT, b"f1"),
            (false, OP_CONTINUATION, b"f2"),
            (true, OP_PING, b"p1"),
            (false, OP_CONTINUATION, b"f3"),
            (false, OP_CONTINUATION, b"f4"),
            (true, OP_PING, b"p2"),
            (true, OP_CONTINUATION, b"f5"),
        ],
    ];
    for case in cases {
        let expected: Vec<u8> = case
            .iter()
            .filter(|f| f.1 < OP_CLOSE)
            .flat_map(|f| f.2.to_vec())
            .collect();
        for step in [1, 3, 1000] {
            let (data, controls) = run(&mut FrameReader::new(1024), &frames(case), step).unwrap();
            assert_eq!(data, expected);
            assert_eq!(controls.len(), case.iter().filter(|f| f.1 == OP_PING).count());
        }
    }
    // 5.9–5.14 continuation frames (final or not) with no message started,
    // 5.15–5.18 a continuation or a new message after a message ended.
    let bad: [&[(bool, u8, &[u8])]; 6] = [
        &[(true, OP_CONTINUATION, b"c"), (true, OP_TEXT, b"t")],
        &[(false, OP_CONTINUATION, b"c"), (true, OP_TEXT, b"t")],
        &[
            (false, OP_TEXT, b"a"),
            (true, OP_CONTINUATION, b"b"),
            (false, OP_CONTINUATION, b"c"),
            (true, OP_CONTINUATION, b"d"),
        ],
        &[(false, OP_TEXT, b"a"), (false, OP_TEXT, b"b")],
        &[(false, OP_TEXT, b"a"), (true, OP_TEXT, b"b")],
        &[(false, OP_BINARY, b"a"), (true, OP_BINARY, b"b")],
    ];
    for case in bad {
        for step in [1, 1000] {
            assert_eq!(
                error_of(&frames(case), step).map(|e| e.close_code()),
                Some(CLOSE_PROTOCOL_ERROR),
                "{case:?}"
            );
        }
    }
}

fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// Autobahn 6.x sequences (after Markus Kuhn's UTF-8 test file): (case, bytes, valid).
fn utf8_cases() -> Vec<(&'static str, Vec<u8>, bool)> {
    let kosme = "ce ba e1 bd b9 cf 83 ce bc ce b5";
    [
        ("6.1 empty", "", true),
        ("6.2 / 6.5 κόσμε", kosme, true),
        (
            "6.3 κόσμε with a surrogate",
            &format!("{kosme} ed a0 80 65 64 69 74 65 64"),
            false,
        ),
        (
            "6.4 fail fast: above U+10FFFF",
            &format!("{kosme} f4 90 80 80 65 64 69 74 65 64"),
            false,
        ),
        ("6.7 first of each length", "00 c2 80 e0 a0 80 f0 90 80 80", true),
        ("6.8 first 5- and 6-byte", "f8 88 80 80 80 fc 84 80 80 80 80", false),
        ("6.9 last of each length", "7f df bf ef bf bf f4 8f bf bf", true),
        ("6.10 last 5-byte", "fb bf bf bf bf", false),
        ("6.11 boundaries", "ed 9f bf ee 80 80 ef bf bd", true),
        ("6.11 above U+10FFFF", "f4 90 80 80", false),
        ("6.12 lone continuation", "80", false),
        ("6.12 continuations", "80 bf 80 bf", false),
        ("6.13 lonely 2-byte start", "c0 20", false),
        ("6.13 lonely 3-byte start", "e0 20", false),
        ("6.13 lonely 4-byte start", "f0 20", false),
        ("6.14 2-byte, last byte missing", "df", false),
        ("6.14 3-byte, last byte missing", "ef bf", false),
        ("6.14 4-byte, last byte missing", "f4 8f bf", false),
        ("6.15 concatenated incomplete", "c0 e0 80 f0 80 80 df ef bf", false),
        ("6.16 impossible bytes", "fe", false),
        ("6.16 impossible bytes", "ff fe fe ff", false),
        ("6.17 overlong slash", "c0 af", false),
        ("6.17 overlong slash, 3 bytes", "e0 80 af", false),
        ("6.17 overlong slash, 4 bytes", "f0 80 80 af", false),
        ("6.18 maximum overlong", "c1 bf", false),
        ("6.18 maximum overlong, 3 bytes", "e0 9f bf", false),
        ("6.18 maximum overlong, 4 bytes", "f0 8f bf bf", false),
        ("6.19 single surrogate", "ed a0 80", false),
        ("6.19 single surrogate", "ed bf bf", false),
        ("6.20 paired surrogates", "ed a0 80 ed b0 80", false),
        ("6.22 noncharacters", "ef bf be ef bf bf f0 9f bf be f4 8f bf be", true),
        ("6.23 replacement character", "ef bf bd", true),
    ]
    .into_iter()
    .map(|(name, bytes, valid)| (name, hex(bytes), valid))
    .collect()
}

#[test]
fn autobahn_6_utf8_in_one_frame_and_split_across_fragments_and_reads() {
    for (name, bytes, valid) in utf8_cases() {
        let mut inputs = vec![client_frame(true, OP_TEXT, &bytes, [7, 6, 5, 4])];
        // Split into two fragments at every position (6.2.x, 6.3.2, 6.6.x),
        // and into one fragment per byte.
        for at in 0..=bytes.len() {
            inputs.push(frames(&[
                (false, OP_TEXT, &bytes[..at]),
                (true, OP_CONTINUATION, &bytes[at..]),
            ]));
        }
        let mut per_byte: Vec<(bool, u8, &[u8])> = vec![(false, OP_TEXT, b"")];
        per_byte.extend(bytes.chunks(1).map(|b| (false, OP_CONTINUATION, b)));
        per_byte.push((true, OP_CONTINUATION, b""));
        inputs.push(frames(&per_byte));
        for input in &inputs {
            for step in [1, 2, 5, input.len()] {
                match run(&mut FrameReader::new(1024), input, step) {
                    Ok((data, _)) => {
                        assert!(valid, "{name}: accepted");
                        assert_eq!(data, bytes, "{name}");
                    }
                    Err(e) => {
                        assert!(!valid, "{name}: refused ({e})");
                        assert_eq!(e, FrameError::InvalidUtf8, "{name}");
                        assert_eq!(e.close_code(), CLOSE_INVALID_DATA);
                    }
                }
            }
        }
        // Not checked in binary messages.
        let (data, _) = run(
            &mut FrameReader::new(1024),
            &client_frame(true, OP_BINARY, &bytes, [1; 4]),
            1,
        )
        .unwrap();
        assert_eq!(data, bytes);
    }
}

#[test]
fn autobahn_6_4_invalid_utf8_fails_fast() {
    // 6.4.1–6.4.4: the error comes with the bad bytes, before the message (or
    // even its frame) is complete.
    let mut reader = FrameReader::new(1024);
    let mut data = BytesMut::new();
    let first = client_frame(false, OP_TEXT, &hex("ce ba e1 bd b9 cf 83 ce bc ce b5 f4 90"), [3; 4]);
    assert_eq!(reader.feed(&first, &mut data), Err(FrameError::InvalidUtf8));
    let mut reader = FrameReader::new(1024);
    let frame = client_frame(true, OP_TEXT, &hex("ce ba f4 90 80 80 65 64 69 74 65 64"), [3; 4]);
    assert_eq!(reader.feed(&frame[..6 + 4], &mut data), Err(FrameError::InvalidUtf8));
    // A cut code point is fine until the message ends, and a control frame may
    // come between its two halves.
    let mut reader = FrameReader::new(1024);
    let input = frames(&[
        (false, OP_TEXT, &hex("e2 82")),
        (true, OP_PING, b""),
        (true, OP_CONTINUATION, &hex("ac")),
    ]);
    assert_eq!(run(&mut reader, &input, 1).unwrap().0, "€".as_bytes());
}

#[test]
fn autobahn_7_close_frames() {
    let close = |payload: &[u8]| client_frame(true, OP_CLOSE, payload, [8, 7, 6, 5]);
    let with_code = |code: u16, reason: &[u8]| {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason);
        close(&payload)
    };
    // 7.1.2–7.1.5: the reader stops at the Close frame; what follows it is not read.
    let mut input = frames(&[(false, OP_TEXT, b"fragment")]);
    input.extend(with_code(1000, b""));
    input.extend(frames(&[
        (true, OP_PING, b""),
        (true, OP_TEXT, b"after"),
        (true, OP_CONTINUATION, b"x"),
    ]));
    let mut reader = FrameReader::new(1024);
    let mut data = BytesMut::new();
    let (used, control) = reader.feed(&input, &mut data).unwrap();
    assert_eq!(control, Some(Control::Close(Some(1000))));
    assert_eq!(used, client_frame(false, OP_TEXT, b"fragment", [0; 4]).len() + 8);
    // 7.3.1 empty, 7.3.3 code only, 7.3.4 code and reason, 7.3.5 a 123-byte reason.
    for (input, code) in [
        (close(b""), None),
        (with_code(1000, b""), Some(1000)),
        (with_code(1000, b"Hello World!"), Some(1000)),
        (with_code(1000, &[b'*'; 123]), Some(1000)),
    ] {
        let (_, controls) = run(&mut FrameReader::new(1024), &input, 1).unwrap();
        assert_eq!(controls, vec![Control::Close(code)]);
    }
    // 7.3.2 a one-byte payload, 7.3.6 a 126-byte payload: protocol errors.
    for input in [close(b"\x03"), with_code(1000, &[b'*'; 124])] {
        assert_eq!(error_of(&input, 1).map(|e| e.close_code()), Some(CLOSE_PROTOCOL_ERROR));
    }
    // 7.5.1 a reason that is not UTF-8.
    assert_eq!(
        error_of(
            &with_code(
                1000,
                &hex("ce ba e1 bd b9 cf 83 ce bc ce b5 ed a0 80 65 64 69 74 65 64")
            ),
            1
        ),
        Some(FrameError::InvalidUtf8)
    );
    // 7.7.1–7.7.13 valid codes (and the IANA-registered 1012–1014).
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999,
    ] {
        let (_, controls) = run(&mut FrameReader::new(1024), &with_code(code, b"reason"), 3).unwrap();
        assert_eq!(controls, vec![Control::Close(Some(code))], "code {code}");
    }
    // 7.9.1–7.9.9 invalid codes (1005, 1006, 1015 are for local use only), 7.13.1–7.13.2 above 4999.
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65_535] {
        assert_eq!(
            error_of(&with_code(code, b""), 1),
            Some(FrameError::Protocol("invalid close code")),
            "code {code}"
        );
    }
}

#[cfg(target_pointer_width = "64")]
#[test]
fn the_reader_with_its_utf8_state_stays_72_bytes() {
    // What every idle connection keeps (docs/decisions.md); the UTF-8 check
    // fits into what the reader already took.
    assert!(
        std::mem::size_of::<FrameReader>() <= 72,
        "{}",
        std::mem::size_of::<FrameReader>()
    );
}
