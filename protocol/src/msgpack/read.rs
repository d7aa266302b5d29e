//! A bounds-checked MessagePack reader over a byte slice.
//!
//! Owns: typed reads used by the message layout (array/map headers, strings,
//! integers, booleans) and the generic conversion of any MessagePack value into
//! a [`serde_json::Value`] (see the crate docs for the lossy cases).
//!
//! Invariants: never panics and never allocates more than the input can back —
//! container capacities are capped by the bytes remaining, and nesting deeper
//! than [`MAX_DEPTH`] is an error rather than unbounded recursion.

use rmp::Marker;
use serde_json::{Map, Value};

use super::convert::{base64, timestamp_to_iso8601};
use crate::error::ProtocolError;

/// Maximum nesting of arrays/maps inside one value. Kept below serde_json's
/// parser limit of 128 so that any decoded message, re-encoded as JSON
/// (which adds the message object and the arguments array), parses again.
pub(crate) const MAX_DEPTH: usize = 100;

/// The MessagePack extension type of timestamps.
const TIMESTAMP_EXT: i8 = -1;

fn corrupt(what: &str) -> ProtocolError {
    ProtocolError::InvalidMessagePack(what.to_owned())
}

fn wrong_type(property: &'static str, expected: &'static str) -> ProtocolError {
    ProtocolError::InvalidPropertyType { property, expected }
}

