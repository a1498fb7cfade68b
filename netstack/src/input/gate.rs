//! `InputGate`: one consumer task's view of N input channels, merged into one stream of
//! buffers.
//!
//! ```text
//!   channel 0 ──poll_next──▶ [lookahead 0] ──┐
//!   channel 1 ──poll_next──▶ [lookahead 1] ──┼──▶ poll_next: a priority event first,
//!   channel 2 ──poll_next──▶ [lookahead 2] ──┘    else round robin among channels with data
//! ```
//!
//! Each call fills every empty lookahead slot with one buffer from its channel, then hands
//! out a priority event if any slot holds one (scanning from the round-robin position), and
//! otherwise the next slot after the channel served last. Within one channel order is the
//! subpartition's (priority events overtake there already); across channels a priority
//! event overtakes the data buffers other channels hold in their slots. A channel's
//! priority event that arrives behind a buffer already in its slot waits for that one
//! buffer.
//!
//! **Availability: polling, with an optional waker.** `poll_next` answers
//! [`GatePoll::Pending`] when no channel has anything. A caller that wants to sleep
//! registers a waker on every live channel with [`InputGate::register_listener`] (the
//! subpartition listener) and polls once more before sleeping, since data may have arrived
//! in between; a wake-up may be spurious. Polling every channel per call is O(N) locks,
//! fine for the fan-ins of local exchanges; a ready-queue fed by listeners comes with the
//! remote channels.
//!
//! EndOfPartition buffers are handed out like any event, so a record reader can check that
//! its channel ended on a record boundary; once every channel has handed out its
//! EndOfPartition and every slot is empty the gate answers
//! [`GatePoll::EndOfPartitions`].
//!
//! **Aligned barriers.** A barrier (`DataType::Barrier`) travels in order behind the data
//! of its channel. When one arrives the gate blocks that channel (reads nothing more from
//! it; a remote sender then runs out of credit, a local one out of buffers) until the
//! barrier has arrived on every channel that has not ended; then it hands out one barrier
//! (the last to arrive) and unblocks them all. The time from the first barrier to the last
//! is the alignment time ([`GateMetrics::last_alignment`]).
//!
//! **Unaligned after a timeout.** With [`InputGate::set_alignment_timeout`], a barrier
//! still waiting for some channels when the timeout has passed since its first arrival
//! is handed out then: every channel is unblocked, and the channels whose barrier had not
//! arrived are *late* ([`InputGate::is_late`]). Their data until their own barrier is
//! what a snapshot taken at the released barrier has not seen: the channel state the
//! caller records (Chandy–Lamport). A late channel's barrier is handed out too, when it
//! comes (its channel is no longer late then), as is its EndOfPartition. A timeout of
//! zero releases every barrier at its first arrival. Barriers do not overtake the data
//! queued before them.

use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use super::channel::InputChannel;
use crate::buffer::{DataType, NetworkBuffer};
use crate::debloat::{BufferDebloater, Clock, DebloatConfig, ThroughputMeter};
use crate::error::Result;
use crate::partition::ChannelIndex;

/// The answer of [`InputGate::poll_next`].
#[derive(Debug)]
pub enum GatePoll {
    /// A buffer (data or an event) of a channel.
    Buffer(ChannelIndex, NetworkBuffer),
    /// Nothing available now; more may come.
    Pending,
    /// Every channel handed out EndOfPartition: nothing more will come.
    EndOfPartitions,
}

/// Counters of a gate, read with [`InputGate::metrics`]. Local channels read the
/// producer's buffers and hold no pool of their own; a gate's input pool usage comes with
/// remote channels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GateMetrics {
    /// Buffers its channels handed out (data and events), including ones not yet taken
    /// from the gate.
    pub buffers_in: u64,
    /// Bytes its channels handed out.
    pub bytes_in: u64,
    /// Finished data buffers queued at the producers, as last reported per channel.
    pub backlog: usize,
    /// Buffers the gate took from its channels and has not handed out yet.
    pub queued_buffers: usize,
    /// Bytes of those buffers.
    pub queued_bytes: u64,
    /// Channels that handed out EndOfPartition.
    pub ended_channels: usize,
    /// The buffer size debloating announced last (0 when debloating is off).
    pub debloated_buffer_size: usize,
    /// The throughput last measured, in bytes per second of time with data.
    pub throughput_bytes_per_s: u64,
    /// The data buffers between the producers' writers and the task: at the last
    /// debloating step with debloating (see [`InputGate::enable_debloating`]), now
    /// without.
    pub buffers_in_use: usize,
    /// The bytes in flight to the gate: buffers in use × the debloated buffer size.
    pub in_flight_bytes: u64,
    /// The estimated time to consume them at the last throughput, in milliseconds.
    pub time_to_consume_ms: u64,
    /// Barriers aligned (handed out once arrived on every channel).
    pub barriers_aligned: u64,
    /// The alignment time of the last aligned barrier: first arrival to last (to its
    /// release, for one released unaligned).
    pub last_alignment: Duration,
    /// Barriers released unaligned (the alignment timeout passed): counted in
    /// `barriers_aligned` too.
    pub barriers_unaligned: u64,
}

