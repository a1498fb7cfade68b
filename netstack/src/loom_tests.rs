//! Model-checked tests of the hand-offs between threads, run with
//! `RUSTFLAGS="--cfg loom" cargo test -p weir-netstack --lib --release loom`.
//!
//! loom runs each model under every interleaving of its threads (bounded preemptions) and
//! the weak-memory outcomes of the atomics it models: the builder's position word and the
//! mutexes of the pools and subpartitions (see `crate::sync`). A lost wake-up shows as a
//! deadlock loom reports; a consumer that saw "finished" without the last bytes fails the
//! assertions. The bytes of the segment themselves are plain memory loom does not track;
//! their visibility follows from the position word's Release/Acquire pair checked here,
//! and Miri checks the accesses (docs/SAFETY.md).

use std::sync::Arc;
use std::task::{Wake, Waker};

use loom::sync::Notify;
use loom::thread;

use crate::buffer::test_support::manager;
use crate::buffer::{BufferBuilder, DataType};
use crate::partition::{Emit, ResultPartition, SubpartitionIndex};
use crate::pool::NetworkBufferPool;

/// A waker that hands loom a permit: a wake before the wait is not lost.
struct NotifyWaker(Arc<Notify>);

impl Wake for NotifyWaker {
    fn wake(self: Arc<Self>) {
        self.0.notify();
    }
}

fn notify_waker() -> (Arc<Notify>, Waker) {
    let notify = Arc::new(Notify::new());
    let waker = Waker::from(Arc::new(NotifyWaker(Arc::clone(&notify))));
    (notify, waker)
}

fn model(test: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(test);
}

/// A consumer that sees the finished flag also sees every byte written before it, and the
/// bytes it builds are always a prefix of what the writer wrote.
#[test]
fn loom_builder_consumer_hand_off() {
    model(|| {
        let manager = manager(1);
        let owner = manager.owner("loom");
        let (mut builder, mut consumer) =
            BufferBuilder::new(owner.allocate_one().unwrap(), DataType::Data);
        let writer = thread::spawn(move || {
            builder.append_and_commit(b"ab");
            builder.append(b"cd");
            builder.finish();
        });
        let mut seen = Vec::new();
        loop {
            let finished = consumer.is_finished();
            seen.extend_from_slice(consumer.build().as_bytes());
            assert!(b"abcd".starts_with(&seen), "{seen:?}");
            if finished {
                assert_eq!(seen, b"abcd", "finished without its last bytes");
                break;
            }
            thread::yield_now();
        }
        writer.join().unwrap();
        drop(consumer);
        manager.leak_check().unwrap();
    });
}

/// All segments lent, one comes back on another thread: the requester that registered its
/// waker is woken (no lost wake-up) and gets the segment.
#[test]
fn loom_pool_recycle_wakes_the_waiting_requester() {
    model(|| {
        let manager = manager(1);
        let owner = manager.owner("loom");
        let global = NetworkBufferPool::new(&owner, 1).unwrap();
        let local = global.create_local_pool(1, 1).unwrap();
        let lent = local.try_request().unwrap();
        let returner = thread::spawn(move || drop(lent));
        let (notify, waker) = notify_waker();
        let segment = loop {
            match local.poll_request(&waker) {
                Some(segment) => break segment,
                None => notify.wait(),
            }
        };
        drop(segment);
        returner.join().unwrap();
        drop((local, global));
        manager.leak_check().unwrap();
    });
}

/// Two pools share a grant of one segment: a segment one pool returns above its size wakes
/// a requester of the other waiting on the grant.
#[test]
fn loom_grant_return_wakes_another_pools_requester() {
    model(|| {
        let manager = manager(1);
        let owner = manager.owner("loom");
        let global = NetworkBufferPool::new(&owner, 1).unwrap();
        let first = global.create_local_pool(1, 1).unwrap();
        let lent = first.try_request().unwrap();
        let returner = thread::spawn(move || drop((lent, first)));
        let (notify, waker) = notify_waker();
        let second = global.create_local_pool(1, 1);
        // The first pool's minimum may still be required when the second asks.
        if let Ok(second) = second {
            let segment = loop {
                match second.poll_request(&waker) {
                    Some(segment) => break segment,
                    None => notify.wait(),
                }
            };
            drop((segment, second));
        }
        returner.join().unwrap();
        drop(global);
        manager.leak_check().unwrap();
    });
}

/// A consumer that polls, registers its listener and polls again before sleeping is woken
/// for a buffer the writer fills (and so finishes) on another thread, with no flush: the
/// writer would otherwise wait for that buffer to come back while the reader sleeps.
#[test]
fn loom_a_finished_buffer_wakes_the_sleeping_reader() {
    model(|| {
        let manager = manager(2);
        let owner = manager.owner("loom");
        let global = NetworkBufferPool::new(&owner, 2).unwrap();
        let mut partition = ResultPartition::new(global.create_local_pool(2, 2).unwrap(), 1);
        let subpartition = partition.subpartition(SubpartitionIndex(0));
        // Exactly one segment with its length prefix.
        let record = vec![7u8; 4096 - 4];
        let writer = thread::spawn(move || {
            assert_eq!(
                partition.try_emit_record(&record, SubpartitionIndex(0)),
                Emit::Done
            );
            partition
        });
        let (notify, waker) = notify_waker();
        let mut seen = 0;
        while seen < 4096 {
            match subpartition.poll_buffer() {
                Some(polled) => seen += polled.buffer.len(),
                None => {
                    subpartition.register_listener(&waker);
                    match subpartition.poll_buffer() {
                        Some(polled) => seen += polled.buffer.len(),
                        None => notify.wait(),
                    }
                }
            }
        }
        let partition = writer.join().unwrap();
        drop((partition, subpartition, global));
        manager.leak_check().unwrap();
    });
}
