//! `RecordReader`: reassembles one channel's length-prefixed records from its data
//! buffers.
//!
//! ```text
//!   buffer 1: [len][record a……][len][reco        ──▶ a: &[u8] into buffer 1 (no copy)
//!   buffer 2: rd b……………………………………………………        ──▶ b: copied into scratch (spans)
//!   buffer 3: ………][l                              ──▶ prefix split across buffers too
//!   buffer 4: en][record c]                       ──▶ c: scratch (its prefix spanned)
//! ```
//!
//! Records are a 4-byte little-endian length and the bytes, spanning buffers freely (see
//! [`ResultPartition`](crate::ResultPartition)). A record that lies within the current
//! buffer is handed out as a slice of that buffer; only a record that spans buffers is
//! copied, once, into a scratch vector reserved to its announced length. A length above
//! the configured maximum is malformed input and answers [`NetError::RecordTooLarge`]
//! before anything is allocated; a channel that ends inside a record answers
//! [`NetError::TruncatedRecord`].

use crate::buffer::{DataType, NetworkBuffer};
use crate::constants::{RECORD_BYTES_MAX_DEFAULT, RECORD_LENGTH_PREFIX_BYTES};
use crate::error::{NetError, Result};
use crate::partition::ChannelIndex;

/// Reassembles the length-prefixed records of one channel: push a data buffer, take
/// records until `Ok(None)`, push the next.
#[derive(Debug)]
pub struct RecordReader {
    channel: ChannelIndex,
    record_bytes_max: usize,
    // The buffer being read and the offset of its first unread byte; dropped once read.
    current: Option<NetworkBuffer>,
    offset: usize,
    // The bytes of a length prefix split across buffers.
    prefix: [u8; RECORD_LENGTH_PREFIX_BYTES],
    prefix_len: usize,
    // The announced length of a record that spans buffers; its bytes so far are `scratch`.
    spanning: Option<usize>,
    scratch: Vec<u8>,
    records_in: u64,
}

/// Where the record found by one step lies.
enum Found {
    InBuffer { start: usize, end: usize },
    Scratch,
}

impl RecordReader {
    /// A reader of `channel`'s records accepting up to [`RECORD_BYTES_MAX_DEFAULT`] bytes
    /// per record.
    pub fn new(channel: ChannelIndex) -> RecordReader {
        RecordReader::with_record_bytes_max(channel, RECORD_BYTES_MAX_DEFAULT)
    }

    /// A reader of `channel`'s records accepting up to `record_bytes_max` bytes per record.
    pub fn with_record_bytes_max(channel: ChannelIndex, record_bytes_max: usize) -> RecordReader {
        RecordReader {
            channel,
            record_bytes_max,
            current: None,
            offset: 0,
            prefix: [0; RECORD_LENGTH_PREFIX_BYTES],
            prefix_len: 0,
            spanning: None,
            scratch: Vec::new(),
            records_in: 0,
        }
    }

    /// Whether the reader has read every byte pushed and wants the next buffer.
    pub fn needs_buffer(&self) -> bool {
        self.current.is_none()
    }

    /// Gives the reader the channel's next data buffer.
    ///
    /// # Panics
    ///
    /// When `buffer` is not data, or the previous buffer was not read to its end (take
    /// records until `Ok(None)` first).
    pub fn push(&mut self, buffer: NetworkBuffer) {
        assert_eq!(
            buffer.data_type(),
            DataType::Data,
            "a record reader reads data buffers"
        );
        assert!(
            self.current.is_none(),
            "{}: a buffer pushed before the previous one was read",
            self.channel
        );
        if !buffer.is_empty() {
            self.current = Some(buffer);
            self.offset = 0;
        }
    }

    /// The next whole record: a slice of the current buffer when it lies within it, else
    /// of the scratch copy; `Ok(None)` when the pushed bytes are used up (push the next
    /// buffer).
    ///
    /// # Errors
    ///
    /// [`NetError::RecordTooLarge`] when a length prefix exceeds the maximum; the reader
    /// is then unusable (the stream cannot be re-framed).
    pub fn next_record(&mut self) -> Result<Option<&[u8]>> {
        // Fast path: a whole record in the current buffer, the common case.
        if let Some((start, end)) = self.whole_record_in_buffer() {
            self.offset = end;
            self.records_in += 1;
            return Ok(self.current.as_ref().map(|b| &b.as_bytes()[start..end]));
        }
        match self.step()? {
            None => Ok(None),
            // The buffer holding the record stays current until the next call.
            Some(Found::InBuffer { start, end }) => Ok(self
                .current
                .as_ref()
                .map(|buffer| &buffer.as_bytes()[start..end])),
            Some(Found::Scratch) => Ok(Some(&self.scratch)),
        }
    }