/// Merges the buffers of N local input channels: priority events first, then round robin
/// among the channels with data (see the module docs for the exact order).
#[derive(Debug)]
pub struct InputGate {
    channels: Vec<InputChannel>,
    // One buffer taken from each channel and not yet handed out.
    lookahead: Vec<Option<NetworkBuffer>>,
    // The channel to look at first for the next data buffer.
    next: usize,
    debloat: Option<GateDebloat>,
    // Channels blocked by an aligned barrier, and when the first of them arrived.
    blocked: Vec<bool>,
    alignment_started: Option<Instant>,
    // The last barrier to arrive while aligning; handed out once aligned.
    pending_barrier: Option<(ChannelIndex, NetworkBuffer)>,
    // An aligned barrier to hand out before anything else.
    ready_barrier: Option<(ChannelIndex, NetworkBuffer)>,
    barriers_aligned: u64,
    last_alignment: Duration,
    // How long a barrier may wait for the others before it is released unaligned.
    alignment_timeout: Option<Duration>,
    // By channel: the barriers released unaligned that have not come on it yet (a
    // channel can owe more than one when a later barrier is released before it caught up).
    late: Vec<u32>,
    barriers_unaligned: u64,
}

/// A gate's buffer debloating: its throughput meter and debloater, run every period.
#[derive(Debug)]
struct GateDebloat {
    clock: Arc<dyn Clock>,
    meter: ThroughputMeter,
    debloater: BufferDebloater,
    period: Duration,
    last_update: Duration,
    throughput: f64,
    buffers_in_use: usize,
}

impl InputGate {
    /// A gate over `channels`; channel `i` must carry index `i`.
    ///
    /// # Panics
    ///
    /// When there are no channels, or a channel's index is not its position.
    pub fn new<C: Into<InputChannel>>(channels: Vec<C>) -> InputGate {
        let channels: Vec<InputChannel> = channels.into_iter().map(Into::into).collect();
        assert!(!channels.is_empty(), "a gate has at least one channel");
        for (i, channel) in channels.iter().enumerate() {
            assert_eq!(
                channel.index().as_usize(),
                i,
                "{} at position {i} of the gate",
                channel.index()
            );
        }
        let lookahead = channels.iter().map(|_| None).collect();
        let blocked = vec![false; channels.len()];
        let late = vec![0; channels.len()];
        InputGate {
            channels,
            lookahead,
            next: 0,
            debloat: None,
            blocked,
            alignment_started: None,
            pending_barrier: None,
            ready_barrier: None,
            barriers_aligned: 0,
            last_alignment: Duration::ZERO,
            alignment_timeout: None,
            late,
            barriers_unaligned: 0,
        }
    }

    /// Releases a barrier unaligned once it waited `timeout` for the other channels
    /// (`None`, the default: always aligned); see the module documentation.
    pub fn set_alignment_timeout(&mut self, timeout: Option<Duration>) {
        self.alignment_timeout = timeout;
    }

    /// The alignment timeout ([`set_alignment_timeout`](Self::set_alignment_timeout)).
    pub fn alignment_timeout(&self) -> Option<Duration> {
        self.alignment_timeout
    }

    /// Whether `channel` is late: a barrier released unaligned has not come on it yet
    /// (nor has the channel ended). It may owe several, when a later barrier was
    /// released before it caught up with the first: late until the last came.
    ///
    /// # Panics
    ///
    /// When `channel` is out of range.
    pub fn is_late(&self, channel: ChannelIndex) -> bool {
        self.late[channel.as_usize()] > 0
    }

