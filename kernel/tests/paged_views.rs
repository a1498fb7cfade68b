//! Paged views: arbitrary sequences of writes read back equal across segment boundaries,
//! record addresses seek back to records, and running out of segments is a typed answer.

mod common;

use common::{SEGMENT_SIZE, manager};

use std::io::{Read, Write};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use weir_kernel::KernelError;
use weir_kernel::memory::{PagedInputView, PagedOutputView, RecordAddress};

fn config() -> Config {
    Config {
        cases: 128,
        rng_seed: RngSeed::Fixed(0x5eed_0001),
        failure_persistence: None,
        ..Config::default()
    }
}

#[derive(Debug, Clone)]
enum Op {
    U8(u8),
    U16Le(u16),
    U32Be(u32),
    U64Le(u64),
    I64Be(i64),
    F64Le(f64),
    F32Be(f32),
    Varint(u64),
    Bytes(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<u8>().prop_map(Op::U8),
        any::<u16>().prop_map(Op::U16Le),
        any::<u32>().prop_map(Op::U32Be),
        any::<u64>().prop_map(Op::U64Le),
        any::<i64>().prop_map(Op::I64Be),
        any::<f64>().prop_map(Op::F64Le),
        any::<f32>().prop_map(Op::F32Be),
        any::<u64>().prop_map(Op::Varint),
        prop::collection::vec(any::<u8>(), 0..9000).prop_map(Op::Bytes),
    ]
}

fn write(view: &mut PagedOutputView<weir_kernel::memory::Owner>, op: &Op) {
    match op {
        Op::U8(v) => view.write_u8(*v),
        Op::U16Le(v) => view.write_u16_le(*v),
        Op::U32Be(v) => view.write_u32_be(*v),
        Op::U64Le(v) => view.write_u64_le(*v),
        Op::I64Be(v) => view.write_i64_be(*v),
        Op::F64Le(v) => view.write_f64_le(*v),
        Op::F32Be(v) => view.write_f32_be(*v),
        Op::Varint(v) => view.write_varint_u64(*v),
        Op::Bytes(v) => view.write_bytes(v),
    }
    .unwrap();
}

fn read_and_check(view: &mut PagedInputView<'_>, op: &Op) {
    match op {
        Op::U8(v) => assert_eq!(view.read_u8().unwrap(), *v),
        Op::U16Le(v) => assert_eq!(view.read_u16_le().unwrap(), *v),
        Op::U32Be(v) => assert_eq!(view.read_u32_be().unwrap(), *v),
        Op::U64Le(v) => assert_eq!(view.read_u64_le().unwrap(), *v),
        Op::I64Be(v) => assert_eq!(view.read_i64_be().unwrap(), *v),
        Op::F64Le(v) => assert_eq!(view.read_f64_le().unwrap().to_bits(), v.to_bits()),
        Op::F32Be(v) => assert_eq!(view.read_f32_be().unwrap().to_bits(), v.to_bits()),
        Op::Varint(v) => assert_eq!(view.read_varint_u64().unwrap(), *v),
        Op::Bytes(v) => {
            let mut scratch = Vec::new();
            assert_eq!(view.read_record(v.len(), &mut scratch).unwrap(), &v[..]);
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn writes_read_back_equal_across_boundaries(ops in prop::collection::vec(op(), 1..60)) {
        let manager = manager(256);
        let mut view = PagedOutputView::new(manager.owner("view"));
        let mut addresses = Vec::with_capacity(ops.len());
        for op in &ops {
            addresses.push(view.address());
            write(&mut view, op);
        }
        let mut reader = view.reader();
        for op in &ops {
            read_and_check(&mut reader, op);
        }
        prop_assert_eq!(reader.remaining(), 0);
        let at_end = matches!(reader.read_u8(), Err(KernelError::EndOfData { .. }));
        prop_assert!(at_end);
        // Seeking to each recorded address reads that value again, in reverse order.
        for (address, op) in addresses.iter().zip(&ops).rev() {
            reader.seek(*address).unwrap();
            read_and_check(&mut reader, op);
        }
        drop(view);
        manager.leak_check().unwrap();
    }

    #[test]
    fn io_write_and_read_agree(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..5000), 0..20)) {
        let manager = manager(64);
        let mut view = PagedOutputView::new(manager.owner("io"));
        let mut expected = Vec::new();
        for chunk in &chunks {
            view.write_all(chunk).unwrap();
            expected.extend_from_slice(chunk);
        }
        let mut actual = Vec::new();
        view.reader().read_to_end(&mut actual).unwrap();
        prop_assert_eq!(actual, expected);
        drop(view);
        manager.leak_check().unwrap();
    }
}

