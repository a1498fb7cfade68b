//! weir's network stack: how records travel from a producing task to a consuming one,
//! in one process or between worker processes, through memory the kernel's
//! [`kernel::memory::MemoryManager`] accounts for. It is Flink's network stack
//! re-designed: buffers over memory segments ([`buffer`]), a fixed network grant shared
//! by local pools ([`pool`]), result partitions and record writers ([`partition`]),
//! channels, input gates and record readers ([`input`]), and the TCP transport between
//! processes with credit-based flow control ([`transport`]); gates size their producers'
//! buffers by throughput ([`debloat`]) and tasks split their time into busy, idle and
//! back-pressured ([`task_time`]).
//!
//! ```text
//!   RecordWriter ──▶ ResultPartition ──▶ ResultSubpartition (one per consumer)
//!   (task thread)    (channel selector)    queue of buffers, backlog
//!                                               │
//!             ┌──── same process: same buffer ──┴── other process: NetworkService ────┐
//!             ▼                                      BufferResponse only with credit  ▼
//!   LocalInputChannel ──┐                   ◀── AddCredit (recycled / floating buffers)
//!   RemoteInputChannel ─┴──▶ InputGate ──▶ RecordReader (task thread)
//! ```
//!
//! Credit flow: a remote channel announces one credit per buffer it can receive
//! (exclusive buffers, then floating ones from its gate's pool); the producer's side
//! sends a data buffer only against credit, so a slow consumer stops its producers by
//! not granting credit, never by filling a socket or an unbounded queue. Events
//! (barriers, end of partition) need no credit.
//!
//! Inside one buffer, the writer and the reader hand a segment over without a lock, and
//! pools lend segments out of a fixed grant:
//!
//! ```text
//!   RecordWriter ──▶ BufferBuilder ═══ one segment ═══ BufferConsumer ──▶ ResultSubpartition
//!   (task thread)    append + commit    (Arc, atomic     build(): newly     queue
//!                    (Release store)     position)       committed bytes as a NetworkBuffer
//!
//!   NetworkBufferPool (fixed grant) ──▶ LocalBufferPool ──try_request──▶ PooledSegment
//!   last NetworkBuffer dropped ──▶ Recycler (its LocalBufferPool) or the MemoryManager
//! ```
//!
//! Invariants:
//! - every byte in flight lives in a [`kernel::memory::MemorySegment`]; a
//!   [`NetworkBuffer`] is a reference-counted view of committed bytes of one, and the
//!   segment goes home when the last view, builder and consumer have dropped (tests end with
//!   the manager's `leak_check`);
//! - every queue has a bound (pools, subpartition queues, frames per event-loop pass,
//!   strangers), each named in [`constants`];
//! - nothing a peer sends can panic a worker: malformed frames are errors naming the
//!   peer, and a lost or silent peer fails only the channels it carried;
//! - unsafe code lives in one module, the builder/consumer hand-off (docs/SAFETY.md);
//! - the library prints nothing: errors are returned, counters are in metrics.
//!
//! Read on: [`transport`] for the wire and the event loop (the wire format is
//! docs/FORMAT.md §6), [`buffer`] for the hand-off, [`input::InputGate`] for barriers
//! and alignment.
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
// A library has no terminal of its own: what it has to say goes in errors and metrics.
#![deny(clippy::print_stderr, clippy::print_stdout)]

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
