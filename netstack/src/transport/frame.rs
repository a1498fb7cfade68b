//! The wire protocol: frames, their messages, and an incremental, bounded decoder.
//!
//! ```text
//!   frame:  [ length u32 | magic u32 | id u8 | body … ]      little-endian; length counts
//!            └──────── header, 9 bytes ───────┘              the whole frame, header included
//!
//!   id  message              direction          body
//!    0  BufferResponse       producer → reader  receiver u64, subpartition u32, sequence u32,
//!                                               backlog u32, data type u8, size u32, then
//!                                               `size` payload bytes (25 + size)
//!    1  ErrorResponse        either             has receiver u8 (0/1), receiver u64,
//!                                               kind u8, message length u16, UTF-8 message
//!    2  PartitionRequest     reader → producer  dataset u32, producer u32, subpartition u32,
//!                                               receiver u64, initial credit u32 (24)
//!    4  CancelPartition      reader → producer  receiver u64 (8)
//!    5  Close                either             (0)
//!    6  AddCredit            reader → producer  receiver u64, credit u32 > 0 (12)
//!    7  ResumeConsumption    reader → producer  receiver u64 (8)
//!    9  BacklogAnnouncement  producer → reader  receiver u64, backlog u32 > 0 (12)
//!   10  NewBufferSize        reader → producer  receiver u64, size u32 > 0 (12)
//!   12  Hello                either, first      process u32, protocol version u32 (8)
//!   13  Heartbeat            either             (0): sent on a connection that sent
//!                                               nothing for the heartbeat interval
//! ```
//!
//! The decoder never trusts a length: a frame longer than [`FRAME_BYTES_MAX`], a wrong
//! magic, an unknown id, a body whose length is not the message's, a field out of range or
//! a message of invalid UTF-8 is a [`NetError::MalformedFrame`] — never a panic and never an
//! allocation beyond [`CONTROL_FRAME_BYTES_MAX`]. It asks for exactly the bytes it needs
//! next ([`FrameDecoder::spare`]), so a reader can read a BufferResponse's payload straight
//! from the socket into the buffer its channel credited (zero-copy receive): the decoder
//! stops after the BufferResponse header and the caller reads the payload itself.

use crate::buffer::DataType;
use crate::error::{NetError, Result};

/// Bytes of every frame's header: length, magic, message id.
pub const FRAME_HEADER_BYTES: usize = 9;

/// The magic of every frame: "WEIR" in ASCII, read as a little-endian `u32`.
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"WEIR");

/// The version of this protocol, exchanged in Hello (2: Heartbeat added; a version-1 peer
/// would fail a version-2 peer's connection on the first heartbeat, so they must not meet).
pub const PROTOCOL_VERSION: u32 = 2;

/// Body bytes of a BufferResponse before its payload.
pub const BUFFER_RESPONSE_HEADER_BYTES: usize = 25;

/// The largest payload of a BufferResponse: the largest segment a manager hands out.
pub const BUFFER_PAYLOAD_BYTES_MAX: usize = weir_kernel::constants::SEGMENT_SIZE_MAX;

/// The largest frame: a BufferResponse of the largest payload.
pub const FRAME_BYTES_MAX: usize =
    FRAME_HEADER_BYTES + BUFFER_RESPONSE_HEADER_BYTES + BUFFER_PAYLOAD_BYTES_MAX;

/// The longest message an ErrorResponse carries, in bytes.
pub const ERROR_MESSAGE_BYTES_MAX: usize = 1024;

/// The largest frame that is not a BufferResponse (an ErrorResponse with the longest
/// message): the most the decoder ever buffers.
pub const CONTROL_FRAME_BYTES_MAX: usize =
    FRAME_HEADER_BYTES + 1 + 8 + 1 + 2 + ERROR_MESSAGE_BYTES_MAX;

const _: () = assert!(FRAME_BYTES_MAX <= u32::MAX as usize);

/// Identifies one remote input channel on a connection; chosen by the reader, unique per
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReceiverId(pub u64);

/// Identifies a result partition in a job: the dataset (an edge of the job graph) and the
/// producing subtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId {
    /// The intermediate dataset (job graph edge).
    pub dataset: u32,
    /// The producing subtask.
    pub producer: u32,
}

