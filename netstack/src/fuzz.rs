//! Fuzz targets as plain functions: cargo-fuzz (nightly) calls them from `fuzz/`, and the
//! stable smoke test (`netstack/tests/fuzz_smoke.rs`) runs them on seeded inputs.

use crate::transport::frame::{Message, decode_all};

/// Arbitrary bytes into the frame decoder, fed in chunks chosen by the first bytes: it
/// must never panic nor buffer beyond its bound (an error is fine), and every message it
/// decodes must encode and decode back to itself.
///
/// # Panics
///
/// When the decoder breaks one of those promises (a finding).
pub fn frame_decode(data: &[u8]) {
    let split = data.len().min(3);
    let (chunking, stream) = data.split_at(split);
    let chunks: Vec<usize> = chunking.iter().map(|&b| usize::from(b) + 1).collect();
    let Ok(messages) = decode_all(stream, &chunks) else {
        return;
    };
    for message in messages {
        let mut bytes = Vec::new();
        message.encode(&mut bytes);
        if let Message::BufferResponse(header) = &message {
            bytes.resize(bytes.len() + header.size as usize, 0);
        }
        let again = decode_all(&bytes, &[bytes.len()]).expect("an encoded message decodes");
        assert_eq!(again, [message], "round trip");
    }
}
