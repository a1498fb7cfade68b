//! Merge inputs: a cursor over the sorted in-memory buffer, or over a spilled run.
//!
//! A cursor holds its current record where it lies: in a segment of the record area, in a
//! block of the run, or (only when the record crosses a block or segment boundary) in its
//! own scratch buffer. The record's bytes stay valid until the cursor advances.

use std::ops::Range;

use super::in_memory::{EntryBytes, EntryRef, InMemorySorter};
use super::record::RecordHeader;
use crate::error::{KernelError, Result};
use crate::spill::RunInput;

/// Where a cursor reads from.
#[derive(Debug)]
enum Source {
    /// The in-memory buffer; `next` is the next entry in sorted order.
    Memory { next: usize },
    /// A run on disk, holding at most `payload_bytes`.
    Run { input: RunInput, payload_bytes: u64 },
}

/// Where the current record's bytes are.
#[derive(Debug, Clone)]
enum Current {
    Exhausted,
    Memory(EntryRef),
    Block(Range<usize>),
    Scratch,
}

/// One input of a merge.
#[derive(Debug)]
pub(crate) struct Cursor {
    source: Source,
    current: Current,
    header: RecordHeader,
    scratch: Vec<u8>,
}

impl Cursor {
    /// A cursor over the sorted buffer, positioned before its first record.
    pub(crate) fn memory() -> Cursor {
        Cursor::new(Source::Memory { next: 0 })
    }

    /// A cursor over a run of at most `payload_bytes`, positioned before its first record.
    pub(crate) fn run(input: RunInput, payload_bytes: u64) -> Cursor {
        Cursor::new(Source::Run {
            input,
            payload_bytes,
        })
    }

    fn new(source: Source) -> Cursor {
        Cursor {
            source,
            current: Current::Exhausted,
            header: RecordHeader::default(),
            scratch: Vec::new(),
        }
    }

    /// Whether the input has no record left.
    #[inline]
    pub(crate) fn is_exhausted(&self) -> bool {
        matches!(self.current, Current::Exhausted)
    }

    /// The current record's body: key, then value.
    #[inline]
    pub(crate) fn bytes<'a>(&'a self, buffer: &'a InMemorySorter) -> &'a [u8] {
        match &self.current {
            Current::Exhausted => &[],
            Current::Memory(entry) => buffer.entry_bytes(entry, &self.scratch),
            Current::Block(range) => match &self.source {
                Source::Run { input, .. } => input.block_bytes(range.clone()),
                Source::Memory { .. } => unreachable!("block bytes come from a run"),
            },
            Current::Scratch => &self.scratch[..self.header.body_len()],
        }
    }

    /// The current record's key.
    #[inline]
    pub(crate) fn key<'a>(&'a self, buffer: &'a InMemorySorter) -> &'a [u8] {
        &self.bytes(buffer)[..self.header.key_len]
    }

    /// The current record's header.
    #[inline]
    pub(crate) fn header(&self) -> &RecordHeader {
        &self.header
    }

    /// The current record's header and body as one slice, when it is at hand in one piece.
    #[inline]
    pub(crate) fn raw<'a>(&'a self, buffer: &'a InMemorySorter) -> Option<&'a [u8]> {
        match &self.current {
            Current::Memory(entry) => buffer.entry_raw(entry),
            _ => None,
        }
    }

    /// Moves to the next record.
    ///
    /// # Errors
    ///
    /// A failed or corrupt read of a run.
    pub(crate) fn advance(&mut self, buffer: &InMemorySorter) -> Result<()> {
        match &mut self.source {
            Source::Memory { next } => {
                if *next == buffer.len() {
                    self.current = Current::Exhausted;
                    return Ok(());
                }
                buffer.prefetch(*next + super::external::PREFETCH_DISTANCE);
                let entry = buffer.entry(*next, &mut self.scratch)?;
                *next += 1;
                self.header = entry.header;
                self.current = match entry.bytes {
                    EntryBytes::Scratch => Current::Scratch,
                    EntryBytes::Segment(..) => Current::Memory(entry),
                };
                Ok(())
            }
            Source::Run {
                input,
                payload_bytes,
            } => {
                let limit = *payload_bytes;
                advance_run(input, limit, &mut self.scratch).map(|next| match next {
                    None => self.current = Current::Exhausted,
                    Some((header, current)) => {
                        self.header = header;
                        self.current = current;
                    }
                })
            }
        }
    }

    /// Gives up the cursor's run input, if it reads a run.
    pub(crate) fn into_input(self) -> Option<RunInput> {
        match self.source {
            Source::Run { input, .. } => Some(input),
            Source::Memory { .. } => None,
        }
    }
}

/// Reads the next record header and locates the record in `input`.
fn advance_run(
    input: &mut RunInput,
    limit: u64,
    scratch: &mut Vec<u8>,
) -> Result<Option<(RecordHeader, Current)>> {
    if input.is_at_end()? {
        return Ok(None);
    }
    let key_word = input.read_varint()?;
    let value_len = input.read_varint()?;
    // Blocks are checksummed, so a bad length means a bug or an undetected corruption;
    // either way it must not turn into a huge allocation.
    let header = RecordHeader::from_words(key_word, value_len)
        .filter(|header| {
            header
                .key_len
                .checked_add(header.value_len)
                .is_some_and(|len| len as u64 <= limit)
        })
        .ok_or(KernelError::Malformed {
            position: input.bytes_read(),
            what: "record length beyond the run",
        })?;
    let len = header.body_len();
    if let Some(range) = input.try_take(len)? {
        return Ok(Some((header, Current::Block(range))));
    }
    scratch.clear();
    scratch.resize(len, 0);
    input.read_exact(scratch)?;
    Ok(Some((header, Current::Scratch)))
}
