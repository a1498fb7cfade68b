//! Record and key encoding of TPC-H `lineitem` rows: weir-serde-fmt beside bincode 2,
//! postcard and bitcode.
//!
//! - `record_encode`: 10,000 rows appended one by one into a reused buffer (weir
//!   `append_to_vec`, bincode `encode_into_slice`, postcard `to_slice`), and one
//!   allocation per row (weir `to_vec`, bincode `encode_to_vec`). bitcode has no
//!   record-at-a-time mode, so it encodes the whole batch in one call.
//! - `record_decode`: the same rows back, borrowing `&str` from the buffer (zero copy) for
//!   weir, bincode and postcard; bitcode decodes its batch.
//! - `key_encode`: a sort key per row (ship date, flags, price descending, order key,
//!   line number). Only weir's bytes are order-preserving; the peers encode the same
//!   tuple in their record formats, as a cost baseline.
//!
//! bincode runs through its serde API with `config::standard()` (its default:
//! little-endian, varint integers). Rows are generated with a fixed seed outside the
//! timed part; throughput is weir's encoded bytes for every entry of a group.
//!
//! Run: `cargo bench --bench format -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use weir_serde_fmt::{Descending, RecordReader, key};

const ROWS: usize = 10_000;
const SEED: u64 = 0x7063_6864;

/// One TPC-H `lineitem` row: decimals as scaled `i64`, dates as days since 1970.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LineItem<'a> {
    l_orderkey: i64,
    l_partkey: i64,
    l_suppkey: i64,
    l_linenumber: i32,
    l_quantity: i64,
    l_extendedprice: i64,
    l_discount: i64,
    l_tax: i64,
    l_returnflag: &'a str,
    l_linestatus: &'a str,
    l_shipdate: i32,
    l_commitdate: i32,
    l_receiptdate: i32,
    l_shipinstruct: &'a str,
    l_shipmode: &'a str,
    l_comment: &'a str,
}

/// The same row with owned strings, for bitcode's batch decode.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LineItemOwned {
    l_orderkey: i64,
    l_partkey: i64,
    l_suppkey: i64,
    l_linenumber: i32,
    l_quantity: i64,
    l_extendedprice: i64,
    l_discount: i64,
    l_tax: i64,
    l_returnflag: String,
    l_linestatus: String,
    l_shipdate: i32,
    l_commitdate: i32,
    l_receiptdate: i32,
    l_shipinstruct: String,
    l_shipmode: String,
    l_comment: String,
}

/// A sort key: ship date, return flag, line status, price descending, order, line.
type SortKey<'a> = (i32, &'a str, &'a str, Descending<i64>, i64, i32);

fn sort_key<'a>(row: &LineItem<'a>) -> SortKey<'a> {
    (
        row.l_shipdate,
        row.l_returnflag,
        row.l_linestatus,
        Descending(row.l_extendedprice),
        row.l_orderkey,
        row.l_linenumber,
    )
}

struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn range(&mut self, low: i64, high: i64) -> i64 {
        low + (self.next_u64() % (high - low + 1) as u64) as i64
    }
}

const INSTRUCTIONS: [&str; 4] = [
    "DELIVER IN PERSON",
    "COLLECT COD",
    "NONE",
    "TAKE BACK RETURN",
];
const MODES: [&str; 7] = ["REG AIR", "AIR", "RAIL", "SHIP", "TRUCK", "MAIL", "FOB"];
const WORDS: [&str; 12] = [
    "furiously",
    "slyly",
    "carefully",
    "blithely",
    "quickly",
    "fluffily",
    "final",
    "ironic",
    "regular",
    "pending",
    "deposits",
    "accounts",
];

/// Comments of 10 to 43 characters, like dbgen's `l_comment`.
fn comments(rng: &mut Rng) -> Vec<String> {
    (0..ROWS)
        .map(|_| {
            let target = rng.range(10, 43) as usize;
            let mut comment = String::new();
            while comment.len() < target {
                comment.push_str(WORDS[rng.range(0, 11) as usize]);
                comment.push(' ');
            }
            comment.truncate(target);
            comment
        })
        .collect()
}

fn rows(comments: &[String]) -> Vec<LineItem<'_>> {
    let mut rng = Rng(SEED);
    comments
        .iter()
        .enumerate()
        .map(|(i, comment)| {
            let quantity = rng.range(1, 50);
            let shipdate = rng.range(8036, 10_561) as i32;
            LineItem {
                l_orderkey: (i / 4) as i64 * 32 + 1,
                l_partkey: rng.range(1, 200_000),
                l_suppkey: rng.range(1, 10_000),
                l_linenumber: (i % 4) as i32 + 1,
                l_quantity: quantity * 100,
                l_extendedprice: quantity * rng.range(90_000, 200_000),
                l_discount: rng.range(0, 10),
                l_tax: rng.range(0, 8),
                l_returnflag: ["R", "A", "N"][rng.range(0, 2) as usize],
                l_linestatus: ["O", "F"][rng.range(0, 1) as usize],
                l_shipdate: shipdate,
                l_commitdate: shipdate + rng.range(-60, 60) as i32,
                l_receiptdate: shipdate + rng.range(1, 30) as i32,
                l_shipinstruct: INSTRUCTIONS[rng.range(0, 3) as usize],
                l_shipmode: MODES[rng.range(0, 6) as usize],
                l_comment: comment,
            }
        })
        .collect()
}

