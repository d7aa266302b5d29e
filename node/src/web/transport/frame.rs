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
//!
//! Text messages are checked as UTF-8 while they stream through, across frame
//! and read boundaries; what a check carries over is the at most 3 bytes of a
//! code point cut at a boundary. Close frames are checked too (a code the
//! client may send, a UTF-8 reason). Each [`FrameError`] names the close code
//! the server answers with ([`FrameError::close_code`]).

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

/// Close code: normal closure.
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code: protocol error.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code: a text message (or close reason) that is not UTF-8.
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// Close code: a message too big to process.
pub const CLOSE_TOO_BIG: u16 = 1009;

/// A complete control frame from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Ping with its payload (to be echoed in a Pong).
    Ping(Vec<u8>),
    /// Pong (a heartbeat, nothing to do).
    Pong,
    /// Close, with the status code if the client gave one (a valid one:
    /// see [`close_code_is_valid`]).
    Close(Option<u16>),
}

/// Whether a client may send `code` in a Close frame (RFC 6455 §7.4): the
/// defined codes except those reserved for local use (1005, 1006, 1015) and
/// 1004, the IANA-registered 1012–1014, and the application ranges
/// 3000–4999.
pub fn close_code_is_valid(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
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
    /// A text message or a close reason that is not UTF-8.
    #[error("websocket text is not valid UTF-8")]
    InvalidUtf8,
}

impl FrameError {
    /// The status code of the Close frame that answers this error.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::Protocol(_) => CLOSE_PROTOCOL_ERROR,
            Self::TooLarge { .. } => CLOSE_TOO_BIG,
            Self::InvalidUtf8 => CLOSE_INVALID_DATA,
        }
    }
}

/// UTF-8 validation of the current text message.
#[derive(Debug, Clone, Copy, Default)]
struct Utf8 {
    /// The current message is a text message.
    text: bool,
    /// The start of a code point cut at a read or frame boundary.
    pending: [u8; 3],
    len: u8,
}

impl Utf8 {
    /// Checks the next payload bytes of the message.
    fn check(&mut self, mut bytes: &[u8]) -> Result<(), FrameError> {
        if !self.text || bytes.is_empty() {
            return Ok(());
        }
        if self.len > 0 {
            // Complete the cut code point first; its lead byte gives its width.
            let have = usize::from(self.len);
            let width = match self.pending[0] {
                0x00..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            let take = (width - have).min(bytes.len());
            let mut point = [0u8; 4];
            point[..have].copy_from_slice(&self.pending[..have]);
            point[have..have + take].copy_from_slice(&bytes[..take]);
            self.len = 0;
            self.keep_tail(&point[..have + take])?;
            if self.len > 0 {
                return Ok(());
            }
            bytes = &bytes[take..];
        }
        self.keep_tail(bytes)
    }

    /// Validates `bytes`, keeping an incomplete code point at their end.
    fn keep_tail(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &bytes[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(FrameError::InvalidUtf8),
        }
    }

    /// The message ended: no code point may be left incomplete.
    fn finish(&mut self) -> Result<(), FrameError> {
        let complete = self.len == 0;
        *self = Self::default();
        if complete {
            Ok(())
        } else {
            Err(FrameError::InvalidUtf8)
        }
    }
}

/// Where the reader is within the current frame.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// Collecting the header (`have` bytes so far).
    Header,
    /// Payload of a data frame: bytes left, mask, position in the mask.
    Data { left: u64, mask: [u8; 4], at: u8 },
    /// Payload of a control frame.
    Control {
        opcode: u8,
        left: usize,
        mask: [u8; 4],
        at: u8,
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
    utf8: Utf8,
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
            utf8: Utf8::default(),
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
                        if let Some(control) = self.finish_if_empty()? {
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
                    self.utf8.check(&data[start..])?;
                    used += take;
                    let left = left - take as u64;
                    self.part = if left == 0 {
                        self.end_data_frame()?;
                        Part::Header
                    } else {
                        Part::Data {
                            left,
                            mask,
                            at: next_at(at, take),
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
                        return Ok((used, Some(self.take_control(opcode)?)));
                    }
                    self.part = Part::Control {
                        opcode,
                        left: left - take,
                        mask,
                        at: next_at(at, take),
                    };
                }
            }
        }
        Ok((used, None))
    }

    /// A frame with an empty payload is complete with its header (a control
    /// frame is then returned).
    fn finish_if_empty(&mut self) -> Result<Option<Control>, FrameError> {
        match self.part {
            Part::Control { opcode, left: 0, .. } => {
                self.part = Part::Header;
                self.take_control(opcode).map(Some)
            }
            Part::Data { left: 0, .. } => {
                self.part = Part::Header;
                self.end_data_frame().map(|()| None)
            }
            _ => Ok(None),
        }
    }

    /// A data frame's payload is through: the end of a message for the UTF-8 check if it was the last.
    fn end_data_frame(&mut self) -> Result<(), FrameError> {
        if self.fragmented {
            Ok(())
        } else {
            self.utf8.finish()
        }
    }

    fn take_control(&mut self, opcode: u8) -> Result<Control, FrameError> {
        let payload = std::mem::take(&mut self.control);
        match opcode {
            OP_PING => Ok(Control::Ping(payload)),
            OP_PONG => Ok(Control::Pong),
            _ => parse_close(&payload).map(Control::Close),
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
                u64::from_be_bytes(bytes)
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
        if length >> 63 != 0 {
            return Err(FrameError::Protocol("payload length with the most significant bit set"));
        }
        match opcode {
            OP_TEXT => self.utf8.text = true,
            OP_BINARY => self.utf8.text = false,
            _ => {}
        }
        self.fragmented = !fin;
        Ok(Some(Part::Data {
            left: length,
            mask,
            at: 0,
        }))
    }
}

/// A Close frame's payload: nothing, or a code a client may send and a UTF-8 reason.
fn parse_close(payload: &[u8]) -> Result<Option<u16>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::Protocol("close payload of one byte")),
        [high, low, reason @ ..] => {
            // The reason first, as tungstenite does: a frame wrong in both ways gets 1007.
            std::str::from_utf8(reason).map_err(|_| FrameError::InvalidUtf8)?;
            let code = u16::from_be_bytes([*high, *low]);
            if !close_code_is_valid(code) {
                return Err(FrameError::Protocol("invalid close code"));
            }
            Ok(Some(code))
        }
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

/// The position in the mask `taken` bytes after `at` (a `u8`, so that a
/// reader stays 72 bytes with the UTF-8 state in it).
fn next_at(at: u8, taken: usize) -> u8 {
    ((usize::from(at) + taken) % 4) as u8
}

/// XORs `bytes` with `mask`, starting at position `at` of the mask.
fn unmask(bytes: &mut [u8], mask: [u8; 4], at: u8) {
    let at = usize::from(at);
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

// Explicit paths: they resolve the same when node/fuzz compiles this file in.
#[cfg(test)]
#[path = "frame/differential.rs"]
mod differential;
#[cfg(test)]
#[path = "frame/tests.rs"]
mod tests;
