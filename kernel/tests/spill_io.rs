//! Spill I/O through the public API, on both backends: round trips of random blocks
//! (compressed or not, every write-behind and read-ahead depth), corruption of every header
//! byte and of the payload, torn files, the disk quota, abandoned writers and readers, many
//! readers at once, and an injected failure at every write and read position. Every test
//! ends with every segment home and the spill directory empty.

mod common;

use std::sync::Arc;

use common::{Rng, SpillDir};

use weir_kernel::KernelError;
use weir_kernel::constants::SPILL_BLOCK_HEADER_SIZE;
use weir_kernel::memory::{MemoryConfig, MemoryManager, Owner};
use weir_kernel::spill::{
    FaultyStore, IoBackend, RunOptions, SpillConfig, SpillRun, SpillStore, fault, open_store,
};

const SEGMENT_SIZE: usize = 16 * 1024;
const PAYLOAD_MAX: usize = SEGMENT_SIZE - SPILL_BLOCK_HEADER_SIZE;
const BACKENDS: [IoBackend; 2] = [IoBackend::Sync, IoBackend::IoUring];

/// Payload generation on top of the shared generator.
trait Payloads {
    fn payload(&mut self, len: usize) -> Vec<u8>;
    fn payloads(&mut self, count: usize) -> Vec<Vec<u8>>;
}

impl Payloads for Rng {
    /// Either random bytes (incompressible) or W1-like records: a random 10-byte key and
    /// 90 bytes of letter filler (compressible).
    fn payload(&mut self, len: usize) -> Vec<u8> {
        if self.next().is_multiple_of(2) {
            return (0..len).map(|_| self.next() as u8).collect();
        }
        let mut bytes = Vec::with_capacity(len);
        while bytes.len() < len {
            let key: Vec<u8> = (0..10).map(|_| self.next() as u8).collect();
            let letter = b'A' + self.below(26) as u8;
            bytes.extend(key.into_iter().chain(std::iter::repeat_n(letter, 90)));
        }
        bytes.truncate(len);
        bytes
    }

    /// `count` payloads of random lengths, the empty and the full payload among them.
    fn payloads(&mut self, count: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map(|i| match i % 17 {
                3 => Vec::new(),
                5 => self.payload(PAYLOAD_MAX),
                _ => {
                    let len = self.below(PAYLOAD_MAX + 1);
                    self.payload(len)
                }
            })
            .collect()
    }
}

/// One backend's world: a manager, a scratch owner for compression, a store.
struct World {
    manager: MemoryManager,
    owner: Owner,
    store: Arc<dyn SpillStore>,
}

impl World {
    fn new(dir: &SpillDir, backend: IoBackend, configure: impl FnOnce(&mut SpillConfig)) -> World {
        let manager = MemoryManager::new(MemoryConfig {
            segment_size: SEGMENT_SIZE,
            ..MemoryConfig::with_budget(256 * SEGMENT_SIZE)
        })
        .unwrap();
        let mut config = SpillConfig::new(dir.path().to_path_buf());
        config.allow_memory_filesystem = true;
        config.backend = Some(backend);
        config.scratch = Some(manager.owner("spill-scratch"));
        configure(&mut config);
        let store = open_store(&config).unwrap();
        // `WEIR_IO=sync` (a CI pass without io_uring) runs every test on the portable backend.
        if std::env::var("WEIR_IO").as_deref() != Ok("sync") {
            assert_eq!(store.backend(), backend, "{}", store.describe());
        }
        World {
            owner: manager.owner("test"),
            manager,
            store,
        }
    }

    /// Checks that every segment came home and no file is left, and ends the world.
    fn finish(self, dir: &SpillDir) {
        assert_eq!(
            self.store.stats().bytes_on_disk,
            0,
            "disk space still claimed"
        );
        drop(self.store);
        self.manager.leak_check().unwrap();
        dir.assert_empty();
    }
}