fn owned(row: &LineItem<'_>) -> LineItemOwned {
    LineItemOwned {
        l_orderkey: row.l_orderkey,
        l_partkey: row.l_partkey,
        l_suppkey: row.l_suppkey,
        l_linenumber: row.l_linenumber,
        l_quantity: row.l_quantity,
        l_extendedprice: row.l_extendedprice,
        l_discount: row.l_discount,
        l_tax: row.l_tax,
        l_returnflag: row.l_returnflag.to_owned(),
        l_linestatus: row.l_linestatus.to_owned(),
        l_shipdate: row.l_shipdate,
        l_commitdate: row.l_commitdate,
        l_receiptdate: row.l_receiptdate,
        l_shipinstruct: row.l_shipinstruct.to_owned(),
        l_shipmode: row.l_shipmode.to_owned(),
        l_comment: row.l_comment.to_owned(),
    }
}

/// Every format's encoding of the batch, built once outside the timed parts.
struct Encoded {
    weir: Vec<u8>,
    bincode: Vec<u8>,
    postcard: Vec<u8>,
    bitcode: Vec<u8>,
}

const BINCODE: bincode::config::Configuration = bincode::config::standard();

fn encode_all(rows: &[LineItem<'_>]) -> Encoded {
    let mut weir = Vec::new();
    let mut bincode = Vec::new();
    let mut postcard = Vec::new();
    for row in rows {
        weir_serde_fmt::append_to_vec(&mut weir, row).unwrap();
        bincode::serde::encode_into_std_write(row, &mut bincode, BINCODE).unwrap();
        postcard = postcard::to_extend(row, postcard).unwrap();
    }
    let bitcode = bitcode::serialize(rows).unwrap();
    let per_row = |bytes: &[u8]| bytes.len() as f64 / ROWS as f64;
    eprintln!(
        "lineitem bytes/row: weir {:.1}, bincode(standard) {:.1}, postcard {:.1}, bitcode {:.1} (batch)",
        per_row(&weir),
        per_row(&bincode),
        per_row(&postcard),
        per_row(&bitcode),
    );
    Encoded {
        weir,
        bincode,
        postcard,
        bitcode,
    }
}

fn record_encode(c: &mut Criterion) {
    let comments = comments(&mut Rng(SEED ^ 1));
    let rows = rows(&comments);
    let encoded = encode_all(&rows);
    let mut group = c.benchmark_group("record_encode");
    group.throughput(Throughput::Bytes(encoded.weir.len() as u64));
    let mut buffer = Vec::with_capacity(encoded.weir.len() * 2);
    group.bench_function("weir/append_to_vec", |b| {
        b.iter(|| {
            buffer.clear();
            for row in &rows {
                weir_serde_fmt::append_to_vec(&mut buffer, row).unwrap();
            }
            black_box(buffer.len())
        });
    });
    group.bench_function("weir/to_vec_per_row", |b| {
        b.iter(|| {
            rows.iter()
                .map(|row| weir_serde_fmt::to_vec(row).unwrap().len())
                .sum::<usize>()
        });
    });
    let mut slice = vec![0u8; encoded.weir.len() * 2];
    // Into a preallocated buffer, as a record writer fills a segment: the like-for-like
    // peer of bincode's encode_into_slice below.
    group.bench_function("weir/to_slice", |b| {
        b.iter(|| {
            let mut at = 0;
            for row in &rows {
                at += weir_serde_fmt::to_slice(&mut slice[at..], row).unwrap();
            }
            black_box(at)
        });
    });
    group.bench_function("bincode/encode_into_slice", |b| {
        b.iter(|| {
            let mut at = 0;
            for row in &rows {
                at += bincode::serde::encode_into_slice(row, &mut slice[at..], BINCODE).unwrap();
            }
            black_box(at)
        });
    });
    group.bench_function("bincode/encode_to_vec_per_row", |b| {
        b.iter(|| {
            rows.iter()
                .map(|row| bincode::serde::encode_to_vec(row, BINCODE).unwrap().len())
                .sum::<usize>()
        });
    });
    group.bench_function("postcard/to_slice", |b| {
        b.iter(|| {
            let mut at = 0;
            for row in &rows {
                at += postcard::to_slice(row, &mut slice[at..]).unwrap().len();
            }
            black_box(at)
        });
    });
    group.bench_function("bitcode/serialize_batch", |b| {
        b.iter(|| bitcode::serialize(black_box(&rows)).unwrap().len());
    });
    group.finish();
}

fn record_decode(c: &mut Criterion) {
    let comments = comments(&mut Rng(SEED ^ 1));
    let rows = rows(&comments);
    let encoded = encode_all(&rows);
    check_decoders(&rows, &encoded);
    let mut group = c.benchmark_group("record_decode");
    group.throughput(Throughput::Bytes(encoded.weir.len() as u64));
    group.bench_function("weir/record_reader", |b| {
        b.iter(|| {
            let mut reader = RecordReader::new(&encoded.weir);
            let mut sum = 0i64;
            while let Some(row) = reader.next_record::<LineItem<'_>>() {
                sum += black_box(row.unwrap()).l_quantity;
            }
            sum
        });
    });
    group.bench_function("bincode/borrow_decode_from_slice", |b| {
        b.iter(|| {
            let (mut at, mut sum) = (0, 0i64);
            while at < encoded.bincode.len() {
                let (row, used): (LineItem<'_>, usize) =
                    bincode::serde::borrow_decode_from_slice(&encoded.bincode[at..], BINCODE)
                        .unwrap();
                at += used;
                sum += black_box(row).l_quantity;
            }
            sum
        });
    });
    group.bench_function("postcard/take_from_bytes", |b| {
        b.iter(|| {
            let (mut rest, mut sum) = (&encoded.postcard[..], 0i64);
            while !rest.is_empty() {
                let (row, tail): (LineItem<'_>, &[u8]) = postcard::take_from_bytes(rest).unwrap();
                rest = tail;
                sum += black_box(row).l_quantity;
            }
            sum
        });
    });
    group.bench_function("bitcode/deserialize_batch", |b| {
        b.iter(|| {
            bitcode::deserialize::<Vec<LineItem<'_>>>(&encoded.bitcode)
                .unwrap()
                .len()
        });
    });
    group.finish();
}

/// Every decoder must give the rows back before its speed means anything.
fn check_decoders(rows: &[LineItem<'_>], encoded: &Encoded) {
    let mut reader = RecordReader::new(&encoded.weir);
    let (mut at, mut rest) = (0, &encoded.postcard[..]);
    for row in rows {
        assert_eq!(&reader.next_record::<LineItem<'_>>().unwrap().unwrap(), row);
        let (bin, used): (LineItem<'_>, usize) =
            bincode::serde::borrow_decode_from_slice(&encoded.bincode[at..], BINCODE).unwrap();
        at += used;
        assert_eq!(&bin, row);
        let (post, tail): (LineItem<'_>, &[u8]) = postcard::take_from_bytes(rest).unwrap();
        rest = tail;
        assert_eq!(&post, row);
    }
    let batch: Vec<LineItem<'_>> = bitcode::deserialize(&encoded.bitcode).unwrap();
    assert_eq!(batch, rows);
    let owned_batch: Vec<LineItemOwned> = bitcode::deserialize(&encoded.bitcode).unwrap();
    assert_eq!(owned_batch.len(), rows.len());
    assert_eq!(owned_batch[0].l_comment, owned(&rows[0]).l_comment);
}

fn key_encode(c: &mut Criterion) {
    let comments = comments(&mut Rng(SEED ^ 1));
    let rows = rows(&comments);
    let keys: Vec<SortKey<'_>> = rows.iter().map(sort_key).collect();
    let mut weir = Vec::new();
    for k in &keys {
        key::append_to_vec(&mut weir, k).unwrap();
    }
    eprintln!(
        "sort key bytes/row: weir key {:.1}",
        weir.len() as f64 / ROWS as f64
    );
    let mut group = c.benchmark_group("key_encode");
    group.throughput(Throughput::Bytes(weir.len() as u64));
    let mut buffer = Vec::with_capacity(weir.len() * 2);
    group.bench_function("weir/key_append_to_vec", |b| {
        b.iter(|| {
            buffer.clear();
            for k in &keys {
                key::append_to_vec(&mut buffer, k).unwrap();
            }
            black_box(buffer.len())
        });
    });
    let mut slice = vec![0u8; weir.len() * 2];
    group.bench_function("bincode/encode_into_slice", |b| {
        b.iter(|| {
            let mut at = 0;
            for k in &keys {
                at += bincode::serde::encode_into_slice(k, &mut slice[at..], BINCODE).unwrap();
            }
            black_box(at)
        });
    });
    group.bench_function("postcard/to_slice", |b| {
        b.iter(|| {
            let mut at = 0;
            for k in &keys {
                at += postcard::to_slice(k, &mut slice[at..]).unwrap().len();
            }
            black_box(at)
        });
    });
    group.bench_function("bitcode/serialize_batch", |b| {
        b.iter(|| bitcode::serialize(black_box(&keys)).unwrap().len());
    });
    group.finish();
}

criterion_group!(benches, record_encode, record_decode, key_encode);
criterion_main!(benches);
