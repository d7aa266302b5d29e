//! Differential test: the frame reader against tungstenite's server-side
//! reader (a well-kept RFC 6455 implementation), on generated client frames,
//! valid and not. Both must agree on where the stream fails and with which
//! close code (1002 / 1007 / 1009, or the client's own code on a Close), on
//! the pings, and on the data payload.
//!
//! Differences by design, kept out of the generator: hubwire streams a
//! message's bytes as they come while tungstenite hands out whole messages (so
//! an unfinished message's bytes are compared as a prefix); a header declaring
//! more than the limit that also breaks a rule (a continuation outside a
//! message, say) is 1009 for tungstenite, which checks the size first, and
//! 1002 for hubwire, which checks the first two bytes first (the only
//! mismatch allowed, and only in a stream with such a header); and a control frame's length is always in the 7-bit
//! field (hubwire refuses a 16- or 64-bit one at once, as longer than 125, as
//! RFC 6455's minimal-length rule allows; tungstenite reads it).
#![allow(clippy::unwrap_used)]

use std::io::{self, Read, Write};

use bytes::BytesMut;
use proptest::prelude::*;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Error, Message, WebSocket};

use super::{Control, FrameReader, CLOSE_INVALID_DATA, CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG};

const LIMIT: usize = 1024;

/// One generated frame.
#[derive(Debug, Clone)]
struct Spec {
    fin: bool,
    rsv: u8,
    opcode: u8,
    masked: bool,
    /// Length field form: 0 minimal, 1 always 16-bit, 2 always 64-bit.
    form: u8,
    payload: Vec<u8>,
    /// Declare this length instead and send no payload (a frame too large).
    huge: Option<u64>,
}

impl Spec {
    fn bytes(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.fin) << 7 | self.rsv << 4 | self.opcode);
        let mask_bit = if self.masked { 0x80 } else { 0 };
        let len = self.huge.unwrap_or(self.payload.len() as u64);
        match (self.form, len) {
            (0, 0..=125) => out.push(mask_bit | len as u8),
            (0 | 1, 0..=0xffff) => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        if self.masked {
            out.extend_from_slice(&mask);
        }
        if self.huge.is_none() {
            let key = if self.masked { mask } else { [0; 4] };
            out.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
    }
}

/// Payloads: UTF-8 text (possibly cut), arbitrary bytes, close bodies.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    let close_code = prop_oneof![
        Just(1000u16),
        Just(1001),
        Just(3000),
        Just(4999),
        Just(1005),
        Just(999),
        Just(5000),
        any::<u16>()
    ];
    prop_oneof![
        4 => "\\PC{0,40}".prop_map(String::into_bytes),
        2 => ("\\PC{1,20}", any::<prop::sample::Index>()).prop_map(|(s, cut)| {
            let bytes = s.into_bytes();
            let at = cut.index(bytes.len() + 1);
            bytes[..at].to_vec()
        }),
        2 => proptest::collection::vec(any::<u8>(), 0..200),
        2 => (close_code, "\\PC{0,20}").prop_map(|(code, reason)| {
            let mut body = code.to_be_bytes().to_vec();
            body.extend_from_slice(reason.as_bytes());
            body
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..2),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    let opcode = prop_oneof![3 => Just(0u8), 4 => Just(1u8), 3 => Just(2u8), 1 => Just(8u8), 2 => Just(9u8), 1 => Just(10u8), 1 => 0u8..16];
    (
        prop::bool::weighted(0.7),
        prop_oneof![20 => Just(0u8), 1 => 1u8..8],
        opcode,
        prop::bool::weighted(0.97),
        prop_oneof![8 => Just(0u8), 1 => 1u8..3],
        payload(),
        prop_oneof![30 => Just(None), 1 => (LIMIT as u64 + 1..u64::MAX).prop_map(Some)],
    )
        .prop_map(|(fin, rsv, opcode, masked, form, payload, huge)| {
            let huge = huge.filter(|_| opcode < 8 && rsv == 0 && masked);
            let form = if opcode < 8 { form } else { 0 };
            Spec {
                fin,
                rsv,
                opcode,
                masked,
                form,
                payload,
                huge,
            }
        })
}

/// What a reader made of a stream: data bytes, pings, pongs, and the code of
/// the Close frame the server answers with (if the stream ended in one).
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    data: Vec<u8>,
    pings: Vec<Vec<u8>>,
    pongs: usize,
    close: Option<u16>,
}