    /// The channels that are late now (see [`is_late`](Self::is_late)).
    pub fn late_channels(&self) -> usize {
        self.late.iter().filter(|&&owed| owed > 0).count()
    }

    /// Sizes the producers' buffers by this gate's throughput from now on (see
    /// [`crate::debloat`]), with time from `clock`; announces the initial size at once.
    ///
    /// # Errors
    ///
    /// [`NetError::InvalidConfig`](crate::NetError::InvalidConfig) for a configuration out
    /// of range.
    pub fn enable_debloating(
        &mut self,
        config: DebloatConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<()> {
        let debloater = BufferDebloater::new(config)?;
        if config.enabled {
            // The producers start from the initial size, not whole segments.
            for channel in &self.channels {
                channel.announce_buffer_size(debloater.size());
            }
        }
        let last_update = clock.now();
        self.debloat = Some(GateDebloat {
            meter: ThroughputMeter::new(Arc::clone(&clock)),
            clock,
            debloater,
            period: config.period,
            last_update,
            throughput: 0.0,
            buffers_in_use: 0,
        });
        Ok(())
    }

    /// The number of channels.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Channel `index`.
    ///
    /// # Panics
    ///
    /// When `index` is out of range.
    pub fn channel(&self, index: ChannelIndex) -> &InputChannel {
        &self.channels[index.as_usize()]
    }

    /// The next buffer: a priority event of any channel first, else the next channel with
    /// a buffer in round-robin order; [`GatePoll::Pending`] when none has anything, and
    /// [`GatePoll::EndOfPartitions`] once every channel has ended and been drained.
    ///
    /// # Errors
    ///
    /// The first failure of a remote channel (a lost peer, an error it reported, a
    /// protocol violation); the gate is then unusable.
    ///
    /// # Panics
    ///
    /// As [`LocalInputChannel::poll_next`](super::LocalInputChannel::poll_next).
    pub fn poll_next(&mut self) -> Result<GatePoll> {
        if let Some((channel, barrier)) = self.ready_barrier.take() {
            return Ok(GatePoll::Buffer(channel, barrier));
        }
        if let Some((channel, barrier)) = self.release_overdue() {
            return Ok(GatePoll::Buffer(channel, barrier));
        }
        loop {
            let polled = self.poll_one()?;
            let GatePoll::Buffer(channel, buffer) = polled else {
                return Ok(polled);
            };
            match buffer.data_type() {
                DataType::Barrier if self.late[channel.as_usize()] > 0 => {
                    // A released barrier, on a late channel: it caught up with that one.
                    self.late[channel.as_usize()] -= 1;
                    return Ok(GatePoll::Buffer(channel, buffer));
                }
                DataType::Barrier => {
                    // Block its channel until every live channel has one.
                    self.alignment_started.get_or_insert_with(Instant::now);
                    self.blocked[channel.as_usize()] = true;
                    self.pending_barrier = Some((channel, buffer));
                    if let Some((channel, barrier)) = self.complete_alignment() {
                        return Ok(GatePoll::Buffer(channel, barrier));
                    }
                    if let Some((channel, barrier)) = self.release_overdue() {
                        return Ok(GatePoll::Buffer(channel, barrier));
                    }
                }
                DataType::EndOfPartition => {
                    self.late[channel.as_usize()] = 0;
                    // The last live channel ending completes a pending alignment too.
                    self.ready_barrier = self.complete_alignment();
                    return Ok(GatePoll::Buffer(channel, buffer));
                }
                _ => return Ok(GatePoll::Buffer(channel, buffer)),
            }
        }
    }

    /// The pending barrier, once every channel is blocked by it or has ended; unblocks them.
    fn complete_alignment(&mut self) -> Option<(ChannelIndex, NetworkBuffer)> {
        self.pending_barrier.as_ref()?;
        let aligned = self
            .channels
            .iter()
            .zip(&self.blocked)
            .all(|(channel, &blocked)| blocked || channel.is_ended());
        if !aligned {
            return None;
        }
        self.blocked.iter_mut().for_each(|blocked| *blocked = false);
        if let Some(started) = self.alignment_started.take() {
            self.last_alignment = started.elapsed();
        }
        self.barriers_aligned += 1;
        self.pending_barrier.take()
    }

    /// The pending barrier once it waited the alignment timeout: every channel unblocked,
    /// those whose barrier has not come (and that have not ended) late.
    fn release_overdue(&mut self) -> Option<(ChannelIndex, NetworkBuffer)> {
        let timeout = self.alignment_timeout?;
        let started = self.alignment_started?;
        self.pending_barrier.as_ref()?;
        if started.elapsed() < timeout {
            return None;
        }
        for ((owed, blocked), channel) in self
            .late
            .iter_mut()
            .zip(&mut self.blocked)
            .zip(&self.channels)
        {
            if !*blocked && !channel.is_ended() {
                *owed += 1;
            }
            *blocked = false;
        }
        self.alignment_started = None;
        self.last_alignment = started.elapsed();
        self.barriers_aligned += 1;
        self.barriers_unaligned += 1;
        self.pending_barrier.take()
    }

    fn poll_one(&mut self) -> Result<GatePoll> {
        self.fill_lookahead()?;
        let n = self.channels.len();
        let order = (0..n).map(|k| (self.next + k) % n);
        let priority = order.clone().find(|&i| {
            self.lookahead[i]
                .as_ref()
                .is_some_and(|buffer| buffer.data_type().is_priority())
        });
        let chosen = priority.or_else(|| order.clone().find(|&i| self.lookahead[i].is_some()));
        if self.debloat.is_some() {
            self.debloat_step(chosen);
        }
        Ok(match chosen {
            Some(i) => {
                let buffer = self.lookahead[i].take().expect("the chosen slot is full");
                if priority.is_none() {
                    self.next = (i + 1) % n;
                }
                GatePoll::Buffer(channel_index(i), buffer)
            }
            None if self.is_finished() => GatePoll::EndOfPartitions,
            None => GatePoll::Pending,
        })
    }

    /// Feeds the throughput meter, and once a period announces a new buffer size to every
    /// channel's producer when the debloater says so.
    fn debloat_step(&mut self, chosen: Option<usize>) {
        let Some(debloat) = &mut self.debloat else {
            return;
        };
        match chosen.and_then(|i| self.lookahead[i].as_ref()) {
            Some(buffer) => {
                debloat.meter.resume();
                if buffer.data_type() == DataType::Data {
                    debloat.meter.record(buffer.len());
                }
            }
            None => debloat.meter.pause(),
        }
        let now = debloat.clock.now();
        if now.saturating_sub(debloat.last_update) < debloat.period {
            return;
        }
        debloat.last_update = now;
        let Some(throughput) = debloat.meter.take_throughput() else {
            return;
        };
        let in_use = self.buffers_in_use();
        let Some(debloat) = &mut self.debloat else {
            return;
        };
        debloat.throughput = throughput;
        debloat.buffers_in_use = in_use;
        let step = debloat.debloater.update(throughput, in_use.max(1));
        if step.announce {
            for channel in &self.channels {
                channel.announce_buffer_size(step.size);
            }
        }
    }

    /// The data buffers between the producers' writers and the task, counted when the task
    /// asks for its next buffer: those queued at or for each channel (see
    /// [`InputChannel::buffers_in_use`]) and those in the gate's lookahead slots, the one
    /// about to be handed out included. A barrier sent now waits behind all of them, so
    /// the debloater divides the wanted bytes by all of them; leaving out the slots (one per
    /// channel) sized every buffer too large by that share.
    fn buffers_in_use(&self) -> usize {
        let channels: usize = self.channels.iter().map(InputChannel::buffers_in_use).sum();
        let held = self
            .lookahead
            .iter()
            .flatten()
            .filter(|buffer| buffer.data_type() == DataType::Data)
            .count();
        channels + held
    }

    fn fill_lookahead(&mut self) -> Result<()> {
        let slots = self.lookahead.iter_mut().zip(&mut self.channels);
        for ((slot, channel), &blocked) in slots.zip(&self.blocked) {
            if slot.is_none() && !blocked {
                *slot = channel.poll_next()?;
            }
        }
        Ok(())
    }

    /// Registers `waker` with every channel that has not ended: woken when one of them may
    /// have data. Poll once more after registering (data may have arrived in between).
    pub fn register_listener(&self, waker: &Waker) {
        for channel in self.channels.iter().filter(|c| !c.is_ended()) {
            channel.register_listener(waker);
        }
    }

    /// The counters now.
    pub fn metrics(&self) -> GateMetrics {
        let queued = self.lookahead.iter().flatten();
        GateMetrics {
            buffers_in: self.channels.iter().map(InputChannel::buffers_in).sum(),
            bytes_in: self.channels.iter().map(InputChannel::bytes_in).sum(),
            backlog: self.channels.iter().map(InputChannel::backlog).sum(),
            queued_buffers: queued.clone().count(),
            queued_bytes: queued.map(|buffer| buffer.len() as u64).sum(),
            ended_channels: self.channels.iter().filter(|c| c.is_ended()).count(),
            barriers_aligned: self.barriers_aligned,
            last_alignment: self.last_alignment,
            barriers_unaligned: self.barriers_unaligned,
            ..self.debloat_metrics()
        }
    }

    fn debloat_metrics(&self) -> GateMetrics {
        let Some(debloat) = &self.debloat else {
            return GateMetrics {
                buffers_in_use: self.buffers_in_use(),
                ..GateMetrics::default()
            };
        };
        let size = debloat.debloater.size();
        let in_flight = (debloat.buffers_in_use * size) as u64;
        let time_to_consume_ms = if debloat.throughput > 0.0 {
            (in_flight as f64 * 1000.0 / debloat.throughput) as u64
        } else {
            0
        };
        GateMetrics {
            debloated_buffer_size: size,
            throughput_bytes_per_s: debloat.throughput as u64,
            buffers_in_use: debloat.buffers_in_use,
            in_flight_bytes: in_flight,
            time_to_consume_ms,
            ..GateMetrics::default()
        }
    }

    /// Whether every channel handed out EndOfPartition and the gate handed out everything.
    pub fn is_finished(&self) -> bool {
        self.channels.iter().all(InputChannel::is_ended)
            && self.lookahead.iter().all(Option::is_none)
    }
}

/// The index of the channel at position `i` (the gate checked every position in `new`).
fn channel_index(i: usize) -> ChannelIndex {
    ChannelIndex(u32::try_from(i).expect("a channel position fits a u32"))
}

#[cfg(all(test, not(loom)))]
mod barrier_tests {
    use std::sync::Arc;

