//! Every limit of the network stack, named in one place, with the relationships between
//! them checked at compile time.

use std::time::Duration;

use weir_kernel::constants::SEGMENT_SIZE_MAX;

/// The bit of a buffer builder's position word that says the writer has finished. The
/// committed byte position lives in the bits below it, so committing bytes and finishing
/// are each one atomic store of one `u32`.
pub const BUFFER_POSITION_FINISHED_BIT: u32 = 1 << 31;

/// The largest committed position a buffer builder's position word can hold.
pub const BUFFER_POSITION_MAX: u32 = BUFFER_POSITION_FINISHED_BIT - 1;

// Every segment a manager can hand out fits the position word, so a committed position is
// never confused with the finished bit.
const _: () = assert!(SEGMENT_SIZE_MAX as u64 <= BUFFER_POSITION_MAX as u64);
const _: () = assert!(BUFFER_POSITION_FINISHED_BIT & BUFFER_POSITION_MAX == 0);

/// Key groups (the maximum parallelism) of hash partitioning unless a job sets its own:
/// a key hash picks one of these groups, and each channel owns a contiguous range of them.
pub const KEY_GROUPS_MAX_DEFAULT: u32 = 128;

/// The most entries (data buffers and events) a result subpartition's queue holds. Data
/// buffers are bounded far below this by the partition's buffer pool; reaching it means a
/// producer queued events without end (a bug).
pub const SUBPARTITION_QUEUE_MAX: usize = 4096;

/// Buffers per channel in Flink's sizing rules: a partition pool's maximum grows by this
/// many segments per subpartition (and a remote input channel's exclusive buffers).
pub const BUFFERS_PER_CHANNEL_DEFAULT: usize = 2;

/// Floating buffers per gate in Flink's sizing rules: shared by all channels of a gate, and
/// the slack of a partition pool's maximum.
pub const FLOATING_BUFFERS_PER_GATE_DEFAULT: usize = 8;

/// The most segments one subpartition may hold lent at once, so one slow or skewed
/// channel cannot take a partition's whole pool.
pub const MAX_BUFFERS_PER_SUBPARTITION_DEFAULT: usize = 10;

/// Segments a writer in the middle of a record may take beyond its pool's size rather
/// than block mid-record.
pub const MAX_OVERDRAFT_BUFFERS_DEFAULT: usize = 5;

/// The bytes of a record's length prefix (a little-endian `u32`).
pub const RECORD_LENGTH_PREFIX_BYTES: usize = 4;

/// The largest record a record reader accepts unless configured otherwise (64 MiB): a
/// length prefix above it is malformed input, not a reason to allocate.
pub const RECORD_BYTES_MAX_DEFAULT: usize = 64 << 20;

/// Spans of the debloater's moving average over which it keeps the most buffers in use
/// it saw, the count it sizes buffers for (see [`crate::debloat`]): a consumer starved
/// for a few seconds must not forget how many buffers its queues hold when full.
pub const DEBLOAT_IN_USE_PEAK_SPANS: u32 = 5;

/// How many times faster the debloater's moving average shrinks buffers than it grows
/// them (see [`crate::debloat`]): buffers too large delay barriers at once, buffers too
/// small cost little.
pub const DEBLOAT_SHRINK_SPEEDUP: u32 = 4;

/// How long a connection may go without a single byte from its peer before it fails as
/// stopped, hung or partitioned: long enough for a loaded machine's scheduling hiccups,
/// short enough that a job does not wait on a dead peer for long.
pub const PEER_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// The shortest peer timeout a configuration may set: below it a busy machine's pauses
/// would fail healthy connections.
pub const PEER_TIMEOUT_MIN: Duration = Duration::from_millis(100);

/// The longest heartbeat interval by default: a connection that sent nothing for this long
/// sends a heartbeat.
pub const HEARTBEAT_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);

/// Heartbeats a silent connection sends per peer timeout (at least): one lost to a
/// scheduling pause leaves three to prove the peer alive.
pub const HEARTBEATS_PER_PEER_TIMEOUT: u32 = 4;

/// How often the startup handshake looks at its connections again when none made
/// progress (startup only; the event loop waits on readiness).
pub const STARTUP_POLL_INTERVAL: Duration = Duration::from_millis(2);

