//! Record framing: how one message payload is delimited inside a byte stream.
//!
//! - Text (JSON and every handshake): the payload is followed by the ASCII
//!   record separator `0x1E`. JSON text never contains a raw `0x1E` (control
//!   characters must be escaped inside strings), so the first separator ends
//!   the record.
//! - Binary (MessagePack): the payload is preceded by its length as a varint,
//!   7 bits per byte, least-significant group first, high bit = "more bytes
//!   follow". At most 5 bytes; the largest accepted length is `0x7FFF_FFFF`
//!   (2 GiB - 1), exactly as ASP.NET's `BinaryMessageParser`. Non-minimal
//!   encodings (e.g. `80 00` for 0) are accepted like the reference parser.
//!
//! Splitting never copies: it returns a sub-slice of the input plus the number
//! of bytes consumed, and `Ok(None)` when more bytes are needed.

use bytes::{BufMut, BytesMut};

use crate::error::FrameError;
use crate::RECORD_SEPARATOR;

/// Longest varint length prefix accepted.
const MAX_PREFIX_LEN: usize = 5;

/// A split result: the payload and the number of bytes consumed from the buffer.
pub(crate) type Split<'a> = Result<Option<(&'a [u8], usize)>, FrameError>;

/// Splits the next `0x1E`-terminated record off the front of `buf`.
pub(crate) fn next_text_record(buf: &[u8], max_len: usize) -> Split<'_> {
    match buf.iter().position(|&b| b == RECORD_SEPARATOR) {
        Some(end) if end > max_len => Err(FrameError::TooLarge { limit: max_len }),
        Some(end) => Ok(Some((&buf[..end], end + 1))),
        None if buf.len() > max_len => Err(FrameError::TooLarge { limit: max_len }),
        None => Ok(None),
    }
}

/// Splits the next varint-length-prefixed record off the front of `buf`.
pub(crate) fn next_binary_record(buf: &[u8], max_len: usize) -> Split<'_> {
    let mut length: u64 = 0;
    let mut prefix_len = 0;
    loop {
        let Some(&byte) = buf.get(prefix_len) else {
            // Ran out of bytes in the middle of the prefix (or the buffer is empty).
            return Ok(None);
        };
        length |= u64::from(byte & 0x7f) << (7 * prefix_len);
        prefix_len += 1;
        let more = byte & 0x80 != 0;
        if prefix_len == MAX_PREFIX_LEN && (more || byte > 0x07) {
            return Err(FrameError::InvalidLengthPrefix);
        }
        if !more {
            break;
        }
    }
    // The prefix is at most 31 bits, so this conversion only fails on 16-bit targets.
    let length = usize::try_from(length).map_err(|_| FrameError::InvalidLengthPrefix)?;
    if length > max_len {
        return Err(FrameError::TooLarge { limit: max_len });
    }
    let total = prefix_len + length;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((&buf[prefix_len..total], total)))
}

/// Number of bytes the varint prefix for `len` occupies.
pub(crate) fn length_prefix_len(mut len: usize) -> usize {
    let mut n = 1;
    while len >= 0x80 {
        len >>= 7;
        n += 1;
    }
    n
}

/// Writes the varint length prefix for a payload of `len` bytes into `dst`,
/// which must be exactly [`length_prefix_len`]`(len)` bytes long.
pub(crate) fn write_length_prefix(mut len: usize, dst: &mut [u8]) {
    for slot in dst.iter_mut() {
        // Masked to 7 bits, so the cast is lossless.
        let low = (len & 0x7f) as u8;
        len >>= 7;
        *slot = if len > 0 { low | 0x80 } else { low };
    }
}

/// Appends the record separator.
pub(crate) fn write_record_separator(out: &mut BytesMut) {
    out.put_u8(RECORD_SEPARATOR);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn prefix(len: usize) -> Vec<u8> {
        let mut v = vec![0; length_prefix_len(len)];
        write_length_prefix(len, &mut v);
        v
    }

    #[test]
    fn varint_matches_reference_examples() {
        // Examples from BinaryMessageParser.cs / the spec.
        assert_eq!(prefix(0x35), [0x35]);
        assert_eq!(prefix(0x1480), [0x80, 0x29]);
        assert_eq!(prefix(0), [0x00]);
        assert_eq!(prefix(127), [0x7f]);
        assert_eq!(prefix(128), [0x80, 0x01]);
        assert_eq!(prefix(0x7fff_ffff), [0xff, 0xff, 0xff, 0xff, 0x07]);
    }

    #[test]
    fn binary_split_waits_and_splits() {
        let mut buf = prefix(3);
        buf.extend_from_slice(b"abc");
        buf.extend_from_slice(&prefix(1));
        assert_eq!(next_binary_record(&[], 10).unwrap(), None);
        assert_eq!(next_binary_record(&buf[..3], 10).unwrap(), None);
        let (payload, used) = next_binary_record(&buf, 10).unwrap().unwrap();
        assert_eq!((payload, used), (&b"abc"[..], 4));
        assert_eq!(next_binary_record(&buf[used..], 10).unwrap(), None);
        assert_eq!(next_binary_record(&[0x80, 0x80], 10).unwrap(), None);
        assert_eq!(next_binary_record(&[0x80, 0x00], 10).unwrap(), Some((&[][..], 2)));
    }

    #[test]
    fn binary_split_rejects_bad_prefixes() {
        let too_long = [0xff, 0xff, 0xff, 0xff, 0x80];
        assert_eq!(
            next_binary_record(&too_long, usize::MAX),
            Err(FrameError::InvalidLengthPrefix)
        );
        let over_2gb = [0x80, 0x80, 0x80, 0x80, 0x08];
        assert_eq!(
            next_binary_record(&over_2gb, usize::MAX),
            Err(FrameError::InvalidLengthPrefix)
        );
        // Announced length above the limit fails before the payload arrives.
        assert_eq!(
            next_binary_record(&prefix(11), 10),
            Err(FrameError::TooLarge { limit: 10 })
        );
        // The maximum itself is fine.
        assert_eq!(next_binary_record(&prefix(10), 10).unwrap(), None);
    }

    #[test]
    fn text_split_limits() {
        assert_eq!(next_text_record(b"{}\x1e{", 2).unwrap(), Some((&b"{}"[..], 3)));
        assert_eq!(next_text_record(b"{}", 2).unwrap(), None);
        assert_eq!(next_text_record(b"{} ", 2), Err(FrameError::TooLarge { limit: 2 }));
        assert_eq!(next_text_record(b"{} \x1e", 2), Err(FrameError::TooLarge { limit: 2 }));
        assert_eq!(next_text_record(b"\x1e", 0).unwrap(), Some((&b""[..], 1)));
    }
}