    use super::*;
    use crate::buffer::test_support::manager;
    use crate::input::LocalInputChannel;
    use crate::partition::{ResultSubpartition, SubpartitionIndex};
    use crate::pool::{LocalBufferPool, NetworkBufferPool};

    fn buffer(pool: &LocalBufferPool, data_type: DataType, byte: u8) -> NetworkBuffer {
        let mut segment = pool.try_request().unwrap();
        segment.segment_mut().put_bytes(0, &[byte]);
        segment.into_buffer(1, data_type)
    }

    fn drain(gate: &mut InputGate) -> Vec<(usize, DataType, u8)> {
        let mut seen = Vec::new();
        while let GatePoll::Buffer(channel, buffer) = gate.poll_next().unwrap() {
            seen.push((
                channel.as_usize(),
                buffer.data_type(),
                buffer.as_bytes().first().copied().unwrap_or(0),
            ));
        }
        seen
    }

    /// A barrier blocks its channel until the barrier arrived on every channel; the data
    /// behind it waits, the others' data flows; then one barrier comes out.
    #[test]
    fn a_barrier_blocks_its_channel_until_aligned() {
        let manager = manager(16);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 16).unwrap();
        let pool = global.create_local_pool(16, 16).unwrap();
        let subpartitions: Vec<Arc<ResultSubpartition>> = (0..2)
            .map(|i| Arc::new(ResultSubpartition::new(SubpartitionIndex(i))))
            .collect();
        let mut gate = InputGate::new(
            subpartitions
                .iter()
                .enumerate()
                .map(|(i, s)| LocalInputChannel::new(channel_index(i), Arc::clone(s)))
                .collect(),
        );
        // Channel 0: barrier, then data 10. Channel 1: data 1, 2, then the barrier.
        subpartitions[0].add_event(buffer(&pool, DataType::Barrier, 0xB0));
        subpartitions[0].add_event(buffer(&pool, DataType::Event, 10));
        subpartitions[1].add_event(buffer(&pool, DataType::Event, 1));
        subpartitions[1].add_event(buffer(&pool, DataType::Event, 2));
        assert_eq!(
            drain(&mut gate),
            [(1, DataType::Event, 1), (1, DataType::Event, 2)],
            "channel 0 is blocked behind its barrier"
        );
        subpartitions[1].add_event(buffer(&pool, DataType::Barrier, 0xB1));
        assert_eq!(
            drain(&mut gate),
            [(1, DataType::Barrier, 0xB1), (0, DataType::Event, 10)],
            "aligned: one barrier, then channel 0 resumes"
        );
        let metrics = gate.metrics();
        assert_eq!(metrics.barriers_aligned, 1);
        drop((gate, subpartitions, pool, global));
        manager.leak_check().unwrap();
    }