    /// Checks that the channel ended on a record boundary (call at EndOfPartition, after
    /// [`next_record`](Self::next_record) answered `Ok(None)`).
    ///
    /// # Errors
    ///
    /// [`NetError::TruncatedRecord`] with the framed bytes announced and received when a
    /// record (or its length prefix) was cut off.
    ///
    /// # Panics
    ///
    /// When the last buffer pushed was not read to its end (a caller bug).
    pub fn finish(&self) -> Result<()> {
        assert!(
            self.current.is_none(),
            "{}: finish before the last buffer was read",
            self.channel
        );
        let (expected, received) = match self.spanning {
            Some(len) => (
                RECORD_LENGTH_PREFIX_BYTES + len,
                RECORD_LENGTH_PREFIX_BYTES + self.scratch.len(),
            ),
            None if self.prefix_len > 0 => (RECORD_LENGTH_PREFIX_BYTES, self.prefix_len),
            None => return Ok(()),
        };
        Err(NetError::TruncatedRecord {
            channel: self.channel,
            expected,
            received,
        })
    }

    /// Records handed out so far.
    pub fn records_in(&self) -> u64 {
        self.records_in
    }

    /// Where the next record lies when it lies wholly in the current buffer, with no split
    /// prefix or spanning record pending and a length within the maximum.
    #[inline]
    fn whole_record_in_buffer(&self) -> Option<(usize, usize)> {
        if self.spanning.is_some() || self.prefix_len != 0 {
            return None;
        }
        let bytes = self.current.as_ref()?.as_bytes();
        let start = self.offset + RECORD_LENGTH_PREFIX_BYTES;
        let prefix = bytes.get(self.offset..start)?;
        let len = u32::from_le_bytes(prefix.try_into().expect("four bytes")) as usize;
        (len <= self.record_bytes_max && len <= bytes.len() - start).then_some((start, start + len))
    }

    /// One record's worth of progress; `None` when the current buffer is used up.
    fn step(&mut self) -> Result<Option<Found>> {
        if self.spanning.is_none()
            && self.prefix_len == 0
            && let Some(found) = self.within_buffer()?
        {
            return Ok(Some(found));
        }
        if self.spanning.is_none() {
            let Some(len) = self.read_split_prefix()? else {
                return Ok(None);
            };
            self.start_spanning(len);
        }
        let found = self.continue_spanning();
        if found.is_some() {
            self.records_in += 1;
        }
        Ok(found)
    }

    /// A whole record in the current buffer, or `None` after moving a record that
    /// continues in the next buffer (or a split prefix) into the spanning state.
    fn within_buffer(&mut self) -> Result<Option<Found>> {
        let Some(buffer) = &self.current else {
            return Ok(None);
        };
        let bytes = &buffer.as_bytes()[self.offset..];
        if bytes.len() < RECORD_LENGTH_PREFIX_BYTES {
            return Ok(None);
        }
        let (prefix, rest) = bytes.split_at(RECORD_LENGTH_PREFIX_BYTES);
        let len = self.checked_len(prefix)?;
        if rest.len() < len {
            // Spans: keep the prefix consumed and copy from here on.
            self.offset += RECORD_LENGTH_PREFIX_BYTES;
            self.start_spanning(len);
            return Ok(None);
        }
        let start = self.offset + RECORD_LENGTH_PREFIX_BYTES;
        self.offset = start + len;
        self.records_in += 1;
        Ok(Some(Found::InBuffer {
            start,
            end: start + len,
        }))
    }

