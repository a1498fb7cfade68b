//! `ChannelSelector`: which output channel a record goes to.
//!
//! ```text
//!   record ──select_channel──▶ ChannelIndex ──to_subpartition──▶ ResultPartition::try_emit_record
//!   (broadcast selectors are never asked: the writer calls try_broadcast_record instead)
//! ```
//!
//! Hash partitioning goes through key groups, as Flink's does, so that rescaling moves
//! whole key groups between channels:
//!
//! ```text
//!   key hash ──murmur mix──▶ % max_parallelism ──▶ key group ──× channels / max_parallelism──▶ channel
//! ```

use std::fmt;

use super::ids::ChannelIndex;
use crate::constants::KEY_GROUPS_MAX_DEFAULT;

/// Picks the output channel of each record.
pub trait ChannelSelector: Send + fmt::Debug {
    /// Prepares the selector for `channels` output channels; called once before the first
    /// record.
    fn setup(&mut self, channels: u32);

    /// The channel `record` goes to.
    fn select_channel(&mut self, record: &[u8]) -> ChannelIndex;

    /// Whether every record goes to every channel (the writer then broadcasts and never
    /// calls [`select_channel`](Self::select_channel)).
    fn is_broadcast(&self) -> bool {
        false
    }
}

/// Every record to channel 0: the one downstream subtask this producer is wired to.
#[derive(Debug, Default)]
pub struct ForwardSelector;

impl ChannelSelector for ForwardSelector {
    fn setup(&mut self, channels: u32) {
        assert!(channels >= 1, "forward needs a channel");
    }

    fn select_channel(&mut self, _record: &[u8]) -> ChannelIndex {
        ChannelIndex(0)
    }
}

/// Records in turn to channels 0, 1, …, n − 1, 0, … (rebalance).
#[derive(Debug, Default)]
pub struct RoundRobinSelector {
    channels: u32,
    next: u32,
}

impl RoundRobinSelector {
    /// A selector whose first record goes to channel `start % channels` (Flink starts at
    /// a random channel so producers do not all hit channel 0 first; the caller passes a
    /// seeded start).
    pub fn starting_at(start: u32) -> RoundRobinSelector {
        RoundRobinSelector {
            channels: 0,
            next: start,
        }
    }
}

impl ChannelSelector for RoundRobinSelector {
    fn setup(&mut self, channels: u32) {
        assert!(channels >= 1, "round-robin needs a channel");
        self.channels = channels;
        self.next %= channels;
    }

    fn select_channel(&mut self, _record: &[u8]) -> ChannelIndex {
        assert!(self.channels >= 1, "round-robin selector used before setup");
        let channel = self.next;
        self.next = (self.next + 1) % self.channels;
        ChannelIndex(channel)
    }
}

/// Records in turn to the channels of this producer's partition (rescale). Under a
/// pointwise wiring ([`rescale_channels`]) a producer's partition reaches only a subset of
/// the downstream tasks, so rescale balances load locally without an all-to-all exchange.
/// Starts at channel 0, as Flink's does.
#[derive(Debug, Default)]
pub struct RescaleSelector(RoundRobinSelector);

impl ChannelSelector for RescaleSelector {
    fn setup(&mut self, channels: u32) {
        self.0.setup(channels);
    }

    fn select_channel(&mut self, record: &[u8]) -> ChannelIndex {
        self.0.select_channel(record)
    }
}

/// The downstream tasks producer `producer` of `producers` reaches under a pointwise
/// (rescale or forward) wiring to `consumers` tasks: with at least as many producers as
/// consumers each producer reaches one consumer (consumers share producers evenly);
/// otherwise each producer reaches a contiguous range of consumers, the ranges covering
/// every consumer once.
///
/// # Panics
///
/// When `producers` or `consumers` is 0, or `producer` is not below `producers`.
pub fn rescale_channels(producer: u32, producers: u32, consumers: u32) -> std::ops::Range<u32> {
    assert!(
        producers >= 1 && consumers >= 1,
        "a pointwise edge has both ends"
    );
    assert!(producer < producers, "producer {producer} of {producers}");
    let scale = |i: u32, of: u32, to: u32| {
        u32::try_from(u64::from(i) * u64::from(to) / u64::from(of)).expect("below `to`")
    };
    if producers >= consumers {
        let consumer = scale(producer, producers, consumers);
        consumer..consumer + 1
    } else {
        scale(producer, producers, consumers)..scale(producer + 1, producers, consumers)
    }
}