    /// Two local channels over fresh subpartitions, and the pool their buffers come from.
    fn two_channels(
        pool_segments: usize,
    ) -> (
        weir_kernel::memory::MemoryManager,
        NetworkBufferPool,
        Vec<Arc<ResultSubpartition>>,
        InputGate,
    ) {
        let manager = manager(pool_segments);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, pool_segments).unwrap();
        let subpartitions: Vec<Arc<ResultSubpartition>> = (0..2)
            .map(|i| Arc::new(ResultSubpartition::new(SubpartitionIndex(i))))
            .collect();
        let gate = InputGate::new(
            subpartitions
                .iter()
                .enumerate()
                .map(|(i, s)| LocalInputChannel::new(channel_index(i), Arc::clone(s)))
                .collect(),
        );
        (manager, global, subpartitions, gate)
    }

    /// With a zero timeout a barrier comes out at its first arrival; the other channel is
    /// late (its data flows, marked late) until its barrier, which comes out too.
    #[test]
    fn a_zero_timeout_releases_a_barrier_at_once_and_marks_the_others_late() {
        let (manager, global, subpartitions, mut gate) = two_channels(16);
        let pool = global.create_local_pool(16, 16).unwrap();
        gate.set_alignment_timeout(Some(Duration::ZERO));
        subpartitions[0].add_event(buffer(&pool, DataType::Barrier, 0xB0));
        subpartitions[0].add_event(buffer(&pool, DataType::Event, 10));
        assert_eq!(
            drain(&mut gate),
            [(0, DataType::Barrier, 0xB0), (0, DataType::Event, 10)],
            "released at once, channel 0 not blocked"
        );
        assert!(gate.is_late(channel_index(1)) && !gate.is_late(channel_index(0)));
        assert_eq!(gate.late_channels(), 1);
        subpartitions[1].add_event(buffer(&pool, DataType::Event, 1));
        assert_eq!(drain(&mut gate), [(1, DataType::Event, 1)]);
        assert!(gate.is_late(channel_index(1)), "late until its barrier");
        subpartitions[1].add_event(buffer(&pool, DataType::Barrier, 0xB1));
        subpartitions[1].add_event(buffer(&pool, DataType::Event, 2));
        assert_eq!(
            drain(&mut gate),
            [(1, DataType::Barrier, 0xB1), (1, DataType::Event, 2)]
        );
        assert_eq!(gate.late_channels(), 0);
        let metrics = gate.metrics();
        assert_eq!(
            (metrics.barriers_aligned, metrics.barriers_unaligned),
            (1, 1)
        );
        drop((gate, subpartitions, pool, global));
        manager.leak_check().unwrap();
    }

    /// A barrier waits aligned until the timeout, then comes out; a late channel's
    /// EndOfPartition ends its lateness; the next barrier aligns as usual.
    #[test]
    fn a_barrier_is_released_after_the_timeout_and_the_next_one_aligns() {
        let (manager, global, subpartitions, mut gate) = two_channels(16);
        let pool = global.create_local_pool(16, 16).unwrap();
        gate.set_alignment_timeout(Some(Duration::from_millis(30)));
        subpartitions[0].add_event(buffer(&pool, DataType::Barrier, 0xB0));
        subpartitions[0].add_event(buffer(&pool, DataType::Event, 10));
        assert!(drain(&mut gate).is_empty(), "aligned before the timeout");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(
            drain(&mut gate),
            [(0, DataType::Barrier, 0xB0), (0, DataType::Event, 10)]
        );
        assert!(gate.is_late(channel_index(1)));
        // The next barrier on channel 0 blocks it: channel 1 still owes the first.
        subpartitions[0].add_event(buffer(&pool, DataType::Barrier, 0xC0));
        subpartitions[1].add_event(buffer(&pool, DataType::Barrier, 0xB1));
        subpartitions[1].add_event(buffer(&pool, DataType::Barrier, 0xC1));
        assert_eq!(
            drain(&mut gate),
            [(1, DataType::Barrier, 0xB1), (1, DataType::Barrier, 0xC1)],
            "the late barrier, then the next one aligned"
        );
        // Released again; channel 1 ends while late.
        subpartitions[0].add_event(buffer(&pool, DataType::Barrier, 0xD0));
        assert!(
            drain(&mut gate).is_empty(),
            "the timeout runs from its arrival"
        );
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(drain(&mut gate), [(0, DataType::Barrier, 0xD0)]);
        assert_eq!(gate.late_channels(), 1);
        subpartitions[1].finish(buffer(&pool, DataType::EndOfPartition, 0));
        assert_eq!(drain(&mut gate), [(1, DataType::EndOfPartition, 0)]);
        assert_eq!(gate.late_channels(), 0);
        assert_eq!(gate.metrics().barriers_unaligned, 2);
        drop((gate, subpartitions, pool, global));
        manager.leak_check().unwrap();
    }

    /// A channel that owes a released barrier when the next one is released owes both:
    /// late until both came.
    #[test]
    fn a_channel_owing_two_released_barriers_is_late_until_both_came() {
        let (manager, global, subpartitions, mut gate) = two_channels(16);
        let pool = global.create_local_pool(16, 16).unwrap();
        gate.set_alignment_timeout(Some(Duration::ZERO));
        subpartitions[0].add_event(buffer(&pool, DataType::Barrier, 0xB0));
        subpartitions[0].add_event(buffer(&pool, DataType::Barrier, 0xC0));
        assert_eq!(
            drain(&mut gate),
            [(0, DataType::Barrier, 0xB0), (0, DataType::Barrier, 0xC0)]
        );
        subpartitions[1].add_event(buffer(&pool, DataType::Barrier, 0xB1));
        subpartitions[1].add_event(buffer(&pool, DataType::Event, 1));
        assert_eq!(
            drain(&mut gate),
            [(1, DataType::Barrier, 0xB1), (1, DataType::Event, 1)]
        );
        assert!(gate.is_late(channel_index(1)), "it still owes the second");
        subpartitions[1].add_event(buffer(&pool, DataType::Barrier, 0xC1));
        assert_eq!(drain(&mut gate), [(1, DataType::Barrier, 0xC1)]);
        assert_eq!(gate.late_channels(), 0);
        drop((gate, subpartitions, pool, global));
        manager.leak_check().unwrap();
    }

    /// A channel that ends counts as aligned: the barrier of the others comes out.
    #[test]
    fn an_ending_channel_completes_the_alignment() {
        let manager = manager(8);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 8).unwrap();
        let pool = global.create_local_pool(8, 8).unwrap();
        let subpartitions: Vec<Arc<ResultSubpartition>> = (0..2)
            .map(|i| Arc::new(ResultSubpartition::new(SubpartitionIndex(i))))
            .collect();
        let mut gate = InputGate::new(
            subpartitions
                .iter()
                .enumerate()
                .map(|(i, s)| LocalInputChannel::new(channel_index(i), Arc::clone(s)))
                .collect(),
        );
        subpartitions[0].add_event(buffer(&pool, DataType::Barrier, 0xB0));
        assert!(drain(&mut gate).is_empty());
        subpartitions[1].finish(buffer(&pool, DataType::EndOfPartition, 0));
        assert_eq!(
            drain(&mut gate),
            [
                (1, DataType::EndOfPartition, 0),
                (0, DataType::Barrier, 0xB0)
            ]
        );
        drop((gate, subpartitions, pool, global));
        manager.leak_check().unwrap();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::buffer::DataType;
    use crate::buffer::test_support::{CountingWaker, manager};
    use crate::input::LocalInputChannel;
    use crate::partition::{ResultSubpartition, SubpartitionIndex};
    use crate::pool::{LocalBufferPool, NetworkBufferPool};

    fn event(pool: &LocalBufferPool, data_type: DataType, byte: u8) -> NetworkBuffer {
        let mut segment = pool.try_request().unwrap();
        segment.segment_mut().put_bytes(0, &[byte]);
        segment.into_buffer(1, data_type)
    }

    fn gate_over(subpartitions: &[Arc<ResultSubpartition>]) -> InputGate {
        let channels = subpartitions
            .iter()
            .enumerate()
            .map(|(i, s)| LocalInputChannel::new(channel_index(i), Arc::clone(s)))
            .collect();
        InputGate::new(channels)
    }

    fn drain(gate: &mut InputGate) -> Vec<(usize, DataType, u8)> {
        let mut out = Vec::new();
        while let GatePoll::Buffer(channel, buffer) = gate.poll_next().unwrap() {
            out.push((channel.as_usize(), buffer.data_type(), buffer.as_bytes()[0]));
        }
        out
    }

    /// Round robin among channels with buffers, a priority event ahead of data, in-order
    /// events in place, and the end once every channel has ended.
    #[test]
    fn priority_first_then_round_robin_then_end_of_partitions() {
        let manager = manager(12);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 12).unwrap();
        let pool = global.create_local_pool(12, 12).unwrap();
        let subpartitions: Vec<Arc<ResultSubpartition>> = (0..3)
            .map(|i| Arc::new(ResultSubpartition::new(SubpartitionIndex(i))))
            .collect();
        let mut gate = gate_over(&subpartitions);
        assert_eq!(gate.channel_count(), 3);
        assert!(matches!(gate.poll_next().unwrap(), GatePoll::Pending));
        let waker = Arc::new(CountingWaker::default());
        gate.register_listener(&Waker::from(Arc::clone(&waker)));

        subpartitions[0].add_event(event(&pool, DataType::Event, 1));
        subpartitions[0].add_event(event(&pool, DataType::Event, 2));
        subpartitions[1].add_event(event(&pool, DataType::Event, 3));
        subpartitions[2].add_event(event(&pool, DataType::Event, 4));
        subpartitions[2].add_event(event(&pool, DataType::Event, 5));
        assert_eq!(waker.wakes(), 3, "each subpartition woke its listener once");
        // The first poll fills every slot; a priority event arriving now overtakes the
        // events of the other channels' slots.
        let first = gate.poll_next().unwrap();
        assert!(matches!(first, GatePoll::Buffer(ChannelIndex(0), _)));
        subpartitions[2].add_event(event(&pool, DataType::PriorityEvent, 9));
        subpartitions[1].add_event(event(&pool, DataType::PriorityEvent, 8));
        // Channel 1's priority event overtakes the events held for channels 2 and 0;
        // channel 2's waits behind the one buffer already in its slot.
        assert_eq!(
            drain(&mut gate),
            [
                (1, DataType::Event, 3),
                (1, DataType::PriorityEvent, 8),
                (2, DataType::Event, 4),
                (2, DataType::PriorityEvent, 9),
                (0, DataType::Event, 2),
                (2, DataType::Event, 5),
            ]
        );
        drop(first);
        let end = |pool: &LocalBufferPool| {
            pool.try_request()
                .unwrap()
                .into_buffer(0, DataType::EndOfPartition)
        };
        subpartitions[0].finish(end(&pool));
        subpartitions[1].finish(end(&pool));
        let mut ended = Vec::new();
        while let GatePoll::Buffer(channel, buffer) = gate.poll_next().unwrap() {
            assert_eq!(buffer.data_type(), DataType::EndOfPartition);
            ended.push(channel.as_usize());
        }
        assert!(!gate.is_finished(), "channel 2 is still open");
        assert!(matches!(gate.poll_next().unwrap(), GatePoll::Pending));
        subpartitions[2].finish(end(&pool));
        loop {
            match gate.poll_next().unwrap() {
                GatePoll::Buffer(channel, buffer) => {
                    assert_eq!(buffer.data_type(), DataType::EndOfPartition);
                    ended.push(channel.as_usize());
                }
                GatePoll::Pending => panic!("every channel has ended"),
                GatePoll::EndOfPartitions => break,
            }
        }
        assert_eq!(ended, [0, 1, 2]);
        assert!(gate.is_finished());
        let metrics = gate.metrics();
        assert_eq!((metrics.ended_channels, metrics.queued_buffers), (3, 0));
        assert_eq!(metrics.buffers_in, 10, "7 data and events, 3 ends");
        assert!(matches!(
            gate.poll_next().unwrap(),
            GatePoll::EndOfPartitions
        ));
        drop((gate, subpartitions, pool, global));
        manager.leak_check().unwrap();
    }
}
