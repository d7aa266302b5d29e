//! MessagePack writing straight into a [`BytesMut`].
//!
//! Owns: the smallest-form encodings of nil, booleans, integers, floats,
//! strings and container headers, and the encoding of any [`serde_json::Value`]
//! (integers as MessagePack ints — unsigned when non-negative — and other
//! numbers as float64; objects as maps with string keys).
//!
//! Invariant: writing never fails. Strings, arrays and maps longer than
//! `u32::MAX` have no MessagePack encoding; such a length panics.

use bytes::{BufMut, BytesMut};
use rmp::Marker;
use serde_json::Value;

fn len32(len: usize) -> u32 {
    u32::try_from(len).expect("MessagePack cannot encode lengths above u32::MAX")
}

/// Writes nil.
pub(crate) fn nil(out: &mut BytesMut) {
    out.put_u8(Marker::Null.to_u8());
}

/// Writes a boolean.
pub(crate) fn boolean(out: &mut BytesMut, b: bool) {
    out.put_u8(if b { Marker::True } else { Marker::False }.to_u8());
}

/// Writes a non-negative integer in its smallest form.
pub(crate) fn uint(out: &mut BytesMut, n: u64) {
    if n < 0x80 {
        // Positive fixint: the marker byte is the value itself.
        out.put_u8(n as u8);
    } else if let Ok(n) = u8::try_from(n) {
        out.put_u8(Marker::U8.to_u8());
        out.put_u8(n);
    } else if let Ok(n) = u16::try_from(n) {
        out.put_u8(Marker::U16.to_u8());
        out.put_u16(n);
    } else if let Ok(n) = u32::try_from(n) {
        out.put_u8(Marker::U32.to_u8());
        out.put_u32(n);
    } else {
        out.put_u8(Marker::U64.to_u8());
        out.put_u64(n);
    }
}

/// Writes a signed integer in its smallest form.
pub(crate) fn sint(out: &mut BytesMut, n: i64) {
    if let Ok(n) = u64::try_from(n) {
        uint(out, n);
    } else if n >= -32 {
        // Negative fixint: the two's-complement byte is the value itself.
        out.put_i8(n as i8);
    } else if let Ok(n) = i8::try_from(n) {
        out.put_u8(Marker::I8.to_u8());
        out.put_i8(n);
    } else if let Ok(n) = i16::try_from(n) {
        out.put_u8(Marker::I16.to_u8());
        out.put_i16(n);
    } else if let Ok(n) = i32::try_from(n) {
        out.put_u8(Marker::I32.to_u8());
        out.put_i32(n);
    } else {
        out.put_u8(Marker::I64.to_u8());
        out.put_i64(n);
    }
}

/// Writes a float64.
pub(crate) fn float(out: &mut BytesMut, f: f64) {
    out.put_u8(Marker::F64.to_u8());
    out.put_f64(f);
}

/// Writes a string.
pub(crate) fn string(out: &mut BytesMut, s: &str) {
    let len = s.len();
    if len < 32 {
        out.put_u8(Marker::FixStr(len as u8).to_u8());
    } else if let Ok(len) = u8::try_from(len) {
        out.put_u8(Marker::Str8.to_u8());
        out.put_u8(len);
    } else if let Ok(len) = u16::try_from(len) {
        out.put_u8(Marker::Str16.to_u8());
        out.put_u16(len);
    } else {
        out.put_u8(Marker::Str32.to_u8());
        out.put_u32(len32(len));
    }
    out.put_slice(s.as_bytes());
}

/// Writes a string, or nil for `None`.
pub(crate) fn str_or_nil(out: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => nil(out),
    }
}

/// Writes an array header for `len` elements.
pub(crate) fn array_len(out: &mut BytesMut, len: usize) {
    if len < 16 {
        out.put_u8(Marker::FixArray(len as u8).to_u8());
    } else if let Ok(len) = u16::try_from(len) {
        out.put_u8(Marker::Array16.to_u8());
        out.put_u16(len);
    } else {
        out.put_u8(Marker::Array32.to_u8());
        out.put_u32(len32(len));
    }
}

