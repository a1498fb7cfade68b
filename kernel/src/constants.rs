//! Every limit of the kernel, named in one place, with the relationships between them
//! checked at compile time.

/// Bytes in a memory segment unless a manager is configured otherwise: 32 KiB, as in Flink.
/// Large enough that per-segment bookkeeping is negligible next to the bytes it manages,
/// small enough that a sort buffer or a network buffer pool holds many of them.
pub const SEGMENT_SIZE_DEFAULT: usize = 32 * 1024;

/// The smallest segment a manager accepts: one page of the operating system.
pub const SEGMENT_SIZE_MIN: usize = 4 * 1024;

/// The largest segment a manager accepts. Record addresses keep the in-segment offset in the
/// low `log2(segment size)` bits, so a larger segment would shrink the addressable chain.
pub const SEGMENT_SIZE_MAX: usize = 1024 * 1024;

/// Alignment of every segment's first byte. 4096 satisfies `O_DIRECT` on every filesystem we
/// spill to (512-byte or 4096-byte logical blocks) and lets typed `Pod` views of any
/// primitive start at offset 0.
pub const SEGMENT_ALIGN: usize = 4096;

/// Segments one manager may hold. Segment indexes are `u32`, and the arena is one mapping.
pub const SEGMENTS_PER_MANAGER_MAX: usize = u32::MAX as usize;

/// Bytes of a LEB128-encoded `u64`: ceil(64 / 7).
pub const VARINT_U64_BYTES_MAX: usize = 10;

/// Bytes at the start of every spill block (and of the segment it is written from): magic,
/// flags, lengths, sequence number and checksum. The payload follows, so a segment is
/// written to disk as it is, with no copy. Layout in docs/FORMAT.md.
pub const SPILL_BLOCK_HEADER_SIZE: usize = 32;

/// Spill blocks are padded on disk to a multiple of this, so every write and read of a
/// block is valid for `O_DIRECT` (512 would do here; 4096 fits every filesystem).
pub const SPILL_BLOCK_ALIGN: usize = 4096;

/// Writes a run writer keeps in flight (write-behind) unless told otherwise.
pub const SPILL_WRITE_BEHIND_DEFAULT: usize = 4;

/// Blocks a run reader reads ahead unless told otherwise.
pub const SPILL_READ_AHEAD_DEFAULT: usize = 2;

/// Whether spill files are opened with `O_DIRECT` unless configured otherwise: no. Spilled
/// runs are read back soon after they are written, and the page cache then serves the reads
/// from memory. Measured on this machine kind (virtio disk, ext4, 23 GiB RAM, 2 cores):
/// `dd` with `O_DIRECT` writes 718 MB/s and reads 2.3 GB/s at 1 MiB, 526 and 691 MB/s at
/// 32 KiB; `benches/spill_io.rs` (64 MiB run of 32 KiB blocks, no LZ4) writes 1.7–2.7 GiB/s
/// and reads 4.9–5.6 GiB/s buffered, against 0.2–0.6 GiB/s and 0.6–1.2 GiB/s with
/// `O_DIRECT`, on either backend. Direct I/O keeps spill data out of the page cache, which
/// pays only when the spill volume would evict memory other work needs;
/// `SpillConfig::direct_io` turns it on.
pub const SPILL_DIRECT_IO_DEFAULT: bool = false;

/// Blocks one run writer or reader keeps in flight at most, whatever it is asked for. An
/// io_uring per run is sized for this many entries (its completion queue for twice that),
/// so a merge of [`SORT_FAN_IN_MAX`] runs holds at most 128 small rings.
pub const SPILL_IN_FLIGHT_MAX: usize = 64;

/// Times one block read or write is resubmitted after `EINTR` or `EAGAIN` before it fails.
/// Each retry makes progress or the kernel is refusing; a bound turns a livelock into an
/// error that names the file and offset.
pub const SPILL_IO_RETRIES_MAX: u32 = 64;

/// The most runs one merge reads at once. Each run needs its read-ahead segments, and a
/// loser tree deeper than seven levels stops paying for itself against another pass.
pub const SORT_FAN_IN_MAX: usize = 128;