impl std::fmt::Display for PartitionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "partition {}.{}", self.dataset, self.producer)
    }
}

impl std::fmt::Display for ReceiverId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "receiver {}", self.0)
    }
}

/// What an ErrorResponse reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The requested partition was not registered in time.
    PartitionNotFound,
    /// The producer failed or released the partition.
    ProducerFailed,
    /// The peer received bytes that break the protocol.
    Protocol,
}

impl ErrorKind {
    fn code(self) -> u8 {
        match self {
            ErrorKind::PartitionNotFound => 1,
            ErrorKind::ProducerFailed => 2,
            ErrorKind::Protocol => 3,
        }
    }

    fn from_code(code: u8) -> Option<ErrorKind> {
        match code {
            1 => Some(ErrorKind::PartitionNotFound),
            2 => Some(ErrorKind::ProducerFailed),
            3 => Some(ErrorKind::Protocol),
            _ => None,
        }
    }
}

/// The header of a BufferResponse; `size` payload bytes follow it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferHeader {
    /// The channel the buffer is for.
    pub receiver: ReceiverId,
    /// The subpartition it comes from.
    pub subpartition: u32,
    /// Its position in the channel's stream, from 0.
    pub sequence: u32,
    /// Finished data buffers queued behind it at the producer.
    pub backlog: u32,
    /// What it holds.
    pub data_type: DataType,
    /// Payload bytes.
    pub size: u32,
}

/// One message of the protocol (a BufferResponse is its [`BufferHeader`]; the payload
/// travels after it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A buffer for a remote input channel.
    BufferResponse(BufferHeader),
    /// A failure, for one channel (`receiver`) or for the whole connection.
    ErrorResponse {
        /// The channel concerned; `None` fails the connection.
        receiver: Option<ReceiverId>,
        /// What failed.
        kind: ErrorKind,
        /// A human-readable account (at most [`ERROR_MESSAGE_BYTES_MAX`] bytes).
        message: String,
    },
    /// A reader asks for a subpartition, granting initial credit.
    PartitionRequest {
        /// The partition.
        partition: PartitionId,
        /// Its subpartition.
        subpartition: u32,
        /// The reader's channel.
        receiver: ReceiverId,
        /// Buffers the reader has for it now (its exclusive buffers).
        initial_credit: u32,
    },
    /// A reader gives up a subpartition.
    CancelPartition {
        /// The reader's channel.
        receiver: ReceiverId,
    },
    /// The peer closes the connection in an orderly way.
    Close,
    /// A reader has `credit` more buffers for a channel.
    AddCredit {
        /// The reader's channel.
        receiver: ReceiverId,
        /// Buffers added (more than 0).
        credit: u32,
    },
    /// A reader resumes a channel blocked by an aligned barrier.
    ResumeConsumption {
        /// The reader's channel.
        receiver: ReceiverId,
    },
    /// A producer has a backlog but no credit for a channel.
    BacklogAnnouncement {
        /// The reader's channel.
        receiver: ReceiverId,
        /// Finished data buffers queued (more than 0).
        backlog: u32,
    },
    /// A reader asks for smaller or larger buffers (debloating).
    NewBufferSize {
        /// The reader's channel.
        receiver: ReceiverId,
        /// The wanted buffer size in bytes (more than 0).
        size: u32,
    },
    /// The first message on a connection: who is speaking.
    Hello {
        /// The sender's process index.
        process: u32,
        /// The sender's protocol version.
        version: u32,
    },
    /// Proof of life on a connection that has sent nothing else lately; carries nothing
    /// and touches no channel (no credit, no sequence, no counter of buffers).
    Heartbeat,
}

mod id {
    pub(super) const BUFFER_RESPONSE: u8 = 0;
    pub(super) const ERROR_RESPONSE: u8 = 1;
    pub(super) const PARTITION_REQUEST: u8 = 2;
    pub(super) const CANCEL_PARTITION: u8 = 4;
    pub(super) const CLOSE: u8 = 5;
    pub(super) const ADD_CREDIT: u8 = 6;
    pub(super) const RESUME_CONSUMPTION: u8 = 7;
    pub(super) const BACKLOG_ANNOUNCEMENT: u8 = 9;
    pub(super) const NEW_BUFFER_SIZE: u8 = 10;
    pub(super) const HELLO: u8 = 12;
    pub(super) const HEARTBEAT: u8 = 13;
}