#[test]
fn records_within_a_segment_are_borrowed_not_copied() {
    let manager = manager(4);
    let mut view = PagedOutputView::new(manager.owner("zero-copy"));
    view.write_bytes(&[1; 4000]).unwrap();
    let crossing = view.address();
    view.write_bytes(&[2; 200]).unwrap();
    let mut reader = view.reader();
    let first = reader.try_slice(4000).expect("within segment 0");
    assert_eq!(first.as_ptr(), view.segments()[0].as_slice().as_ptr());
    assert_eq!(reader.position(), crossing);
    assert!(reader.try_slice(200).is_none(), "crosses into segment 1");
    assert_eq!(
        reader.position(),
        crossing,
        "a refused slice consumes nothing"
    );
    let mut scratch = Vec::new();
    assert_eq!(
        reader.read_record(200, &mut scratch).unwrap(),
        &[2; 200][..]
    );
    assert_eq!(scratch.len(), 200, "the crossing record was copied");
}

#[test]
fn running_out_of_segments_is_typed_and_rewindable() {
    let manager = manager(2);
    let owner = manager.owner("sort-buffer");
    let mut view = PagedOutputView::new(owner.clone());
    view.write_bytes(&[7; 5000]).unwrap();
    let record_start = view.address();
    let error = view.write_bytes(&[9; 4000]).unwrap_err();
    assert!(error.is_budget_exceeded(), "{error}");
    view.rewind(record_start);
    assert_eq!(view.bytes_written(), 5000);
    // Space that was already taken is reused after the rewind.
    view.write_bytes(&[9; 3000]).unwrap();
    assert_eq!(owner.segments(), 2);
    let mut reader = view.reader();
    reader.skip(5000).unwrap();
    let mut scratch = Vec::new();
    assert_eq!(
        reader.read_record(3000, &mut scratch).unwrap(),
        &[9; 3000][..]
    );
    // io::Write reports a short write, then the error.
    let mut rest = vec![0u8; 10_000];
    let written = view.write(&rest).unwrap();
    assert_eq!(written, 2 * SEGMENT_SIZE - 8000);
    let error = view.write(&rest[written..]).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::OutOfMemory);
    rest.clear();
    drop(view);
    manager.leak_check().unwrap();
}

#[test]
fn reads_past_the_end_report_position() {
    let manager = manager(2);
    let mut view = PagedOutputView::new(manager.owner("eof"));
    view.write_u32_le(5).unwrap();
    let mut reader = view.reader();
    let error = reader.read_u64_le().unwrap_err();
    assert_eq!(
        error.to_string(),
        "end of data: read of 8 bytes at position 0, 4 bytes available"
    );
    assert_eq!(
        reader.read_u32_le().unwrap(),
        5,
        "the failed read consumed nothing"
    );
    assert!(reader.seek(RecordAddress(5)).is_err());
}

#[test]
fn malformed_varint_is_an_error_not_a_panic() {
    let manager = manager(2);
    let mut view = PagedOutputView::new(manager.owner("varint"));
    view.write_bytes(&[0xff; 11]).unwrap();
    let mut reader = view.reader();
    let error = reader.read_varint_u64().unwrap_err();
    assert!(
        matches!(error, KernelError::Malformed { position: 0, .. }),
        "{error}"
    );
    let mut view = PagedOutputView::new(manager.owner("varint-eof"));
    view.write_bytes(&[0x80, 0x80]).unwrap();
    let error = view.reader().read_varint_u64().unwrap_err();
    assert!(matches!(error, KernelError::EndOfData { .. }), "{error}");
}
