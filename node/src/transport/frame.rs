//! WebSocket framing (RFC 6455) for the server side, written for memory: the
//! reader is a streaming state machine that keeps at most a frame header
//! (14 bytes) and a control frame's payload (≤ 125 bytes) between reads, and
//! unmasks data-frame payload straight into the caller's record buffer. No
//! per-connection read buffer survives a read (docs/decisions.md).
//!
//! SignalR records carry their own delimiters, so the reader does not keep
//! message boundaries: the payload of text, binary and continuation frames is
//! one byte stream. It still enforces the frame rules a server must: clients
//! mask, no reserved bits or opcodes, control frames short and unfragmented,
//! continuations only inside a fragmented message, a data frame size limit.

use bytes::BytesMut;

/// Opcode of a continuation frame.
pub const OP_CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const OP_PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const OP_PONG: u8 = 0xA;

/// The longest control frame payload the RFC allows.
const MAX_CONTROL: usize = 125;

/// A complete control frame from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Ping with its payload (to be echoed in a Pong).
    Ping(Vec<u8>),
    /// Pong (a heartbeat, nothing to do).
    Pong,
    /// Close, with the status code if the client gave one.
    Close(Option<u16>),
}

/// Why the client's byte stream is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A rule of RFC 6455 was broken.
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    /// A data frame longer than the limit.
    #[error("websocket frame of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The declared payload length.
        size: u64,
        /// The configured limit.
        limit: usize,
    },
}

/// Where the reader is within the current frame.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// Collecting the header (`have` bytes so far).
    Header,
    /// Payload of a data frame: bytes left, mask, position in the mask.
    Data { left: u64, mask: [u8; 4], at: usize },
    /// Payload of a control frame.
    Control {
        opcode: u8,
        left: usize,
        mask: [u8; 4],
        at: usize,
    },
}

/// The streaming frame reader of one connection.
#[derive(Debug)]
pub struct FrameReader {
    header: [u8; 14],
    have: u8,
    part: Part,
    /// Inside a fragmented data message (its last frame not seen yet).
    fragmented: bool,
    control: Vec<u8>,
    limit: usize,
}

impl FrameReader {
    /// A reader refusing data frames longer than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            header: [0; 14],
            have: 0,
            part: Part::Header,
            fragmented: false,
            control: Vec::new(),
            limit,
        }
    }

    /// Consumes bytes from the front of `input`, appending unmasked data
    /// payload to `data`. Returns how many bytes it consumed and, when it
    /// stopped because a control frame completed, that frame; the caller feeds
    /// the rest again.
    pub fn feed(&mut self, input: &[u8], data: &mut BytesMut) -> Result<(usize, Option<Control>), FrameError> {
        let mut used = 0;
        while used < input.len() {
            match self.part {
                Part::Header => {
                    let byte = input[used];
                    used += 1;
                    self.header[usize::from(self.have)] = byte;
                    self.have += 1;
                    if let Some(part) = self.parse_header()? {
                        self.have = 0;
                        self.part = part;
                        if let Some(control) = self.finish_if_empty() {
                            return Ok((used, Some(control)));
                        }
                    }
                }
                Part::Data { left, mask, at } => {
                    let available = input.len() - used;
                    let take = usize::try_from(left).map_or(available, |left| left.min(available));
                    let start = data.len();
                    data.extend_from_slice(&input[used..used + take]);
                    unmask(&mut data[start..], mask, at);
                    used += take;
                    let left = left - take as u64;
                    self.part = if left == 0 {
                        Part::Header
                    } else {
                        Part::Data {
                            left,
                            mask,
                            at: (at + take) % 4,
                        }
                    };
                }
                Part::Control { opcode, left, mask, at } => {
                    let take = left.min(input.len() - used);
                    let start = self.control.len();
                    self.control.extend_from_slice(&input[used..used + take]);
                    unmask(&mut self.control[start..], mask, at);
                    used += take;
                    if take == left {
                        self.part = Part::Header;
                        return Ok((used, Some(self.take_control(opcode))));
                    }
                    self.part = Part::Control {
                        opcode,
                        left: left - take,
                        mask,
                        at: (at + take) % 4,
                    };
                }
            }
        }
        Ok((used, None))
    }

    /// A frame with an empty payload is complete with its header (a control
    /// frame is then returned).
    fn finish_if_empty(&mut self) -> Option<Control> {
        match self.part {
            Part::Control { opcode, left: 0, .. } => {
                self.part = Part::Header;
                Some(self.take_control(opcode))
            }
            Part::Data { left: 0, .. } => {
                self.part = Part::Header;
                None
            }
            _ => None,
        }
    }

    fn take_control(&mut self, opcode: u8) -> Control {
        let payload = std::mem::take(&mut self.control);
        match opcode {
            OP_PING => Control::Ping(payload),
            OP_PONG => Control::Pong,
            _ => Control::Close((payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))),
        }
    }

    /// Parses the header once it is complete: `None` while bytes are missing.
    fn parse_header(&mut self) -> Result<Option<Part>, FrameError> {
        let have = usize::from(self.have);
        if have < 2 {
            return Ok(None);
        }
        let (b0, b1) = (self.header[0], self.header[1]);
        let extended = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        if have == 2 {
            // Checked as soon as the two bytes are in (a header has at least six),
            // so a bad frame fails at its first bytes.
            check_first_bytes(b0, b1, self.fragmented)?;
        }
        if have < 2 + extended + 4 {
            return Ok(None);
        }
        let length = match extended {
            0 => u64::from(b1 & 0x7f),
            2 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            _ => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&self.header[2..10]);
                let length = u64::from_be_bytes(bytes);
                if length >> 63 != 0 {
                    return Err(FrameError::Protocol("payload length with the most significant bit set"));
                }
                length
            }
        };
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&self.header[2 + extended..6 + extended]);
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        if opcode >= OP_CLOSE {
            let left = usize::try_from(length).unwrap_or(usize::MAX);
            return Ok(Some(Part::Control {
                opcode,
                left,
                mask,
                at: 0,
            }));
        }
        if length > self.limit as u64 {
            return Err(FrameError::TooLarge {
                size: length,
                limit: self.limit,
            });
        }
        self.fragmented = !fin;
        Ok(Some(Part::Data {
            left: length,
            mask,
            at: 0,
        }))
    }
}