fn options(compress: bool, write_behind: usize) -> RunOptions {
    RunOptions {
        compress,
        write_behind,
    }
}

/// Writes `payloads` as a run the way a caller does: `write_behind + 1` segments in turn.
fn write_run(
    store: &dyn SpillStore,
    owner: &Owner,
    payloads: &[Vec<u8>],
    options: RunOptions,
) -> Result<SpillRun, KernelError> {
    let mut spare = owner.allocate(options.write_behind + 1)?;
    let mut writer = store.create_run(options)?;
    for payload in payloads {
        let mut segment = spare.pop().expect("the writer returns segments in time");
        segment.put_bytes(SPILL_BLOCK_HEADER_SIZE, payload);
        if let Some(done) = writer.write_block(segment, payload.len())? {
            spare.push(done);
        }
    }
    let (run, segments) = writer.finish()?;
    assert_eq!(spare.len() + segments.len(), options.write_behind + 1);
    Ok(run)
}

/// Reads every block of `run` with `buffers` lent segments.
fn read_run(
    store: &dyn SpillStore,
    owner: &Owner,
    run: &SpillRun,
    buffers: usize,
) -> Result<Vec<Vec<u8>>, KernelError> {
    let mut reader = store.open_run(run, owner.allocate(buffers)?)?;
    let mut payloads = Vec::new();
    while let Some(block) = reader.next_block()? {
        payloads.push(block.segment.as_slice()[block.payload.clone()].to_vec());
        reader.recycle(block.segment);
    }
    assert_eq!(
        reader.into_segments().len(),
        buffers,
        "every lent segment back"
    );
    Ok(payloads)
}

#[test]
fn random_blocks_round_trip_at_every_depth() {
    let dir = SpillDir::new("round-trip");
    for backend in BACKENDS {
        for compress in [false, true] {
            let world = World::new(&dir, backend, |_| {});
            let mut rng = Rng(0x5EED_0001 + u64::from(compress));
            let payloads = rng.payloads(120);
            let payload_bytes: usize = payloads.iter().map(Vec::len).sum();
            for write_behind in 1..=4 {
                let run = write_run(
                    &*world.store,
                    &world.owner,
                    &payloads,
                    options(compress, write_behind),
                )
                .unwrap();
                assert_eq!(
                    (run.blocks(), run.payload_bytes()),
                    (120, payload_bytes as u64)
                );
                if compress {
                    assert!(
                        run.disk_bytes() < 120 * SEGMENT_SIZE as u64 * 3 / 4,
                        "{run:?}"
                    );
                }
                for buffers in 1 + usize::from(compress)..=4 {
                    let back = read_run(&*world.store, &world.owner, &run, buffers).unwrap();
                    assert!(
                        back == payloads,
                        "{backend} compress={compress} write_behind={write_behind} buffers={buffers}"
                    );
                }
            }
            let stats = world.store.stats();
            assert_eq!(stats.blocks_written, 4 * 120);
            assert_eq!(stats.payload_bytes_written, 4 * payload_bytes as u64);
            assert!(stats.bytes_read >= stats.bytes_written, "{stats:?}");
            assert!(
                stats.bytes_on_disk_peak > 0 && stats.runs_created == 4,
                "{stats:?}"
            );
            world.finish(&dir);
        }
    }
}

#[test]
fn direct_io_round_trips_too() {
    let dir = SpillDir::new("direct");
    for backend in BACKENDS {
        let world = World::new(&dir, backend, |config| config.direct_io = true);
        assert!(
            world.store.describe().contains("O_DIRECT"),
            "{}",
            world.store.describe()
        );
        let payloads = Rng(0x5EED_0002).payloads(40);
        for compress in [false, true] {
            let run =
                write_run(&*world.store, &world.owner, &payloads, options(compress, 3)).unwrap();
            assert!(read_run(&*world.store, &world.owner, &run, 3).unwrap() == payloads);
            let last = *fault::block_offsets(&run).unwrap().last().unwrap();
            fault::corrupt_byte(&run, last + 40, 0x80).unwrap();
            let error = read_run(&*world.store, &world.owner, &run, 3).unwrap_err();
            assert!(
                matches!(error, KernelError::CorruptSpill { offset, .. } if offset == last),
                "{error}"
            );
        }
        world.finish(&dir);
    }
}