/// The fewest runs a merge reads at once: below two a merge makes no progress.
pub const SORT_FAN_IN_MIN: usize = 2;

/// The share of a sorter's memory (1 / this) reserved up front for spilling and merging,
/// so that neither can fail once sorting has started.
pub const SORT_MERGE_SHARE_INVERSE: usize = 8;

/// Bytes of a sort index entry: a 16-byte key prefix and the record's address.
pub const SORT_INDEX_ENTRY_SIZE: usize = 24;

/// Key bytes held in a sort index entry, compared as two big-endian `u64`s.
pub const SORT_KEY_PREFIX_SIZE: usize = 16;

/// Ranges at most this long are sorted by comparison; longer ones get another radix pass.
pub const SORT_RADIX_THRESHOLD: usize = 1024;

/// Partitions a hash aggregation splits its groups into when it spills, unless configured
/// otherwise: each spill of the table writes up to this many runs, and each spilled
/// partition is re-aggregated on its own. 32 partitions shrink a level's data 32-fold, so
/// three levels cover 32 768 times the table's memory, while the runs of one spill stay
/// few enough to keep their files open.
pub const HASH_PARTITIONS_DEFAULT: usize = 32;

/// The most partitions a hash aggregation splits into: the partition is the top bits of a
/// bucket's 16-bit hash tag, and beyond 64 one table spill scatters into tiny runs.
pub const HASH_PARTITIONS_MAX: usize = 64;

/// The fewest partitions: below two, re-partitioning cannot split anything.
pub const HASH_PARTITIONS_MIN: usize = 2;

/// Levels of re-aggregation (a spilled partition re-aggregated with a new hash seed, its
/// own spills re-aggregated again, ...) before a partition falls back to sort-based
/// aggregation, unless configured otherwise. Flink's hash tables stop at 3 as well.
pub const HASH_RECURSION_DEPTH_DEFAULT: usize = 3;

/// The deepest recursion a configuration may ask for.
pub const HASH_RECURSION_DEPTH_MAX: usize = 16;

/// A spilled partition "does not shrink" when it holds at least this share (percent) of
/// the bytes of the partition whose re-aggregation spilled it: re-partitioning with a new
/// seed did not split it (one hot key), so it is aggregated by sorting instead.
pub const HASH_SHRINK_PERCENT_MIN: u64 = 75;

/// Bytes of a bucket of a hash table: a 16-bit hash tag and a 48-bit record address + 1
/// (0 marks an empty bucket).
pub const HASH_BUCKET_SIZE: usize = 8;

/// Bits of a bucket's hash tag: the top bits of the key's hash, compared before the key.
pub const HASH_TAG_BITS: u32 = 16;

/// The fill (percent of buckets in use) at which a hash table's bucket array doubles, or
/// the table spills when it cannot. Linear probing at 75% needs about 2.5 probes to find a
/// key and 8.5 to miss; with 8-byte buckets that is one or two cache lines.
pub const HASH_LOAD_PERCENT_MAX: usize = 75;

/// Keys a hash table hashes, and whose home buckets it prefetches, before it looks any
/// of them up (a batch of input, or of records rehashed when the bucket array grows):
/// their cache misses overlap instead of coming one after another. Sixteen misses in
/// flight is about what a core's line fill buffers hold.
pub const HASH_PREFETCH_BATCH: usize = 16;

/// The share of a hash table's memory (1 / this) its bucket array may take at most; the
/// rest holds records.
pub const HASH_BUCKET_SHARE_INVERSE: usize = 2;

/// The share (percent) of a full hash table's record bytes one spill writes out, largest
/// partitions first. The partitions that stay keep aggregating in memory, and those that
/// never spill are streamed from memory at the end without touching the disk, so an
/// input slightly larger than memory spills only part of its groups. Half keeps the
/// number of spills (each rebuilds the table around the groups that stay) low.
pub const HASH_SPILL_SHARE_PERCENT: u64 = 50;

