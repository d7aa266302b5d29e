//! Feeds arbitrary bytes to the WebSocket frame reader, split into reads at
//! arbitrary places, with an arbitrary frame size limit. Beyond "never
//! panics", the outcome (data bytes, control frames, the error and its close
//! code) must not depend on how the stream was split into reads, data never
//! outgrows the input, and a Ping never carries more than 125 bytes.
#![no_main]

// The reader's own source: it depends on `bytes` and `thiserror` only, and the
// node crate would bring actix and the Redis client into every fuzz build.
#[allow(dead_code)]
#[path = "../../src/transport/frame.rs"]
mod frame;

use bytes::BytesMut;
use frame::{Control, FrameError, FrameReader};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
struct Outcome {
    data: Vec<u8>,
    controls: Vec<Control>,
    error: Option<FrameError>,
}

/// Feeds `input` in reads whose sizes come from `sizes` (cycled; 0 means 1).
fn run(limit: usize, input: &[u8], sizes: &[u8]) -> Outcome {
    let mut reader = FrameReader::new(limit);
    let mut data = BytesMut::new();
    let mut controls = Vec::new();
    let mut rest = input;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let size = sizes
            .next()
            .map_or(rest.len(), |&s| usize::from(s.max(1)))
            .min(rest.len());
        let (mut read, tail) = rest.split_at(size);
        rest = tail;
        while !read.is_empty() {
            match reader.feed(read, &mut data) {
                Ok((used, control)) => {
                    assert!(used > 0 && used <= read.len(), "progress within the read");
                    read = &read[used..];
                    if let Some(control) = control {
                        let closed = matches!(control, Control::Close(_));
                        controls.push(control);
                        if closed {
                            // The connection stops reading at a Close frame.
                            return Outcome {
                                data: data.to_vec(),
                                controls,
                                error: None,
                            };
                        }
                    }
                }
                Err(error) => {
                    let code = error.close_code();
                    assert!(matches!(code, 1002 | 1007 | 1009), "close code {code}");
                    return Outcome {
                        data: data.to_vec(),
                        controls,
                        error: Some(error),
                    };
                }
            }
        }
    }
    Outcome {
        data: data.to_vec(),
        controls,
        error: None,
    }
}

fuzz_target!(|input: &[u8]| {
    // First byte: the limit; then a length-prefixed list of read sizes; then the stream.
    let Some((&limit, rest)) = input.split_first() else {
        return;
    };
    let Some((&count, rest)) = rest.split_first() else {
        return;
    };
    let count = usize::from(count % 16).min(rest.len());
    let (sizes, stream) = rest.split_at(count);
    let limit = usize::from(limit) * 16;
    let whole = run(limit, stream, &[]);
    let split = run(limit, stream, sizes);
    let byte_by_byte = run(limit, stream, &[1]);
    assert!(whole.data.len() <= stream.len());
    for control in &whole.controls {
        if let Control::Ping(payload) = control {
            assert!(payload.len() <= 125);
        }
    }
    // Data already streamed before an error may differ by where the read
    // ended; everything else must not.
    if whole.error.is_none() {
        assert_eq!(whole, split);
        assert_eq!(whole, byte_by_byte);
    } else {
        assert_eq!(whole.error, split.error);
        assert_eq!(whole.error, byte_by_byte.error);
        assert_eq!(whole.controls, split.controls);
        assert!(whole.data.starts_with(&byte_by_byte.data) || byte_by_byte.data.starts_with(&whole.data));
    }
});
