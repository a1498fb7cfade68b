//! `--flush idle` in dataflow jobs: a record that trickles through two exchanges (one of
//! them between workers) reaches its sink as soon as each task runs out of input, not when
//! a buffer fills or the job ends. The source says it is idle itself
//! ([`TaskContext::input_idle`]); the task between the exchanges is flushed by the runtime
//! when its input gate runs dry.
//!
//! ```text
//!   trickle source (task 0: a record, idle, a pause) ──rebalance──▶ map ──rebalance──▶ sink
//!        stamps each record                         (worker 0 ↔ worker 1)     measures its latency
//! ```

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use weir::config::Config;
use weir::dataflow::{Dataflow, Push, TaskContext, runtime};
use weir::error::Result;
use weir::netstack::FlushMode;
use weir::netstack::transport::NetworkConfig;
use weir::workers::free_loopback_addresses;

/// Records the source emits.
const RECORDS: u64 = 6;
/// The pause after each record: without an idle flush every record but the last waits at
/// least this long (until the job ends), far above the bound.
const PAUSE: Duration = Duration::from_millis(300);
/// The most a record may take from source to sink: generous for a loaded machine, yet
/// well below the pause.
const LATENCY_MAX: Duration = Duration::from_millis(150);

/// The time both workers of the test measure from.
fn since_epoch() -> Duration {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed()
}

/// Task 0 emits `RECORDS` records stamped when emitted, idle between them.
fn trickle(ctx: &TaskContext, down: &mut dyn Push<(u64, u64)>) -> Result<()> {
    if ctx.task() != 0 {
        return Ok(());
    }
    for i in 0..RECORDS {
        let stamp = u64::try_from(since_epoch().as_nanos()).unwrap();
        down.push((i, stamp))?;
        ctx.input_idle();
        if i + 1 < RECORDS {
            std::thread::sleep(PAUSE);
        }
    }
    Ok(())
}

/// Each record's latency, as its sink received it.
type Latencies = Arc<Mutex<Vec<(u64, Duration)>>>;

struct Measure(Latencies);

impl Push<(u64, u64)> for Measure {
    fn push(&mut self, (i, stamp): (u64, u64)) -> Result<()> {
        let latency = since_epoch().saturating_sub(Duration::from_nanos(stamp));
        self.0.lock().unwrap().push((i, latency));
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

fn program(latencies: &Latencies) -> Dataflow {
    let flow = Dataflow::new();
    let latencies = Arc::clone(latencies);
    flow.source_push("trickle", 0, trickle)
        .rebalance()
        .map(|record| record)
        .rebalance()
        .sink(move |_| Ok(Box::new(Measure(Arc::clone(&latencies)))));
    flow
}

#[test]
fn flush_when_idle_sends_each_trickled_record_through_two_exchanges_at_once() {
    since_epoch();
    let peers = free_loopback_addresses(2).unwrap();
    let config = Config {
        workers: 2,
        slots: 1,
        memory: 16 << 20,
        flush: FlushMode::WhenIdle,
        ..Config::default()
    };
    let latencies = Latencies::default();
    let run = |process: u32| {
        let (peers, config, latencies) = (peers.clone(), config.clone(), Arc::clone(&latencies));
        std::thread::spawn(move || {
            let network = NetworkConfig::new(process, peers);
            runtime::execute(&program(&latencies), &config, Some(network))
        })
    };
    let (zero, one) = (run(0), run(1));
    for worker in [zero, one] {
        let report = worker.join().unwrap().unwrap();
        assert!(report.leak_free, "{report:?}");
    }
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort_unstable();
    assert_eq!(
        latencies.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        (0..RECORDS).collect::<Vec<_>>(),
        "every record arrived once"
    );
    for (i, latency) in latencies {
        assert!(
            latency < LATENCY_MAX,
            "record {i} took {latency:?}: held back instead of flushed when idle"
        );
    }
}