impl Message {
    /// Appends the whole frame to `out` (for a BufferResponse, only its header: the caller
    /// sends the payload behind it).
    ///
    /// # Panics
    ///
    /// When an ErrorResponse message exceeds [`ERROR_MESSAGE_BYTES_MAX`] or a
    /// BufferResponse's size exceeds [`BUFFER_PAYLOAD_BYTES_MAX`] (bugs of the sender).
    #[allow(
        clippy::too_many_lines,
        reason = "one arm per message kind of the wire protocol (docs/FORMAT.md §6)"
    )]
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
        let mut payload = 0usize;
        match self {
            Message::BufferResponse(header) => {
                assert!(header.size as usize <= BUFFER_PAYLOAD_BYTES_MAX);
                out.push(id::BUFFER_RESPONSE);
                put_u64(out, header.receiver.0);
                for value in [header.subpartition, header.sequence, header.backlog] {
                    put_u32(out, value);
                }
                out.push(header.data_type.code());
                put_u32(out, header.size);
                payload = header.size as usize;
            }
            Message::ErrorResponse {
                receiver,
                kind,
                message,
            } => {
                assert!(
                    message.len() <= ERROR_MESSAGE_BYTES_MAX,
                    "error message too long"
                );
                out.push(id::ERROR_RESPONSE);
                out.push(u8::from(receiver.is_some()));
                put_u64(out, receiver.map_or(0, |r| r.0));
                out.push(kind.code());
                let len = u16::try_from(message.len()).expect("bounded above");
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(message.as_bytes());
            }
            Message::PartitionRequest {
                partition,
                subpartition,
                receiver,
                initial_credit,
            } => {
                out.push(id::PARTITION_REQUEST);
                for value in [partition.dataset, partition.producer, *subpartition] {
                    put_u32(out, value);
                }
                put_u64(out, receiver.0);
                put_u32(out, *initial_credit);
            }
            Message::CancelPartition { receiver } => {
                out.push(id::CANCEL_PARTITION);
                put_u64(out, receiver.0);
            }
            Message::Close => out.push(id::CLOSE),
            Message::Heartbeat => out.push(id::HEARTBEAT),
            Message::AddCredit { receiver, credit } => {
                out.push(id::ADD_CREDIT);
                put_u64(out, receiver.0);
                put_u32(out, *credit);
            }
            Message::ResumeConsumption { receiver } => {
                out.push(id::RESUME_CONSUMPTION);
                put_u64(out, receiver.0);
            }
            Message::BacklogAnnouncement { receiver, backlog } => {
                out.push(id::BACKLOG_ANNOUNCEMENT);
                put_u64(out, receiver.0);
                put_u32(out, *backlog);
            }
            Message::NewBufferSize { receiver, size } => {
                out.push(id::NEW_BUFFER_SIZE);
                put_u64(out, receiver.0);
                put_u32(out, *size);
            }
            Message::Hello { process, version } => {
                out.push(id::HELLO);
                put_u32(out, *process);
                put_u32(out, *version);
            }
        }
        let length =
            u32::try_from(out.len() - start + payload).expect("bounded by FRAME_BYTES_MAX");
        out[start..start + 4].copy_from_slice(&length.to_le_bytes());
    }
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Decodes frames from a byte stream, asking for exactly the bytes it needs next.
///
/// Read up to `spare().len()` bytes into [`spare`](Self::spare), then report how many with
/// [`advance`](Self::advance); a complete message comes out of `advance`. After a
/// [`Message::BufferResponse`] the caller consumes the `size` payload bytes itself (into
/// the channel's buffer) before feeding the decoder again.
#[derive(Debug)]
pub struct FrameDecoder {
    // Header and body bytes of the frame being read; never more than
    // CONTROL_FRAME_BYTES_MAX (a BufferResponse stops after its fixed header).
    bytes: Vec<u8>,
    // Bytes of `bytes` filled so far.
    filled: usize,
    // Bytes wanted before the next step: the header, then header and body.
    wanted: usize,
}

