//! x
/// x
pub const RETENTION_LOCK: i64 = 0x6875_6277_6972_0002;