/// The wait before connecting again to a peer that refused or dropped a connection at
/// startup (it may not be listening yet).
pub const STARTUP_CONNECT_RETRY: Duration = Duration::from_millis(20);

/// How long one connection attempt to a peer may block at startup.
pub const STARTUP_CONNECT_ATTEMPT_MAX: Duration = Duration::from_secs(1);

/// The most accepted connections that have not said hello yet, at startup and after: a
/// flood of strangers costs at most this many descriptors (the oldest is dropped first).
pub const STRANGERS_MAX: usize = 64;

/// How long a worker waits for every peer to connect and greet at startup by default.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// The first wait before a partition request for a partition not yet registered is
/// retried, by default; it doubles on every retry.
pub const REQUEST_BACKOFF_INITIAL_DEFAULT: Duration = Duration::from_millis(100);

/// How long a partition request may wait for its partition by default before the reader
/// is told PartitionNotFound.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// How long a stopping transport keeps sending what its readers still wait for, by
/// default.
pub const DRAIN_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// The longest a transport whose loop ended waits for each peer to close its side of the
/// connection (reading and dropping what the peer still sends), so that closing never
/// resets a connection whose last frames the peer has not read yet.
pub const LINGER_TIMEOUT: Duration = Duration::from_millis(500);

/// Between two reads of a connection that lingers before it closes.
pub const LINGER_POLL: Duration = Duration::from_millis(2);

/// Frames read and frames written per connection per pass of the transport's event loop:
/// one busy connection cannot keep the loop from the others (or from its timers) for
/// longer than this many frames take.
pub const FRAMES_PER_PASS: usize = 64;

/// Readiness events one poll of the event loop takes at most; more wait for the next
/// pass (the kernel keeps reporting them: none is lost).
pub const POLL_EVENTS_CAPACITY: usize = 256;

/// The first event-loop token of a connection accepted after startup: above every peer
/// index (a peer's token is its index), below the loop's own tokens at `usize::MAX`.
pub const STRANGER_TOKEN_FIRST: usize = 1 << 20;

/// The bytes of the buffer that payloads for channels that are gone are read into and
/// dropped.
pub const DISCARD_SCRATCH_BYTES: usize = 16 * 1024;

const _: () = assert!(HEARTBEATS_PER_PEER_TIMEOUT >= 2);
const _: () = assert!(PEER_TIMEOUT_MIN.as_nanos() < PEER_TIMEOUT_DEFAULT.as_nanos());
const _: () = assert!(
    HEARTBEAT_INTERVAL_DEFAULT.as_nanos()
        <= PEER_TIMEOUT_DEFAULT.as_nanos() / HEARTBEATS_PER_PEER_TIMEOUT as u128
);
const _: () = assert!(STRANGERS_MAX >= 1);
const _: () = assert!(FRAMES_PER_PASS >= 1);
const _: () = assert!(DISCARD_SCRATCH_BYTES >= 1);
const _: () = assert!(POLL_EVENTS_CAPACITY >= 1);
const _: () = assert!(KEY_GROUPS_MAX_DEFAULT >= 1);
const _: () = assert!(DEBLOAT_SHRINK_SPEEDUP >= 1);
const _: () = assert!(DEBLOAT_IN_USE_PEAK_SPANS >= 1);
const _: () = assert!(RECORD_BYTES_MAX_DEFAULT <= u32::MAX as usize);
const _: () = assert!(RECORD_LENGTH_PREFIX_BYTES == std::mem::size_of::<u32>());

/// The longest a gate reader parks at a time while its gate has nothing: how late it sees
/// a cancellation without a wake-up (a wake-up ends the park at once).
pub const GATE_PARK_TIMEOUT_DEFAULT: Duration = Duration::from_millis(50);

/// Segments of a worker's network budget kept beside its grant for incoming events (they
/// need no credit, so no exclusive or floating buffer holds them).
pub const EVENT_SEGMENTS: usize = 8;

/// How long a remote input channel waits at start for its exclusive buffers from the
/// grant (other tasks' pools may be giving segments back).
pub const EXCLUSIVE_BUFFERS_TIMEOUT: Duration = Duration::from_secs(10);