#[test]
fn a_corrupt_byte_anywhere_in_header_or_payload_names_the_block() {
    let dir = SpillDir::new("corrupt");
    for backend in BACKENDS {
        for compress in [false, true] {
            let world = World::new(&dir, backend, |_| {});
            let payloads: Vec<Vec<u8>> = (0..3).map(|i| vec![b'a' + i; 3000]).collect();
            let run =
                write_run(&*world.store, &world.owner, &payloads, options(compress, 2)).unwrap();
            let block = fault::block_offsets(&run).unwrap()[1];
            let stored = if compress { 3 } else { 3000 };
            let positions = (0..SPILL_BLOCK_HEADER_SIZE as u64).chain([32, 33, 31 + stored]);
            for position in positions {
                fault::corrupt_byte(&run, block + position, 0x04).unwrap();
                let error = read_run(&*world.store, &world.owner, &run, 2).unwrap_err();
                match &error {
                    KernelError::CorruptSpill { offset, path, .. } => {
                        assert_eq!(*offset, block, "byte {position}: {error}");
                        assert!(path.starts_with(dir.path()), "{error}");
                    }
                    other => panic!("{backend}: byte {position}: {other}"),
                }
                fault::corrupt_byte(&run, block + position, 0x04).unwrap();
            }
            assert!(read_run(&*world.store, &world.owner, &run, 2).unwrap() == payloads);
            drop(run);
            world.finish(&dir);
        }
    }
}

#[test]
fn a_torn_file_is_an_error_naming_the_torn_block() {
    let dir = SpillDir::new("torn");
    for backend in BACKENDS {
        for direct_io in [false, true] {
            let world = World::new(&dir, backend, |config| config.direct_io = direct_io);
            let payloads = vec![vec![9; PAYLOAD_MAX]; 6];
            let run = write_run(&*world.store, &world.owner, &payloads, options(false, 2)).unwrap();
            let offsets = fault::block_offsets(&run).unwrap();
            for cut in [offsets[4] + 4096 + 100, offsets[4] + 10, offsets[4], 0] {
                fault::truncate(&run, cut).unwrap();
                let error = read_run(&*world.store, &world.owner, &run, 3).unwrap_err();
                let expected = if cut == 0 { 0 } else { offsets[4] };
                match &error {
                    KernelError::CorruptSpill { offset, what, .. } => {
                        assert_eq!(*offset, expected, "{backend} cut at {cut}: {error}");
                        assert!(what.contains("torn"), "{error}");
                    }
                    other => panic!("{backend} direct={direct_io} cut at {cut}: {other}"),
                }
            }
            drop(run);
            world.finish(&dir);
        }
    }
}

#[test]
fn the_quota_stops_a_run_and_frees_everything() {
    let dir = SpillDir::new("quota");
    for backend in BACKENDS {
        let world = World::new(&dir, backend, |config| {
            config.quota_bytes = Some(3 * SEGMENT_SIZE as u64);
        });
        let full = vec![vec![7; PAYLOAD_MAX]; 5];
        let error = write_run(&*world.store, &world.owner, &full, options(false, 2)).unwrap_err();
        assert!(
            matches!(
                error,
                KernelError::DiskQuotaExceeded {
                    quota_bytes: 49152,
                    used_bytes: 49152,
                    requested_bytes: 16384
                }
            ),
            "{error}"
        );
        assert_eq!(
            world.store.stats().bytes_on_disk,
            0,
            "the abandoned run's space is free"
        );
        let run = write_run(&*world.store, &world.owner, &full[..3], options(false, 2)).unwrap();
        assert_eq!(world.store.stats().bytes_on_disk, 3 * SEGMENT_SIZE as u64);
        drop(run);
        world.finish(&dir);
    }
}

