//! Runs the fuzz targets of `weir_netstack::fuzz` on stable with seeded inputs (cargo-fuzz
//! needs nightly): well-formed streams of every message, the same streams with seeded bytes
//! flipped or cut, and seeded garbage.

use weir_netstack::DataType;
use weir_netstack::fuzz;
use weir_netstack::transport::frame::PROTOCOL_VERSION;
use weir_netstack::transport::{BufferHeader, ErrorKind, Message, PartitionId, ReceiverId};

fn well_formed() -> Vec<u8> {
    let receiver = ReceiverId(42);
    let messages = [
        Message::Hello {
            process: 3,
            version: PROTOCOL_VERSION,
        },
        Message::PartitionRequest {
            partition: PartitionId {
                dataset: 1,
                producer: 2,
            },
            subpartition: 0,
            receiver,
            initial_credit: 2,
        },
        Message::BufferResponse(BufferHeader {
            receiver,
            subpartition: 0,
            sequence: 0,
            backlog: 1,
            data_type: DataType::Data,
            size: 5,
        }),
        Message::AddCredit {
            receiver,
            credit: 3,
        },
        Message::ErrorResponse {
            receiver: None,
            kind: ErrorKind::ProducerFailed,
            message: "gone".to_owned(),
        },
        Message::Close,
    ];
    let mut bytes = vec![7, 1, 30];
    for message in &messages {
        message.encode(&mut bytes);
        if let Message::BufferResponse(header) = message {
            bytes.extend(std::iter::repeat_n(0x5a, header.size as usize));
        }
    }
    bytes
}

#[test]
fn frame_decode_survives_seeded_inputs() {
    let base = well_formed();
    fuzz::frame_decode(&base);
    let mut state = 0x0bad_c0de_u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    for _ in 0..20_000 {
        let mut input = base.clone();
        match next() % 3 {
            0 => {
                let at = (next() as usize) % input.len();
                input[at] ^= 1 << (next() % 8);
            }
            1 => input.truncate((next() as usize) % input.len()),
            _ => input = (0..next() % 300).map(|_| next() as u8).collect(),
        }
        fuzz::frame_decode(&input);
    }
}

/// The checked-in seed corpus is well formed: each file decodes without an error.
#[test]
fn the_seed_corpus_is_well_formed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/frame_decode");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let chunks: Vec<usize> = bytes[..3].iter().map(|&b| usize::from(b) + 1).collect();
        let messages = weir_netstack::transport::frame::decode_all(&bytes[3..], &chunks).unwrap();
        assert!(!messages.is_empty());
        fuzz::frame_decode(&bytes);
        files += 1;
    }
    assert!(files >= 6, "{}", dir.display());
}

#[test]
fn credit_protocol_keeps_its_invariants_on_seeded_inputs() {
    fuzz::credit_protocol(&[]);
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let runs = if cfg!(miri) { 3 } else { 300 };
    for _ in 0..runs {
        let len = (next() % 3000) as usize;
        let input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        fuzz::credit_protocol(&input);
    }
}

#[test]
fn the_checked_in_credit_seeds_pass() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/credit_protocol");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        fuzz::credit_protocol(&std::fs::read(entry.unwrap().path()).unwrap());
        count += 1;
    }
    assert!(count > 0, "seeds in {}", dir.display());
}