    /// Completes a length prefix from the current buffer; `None` while it is incomplete
    /// (the buffer is then used up and dropped).
    fn read_split_prefix(&mut self) -> Result<Option<usize>> {
        let Some(buffer) = &self.current else {
            return Ok(None);
        };
        let available = &buffer.as_bytes()[self.offset..];
        let taken = (RECORD_LENGTH_PREFIX_BYTES - self.prefix_len).min(available.len());
        self.prefix[self.prefix_len..self.prefix_len + taken].copy_from_slice(&available[..taken]);
        self.prefix_len += taken;
        self.offset += taken;
        self.release_if_read();
        if self.prefix_len < RECORD_LENGTH_PREFIX_BYTES {
            return Ok(None);
        }
        self.prefix_len = 0;
        let prefix = self.prefix;
        self.checked_len(&prefix).map(Some)
    }

    fn start_spanning(&mut self, len: usize) {
        self.spanning = Some(len);
        self.scratch.clear();
        self.scratch.reserve(len);
    }

    /// Copies the spanning record's next bytes; `Some` once it is whole.
    fn continue_spanning(&mut self) -> Option<Found> {
        let len = self.spanning.expect("a spanning record");
        let Some(buffer) = &self.current else {
            return (self.scratch.len() == len).then(|| self.end_spanning());
        };
        let available = &buffer.as_bytes()[self.offset..];
        let wanted = (len - self.scratch.len()).min(available.len());
        self.scratch.extend_from_slice(&available[..wanted]);
        self.offset += wanted;
        self.release_if_read();
        (self.scratch.len() == len).then(|| self.end_spanning())
    }

    fn end_spanning(&mut self) -> Found {
        self.spanning = None;
        Found::Scratch
    }

    /// Drops the current buffer once every byte is read, so its segment can go home.
    fn release_if_read(&mut self) {
        if self
            .current
            .as_ref()
            .is_some_and(|b| self.offset == b.len())
        {
            self.current = None;
            self.offset = 0;
        }
    }

    fn checked_len(&self, prefix: &[u8]) -> Result<usize> {
        let raw: [u8; RECORD_LENGTH_PREFIX_BYTES] =
            prefix.try_into().expect("a prefix is four bytes");
        let length = u32::from_le_bytes(raw) as usize;
        if length > self.record_bytes_max {
            return Err(NetError::RecordTooLarge {
                channel: self.channel,
                length,
                max: self.record_bytes_max,
            });
        }
        Ok(length)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::buffer::test_support::{Rng, manager};
    use crate::input::{GatePoll, InputGate, LocalInputChannel};
    use crate::partition::{
        BroadcastSelector, ChannelSelector, ForwardSelector, HashSelector, RescaleSelector,
        RoundRobinSelector, SubpartitionIndex,
    };
    use crate::pool::NetworkBufferPool;
    use crate::{Emit, ResultPartition};
    use weir_kernel::memory::{MemoryManager, Owner};

    fn framed(records: &[Vec<u8>]) -> Vec<u8> {
        let mut stream = Vec::new();
        for record in records {
            let len = u32::try_from(record.len()).unwrap();
            stream.extend_from_slice(&len.to_le_bytes());
            stream.extend_from_slice(record);
        }
        stream
    }

    fn buffer(owner: &Owner, bytes: &[u8]) -> NetworkBuffer {
        let mut segment = owner.allocate_one().unwrap();
        segment.put_bytes(0, bytes);
        NetworkBuffer::new(segment, bytes.len(), DataType::Data)
    }

    #[test]
    fn a_record_within_one_buffer_is_a_slice_of_it() {
        let manager = manager(1);
        let owner = manager.owner("reader");
        let stream = framed(&[b"first".to_vec(), Vec::new(), b"third".to_vec()]);
        let data = buffer(&owner, &stream);
        let range = data.as_bytes().as_ptr_range();
        let mut reader = RecordReader::new(ChannelIndex(0));
        reader.push(data);
        let mut records = Vec::new();
        while let Some(record) = reader.next_record().unwrap() {
            assert!(
                range.contains(&record.as_ptr()) || record.is_empty(),
                "no copy"
            );
            records.push(record.to_vec());
        }
        assert_eq!(records, [b"first".to_vec(), Vec::new(), b"third".to_vec()]);
        assert!(reader.needs_buffer());
        assert_eq!(reader.records_in(), 3);
        reader.finish().unwrap();
        drop(reader);
        manager.leak_check().unwrap();
    }

    /// A seeded stream cut into buffers of random sizes (prefixes split too) reads back
    /// record for record.
    #[test]
    fn records_spanning_buffers_are_reassembled() {
        let mut rng = Rng::new(0x5eed_0101);
        let count = if cfg!(miri) { 8 } else { 200 };
        let records: Vec<Vec<u8>> = (0..count)
            .map(|_| {
                let len = if rng.below(4) == 0 {
                    rng.below(6000)
                } else {
                    rng.below(9)
                };
                rng.bytes(len)
            })
            .collect();
        let stream = framed(&records);
        let manager = manager(1);
        let owner = manager.owner("reader");
        let mut reader = RecordReader::new(ChannelIndex(1));
        let mut got = Vec::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let bound = if rng.below(2) == 0 { 7 } else { 4096 };
            let cut = (1 + rng.below(bound)).min(rest.len());
            let (chunk, tail) = rest.split_at(cut);
            rest = tail;
            assert!(reader.needs_buffer());
            reader.push(buffer(&owner, chunk));
            while let Some(record) = reader.next_record().unwrap() {
                got.push(record.to_vec());
            }
        }
        reader.finish().unwrap();
        assert_eq!(got, records);
        drop(reader);
        manager.leak_check().unwrap();
    }