/// A cursor over one MessagePack payload.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| corrupt("unexpected end of data"))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<usize, ProtocolError> {
        Ok(usize::from(u16::from_be_bytes(self.array()?)))
    }

    fn u32(&mut self) -> Result<usize, ProtocolError> {
        usize::try_from(u32::from_be_bytes(self.array()?)).map_err(|_| corrupt("length overflow"))
    }

    fn marker(&mut self) -> Result<Marker, ProtocolError> {
        Ok(Marker::from_u8(self.u8()?))
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Reads an array header; `property` names the field in the error.
    pub(crate) fn array_len(&mut self, property: &'static str) -> Result<usize, ProtocolError> {
        match self.marker()? {
            Marker::FixArray(n) => Ok(usize::from(n)),
            Marker::Array16 => self.u16(),
            Marker::Array32 => self.u32(),
            _ => Err(wrong_type(property, "Array")),
        }
    }

    /// Reads a map header; `property` names the field in the error.
    pub(crate) fn map_len(&mut self, property: &'static str) -> Result<usize, ProtocolError> {
        match self.marker()? {
            Marker::FixMap(n) => Ok(usize::from(n)),
            Marker::Map16 => self.u16(),
            Marker::Map32 => self.u32(),
            _ => Err(wrong_type(property, "Map")),
        }
    }

    /// Reads a string or nil.
    pub(crate) fn str_or_nil(&mut self, property: &'static str) -> Result<Option<String>, ProtocolError> {
        let len = match self.marker()? {
            Marker::Null => return Ok(None),
            Marker::FixStr(n) => usize::from(n),
            Marker::Str8 => usize::from(self.u8()?),
            Marker::Str16 => self.u16()?,
            Marker::Str32 => self.u32()?,
            _ => return Err(wrong_type(property, "String")),
        };
        self.utf8(len).map(Some)
    }

    fn utf8(&mut self, len: usize) -> Result<String, ProtocolError> {
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| corrupt("string is not valid UTF-8"))
    }

    /// Reads a string; nil counts as a missing property.
    pub(crate) fn string(&mut self, property: &'static str) -> Result<String, ProtocolError> {
        self.str_or_nil(property)?
            .ok_or(ProtocolError::MissingProperty(property))
    }

    /// Reads an integer that fits in `i64`.
    pub(crate) fn integer(&mut self, property: &'static str) -> Result<i64, ProtocolError> {
        match self.marker()? {
            Marker::FixPos(n) => Ok(i64::from(n)),
            Marker::FixNeg(n) => Ok(i64::from(n)),
            Marker::U8 => Ok(i64::from(self.u8()?)),
            Marker::U16 => Ok(i64::from(u16::from_be_bytes(self.array()?))),
            Marker::U32 => Ok(i64::from(u32::from_be_bytes(self.array()?))),
            Marker::U64 => i64::try_from(u64::from_be_bytes(self.array()?)).map_err(|_| wrong_type(property, "Int64")),
            Marker::I8 => Ok(i64::from(i8::from_be_bytes(self.array()?))),
            Marker::I16 => Ok(i64::from(i16::from_be_bytes(self.array()?))),
            Marker::I32 => Ok(i64::from(i32::from_be_bytes(self.array()?))),
            Marker::I64 => Ok(i64::from_be_bytes(self.array()?)),
            _ => Err(wrong_type(property, "Integer")),
        }
    }

    /// Reads a boolean.
    pub(crate) fn boolean(&mut self, property: &'static str) -> Result<bool, ProtocolError> {
        match self.marker()? {
            Marker::True => Ok(true),
            Marker::False => Ok(false),
            _ => Err(wrong_type(property, "Boolean")),
        }
    }

    /// Reads any value as JSON (the top-level call starts at depth 0).
    pub(crate) fn value(&mut self, depth: usize) -> Result<Value, ProtocolError> {
        let marker = self.marker()?;
        let value = match marker {
            Marker::Null => Value::Null,
            Marker::True => Value::Bool(true),
            Marker::False => Value::Bool(false),
            Marker::FixPos(n) => Value::from(n),
            Marker::FixNeg(n) => Value::from(n),
            Marker::U8 => Value::from(self.u8()?),
            Marker::U16 => Value::from(u16::from_be_bytes(self.array()?)),
            Marker::U32 => Value::from(u32::from_be_bytes(self.array()?)),
            Marker::U64 => Value::from(u64::from_be_bytes(self.array()?)),
            Marker::I8 => Value::from(i8::from_be_bytes(self.array()?)),
            Marker::I16 => Value::from(i16::from_be_bytes(self.array()?)),
            Marker::I32 => Value::from(i32::from_be_bytes(self.array()?)),
            Marker::I64 => Value::from(i64::from_be_bytes(self.array()?)),
            // Non-finite floats have no JSON form: `Value::from` maps them to null.
            Marker::F32 => Value::from(f64::from(f32::from_be_bytes(self.array()?))),
            Marker::F64 => Value::from(f64::from_be_bytes(self.array()?)),
            Marker::FixStr(n) => Value::String(self.utf8(usize::from(n))?),
            Marker::Str8 => {
                let len = usize::from(self.u8()?);
                Value::String(self.utf8(len)?)
            }
            Marker::Str16 => {
                let len = self.u16()?;
                Value::String(self.utf8(len)?)
            }
            Marker::Str32 => {
                let len = self.u32()?;
                Value::String(self.utf8(len)?)
            }
            Marker::Bin8 => {
                let len = usize::from(self.u8()?);
                Value::String(base64(self.take(len)?))
            }
            Marker::Bin16 => {
                let len = self.u16()?;
                Value::String(base64(self.take(len)?))
            }
            Marker::Bin32 => {
                let len = self.u32()?;
                Value::String(base64(self.take(len)?))
            }
            Marker::FixArray(n) => self.array_value(usize::from(n), depth)?,
            Marker::Array16 => {
                let len = self.u16()?;
                self.array_value(len, depth)?
            }
            Marker::Array32 => {
                let len = self.u32()?;
                self.array_value(len, depth)?
            }
            Marker::FixMap(n) => self.map_value(usize::from(n), depth)?,
            Marker::Map16 => {
                let len = self.u16()?;
                self.map_value(len, depth)?
            }
            Marker::Map32 => {
                let len = self.u32()?;
                self.map_value(len, depth)?
            }
            Marker::FixExt1 => self.ext(1)?,
            Marker::FixExt2 => self.ext(2)?,
            Marker::FixExt4 => self.ext(4)?,
            Marker::FixExt8 => self.ext(8)?,
            Marker::FixExt16 => self.ext(16)?,
            Marker::Ext8 => {
                let len = usize::from(self.u8()?);
                self.ext(len)?
            }
            Marker::Ext16 => {
                let len = self.u16()?;
                self.ext(len)?
            }
            Marker::Ext32 => {
                let len = self.u32()?;
                self.ext(len)?
            }
            Marker::Reserved => return Err(corrupt("reserved marker byte 0xc1")),
        };
        Ok(value)
    }

    fn nested(&self, depth: usize) -> Result<usize, ProtocolError> {
        if depth >= MAX_DEPTH {
            return Err(corrupt("maximum nesting depth exceeded"));
        }
        Ok(depth + 1)
    }

    fn array_value(&mut self, len: usize, depth: usize) -> Result<Value, ProtocolError> {
        let depth = self.nested(depth)?;
        // Every element takes at least one byte: cap the allocation by what is left.
        let mut items = Vec::with_capacity(len.min(self.remaining()));
        for _ in 0..len {
            items.push(self.value(depth)?);
        }
        Ok(Value::Array(items))
    }

    fn map_value(&mut self, len: usize, depth: usize) -> Result<Value, ProtocolError> {
        let depth = self.nested(depth)?;
        let mut map = Map::new();
        for _ in 0..len {
            let key = match self.value(depth)? {
                Value::String(s) => s,
                // Non-string keys become their JSON text: 1 -> "1", true -> "true".
                other => other.to_string(),
            };
            let value = self.value(depth)?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }

    fn ext(&mut self, len: usize) -> Result<Value, ProtocolError> {
        let ty = i8::from_be_bytes(self.array()?);
        let data = self.take(len)?;
        if ty != TIMESTAMP_EXT {
            return Err(ProtocolError::UnsupportedExtension(ty));
        }
        timestamp_to_iso8601(data)
            .map(Value::String)
            .ok_or_else(|| corrupt("invalid timestamp extension"))
    }
}