#[test]
fn abandoned_writers_and_readers_give_every_segment_back() {
    let dir = SpillDir::new("abandon");
    for backend in BACKENDS {
        let world = World::new(&dir, backend, |_| {});
        let payloads = Rng(0x5EED_0004).payloads(30);
        let mut writer = world.store.create_run(options(false, 4)).unwrap();
        for payload in &payloads[..4] {
            let mut segment = world.owner.allocate_one().unwrap();
            segment.put_bytes(SPILL_BLOCK_HEADER_SIZE, payload);
            drop(writer.write_block(segment, payload.len()).unwrap());
        }
        drop(writer);
        let run = write_run(&*world.store, &world.owner, &payloads, options(true, 4)).unwrap();
        let mut reader = world
            .store
            .open_run(&run, world.owner.allocate(4).unwrap())
            .unwrap();
        let block = reader.next_block().unwrap().unwrap();
        reader.recycle(block.segment);
        drop(reader);
        let mut reader = world
            .store
            .open_run(&run, world.owner.allocate(4).unwrap())
            .unwrap();
        let block = reader.next_block().unwrap().unwrap();
        assert_eq!(
            reader.into_segments().len(),
            3,
            "the caller holds the fourth"
        );
        drop((block, run));
        world.finish(&dir);
    }
}

#[test]
fn a_merge_can_read_128_runs_at_once() {
    let dir = SpillDir::new("fan-in");
    for backend in BACKENDS {
        let world = World::new(&dir, backend, |_| {});
        let runs: Vec<SpillRun> = (0..128u8)
            .map(|i| {
                let payloads = vec![vec![i; 100], vec![i; 200]];
                write_run(&*world.store, &world.owner, &payloads, options(false, 1)).unwrap()
            })
            .collect();
        let mut readers: Vec<_> = runs
            .iter()
            .map(|run| {
                world
                    .store
                    .open_run(run, world.owner.allocate(1).unwrap())
                    .unwrap()
            })
            .collect();
        for round in 0..2 {
            for (i, reader) in readers.iter_mut().enumerate() {
                let block = reader.next_block().unwrap().unwrap();
                assert_eq!(block.payload.len(), 100 * (round + 1));
                assert!(
                    block.segment.as_slice()[block.payload.clone()]
                        .iter()
                        .all(|&b| b == i as u8)
                );
                reader.recycle(block.segment);
            }
        }
        for reader in readers {
            drop(reader.into_segments());
        }
        drop(runs);
        world.finish(&dir);
    }
}

#[test]
fn compressed_runs_need_two_buffers_and_a_scratch_owner() {
    let dir = SpillDir::new("needs");
    for backend in BACKENDS {
        let world = World::new(&dir, backend, |_| {});
        let payloads = vec![vec![b'x'; 5000]];
        let run = write_run(&*world.store, &world.owner, &payloads, options(true, 1)).unwrap();
        let error = world
            .store
            .open_run(&run, world.owner.allocate(1).unwrap())
            .unwrap_err();
        assert!(
            error.to_string().contains("open_run buffers = 1"),
            "{error}"
        );
        let small = MemoryManager::new(MemoryConfig {
            segment_size: 4096,
            ..MemoryConfig::with_budget(2 * 4096)
        })
        .unwrap();
        let buffers = small.owner("small").allocate(2).unwrap();
        let error = world.store.open_run(&run, buffers).unwrap_err();
        assert!(
            error.to_string().contains("a segment of 4096 bytes"),
            "{error}"
        );
        small.leak_check().unwrap();
        drop(run);
        let mut config = SpillConfig::new(dir.path().to_path_buf());
        config.allow_memory_filesystem = true;
        config.backend = Some(backend);
        let plain = open_store(&config).unwrap();
        let error = plain.create_run(options(true, 1)).unwrap_err();
        assert!(error.to_string().contains("scratch"), "{error}");
        world.finish(&dir);
    }
}