    #[test]
    fn a_length_above_the_maximum_is_an_error_with_the_numbers() {
        let manager = manager(2);
        let owner = manager.owner("reader");
        let mut reader = RecordReader::with_record_bytes_max(ChannelIndex(2), 100);
        reader.push(buffer(&owner, &framed(&[vec![7; 100]])));
        assert_eq!(reader.next_record().unwrap(), Some(&[7; 100][..]));
        assert_eq!(reader.next_record().unwrap(), None);
        // A prefix of 1000 split across two buffers.
        let prefix = 1000_u32.to_le_bytes();
        reader.push(buffer(&owner, &prefix[..1]));
        assert_eq!(reader.next_record().unwrap(), None);
        reader.push(buffer(&owner, &prefix[1..]));
        let error = reader.next_record().unwrap_err();
        assert!(matches!(
            error,
            NetError::RecordTooLarge {
                channel: ChannelIndex(2),
                length: 1000,
                max: 100
            }
        ));
        assert_eq!(
            error.to_string(),
            "record too large: channel 2 announced 1000 bytes, at most 100 accepted"
        );
        drop(reader);
        manager.leak_check().unwrap();
    }

    #[test]
    fn a_channel_ending_inside_a_record_is_an_error() {
        let manager = manager(1);
        let owner = manager.owner("reader");
        let mut reader = RecordReader::new(ChannelIndex(0));
        let stream = framed(&[vec![1; 10]]);
        reader.push(buffer(&owner, &stream[..9]));
        assert_eq!(reader.next_record().unwrap(), None);
        let error = reader.finish().unwrap_err();
        assert!(matches!(
            error,
            NetError::TruncatedRecord {
                expected: 14,
                received: 9,
                ..
            }
        ));
        assert_eq!(
            error.to_string(),
            "truncated record: channel 0 ended after 9 of 14 framed bytes"
        );
        drop(reader);
        manager.leak_check().unwrap();
    }

    /// The consumer of the end-to-end test: a gate over local channels and one record
    /// reader per channel, with what each channel delivered.
    struct Consumer {
        gate: InputGate,
        readers: Vec<RecordReader>,
        records: Vec<Vec<Vec<u8>>>,
        // Each event with the number of records its channel delivered before it.
        events: Vec<Vec<(DataType, usize)>>,
        ended: bool,
    }

    impl Consumer {
        fn new(partition: &ResultPartition) -> Consumer {
            let n = partition.subpartition_count();
            let channels = (0..n)
                .map(|i| {
                    let subpartition = partition.subpartition(SubpartitionIndex::from_usize(i));
                    LocalInputChannel::new(ChannelIndex(u32::try_from(i).unwrap()), subpartition)
                })
                .collect();
            Consumer {
                gate: InputGate::new(channels),
                readers: (0..n)
                    .map(|i| RecordReader::new(ChannelIndex(u32::try_from(i).unwrap())))
                    .collect(),
                records: vec![Vec::new(); n],
                events: vec![Vec::new(); n],
                ended: false,
            }
        }