/// Records by key: the key's hash picks a key group, the key group picks the channel.
pub struct HashSelector<F> {
    key_hash: F,
    channels: u32,
    max_parallelism: u32,
}

impl<F: Fn(&[u8]) -> u32> HashSelector<F> {
    /// A selector with `key_hash` (the hash of a record's key) and
    /// [`KEY_GROUPS_MAX_DEFAULT`] key groups.
    pub fn new(key_hash: F) -> HashSelector<F> {
        HashSelector::with_max_parallelism(key_hash, KEY_GROUPS_MAX_DEFAULT)
    }

    /// A selector with `max_parallelism` key groups.
    ///
    /// # Panics
    ///
    /// When `max_parallelism` is 0.
    pub fn with_max_parallelism(key_hash: F, max_parallelism: u32) -> HashSelector<F> {
        assert!(max_parallelism >= 1, "at least one key group");
        HashSelector {
            key_hash,
            channels: 0,
            max_parallelism,
        }
    }
}

/// The default number of key groups (maximum parallelism) for a job of `parallelism`, as
/// Flink computes it: `parallelism × 1.5` rounded up to a power of two, at least
/// [`KEY_GROUPS_MAX_DEFAULT`] (128) and at most 32 768, so rescaling has room.
pub fn default_max_parallelism(parallelism: u32) -> u32 {
    const UPPER: u32 = 1 << 15;
    let wanted = parallelism.saturating_add(parallelism / 2).min(UPPER);
    wanted
        .next_power_of_two()
        .clamp(KEY_GROUPS_MAX_DEFAULT, UPPER)
}

/// The key group of a key hash: the hash mixed (Murmur3's 32-bit finalizer, so that
/// poor hashes such as small integers still spread) modulo `max_parallelism`.
pub fn key_group(key_hash: u32, max_parallelism: u32) -> u32 {
    let mut h = key_hash;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    if max_parallelism.is_power_of_two() {
        // The default maximum parallelism is a power of two: a mask, not a division.
        h & (max_parallelism - 1)
    } else {
        h % max_parallelism
    }
}

/// The channel that owns `key_group` among `channels`:
/// `key_group * channels / max_parallelism`, so each channel owns a contiguous range.
///
/// # Panics
///
/// When `key_group` is not below `max_parallelism`.
pub fn channel_for_key_group(key_group: u32, channels: u32, max_parallelism: u32) -> ChannelIndex {
    assert!(
        key_group < max_parallelism,
        "key group {key_group} of {max_parallelism}"
    );
    let scaled = u64::from(key_group) * u64::from(channels);
    let channel = if max_parallelism.is_power_of_two() {
        scaled >> max_parallelism.trailing_zeros()
    } else {
        scaled / u64::from(max_parallelism)
    };
    ChannelIndex(u32::try_from(channel).expect("below channels"))
}

impl<F: Fn(&[u8]) -> u32 + Send> ChannelSelector for HashSelector<F> {
    fn setup(&mut self, channels: u32) {
        assert!(
            (1..=self.max_parallelism).contains(&channels),
            "hash partitioning to {channels} channels with {} key groups",
            self.max_parallelism
        );
        self.channels = channels;
    }

    fn select_channel(&mut self, record: &[u8]) -> ChannelIndex {
        assert!(self.channels >= 1, "hash selector used before setup");
        let group = key_group((self.key_hash)(record), self.max_parallelism);
        channel_for_key_group(group, self.channels, self.max_parallelism)
    }
}

impl<F> fmt::Debug for HashSelector<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashSelector")
            .field("channels", &self.channels)
            .field("max_parallelism", &self.max_parallelism)
            .finish_non_exhaustive()
    }
}

/// Every record to every channel.
#[derive(Debug, Default)]
pub struct BroadcastSelector;

impl ChannelSelector for BroadcastSelector {
    fn setup(&mut self, channels: u32) {
        assert!(channels >= 1, "broadcast needs a channel");
    }

