//! `current_thread_waker`: a [`Waker`] that unparks the thread that made it — how a task
//! thread sleeps on its input gate.
//!
//! ```text
//!   task thread: register waker on every live channel ─▶ poll once more ─▶ park
//!   producer:    subpartition gains data ─▶ listener.wake() ─▶ unpark(task thread)
//! ```
//!
//! A wake-up may be spurious (an unpark token left from an earlier wake), so the sleeper
//! always polls again after waking and parks with a bound.

use std::sync::Arc;
use std::task::{Wake, Waker};
use std::thread::Thread;

/// A waker that unparks the calling thread.
pub fn current_thread_waker() -> Waker {
    Waker::from(Arc::new(Unpark(std::thread::current())))
}

/// Unparks one thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}