fn hubwire(input: &[u8], step: usize) -> Outcome {
    let mut reader = FrameReader::new(LIMIT);
    let mut data = BytesMut::new();
    let mut outcome = Outcome::default();
    'chunks: for chunk in input.chunks(step) {
        let mut rest = chunk;
        while !rest.is_empty() {
            match reader.feed(rest, &mut data) {
                Ok((used, control)) => {
                    rest = &rest[used..];
                    match control {
                        Some(Control::Ping(payload)) => outcome.pings.push(payload),
                        Some(Control::Pong) => outcome.pongs += 1,
                        Some(Control::Close(code)) => {
                            outcome.close = Some(code.unwrap_or(CLOSE_NORMAL));
                            break 'chunks;
                        }
                        None => {}
                    }
                }
                Err(e) => {
                    outcome.close = Some(e.close_code());
                    break 'chunks;
                }
            }
        }
    }
    outcome.data = data.to_vec();
    outcome
}

/// The input, then "no more for now" (not an end of stream).
struct Input<'a>(&'a [u8]);

impl Read for Input<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

impl Write for Input<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn reference(input: &[u8]) -> Outcome {
    let config = WebSocketConfig::default()
        .max_frame_size(Some(LIMIT))
        .max_message_size(None);
    let mut socket = WebSocket::from_raw_socket(Input(input), Role::Server, Some(config));
    let mut outcome = Outcome::default();
    loop {
        match socket.read() {
            Ok(Message::Text(text)) => outcome.data.extend_from_slice(text.as_bytes()),
            Ok(Message::Binary(bytes)) => outcome.data.extend_from_slice(&bytes),
            Ok(Message::Ping(payload)) => outcome.pings.push(payload.to_vec()),
            Ok(Message::Pong(_)) => outcome.pongs += 1,
            Ok(Message::Close(frame)) => {
                // tungstenite answers a code a client may not send with 1002.
                outcome.close = Some(frame.map_or(CLOSE_NORMAL, |f| {
                    if f.code.is_allowed() {
                        u16::from(f.code)
                    } else {
                        CLOSE_PROTOCOL_ERROR
                    }
                }));
                return outcome;
            }
            Ok(Message::Frame(_)) => unreachable!("raw frames are not read"),
            Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return outcome,
            Err(Error::Protocol(_)) => {
                return Outcome {
                    close: Some(CLOSE_PROTOCOL_ERROR),
                    ..outcome
                }
            }
            Err(Error::Utf8(_)) => {
                return Outcome {
                    close: Some(CLOSE_INVALID_DATA),
                    ..outcome
                }
            }
            Err(Error::Capacity(_)) => {
                return Outcome {
                    close: Some(CLOSE_TOO_BIG),
                    ..outcome
                }
            }
            Err(e) => panic!("unexpected tungstenite error: {e}"),
        }
    }
}

/// Whether the stream, up to its first Close frame, leaves a data message unfinished.
fn ends_inside_a_message(specs: &[Spec]) -> bool {
    let until_close = specs.iter().position(|s| s.opcode == 8).map_or(specs, |i| &specs[..i]);
    until_close.iter().rev().find(|s| s.opcode < 8).is_some_and(|s| !s.fin)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn agrees_with_tungstenite(specs in proptest::collection::vec(spec(), 1..8), step in 1usize..40) {
        let mut input = Vec::new();
        for spec in &specs {
            spec.bytes(&mut input);
        }
        let ours = hubwire(&input, step);
        let theirs = reference(&input);
        let size_or_rule = ours.close == Some(CLOSE_PROTOCOL_ERROR)
            && theirs.close == Some(CLOSE_TOO_BIG)
            && specs.iter().any(|s| s.huge.is_some());
        if !size_or_rule {
            prop_assert_eq!(ours.close, theirs.close, "close code; ours {:?}, tungstenite {:?}", ours, theirs);
        }
        prop_assert_eq!(&ours.pings, &theirs.pings);
        prop_assert_eq!(ours.pongs, theirs.pongs);
        // Data is compared where both accepted it: hubwire streams it, so it
        // also has the bytes of a message that has not ended.
        if ours.close.is_none() || ours.close == theirs.close && !matches!(ours.close, Some(CLOSE_PROTOCOL_ERROR | CLOSE_INVALID_DATA | CLOSE_TOO_BIG)) {
            if ends_inside_a_message(&specs) {
                prop_assert!(ours.data.starts_with(&theirs.data));
            } else {
                prop_assert_eq!(&ours.data, &theirs.data);
            }
        }
    }
}