/// The share (percent) of a full record area that must be garbage (records of variable-size
/// accumulators that moved) for the table to compact it rather than spill. Compaction
/// copies every live record once, so it pays when it frees a good part of the area.
pub const HASH_COMPACT_GARBAGE_PERCENT_MIN: u64 = 25;

/// The fewest partitions a hash join splits its build side into. Fewer would leave a
/// spilled partition too close to the whole input for one level of recursion to help.
pub const HASH_JOIN_PARTITIONS_MIN: usize = 10;

/// The most partitions a hash join splits its build side into: each spilled partition
/// keeps a bloom filter and a probe run writer in memory, and the partition index fits the
/// 7 bits a bucket entry keeps for it.
pub const HASH_JOIN_PARTITIONS_MAX: usize = 127;

/// Segments of join memory per partition when the partition count is chosen from memory:
/// a partition then holds several segments of build records before it is the largest, so a
/// spill writes a run worth its file, and the per-partition reserve (bloom filter and probe
/// writer, [`HASH_JOIN_SEGMENTS_RESERVED_PER_PARTITION`]) stays under a fifth of memory.
pub const HASH_JOIN_SEGMENTS_PER_PARTITION: usize = 16;

/// Blocks a probe run writer of a spilled partition keeps in flight: every spilled
/// partition has one open during the probe phase, so each is kept to two segments.
pub const HASH_JOIN_PROBE_WRITE_BEHIND: usize = 1;

/// Segments reserved per partition up front for the case that it spills: one bloom filter
/// segment and a probe run writer ([`HASH_JOIN_PROBE_WRITE_BEHIND`] + 1).
pub const HASH_JOIN_SEGMENTS_RESERVED_PER_PARTITION: usize = 1 + HASH_JOIN_PROBE_WRITE_BEHIND + 1;

/// Hash functions of a join partition's bloom filter. With one segment of bits per
/// partition (262 144 bits at 32 KiB) three functions give under 2% false positives up to
/// 25 000 build records in the partition (10 bits a key), and about 0.1% at 10 000.
pub const HASH_JOIN_BLOOM_HASHES: u32 = 3;

/// Segments a sort-merge fallback of a hash join holds the build records of one key in
/// before it writes them to a run (a hot key larger than memory) and reads them back for
/// each probe record of that key.
pub const HASH_JOIN_GROUP_SEGMENTS: usize = 2;

const _: () = assert!(HASH_PARTITIONS_MIN <= HASH_PARTITIONS_DEFAULT);
const _: () = assert!(HASH_PARTITIONS_DEFAULT <= HASH_PARTITIONS_MAX);
const _: () = assert!(HASH_PARTITIONS_MAX.is_power_of_two());
const _: () = assert!(HASH_PARTITIONS_MAX <= 1 << HASH_TAG_BITS);
const _: () = assert!(HASH_RECURSION_DEPTH_DEFAULT <= HASH_RECURSION_DEPTH_MAX);
const _: () = assert!(HASH_JOIN_PARTITIONS_MIN <= HASH_JOIN_PARTITIONS_MAX);
const _: () = assert!(HASH_JOIN_PARTITIONS_MAX < 1 << 7);
const _: () =
    assert!(HASH_JOIN_SEGMENTS_RESERVED_PER_PARTITION * 5 <= HASH_JOIN_SEGMENTS_PER_PARTITION);
const _: () = assert!(HASH_JOIN_BLOOM_HASHES >= 1 && HASH_JOIN_GROUP_SEGMENTS >= 1);
const _: () = assert!(HASH_BUCKET_SIZE == 8 && HASH_TAG_BITS < 64);
const _: () = assert!(HASH_LOAD_PERCENT_MAX < 100 && HASH_SHRINK_PERCENT_MIN <= 100);
const _: () = assert!(HASH_SPILL_SHARE_PERCENT > 0 && HASH_SPILL_SHARE_PERCENT <= 100);
const _: () =
    assert!(HASH_COMPACT_GARBAGE_PERCENT_MIN > 0 && HASH_COMPACT_GARBAGE_PERCENT_MIN < 100);