impl Default for FrameDecoder {
    fn default() -> FrameDecoder {
        FrameDecoder::new()
    }
}

impl FrameDecoder {
    /// A decoder expecting a frame header.
    pub fn new() -> FrameDecoder {
        FrameDecoder {
            bytes: Vec::with_capacity(64),
            filled: 0,
            wanted: FRAME_HEADER_BYTES,
        }
    }

    /// The bytes to fill next (at least one).
    pub fn spare(&mut self) -> &mut [u8] {
        if self.bytes.len() < self.wanted {
            self.bytes.resize(self.wanted, 0);
        }
        &mut self.bytes[self.filled..self.wanted]
    }

    /// Takes note that the first `filled` bytes of the last [`spare`](Self::spare) slice
    /// were written, and returns a message when one is complete.
    ///
    /// # Errors
    ///
    /// [`NetError::MalformedFrame`] for bytes that break the protocol; the stream cannot
    /// be re-framed afterwards (close the connection).
    ///
    /// # Panics
    ///
    /// When `filled` exceeds the spare slice (a caller bug).
    pub fn advance(&mut self, filled: usize) -> Result<Option<Message>> {
        assert!(
            self.filled + filled <= self.wanted,
            "advanced past the spare bytes"
        );
        self.filled += filled;
        if self.filled < self.wanted {
            return Ok(None);
        }
        if self.wanted == FRAME_HEADER_BYTES {
            let body = self.body_len()?;
            if body > 0 {
                self.wanted += body;
                return Ok(None);
            }
        }
        let message = decode_body(
            self.bytes[8],
            &self.bytes[FRAME_HEADER_BYTES..self.wanted],
            self.frame_len(),
        );
        self.bytes.clear();
        self.filled = 0;
        self.wanted = FRAME_HEADER_BYTES;
        message.map(Some)
    }

    fn frame_len(&self) -> usize {
        u32::from_le_bytes(self.bytes[..4].try_into().expect("a header")) as usize
    }

    /// Checks the header and returns the body bytes to buffer (a BufferResponse's fixed
    /// header only: its payload is the caller's).
    fn body_len(&self) -> Result<usize> {
        let frame = self.frame_len();
        let magic = u32::from_le_bytes(self.bytes[4..8].try_into().expect("a header"));
        if magic != FRAME_MAGIC {
            return malformed(format!(
                "wrong magic {magic:#010x}, expected {FRAME_MAGIC:#010x}: not a weir stream"
            ));
        }
        if !(FRAME_HEADER_BYTES..=FRAME_BYTES_MAX).contains(&frame) {
            return malformed(format!(
                "frame of {frame} bytes: frames are {FRAME_HEADER_BYTES} to {FRAME_BYTES_MAX}"
            ));
        }
        let body = frame - FRAME_HEADER_BYTES;
        let expected = match self.bytes[8] {
            id::BUFFER_RESPONSE => {
                if body < BUFFER_RESPONSE_HEADER_BYTES {
                    return malformed(format!(
                        "buffer response of {body} body bytes: at least \
                         {BUFFER_RESPONSE_HEADER_BYTES}"
                    ));
                }
                return Ok(BUFFER_RESPONSE_HEADER_BYTES);
            }
            id::ERROR_RESPONSE => {
                if !(12..=12 + ERROR_MESSAGE_BYTES_MAX).contains(&body) {
                    return malformed(format!(
                        "error response of {body} body bytes: 12 to {}",
                        12 + ERROR_MESSAGE_BYTES_MAX
                    ));
                }
                return Ok(body);
            }
            id::PARTITION_REQUEST => 24,
            id::CANCEL_PARTITION | id::RESUME_CONSUMPTION => 8,
            id::CLOSE | id::HEARTBEAT => 0,
            id::ADD_CREDIT | id::BACKLOG_ANNOUNCEMENT | id::NEW_BUFFER_SIZE => 12,
            id::HELLO => 8,
            unknown => return malformed(format!("unknown message id {unknown}")),
        };
        if body != expected {
            return malformed(format!(
                "message {} with {body} body bytes, expected {expected}",
                self.bytes[8]
            ));
        }
        Ok(body)
    }
}