/// The checks that need only the first two header bytes.
fn check_first_bytes(b0: u8, b1: u8, fragmented: bool) -> Result<(), FrameError> {
    if b0 & 0x70 != 0 {
        return Err(FrameError::Protocol("reserved bits set without a negotiated extension"));
    }
    if b1 & 0x80 == 0 {
        return Err(FrameError::Protocol("client frames must be masked"));
    }
    let fin = b0 & 0x80 != 0;
    match b0 & 0x0f {
        OP_CONTINUATION if !fragmented => Err(FrameError::Protocol("continuation frame outside a message")),
        OP_TEXT | OP_BINARY if fragmented => Err(FrameError::Protocol("new message inside a fragmented one")),
        OP_CONTINUATION | OP_TEXT | OP_BINARY => Ok(()),
        OP_CLOSE | OP_PING | OP_PONG if !fin => Err(FrameError::Protocol("fragmented control frame")),
        OP_CLOSE | OP_PING | OP_PONG if usize::from(b1 & 0x7f) > MAX_CONTROL => {
            Err(FrameError::Protocol("control frame longer than 125 bytes"))
        }
        OP_CLOSE | OP_PING | OP_PONG => Ok(()),
        _ => Err(FrameError::Protocol("reserved opcode")),
    }
}

/// XORs `bytes` with `mask`, starting at position `at` of the mask.
fn unmask(bytes: &mut [u8], mask: [u8; 4], at: usize) {
    let rotated = u32::from_ne_bytes([mask[at % 4], mask[(at + 1) % 4], mask[(at + 2) % 4], mask[(at + 3) % 4]]);
    let mut chunks = bytes.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let word = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ rotated;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    let rotated = rotated.to_ne_bytes();
    for (byte, m) in chunks.into_remainder().iter_mut().zip(rotated) {
        *byte ^= m;
    }
}

/// The header of an unmasked (server) frame with `fin` set: the bytes and
/// how many of them are used.
pub fn header(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut out = [0u8; 10];
    out[0] = 0x80 | opcode;
    if len < 126 {
        out[1] = len as u8;
        (out, 2)
    } else if let Ok(short) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&short.to_be_bytes());
        (out, 4)
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (out, 10)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
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
}