        /// Reads everything available now.
        fn drain(&mut self) {
            loop {
                match self.gate.poll_next().unwrap() {
                    GatePoll::Buffer(channel, buffer) => {
                        let i = channel.as_usize();
                        let data_type = buffer.data_type();
                        if data_type == DataType::Data {
                            self.readers[i].push(buffer);
                            while let Some(record) = self.readers[i].next_record().unwrap() {
                                self.records[i].push(record.to_vec());
                            }
                        } else {
                            if data_type == DataType::EndOfPartition {
                                self.readers[i].finish().unwrap();
                            }
                            self.events[i].push((data_type, self.records[i].len()));
                        }
                    }
                    GatePoll::Pending => return,
                    GatePoll::EndOfPartitions => {
                        self.ended = true;
                        return;
                    }
                }
            }
        }
    }

    fn until_done(
        partition: &mut ResultPartition,
        consumer: &mut Consumer,
        mut write: impl FnMut(&mut ResultPartition) -> Emit,
    ) {
        for _ in 0..1000 {
            if write(partition) == Emit::Done {
                return;
            }
            partition.flush_all();
            consumer.drain();
        }
        panic!("no progress after 1000 rounds");
    }

    fn end_to_end(manager: &MemoryManager, selector: &mut dyn ChannelSelector, seed: u64) {
        let mut rng = Rng::new(seed);
        let count = if cfg!(miri) { 4 } else { 120 };
        let len_max = if cfg!(miri) { 5000 } else { 10_000 };
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 8).unwrap();
        let mut partition = ResultPartition::new(global.create_local_pool(8, 8).unwrap(), 3);
        let mut consumer = Consumer::new(&partition);
        selector.setup(3);
        let mut expected: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 3];
        let mut event_at = [0; 3];
        for k in 0..count {
            if k == count / 2 {
                until_done(&mut partition, &mut consumer, |p| {
                    p.try_broadcast_event(DataType::Event, b"mid")
                });
                event_at = [0, 1, 2].map(|i| expected[i].len());
            }
            let len = rng.below(len_max);
            let record = rng.bytes(len);
            if selector.is_broadcast() {
                until_done(&mut partition, &mut consumer, |p| {
                    p.try_broadcast_record(&record)
                });
                expected.iter_mut().for_each(|e| e.push(record.clone()));
            } else {
                let channel = selector.select_channel(&record);
                until_done(&mut partition, &mut consumer, |p| {
                    p.try_emit_record(&record, channel.to_subpartition())
                });
                expected[channel.as_usize()].push(record);
            }
            if rng.below(8) == 0 {
                partition.flush_all();
                consumer.drain();
            }
        }
        until_done(&mut partition, &mut consumer, ResultPartition::try_finish);
        consumer.drain();
        assert!(consumer.ended, "seed {seed:#x}: the gate saw every end");
        for i in 0..3 {
            assert_eq!(
                consumer.records[i], expected[i],
                "seed {seed:#x}, channel {i}"
            );
            assert_eq!(
                consumer.events[i],
                [
                    (DataType::Event, event_at[i]),
                    (DataType::EndOfPartition, expected[i].len())
                ],
                "seed {seed:#x}, channel {i}"
            );
        }
        drop((consumer, partition, global));
    }

    /// A partition emits seeded records (0..10,000 bytes) with each selector to three
    /// subpartitions; a gate over three local channels reads them back through record
    /// readers: every record exactly once, in order per channel, the event in its place.
    #[test]
    fn end_to_end_every_record_arrives_once_in_order_per_channel() {
        let manager = manager(8);
        end_to_end(&manager, &mut ForwardSelector, 0x5eed_0201);
        end_to_end(
            &manager,
            &mut RoundRobinSelector::starting_at(1),
            0x5eed_0202,
        );
        let mut hash = HashSelector::new(|record: &[u8]| u32::try_from(record.len()).unwrap());
        end_to_end(&manager, &mut hash, 0x5eed_0203);
        end_to_end(&manager, &mut BroadcastSelector, 0x5eed_0204);
        end_to_end(&manager, &mut RescaleSelector::default(), 0x5eed_0205);
        manager.leak_check().unwrap();
    }
}
