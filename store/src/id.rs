//! Message ids: 64-bit integers that order by time, across nodes.
//!
//! Layout (the sign bit stays 0): 42 bits of milliseconds since 2024-01-01
//! UTC (good until 2163), then 21 bits that start random each millisecond
//! and count up. One [`IdGenerator`] per store (shared by its commits)
//! hands out strictly increasing ids; ids of two nodes order by their
//! clocks. Batches committing at once may commit out of id order by a few
//! milliseconds, as two nodes' may. Two nodes picking the same
//! id is a primary-key violation, which the commit task retries with fresh
//! ids.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// 2024-01-01T00:00:00Z in Unix milliseconds.
const EPOCH_MS: i64 = 1_704_067_200_000;
/// Bits below the timestamp.
const LOW_BITS: u32 = 21;

/// A message id. Shown (and serialised) as its decimal text, because
/// JavaScript numbers lose integers above 2^53.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub i64);

impl MessageId {
    /// The millisecond (Unix time) the id was made in.
    pub fn timestamp_ms(self) -> i64 {
        (self.0 >> LOW_BITS) + EPOCH_MS
    }

    /// The smallest id of the millisecond `unix_ms`: a cursor for "sent at
    /// or after this time".
    pub fn first_at(unix_ms: i64) -> Self {
        Self((unix_ms - EPOCH_MS).max(0) << LOW_BITS)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for MessageId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(Self)
    }
}

impl Serialize for MessageId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Hands out strictly increasing ids.
#[derive(Debug, Default)]
pub struct IdGenerator {
    last: i64,
}

impl IdGenerator {
    /// A generator that has handed out nothing yet.
    pub const fn new() -> Self {
        Self { last: 0 }
    }

    /// The next id for a message made at `now_ms` (Unix milliseconds): the
    /// millisecond with random low bits, or one more than the last id when
    /// that is not larger.
    pub fn next(&mut self, now_ms: i64) -> MessageId {
        let random = rand::rng().random_range(0..1i64 << (LOW_BITS - 1));
        let candidate = ((now_ms - EPOCH_MS).max(0) << LOW_BITS) | random;
        self.last = candidate.max(self.last + 1);
        MessageId(self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_carry_their_time() {
        let mut ids = IdGenerator::default();
        let now = 1_780_000_000_000;
        let a = ids.next(now);
        let b = ids.next(now);
        let c = ids.next(now - 5); // a clock step back still increases
        let d = ids.next(now + 1);
        assert!(a < b && b < c && c < d, "{a} {b} {c} {d}");
        assert_eq!(a.timestamp_ms(), now);
        assert_eq!(d.timestamp_ms(), now + 1);
        assert!(MessageId::first_at(now) <= a && a < MessageId::first_at(now + 1));
    }

    #[test]
    fn serialises_as_text() {
        let id = MessageId(1 << 60);
        let json = serde_json::to_string(&id).expect("serialise");
        assert_eq!(json, format!("\"{}\"", 1i64 << 60));
        let back: MessageId = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, id);
    }
}