// A bucket segment holds a whole number of buckets.
const _: () = assert!(SEGMENT_SIZE_MIN.is_multiple_of(HASH_BUCKET_SIZE));

const _: () = assert!(SORT_FAN_IN_MIN <= SORT_FAN_IN_MAX);
const _: () = assert!(SORT_KEY_PREFIX_SIZE + 8 == SORT_INDEX_ENTRY_SIZE);

const _: () = assert!(SPILL_BLOCK_HEADER_SIZE.is_multiple_of(8));
const _: () = assert!(SPILL_WRITE_BEHIND_DEFAULT <= SPILL_IN_FLIGHT_MAX);
const _: () = assert!(SPILL_READ_AHEAD_DEFAULT < SPILL_IN_FLIGHT_MAX);
// A block's on-disk length in alignment units fits the u16 a run keeps per block.
const _: () = assert!(SEGMENT_SIZE_MAX / SPILL_BLOCK_ALIGN <= u16::MAX as usize);
const _: () = assert!(SEGMENT_SIZE_MIN.is_multiple_of(SPILL_BLOCK_ALIGN));
const _: () = assert!(SPILL_BLOCK_HEADER_SIZE < SEGMENT_SIZE_MIN / 2);

const _: () = assert!(SEGMENT_SIZE_DEFAULT.is_power_of_two());
const _: () = assert!(SEGMENT_SIZE_MIN.is_power_of_two());
const _: () = assert!(SEGMENT_SIZE_MAX.is_power_of_two());
const _: () = assert!(SEGMENT_SIZE_MIN <= SEGMENT_SIZE_DEFAULT);
const _: () = assert!(SEGMENT_SIZE_DEFAULT <= SEGMENT_SIZE_MAX);
// Every segment size is a whole number of alignment units, so segment `i` of an arena that
// starts aligned starts aligned too.
const _: () = assert!(SEGMENT_SIZE_MIN.is_multiple_of(SEGMENT_ALIGN));
// Record addresses and byte positions are u64 and index memory: weir targets 64-bit.
const _: () = assert!(usize::BITS == 64);
// A primitive or varint never needs more than one segment boundary to cross.
const _: () = assert!(VARINT_U64_BYTES_MAX < SEGMENT_SIZE_MIN);

/// Building a join table's index, each record's home bucket is prefetched this many
/// records before the record is inserted, so the bucket array's cache misses (random by
/// design) overlap. With W3's probe-side prefetch (`HashJoin::prefetch`), it cut the CPU
/// time of `weir bench w3` at SF 1 from about 1.92 s to 1.75 s (validation included; 4
/// alternating runs on a shared machine).
pub const HASH_JOIN_INDEX_PREFETCH_DISTANCE: usize = 16;
const _: () = assert!(HASH_JOIN_INDEX_PREFETCH_DISTANCE >= 1);

/// Bytes of the longest probe key a hash join's table remembers with what it found, so
/// that the next probe of the same key skips the lookup (a probe side clustered by key,
/// as `lineitem` is by order key, repeats its keys). An integer key takes 8 bytes;
/// longer keys are looked up every time. The memo lives in the table, not in segments.
pub const HASH_JOIN_MEMO_KEY_BYTES_MAX: usize = 32;

/// Probes a join's key filter answers before it judges whether the filter pays.
pub const HASH_JOIN_FILTER_PROBATION: u64 = 1 << 16;

/// A join whose key filter let more than this percentage of its first
/// [`HASH_JOIN_FILTER_PROBATION`] probes through (a probe side that mostly matches) stops
/// asking it: the filter's cache line then only adds to the bucket's.
pub const HASH_JOIN_FILTER_PASS_PERCENT_MAX: u64 = 50;

/// The most keys a join table builds a key filter for: 2 MiB of filter at 16 bits a key,
/// about what stays in a core's cache; a larger filter would miss the cache as the
/// bucket array does.
pub const HASH_JOIN_FILTER_KEYS_MAX: usize = 1 << 20;
