//! weir's network stack. Built so far, the whole data path inside one process: network
//! buffers over memory segments and the lock-free builder/consumer hand-off that fills them
//! ([`buffer`]); the fixed network grant and the local pools that share it, with
//! redistribution, a per-subpartition cap and a mid-record overdraft ([`pool`]); the
//! producer side — result partitions, their subpartitions, record writers that wait for
//! buffers and flush by buffer timeout, and channel selectors ([`partition`]); and the local
//! consumer side — local input channels reading the producer's buffers without a copy,
//! remote input channels under credit-based flow control, the input gate and record
//! readers ([`input`]); and the transport between worker processes — the wire protocol
//! and a mio event loop carrying every channel between two processes over one TCP
//! connection ([`transport`]); gates align checkpoint barriers and size their producers'
//! buffers by throughput ([`debloat`]); tasks split their time into busy, idle and
//! back-pressured ([`task_time`]) (docs: ARCHITECTURE.md §7, docs/FORMAT.md §6).
//!
//! The data path, and where the buffer layer sits in it:
//!
//! ```text
//!   RecordWriter ──▶ BufferBuilder ═══ one segment ═══ BufferConsumer ──▶ ResultSubpartition
//!   (task thread)    append + commit    (Arc, atomic     build(): newly     queue
//!                    (Release store)     position)       committed bytes
//!                                                         as NetworkBuffer
//!                                                                │
//!          ┌─────────────────────── local: same buffer ──────────┤
//!          ▼                                                     ▼ remote: BufferResponse
//!   LocalInputChannel ──┐                              (writev: header + segment bytes,
//!   RemoteInputChannel ─┴▶ InputGate ──▶ RecordReader   only with credit; read straight
//!   (credited segments ◀── payload)                     into the credited segment)
//!
//!   NetworkBufferPool (fixed grant) ──▶ LocalBufferPool ──try_request──▶ PooledSegment
//!   last NetworkBuffer dropped ──▶ Recycler (its LocalBufferPool) or the MemoryManager
//! ```
//!
//! Every byte in flight lives in a [`kernel::memory::MemorySegment`]; a [`NetworkBuffer`]
//! is a reference-counted view of committed bytes of one, and the segment goes home when
//! the last view, builder and consumer have dropped. Unsafe code lives in one module, the
//! builder/consumer hand-off (see docs/SAFETY.md).
//!
//! ```
//! use weir_kernel::memory::MemoryManager;
//! use weir_netstack::{BufferBuilder, DataType};
//!
//! let manager = MemoryManager::with_budget(1 << 20)?;
//! let owner = manager.owner("netstack-example");
//! let (mut builder, mut consumer) = BufferBuilder::new(owner.allocate_one()?, DataType::Data);
//! builder.append_and_commit(b"record");
//! let buffer = consumer.build();
//! assert_eq!(buffer.as_bytes(), b"record");
//! drop((builder, consumer, buffer));
//! manager.leak_check()?;
//! # Ok::<(), weir_netstack::NetError>(())
//! ```
#![cfg_attr(
    test,
    allow(
        clippy::too_many_lines,
        reason = "a test is a scenario read top to bottom"
    )
)]
#![doc(test(attr(deny(warnings))))]
// Unsafe code is confined to the module that allows it by name (see docs/SAFETY.md).
#![deny(unsafe_code)]

pub mod buffer;
pub mod constants;
pub mod debloat;
pub mod environment;
mod error;
pub mod fuzz;
pub mod input;
pub mod partition;
pub mod pool;
mod sync;
pub mod task_time;
pub mod transport;

#[cfg(all(test, loom))]
mod loom_tests;

pub use buffer::{BufferBuilder, BufferConsumer, DataType, NetworkBuffer, Recycler};
pub use environment::{ChannelSource, ExchangeBuffers, ExchangeEnvironment};
pub use error::{NetError, Result};
pub use input::{GateHandler, GatePoll, GateReader, InputGate, LocalInputChannel, RecordReader};
pub use partition::{
    ChannelIndex, ChannelSelector, Emit, FlushMode, RecordWriter, ResultPartition,
    ResultSubpartition, SubpartitionIndex,
};
pub use pool::{LocalBufferPool, LocalPoolSpec, NetworkBufferPool, PooledSegment};
pub use task_time::{TaskTimeMeter, TaskTimes};
pub use weir_kernel as kernel;