    /// # Panics
    ///
    /// Always: a broadcast record goes to every channel, not one (a caller bug).
    fn select_channel(&mut self, _record: &[u8]) -> ChannelIndex {
        panic!("a broadcast selector picks no single channel; broadcast the record")
    }

    fn is_broadcast(&self) -> bool {
        true
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::buffer::test_support::Rng;

    fn first_byte_hash(record: &[u8]) -> u32 {
        u32::from(record[0])
    }

    #[test]
    fn forward_always_picks_channel_zero() {
        let mut selector = ForwardSelector;
        selector.setup(4);
        assert!(!selector.is_broadcast());
        for record in [&b"a"[..], b"bc", b""] {
            assert_eq!(selector.select_channel(record), ChannelIndex(0));
        }
    }

    #[test]
    fn round_robin_cycles_from_its_start() {
        let mut selector = RoundRobinSelector::starting_at(5);
        selector.setup(3);
        let picked: Vec<u32> = (0..7).map(|_| selector.select_channel(b"x").0).collect();
        assert_eq!(picked, [2, 0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn rescale_cycles_from_zero_and_pointwise_wiring_covers_every_consumer_once() {
        let mut selector = RescaleSelector::default();
        selector.setup(2);
        let picked: Vec<u32> = (0..3).map(|_| selector.select_channel(b"x").0).collect();
        assert_eq!(picked, [0, 1, 0]);
        // 2 producers to 6 consumers: 3 each, contiguous.
        assert_eq!(rescale_channels(0, 2, 6), 0..3);
        assert_eq!(rescale_channels(1, 2, 6), 3..6);
        // 4 producers to 2 consumers: two producers per consumer.
        let reached: Vec<_> = (0..4).map(|p| rescale_channels(p, 4, 2)).collect();
        assert_eq!(reached, [0..1, 0..1, 1..2, 1..2]);
        // Uneven: 3 producers to 7 consumers still cover each consumer exactly once.
        let mut covered: Vec<u32> = (0..3).flat_map(|p| rescale_channels(p, 3, 7)).collect();
        covered.sort_unstable();
        assert_eq!(covered, (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn hash_follows_key_groups_and_keeps_a_key_on_one_channel() {
        let mut rng = Rng::new(11);
        let mut selector = HashSelector::new(first_byte_hash);
        selector.setup(3);
        let mut seen = [0usize; 3];
        for _ in 0..300 {
            let len = 1 + rng.below(8);
            let record = rng.bytes(len);
            let channel = selector.select_channel(&record);
            let group = key_group(first_byte_hash(&record), 128);
            assert!(group < 128);
            assert_eq!(channel.0, group * 3 / 128);
            assert_eq!(
                selector.select_channel(&record),
                channel,
                "same key, same channel"
            );
            seen[channel.as_usize()] += 1;
        }
        assert!(seen.iter().all(|&count| count > 0), "{seen:?}");
    }

    #[test]
    fn default_max_parallelism_follows_flinks_rule() {
        assert_eq!(default_max_parallelism(1), 128);
        assert_eq!(default_max_parallelism(100), 256, "150 rounded up");
        assert_eq!(default_max_parallelism(1000), 2048);
        assert_eq!(default_max_parallelism(u32::MAX), 32_768);
    }

    #[test]
    fn key_groups_map_to_contiguous_channel_ranges() {
        let channels: Vec<u32> = (0..128)
            .map(|g| channel_for_key_group(g, 4, 128).0)
            .collect();
        assert!(channels.windows(2).all(|w| w[0] <= w[1]));
        for channel in 0..4 {
            assert_eq!(channels.iter().filter(|&&c| c == channel).count(), 32);
        }
        assert_eq!(channel_for_key_group(127, 128, 128), ChannelIndex(127));
    }

    #[test]
    #[should_panic(expected = "hash partitioning to 129 channels with 128 key groups")]
    fn more_channels_than_key_groups_is_a_bug() {
        HashSelector::new(first_byte_hash).setup(129);
    }

    #[test]
    #[should_panic(expected = "picks no single channel")]
    fn broadcast_picks_no_single_channel() {
        let mut selector = BroadcastSelector;
        selector.setup(2);
        assert!(selector.is_broadcast());
        let _ = selector.select_channel(b"x");
    }
}
