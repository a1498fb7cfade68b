//! Spill I/O throughput: write a 64 MiB run of 32 KiB blocks, and read it back, on both
//! backends, with LZ4 off and on, buffered and `O_DIRECT`. The payload is W1-like records
//! (a random 10-byte key and 90 bytes of letter filler), which LZ4 halves or better.
//! Throughput counts payload bytes, so a compressed run that moves fewer bytes shows up as
//! faster. Payloads are built before timing; the read benchmark reads one run written
//! before timing.
//!
//! Run: `cargo bench --bench spill_io` (the spill files go to the system temp directory,
//! or to `WEIR_BENCH_SPILL_DIR`; put it on the disk you want to measure, not a tmpfs).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use weir::kernel::constants::{SPILL_BLOCK_HEADER_SIZE, SPILL_WRITE_BEHIND_DEFAULT};
use weir::kernel::memory::{MemoryConfig, MemoryManager, Owner};
use weir::kernel::spill::{IoBackend, RunOptions, SpillConfig, SpillRun, SpillStore, open_store};

const SEGMENT: usize = 32 * 1024;
const RUN_BYTES: usize = 64 << 20;
const PAYLOAD: usize = SEGMENT - SPILL_BLOCK_HEADER_SIZE;
const RECORD: usize = 100;
const KEY: usize = 10;
const READ_BUFFERS: usize = 4;

/// W1-like records, `PAYLOAD` bytes per block, enough blocks for `RUN_BYTES`.
fn payloads() -> Vec<Vec<u8>> {
    let mut state = 0x5EED_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..RUN_BYTES / SEGMENT)
        .map(|_| {
            let mut block = Vec::with_capacity(PAYLOAD + RECORD);
            while block.len() < PAYLOAD {
                block.extend((0..KEY).map(|_| next() as u8));
                let letter = b'a' + (next() % 26) as u8;
                block.extend(std::iter::repeat_n(letter, RECORD - KEY));
            }
            block.truncate(PAYLOAD);
            block
        })
        .collect()
}

struct Setup {
    manager: MemoryManager,
    owner: Owner,
    store: Arc<dyn SpillStore>,
}

fn setup(dir: &Path, backend: IoBackend, direct_io: bool) -> Setup {
    let manager = MemoryManager::new(MemoryConfig::with_budget(64 * SEGMENT)).unwrap();
    let mut config = SpillConfig::new(dir.to_path_buf());
    config.allow_memory_filesystem = true;
    config.backend = Some(backend);
    config.direct_io = direct_io;
    config.scratch = Some(manager.owner("spill-scratch"));
    let store = open_store(&config).unwrap();
    eprintln!("spill store: {}", store.describe());
    Setup {
        owner: manager.owner("bench"),
        manager,
        store,
    }
}

fn write_run(setup: &Setup, payloads: &[Vec<u8>], compress: bool) -> SpillRun {
    let options = RunOptions {
        compress,
        write_behind: SPILL_WRITE_BEHIND_DEFAULT,
    };
    let mut spare = setup.owner.allocate(options.write_behind + 1).unwrap();
    let mut writer = setup.store.create_run(options).unwrap();
    for payload in payloads {
        let mut segment = spare.pop().unwrap();
        segment.put_bytes(SPILL_BLOCK_HEADER_SIZE, payload);
        if let Some(done) = writer.write_block(segment, payload.len()).unwrap() {
            spare.push(done);
        }
    }
    writer.finish().unwrap().0
}

fn read_run(setup: &Setup, run: &SpillRun) -> u64 {
    let buffers = setup.owner.allocate(READ_BUFFERS).unwrap();
    let mut reader = setup.store.open_run(run, buffers).unwrap();
    let mut sum = 0;
    while let Some(block) = reader.next_block().unwrap() {
        sum += u64::from(block.segment.get_u8(block.payload.start));
        reader.recycle(block.segment);
    }
    drop(reader.into_segments());
    sum
}

fn spill_io(c: &mut Criterion) {
    let dir = match std::env::var_os("WEIR_BENCH_SPILL_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::temp_dir(),
    };
    let payloads = payloads();
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    let mut group = c.benchmark_group("spill_io");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(10);
    for backend in [IoBackend::Sync, IoBackend::IoUring] {
        for direct_io in [false, true] {
            let setup = setup(&dir, backend, direct_io);
            for compress in [false, true] {
                let name = format!(
                    "{backend}/{}/{}",
                    if direct_io { "direct" } else { "buffered" },
                    if compress { "lz4" } else { "raw" }
                );
                group.bench_function(BenchmarkId::new("write", &name), |b| {
                    b.iter(|| drop(write_run(&setup, &payloads, compress)))
                });
                let run = write_run(&setup, &payloads, compress);
                group.bench_function(BenchmarkId::new("read", &name), |b| {
                    b.iter(|| black_box(read_run(&setup, &run)))
                });
                drop(run);
            }
            let Setup { manager, store, .. } = setup;
            drop(store);
            manager.leak_check().unwrap();
        }
    }
    group.finish();
}

criterion_group!(benches, spill_io);
criterion_main!(benches);
