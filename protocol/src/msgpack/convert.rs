//! The lossy MessagePack-to-JSON value conversions.
//!
//! - `bin` becomes a standard, padded base64 string (RFC 4648) — the form
//!   System.Text.Json uses for `byte[]`, so bytes sent by a .NET MessagePack
//!   client reach a .NET JSON client in the shape its binder expects.
//! - extension type -1 (timestamp; what MessagePack-CSharp writes for
//!   `DateTime` and `@msgpack/msgpack` for `Date`) becomes an RFC 3339 UTC
//!   string: `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, the fraction omitted when zero
//!   and otherwise printed with up to 9 digits, trailing zeros trimmed. Years
//!   outside 0000–9999 use the ISO 8601 expanded form (`+010000`, `-000001`),
//!   as JavaScript's `Date.prototype.toISOString` does.

/// Encodes `data` as padded standard base64.
pub(crate) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                // Masked to 6 bits, so the index is in range.
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes the data of a timestamp extension (4, 8 or 12 bytes) into RFC 3339
/// text, or `None` if the length or the nanoseconds are invalid.
pub(crate) fn timestamp_to_iso8601(data: &[u8]) -> Option<String> {
    let (seconds, nanos): (i64, u32) = match data.len() {
        4 => (i64::from(u32::from_be_bytes(data.try_into().ok()?)), 0),
        8 => {
            let raw = u64::from_be_bytes(data.try_into().ok()?);
            // 30 bits of nanoseconds over 34 bits of seconds; both fit their targets.
            ((raw & 0x3_ffff_ffff) as i64, (raw >> 34) as u32)
        }
        12 => {
            let nanos = u32::from_be_bytes(data[..4].try_into().ok()?);
            (i64::from_be_bytes(data[4..].try_into().ok()?), nanos)
        }
        _ => return None,
    };
    if nanos >= 1_000_000_000 {
        return None;
    }
    let days = seconds.div_euclid(86_400);
    let secs_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{year:+07}")
    };
    out.push_str(&format!(
        "-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    ));
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push('Z');
    Some(out)
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day)
/// (Howard Hinnant's `civil_from_days`). Also the node's ISO-8601 times use it.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_rfc4648_vectors() {
        let cases: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in cases {
            assert_eq!(base64(input), expected);
        }
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn timestamp32() {
        assert_eq!(
            timestamp_to_iso8601(&0u32.to_be_bytes()).as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
        assert_eq!(
            timestamp_to_iso8601(&951_782_400u32.to_be_bytes()).as_deref(),
            Some("2000-02-29T00:00:00Z")
        );
    }

    #[test]
    fn timestamp64_with_millis() {
        // 2021-03-04T05:06:07.123Z, as @msgpack/msgpack encodes a Date with milliseconds.
        let raw: u64 = (123_000_000u64 << 34) | 1_614_834_367;
        assert_eq!(
            timestamp_to_iso8601(&raw.to_be_bytes()).as_deref(),
            Some("2021-03-04T05:06:07.123Z")
        );
    }

    #[test]
    fn timestamp96_negative_and_expanded_years() {
        let mut data = 1u32.to_be_bytes().to_vec();
        data.extend_from_slice(&(-1i64).to_be_bytes());
        assert_eq!(
            timestamp_to_iso8601(&data).as_deref(),
            Some("1969-12-31T23:59:59.000000001Z")
        );
        let mut data = 0u32.to_be_bytes().to_vec();
        // 0000-01-01 minus one day.
        data.extend_from_slice(&(-62_167_219_200i64 - 86_400).to_be_bytes());
        assert_eq!(timestamp_to_iso8601(&data).as_deref(), Some("-000001-12-31T00:00:00Z"));
        let mut data = 0u32.to_be_bytes().to_vec();
        data.extend_from_slice(&i64::MAX.to_be_bytes());
        assert!(timestamp_to_iso8601(&data).is_some());
        data[4..].copy_from_slice(&i64::MIN.to_be_bytes());
        assert!(timestamp_to_iso8601(&data).is_some());
    }

    #[test]
    fn timestamp_rejects_bad_input() {
        assert_eq!(timestamp_to_iso8601(&[0; 5]), None);
        let mut data = 1_000_000_000u32.to_be_bytes().to_vec();
        data.extend_from_slice(&0i64.to_be_bytes());
        assert_eq!(timestamp_to_iso8601(&data), None);
    }
}