fn malformed<T>(detail: String) -> Result<T> {
    Err(NetError::MalformedFrame { detail })
}

/// Reads little-endian fields from a body whose length was checked.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn u8(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().expect("length checked");
        self.0 = rest;
        *first
    }

    fn u16(&mut self) -> u16 {
        let (bytes, rest) = self.0.split_at(2);
        self.0 = rest;
        u16::from_le_bytes(bytes.try_into().expect("two bytes"))
    }

    fn u32(&mut self) -> u32 {
        let (bytes, rest) = self.0.split_at(4);
        self.0 = rest;
        u32::from_le_bytes(bytes.try_into().expect("four bytes"))
    }

    fn u64(&mut self) -> u64 {
        let (bytes, rest) = self.0.split_at(8);
        self.0 = rest;
        u64::from_le_bytes(bytes.try_into().expect("eight bytes"))
    }

    fn receiver(&mut self) -> ReceiverId {
        ReceiverId(self.u64())
    }

    fn positive(&mut self, what: &str) -> Result<u32> {
        match self.u32() {
            0 => malformed(format!("{what} of 0: must be positive")),
            value => Ok(value),
        }
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "one arm per message kind of the wire protocol (docs/FORMAT.md §6)"
)]
fn decode_body(id: u8, body: &[u8], frame_len: usize) -> Result<Message> {
    let mut fields = Fields(body);
    let message = match id {
        id::BUFFER_RESPONSE => {
            let receiver = fields.receiver();
            let (subpartition, sequence, backlog) = (fields.u32(), fields.u32(), fields.u32());
            let code = fields.u8();
            let data_type = DataType::from_u8(code)
                .or_else(|_| malformed(format!("buffer response with unknown data type {code}")))?;
            let size = fields.u32();
            let announced = frame_len - FRAME_HEADER_BYTES - BUFFER_RESPONSE_HEADER_BYTES;
            if size as usize != announced {
                return malformed(format!(
                    "buffer response of {size} payload bytes in a frame carrying {announced}"
                ));
            }
            Message::BufferResponse(BufferHeader {
                receiver,
                subpartition,
                sequence,
                backlog,
                data_type,
                size,
            })
        }
        id::ERROR_RESPONSE => {
            let has_receiver = fields.u8();
            let receiver = fields.receiver();
            let receiver = match has_receiver {
                0 => None,
                1 => Some(receiver),
                other => return malformed(format!("error response receiver flag {other}")),
            };
            let code = fields.u8();
            let kind = ErrorKind::from_code(code)
                .map_or_else(|| malformed(format!("error response kind {code}")), Ok)?;
            let len = usize::from(fields.u16());
            if len != fields.0.len() {
                return malformed(format!(
                    "error response message of {len} bytes in {} remaining",
                    fields.0.len()
                ));
            }
            let message = String::from_utf8(fields.0.to_vec())
                .or_else(|_| malformed("error response message is not UTF-8".to_owned()))?;
            Message::ErrorResponse {
                receiver,
                kind,
                message,
            }
        }
        id::PARTITION_REQUEST => Message::PartitionRequest {
            partition: PartitionId {
                dataset: fields.u32(),
                producer: fields.u32(),
            },
            subpartition: fields.u32(),
            receiver: fields.receiver(),
            initial_credit: fields.u32(),
        },
        id::CANCEL_PARTITION => Message::CancelPartition {
            receiver: fields.receiver(),
        },
        id::CLOSE => Message::Close,
        id::HEARTBEAT => Message::Heartbeat,
        id::ADD_CREDIT => Message::AddCredit {
            receiver: fields.receiver(),
            credit: fields.positive("credit")?,
        },
        id::RESUME_CONSUMPTION => Message::ResumeConsumption {
            receiver: fields.receiver(),
        },
        id::BACKLOG_ANNOUNCEMENT => Message::BacklogAnnouncement {
            receiver: fields.receiver(),
            backlog: fields.positive("backlog")?,
        },
        id::NEW_BUFFER_SIZE => Message::NewBufferSize {
            receiver: fields.receiver(),
            size: fields.positive("buffer size")?,
        },
        id::HELLO => Message::Hello {
            process: fields.u32(),
            version: fields.u32(),
        },
        unknown => return malformed(format!("unknown message id {unknown}")),
    };
    Ok(message)
}