/// Writes two runs and merges them into a third through `store`, reading all back.
fn spill_and_merge(
    store: &dyn SpillStore,
    owner: &Owner,
    compress: bool,
) -> Result<(), KernelError> {
    let mut rng = Rng(0x5EED_0005);
    let first = write_run(store, owner, &rng.payloads(4), options(compress, 2))?;
    let second = write_run(store, owner, &rng.payloads(3), options(compress, 1))?;
    let mut merged = read_run(store, owner, &first, 3)?;
    merged.extend(read_run(store, owner, &second, 2)?);
    drop((first, second));
    let third = write_run(store, owner, &merged, options(compress, 3))?;
    assert!(read_run(store, owner, &third, 4)? == merged);
    Ok(())
}

#[test]
fn a_failing_write_or_read_at_every_position_is_an_error_and_leaves_nothing() {
    let dir = SpillDir::new("faults");
    for backend in BACKENDS {
        for compress in [false, true] {
            let (mut writes, mut reads) = (0, 0);
            for n in 1.. {
                let world = World::new(&dir, backend, |_| {});
                let faulty = FaultyStore::new(Arc::clone(&world.store), Some(n), None);
                let failed = spill_and_merge(&faulty, &world.owner, compress).is_err();
                world.finish(&dir);
                if !failed {
                    writes = n - 1;
                    break;
                }
            }
            for n in 1.. {
                let world = World::new(&dir, backend, |_| {});
                let faulty = FaultyStore::new(Arc::clone(&world.store), None, Some(n));
                let failed = spill_and_merge(&faulty, &world.owner, compress).is_err();
                world.finish(&dir);
                if !failed {
                    reads = n - 1;
                    break;
                }
            }
            assert_eq!(
                (writes, reads),
                (14, 14),
                "{backend}: every block write and read can fail"
            );
        }
    }
}

#[test]
fn a_block_corrupted_on_disk_at_every_position_is_caught() {
    let dir = SpillDir::new("corrupt-writes");
    for backend in BACKENDS {
        for compress in [false, true] {
            for n in 1..=14 {
                let world = World::new(&dir, backend, |_| {});
                let faulty =
                    FaultyStore::new(Arc::clone(&world.store), None, None).corrupt_write(n);
                let error = spill_and_merge(&faulty, &world.owner, compress).unwrap_err();
                assert!(
                    matches!(error, KernelError::CorruptSpill { .. }),
                    "{backend} block {n}: {error}"
                );
                world.finish(&dir);
            }
        }
    }
}

#[test]
fn threads_share_a_store_and_its_quota() {
    let dir = SpillDir::new("threads");
    for backend in BACKENDS {
        let world = World::new(&dir, backend, |config| {
            config.quota_bytes = Some(64 * SEGMENT_SIZE as u64);
        });
        std::thread::scope(|scope| {
            for seed in 0..4 {
                let (store, owner) = (&world.store, &world.owner);
                scope.spawn(move || {
                    let payloads = Rng(0x5EED_0100 + seed).payloads(12);
                    for round in 0..3 {
                        let compress = (seed + round) % 2 == 0;
                        let run =
                            write_run(&**store, owner, &payloads, options(compress, 2)).unwrap();
                        assert!(read_run(&**store, owner, &run, 3).unwrap() == payloads);
                    }
                });
            }
        });
        let stats = world.store.stats();
        assert_eq!((stats.runs_created, stats.blocks_written), (12, 144));
        assert!(
            stats.bytes_on_disk_peak <= 64 * SEGMENT_SIZE as u64,
            "{stats:?}"
        );
        world.finish(&dir);
    }
}