/// Writes a map header for `len` entries.
pub(crate) fn map_len(out: &mut BytesMut, len: usize) {
    if len < 16 {
        out.put_u8(Marker::FixMap(len as u8).to_u8());
    } else if let Ok(len) = u16::try_from(len) {
        out.put_u8(Marker::Map16.to_u8());
        out.put_u16(len);
    } else {
        out.put_u8(Marker::Map32.to_u8());
        out.put_u32(len32(len));
    }
}

/// Writes an array of strings.
pub(crate) fn strings(out: &mut BytesMut, items: &[String]) {
    array_len(out, items.len());
    for item in items {
        string(out, item);
    }
}

/// Writes any JSON value.
pub(crate) fn value(out: &mut BytesMut, v: &Value) {
    match v {
        Value::Null => nil(out),
        Value::Bool(b) => boolean(out, *b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                uint(out, u);
            } else if let Some(i) = n.as_i64() {
                sint(out, i);
            } else {
                // A serde_json number is always one of u64, i64 or a finite f64.
                float(out, n.as_f64().unwrap_or(f64::NAN));
            }
        }
        Value::String(s) => string(out, s),
        Value::Array(items) => {
            array_len(out, items.len());
            for item in items {
                value(out, item);
            }
        }
        Value::Object(map) => {
            map_len(out, map.len());
            for (k, v) in map {
                string(out, k);
                value(out, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut out = BytesMut::new();
        f(&mut out);
        out.to_vec()
    }

    #[test]
    fn integers_use_smallest_form() {
        assert_eq!(bytes(|o| uint(o, 0)), [0x00]);
        assert_eq!(bytes(|o| uint(o, 127)), [0x7f]);
        assert_eq!(bytes(|o| uint(o, 128)), [0xcc, 0x80]);
        assert_eq!(bytes(|o| uint(o, 256)), [0xcd, 0x01, 0x00]);
        assert_eq!(bytes(|o| uint(o, 65_536)), [0xce, 0, 1, 0, 0]);
        assert_eq!(bytes(|o| uint(o, 1 << 32)), [0xcf, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(bytes(|o| sint(o, -1)), [0xff]);
        assert_eq!(bytes(|o| sint(o, -32)), [0xe0]);
        assert_eq!(bytes(|o| sint(o, -33)), [0xd0, 0xdf]);
        assert_eq!(bytes(|o| sint(o, -129)), [0xd1, 0xff, 0x7f]);
        assert_eq!(
            bytes(|o| sint(o, i64::from(i16::MIN) - 1)),
            [0xd2, 0xff, 0xff, 0x7f, 0xff]
        );
        assert_eq!(bytes(|o| sint(o, i64::MIN))[0], 0xd3);
    }

    #[test]
    fn strings_and_containers() {
        assert_eq!(bytes(|o| string(o, "Send")), b"\xa4Send");
        assert_eq!(bytes(|o| string(o, &"x".repeat(32)))[..2], [0xd9, 32]);
        assert_eq!(bytes(|o| string(o, &"x".repeat(256)))[..3], [0xda, 1, 0]);
        assert_eq!(bytes(|o| array_len(o, 15)), [0x9f]);
        assert_eq!(bytes(|o| array_len(o, 16)), [0xdc, 0, 16]);
        assert_eq!(bytes(|o| map_len(o, 0)), [0x80]);
        assert_eq!(bytes(|o| map_len(o, 70_000)), [0xdf, 0, 1, 0x11, 0x70]);
        assert_eq!(
            bytes(|o| value(o, &serde_json::json!({"a": [1.5, null, true]}))),
            [0x81, 0xa1, b'a', 0x93, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0xc0, 0xc3]
        );
    }
}