/// Decodes every frame of `bytes` fed in chunks of the given sizes (cycled), skipping
/// BufferResponse payloads; returns the messages or the first error. The fuzz target and
/// the tests drive the decoder through this.
///
/// # Errors
///
/// The decoder's first error.
pub fn decode_all(mut bytes: &[u8], chunks: &[usize]) -> Result<Vec<Message>> {
    let mut decoder = FrameDecoder::new();
    let mut messages = Vec::new();
    let mut chunk = chunks.iter().copied().cycle();
    let mut payload = 0usize;
    while !bytes.is_empty() {
        let step = chunk.next().unwrap_or(1).max(1);
        if payload > 0 {
            let taken = payload.min(step).min(bytes.len());
            payload -= taken;
            bytes = &bytes[taken..];
            continue;
        }
        let spare = decoder.spare();
        let taken = spare.len().min(step).min(bytes.len());
        spare[..taken].copy_from_slice(&bytes[..taken]);
        bytes = &bytes[taken..];
        if let Some(message) = decoder.advance(taken)? {
            if let Message::BufferResponse(header) = &message {
                payload = header.size as usize;
            }
            messages.push(message);
        }
    }
    Ok(messages)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn every_message() -> Vec<Message> {
        let receiver = ReceiverId(0x0102_0304_0506_0708);
        vec![
            Message::Hello {
                process: 1,
                version: PROTOCOL_VERSION,
            },
            Message::PartitionRequest {
                partition: PartitionId {
                    dataset: 3,
                    producer: 4,
                },
                subpartition: 5,
                receiver,
                initial_credit: 2,
            },
            Message::BufferResponse(BufferHeader {
                receiver,
                subpartition: 5,
                sequence: 9,
                backlog: 2,
                data_type: DataType::Data,
                size: 3,
            }),
            Message::AddCredit {
                receiver,
                credit: 7,
            },
            Message::NewBufferSize {
                receiver,
                size: 4096,
            },
            Message::BacklogAnnouncement {
                receiver,
                backlog: 1,
            },
            Message::ResumeConsumption { receiver },
            Message::CancelPartition { receiver },
            Message::ErrorResponse {
                receiver: Some(receiver),
                kind: ErrorKind::PartitionNotFound,
                message: "partition 3.4 not found after 10 s".to_owned(),
            },
            Message::ErrorResponse {
                receiver: None,
                kind: ErrorKind::Protocol,
                message: String::new(),
            },
            Message::Close,
            Message::Heartbeat,
        ]
    }

    fn stream(messages: &[Message]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for message in messages {
            message.encode(&mut bytes);
            if let Message::BufferResponse(header) = message {
                bytes.extend(std::iter::repeat_n(0xAB, header.size as usize));
            }
        }
        bytes
    }

    #[test]
    fn every_message_round_trips_in_any_chunking() {
        let messages = every_message();
        let bytes = stream(&messages);
        for chunks in [&[1usize][..], &[2, 3, 5], &[4096], &[9, 25, 1]] {
            assert_eq!(decode_all(&bytes, chunks).unwrap(), messages, "{chunks:?}");
        }
    }

    #[test]
    fn the_header_is_length_magic_id_little_endian() {
        let mut bytes = Vec::new();
        Message::Close.encode(&mut bytes);
        assert_eq!(bytes, [9, 0, 0, 0, b'W', b'E', b'I', b'R', 5]);
        bytes.clear();
        Message::Heartbeat.encode(&mut bytes);
        assert_eq!(bytes, [9, 0, 0, 0, b'W', b'E', b'I', b'R', 13]);
        let mut long_heartbeat = bytes.clone();
        long_heartbeat[..4].copy_from_slice(&10u32.to_le_bytes());
        long_heartbeat.push(0);
        assert!(
            decode_all(&long_heartbeat, &[1000])
                .unwrap_err()
                .to_string()
                .contains("message 13 with 1 body bytes, expected 0")
        );
        bytes.clear();
        Message::AddCredit {
            receiver: ReceiverId(1),
            credit: 2,
        }
        .encode(&mut bytes);
        assert_eq!(bytes.len(), 21);
        assert_eq!(bytes[..4], 21u32.to_le_bytes());
    }

    #[test]
    fn format_doc_example() {
        let mut bytes = Vec::new();
        Message::AddCredit {
            receiver: ReceiverId(7),
            credit: 2,
        }
        .encode(&mut bytes);
        assert_eq!(
            bytes,
            [
                0x15, 0, 0, 0, b'W', b'E', b'I', b'R', 6, 7, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0
            ]
        );
    }

    fn error_of(bytes: &[u8]) -> String {
        decode_all(bytes, &[1000]).unwrap_err().to_string()
    }

    #[test]
    fn malformed_frames_are_errors_with_the_numbers() {
        let mut close = Vec::new();
        Message::Close.encode(&mut close);
        let mut bad_magic = close.clone();
        bad_magic[4] = b'X';
        assert!(
            error_of(&bad_magic).contains("wrong magic"),
            "{}",
            error_of(&bad_magic)
        );
        let mut unknown = close.clone();
        unknown[8] = 3;
        assert!(error_of(&unknown).contains("unknown message id 3"));
        let mut huge = close.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(error_of(&huge).contains(&format!("frame of {} bytes", u32::MAX)));
        let mut short = close.clone();
        short[..4].copy_from_slice(&3u32.to_le_bytes());
        assert!(error_of(&short).contains("frame of 3 bytes"));
        let mut long_close = close.clone();
        long_close[..4].copy_from_slice(&10u32.to_le_bytes());
        long_close.push(0);
        assert!(error_of(&long_close).contains("message 5 with 1 body bytes, expected 0"));

        let mut zero_credit = Vec::new();
        Message::AddCredit {
            receiver: ReceiverId(1),
            credit: 1,
        }
        .encode(&mut zero_credit);
        zero_credit[17..21].copy_from_slice(&0u32.to_le_bytes());
        assert!(error_of(&zero_credit).contains("credit of 0"));

        let mut buffer = Vec::new();
        Message::BufferResponse(BufferHeader {
            receiver: ReceiverId(1),
            subpartition: 0,
            sequence: 0,
            backlog: 0,
            data_type: DataType::Data,
            size: 4,
        })
        .encode(&mut buffer);
        let mut bad_type = buffer.clone();
        bad_type[9 + 20] = 0;
        assert!(error_of(&bad_type).contains("unknown data type 0"));
        let mut bad_size = buffer.clone();
        bad_size[9 + 21..9 + 25].copy_from_slice(&5u32.to_le_bytes());
        assert!(error_of(&bad_size).contains("5 payload bytes in a frame carrying 4"));
    }

    #[test]
    fn a_truncated_stream_decodes_what_is_whole_and_asks_for_more() {
        let messages = every_message();
        let bytes = stream(&messages);
        let mut decoder = FrameDecoder::new();
        let cut = &bytes[..5];
        let spare = decoder.spare();
        spare[..5].copy_from_slice(cut);
        assert_eq!(decoder.advance(5).unwrap(), None);
        assert_eq!(decoder.spare().len(), 4, "the rest of the header");
    }

    #[test]
    fn garbage_never_panics_and_never_buffers_beyond_the_control_maximum() {
        let mut state = 0x5eed_u64;
        for _ in 0..if cfg!(miri) { 100 } else { 2000 } {
            let len = 1 + (state % 200) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    (state >> 56) as u8
                })
                .collect();
            let _ = decode_all(&bytes, &[1, 7, 64]);
        }
        let mut decoder = FrameDecoder::new();
        let mut header = Vec::new();
        Message::ErrorResponse {
            receiver: None,
            kind: ErrorKind::Protocol,
            message: "x".repeat(ERROR_MESSAGE_BYTES_MAX),
        }
        .encode(&mut header);
        let spare = decoder.spare();
        spare.copy_from_slice(&header[..FRAME_HEADER_BYTES]);
        assert_eq!(decoder.advance(FRAME_HEADER_BYTES).unwrap(), None);
        assert!(decoder.spare().len() + FRAME_HEADER_BYTES <= CONTROL_FRAME_BYTES_MAX);
    }
}
