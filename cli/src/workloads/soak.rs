//! `weir bench soak`: shuffles, sorts and joins at once across two worker processes, round
//! after round, with consumers that stall at random, every result checked.
//!
//! ```text
//!   round r (one dataflow job, seed s + r, over workers 0 (this process) and 1):
//!     shuffle  generate (k, v) ─▶ stall? ─▶ key_by k ─▶ aggregate (Σv, n) ─▶ collect ══ closed form
//!     sort     generate (k, payload) ─▶ sort_by k ─▶ gather ─▶ sort_by k ─▶ collect ══ sorted input
//!     join     generate (k, a) ⋈ generate (k, b) ─▶ stall? ─▶ aggregate ─▶ collect ══ closed form
//!     barriers a back-pressured source ─▶ key_by ─▶ slow map for 2 s (W6's program)
//!   and the runtime's barriers every 250 ms through all of them: every gate aligns
//!   barriers 1, 2, 3, … none missing, the slow map's at least 7
//!   then a streaming job with checkpoints (this process, 2 slots): records at 1 per ms of
//!     event time ─▶ 1 s tumbling windows per key ─▶ committed files (exactly once); one
//!     record at a seeded point fails once, the job restarts from its latest checkpoint,
//!     and the committed rows must equal the closed form, no row lost nor doubled
//!   between rounds: throughput, in-flight bytes, peak and current RSS of each worker;
//!   a watchdog fails the soak when worker 0's sources read nothing for 10 s while the job
//!   has not ended (a deadlock), and any leak or wrong result fails it at once.
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_netstack::transport::NetworkConfig;

use weir::checkpoint::CheckpointConfig;
use weir::config::Config;
use weir::dataflow::{
    Collected, Dataflow, Push, Watermarks, Windows, WorkerReport, read_committed, runtime,
};
use weir::error::{Result, WeirError};

/// How long without progress counts as a deadlock.
pub const STALL_LIMIT: Duration = Duration::from_secs(10);

/// A soak's parameters.
#[derive(Debug, Clone)]
pub struct SoakJob {
    /// How long to keep starting rounds.
    pub duration: Duration,
    /// Records per pipeline per round.
    pub records: u64,
    /// The first round's seed.
    pub seed: u64,
    /// The workers' configuration (2 workers).
    pub config: Config,
}

/// How long a round's barrier pipeline runs, and the barrier interval of a round.
const BARRIER_RUN: Duration = Duration::from_secs(2);
const BARRIER_INTERVAL: Duration = Duration::from_millis(250);
/// The stage of the barrier pipeline's slow map (its source is stage 0).
const BARRIER_MAP_STAGE: u32 = 1;

/// The problems of one worker's barriers: a gate whose barrier ids are not 1, 2, 3, …
/// without a gap, or a slow map that aligned fewer than the run's intervals less one.
fn barrier_problems(report: &WorkerReport) -> Vec<String> {
    let mut by_stage: std::collections::BTreeMap<u32, Vec<u64>> = Default::default();
    for sample in &report.barriers {
        by_stage.entry(sample.stage).or_default().push(sample.id);
    }
    let mut problems = Vec::new();
    for (stage, ids) in &mut by_stage {
        ids.sort_unstable();
        ids.dedup();
        if ids.iter().enumerate().any(|(i, id)| *id != i as u64 + 1) {
            problems.push(format!(
                "barriers: worker {}'s stage {stage} aligned ids {ids:?}, not 1, 2, 3, …",
                report.process
            ));
        }
    }
    let expected = (BARRIER_RUN.as_millis() / BARRIER_INTERVAL.as_millis()) as usize - 1;
    let map = by_stage.get(&BARRIER_MAP_STAGE).map_or(0, Vec::len);
    if map < expected {
        problems.push(format!(
            "barriers: worker {}'s slow map aligned {map} barriers, expected at least {expected}",
            report.process
        ));
    }
    problems
}

/// One round's outcome on one worker.
#[derive(Debug, Clone)]
pub struct RoundReport {
    /// The round's index.
    pub round: u64,
    /// Worker reports, by process.
    pub workers: Vec<WorkerReport>,
    /// The resident set of this process (worker 0) after the round.
    pub rss_after: u64,
    /// Problems found in the results (empty: every result right).
    pub problems: Vec<String>,
}

/// splitmix64, the soak's source of randomness.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Sleeps now and then (about once per 20,000 records, up to 20 ms): a consumer that
/// stalls, so its producers are back-pressured.
#[inline]
fn maybe_stall(seed: u64, i: u64) {
    let r = mix(seed ^ i.wrapping_mul(0x2545_F491_4F6C_DD1D));
    if r.is_multiple_of(20_000) {
        std::thread::sleep(Duration::from_millis(1 + (r >> 32) % 20));
    }
}

/// The keys of a round: `records` values over `records / 8` keys.
fn key_of(seed: u64, i: u64, keys: u64) -> u64 {
    mix(seed.wrapping_add(i)) % keys
}

/// What a round's job delivers to worker 0.
struct Results {
    shuffle: Collected<(u64, (u64, u64))>,
    sorted: Arc<Mutex<SortCheck>>,
    joined: Collected<((), (u64, u64))>,
}

/// A streaming check of the globally sorted output (the records are not kept): how many,
/// an order-free checksum, and whether every key followed the one before in order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SortCheck {
    records: u64,
    checksum: u64,
    in_order: bool,
    last: Option<(u64, u64)>,
    finished: bool,
}

impl SortCheck {
    fn add(&mut self, record: (u64, u64)) {
        if self.records == 0 {
            self.in_order = true;
        }
        self.in_order &= self.last.is_none_or(|last| last <= record);
        self.last = Some(record);
        self.records += 1;
        self.checksum = self.checksum.wrapping_add(mix(record.0 ^ mix(record.1)));
    }
}

/// The sink of the sort's single global task: checks as records pass.
struct SortSink(Arc<Mutex<SortCheck>>, SortCheck);

impl Push<(u64, u64)> for SortSink {
    fn push(&mut self, record: (u64, u64)) -> Result<()> {
        self.1.add(record);
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.1.finished = true;
        *self.0.lock().expect("sort check") = self.1;
        Ok(())
    }
}

/// Builds one round's program: the three pipelines in one job.
fn program(seed: u64, records: u64) -> (Dataflow, Results) {
    let keys = (records / 8).max(1);
    let flow = Dataflow::new();
    // First, so its slow map is stage 1 (BARRIER_MAP_STAGE).
    crate::workloads::w6_barrier::barrier_pipeline(
        &flow,
        BARRIER_RUN,
        Duration::ZERO,
        Duration::from_micros(50),
    )
    .discard();
    let shuffle = flow
        .generate(records, move |i| (key_of(seed, i, keys), i))
        .key_by(|(k, _)| *k)
        .partition()
        .map(move |(k, v)| {
            maybe_stall(seed, v);
            (k, v)
        })
        .key_by(|(k, _)| *k)
        .aggregate(
            |(_, v)| (*v, 1u64),
            |a, b| {
                a.0 = a.0.wrapping_add(b.0);
                a.1 += b.1;
            },
        )
        .collect();
    let top = |s: weir::dataflow::Stream<(u64, u64)>| s.sort_by(|(k, v)| (*k, *v), None);
    let sorted = Arc::new(Mutex::new(SortCheck::default()));
    let sink = Arc::clone(&sorted);
    top(top(flow.generate(records, move |i| (mix(seed ^ i) % 1_000_000, i))).gather())
        .sink(move |_| Ok(Box::new(SortSink(Arc::clone(&sink), SortCheck::default()))));
    let left = flow
        .generate(records, move |i| (key_of(seed, i, keys), i))
        .key_by(|(k, _)| *k);
    let right = flow.generate(keys, |k| (k, k * 3)).key_by(|(k, _)| *k);
    let joined = left
        .join(right)
        .map(move |((k, i), (_, b))| {
            maybe_stall(seed, i);
            (k, b)
        })
        .key_by(|_| ())
        .aggregate(
            |(_, b)| (*b, 1u64),
            |a, b| {
                a.0 = a.0.wrapping_add(b.0);
                a.1 += b.1;
            },
        )
        .collect();
    (
        flow,
        Results {
            shuffle,
            sorted,
            joined,
        },
    )
}

/// Checks a round's results against what the generators produced.
fn check(seed: u64, records: u64, results: &Results) -> Vec<String> {
    let keys = (records / 8).max(1);
    let mut problems = Vec::new();
    let mut expected = std::collections::HashMap::new();
    let mut join_sum = 0u64;
    for i in 0..records {
        let k = key_of(seed, i, keys);
        let e: &mut (u64, u64) = expected.entry(k).or_default();
        e.0 = e.0.wrapping_add(i);
        e.1 += 1;
        join_sum = join_sum.wrapping_add(k * 3);
    }
    let got: std::collections::HashMap<u64, (u64, u64)> =
        results.shuffle.take().into_iter().collect();
    if got != expected {
        problems.push(format!(
            "shuffle: {} groups, expected {}",
            got.len(),
            expected.len()
        ));
    }
    let sorted = *results.sorted.lock().expect("sort check");
    let mut input = SortCheck::default();
    for i in 0..records {
        input.add((mix(seed ^ i) % 1_000_000, i));
    }
    if !(sorted.finished && sorted.in_order)
        || (sorted.records, sorted.checksum) != (input.records, input.checksum)
    {
        problems.push(format!(
            "sort: {} records (checksum {:x}, in order: {}), expected {} (checksum {:x})",
            sorted.records, sorted.checksum, sorted.in_order, input.records, input.checksum
        ));
    }
    let joined: Vec<(u64, u64)> = results
        .joined
        .take()
        .into_iter()
        .map(|(_, sums)| sums)
        .collect();
    if joined != [(join_sum, records)] {
        problems.push(format!(
            "join: {joined:?}, expected [({join_sum}, {records})]"
        ));
    }
    problems
}

/// Runs round `round` as worker `process` (`network` `None`: alone); returns the
/// problems found (worker 0 checks the results; each worker checks its barriers).
///
/// # Errors
///
/// As [`runtime::execute`].
pub fn run_round(
    job: &SoakJob,
    round: u64,
    network: Option<NetworkConfig>,
    rows_read: &Arc<AtomicU64>,
) -> Result<(WorkerReport, Vec<String>)> {
    let seed = mix(job.seed.wrapping_add(round));
    let (flow, results) = program(seed, job.records);
    let report = runtime::execute_observed(&flow, &job.config, network, rows_read)?;
    let mut problems = barrier_problems(&report);
    if report.process == 0 {
        problems.extend(check(seed, job.records, &results));
    }
    Ok((report, problems))
}

/// Records and keys of a round's streaming job.
const STREAM_RECORDS: u64 = 40_000;
const STREAM_KEYS: u64 = 50;

/// The closed form of a round's streaming job: its rows, sorted.
fn stream_rows(seed: u64) -> Vec<String> {
    let mut expected: std::collections::BTreeMap<(u64, u64), (u64, u64)> = Default::default();
    for i in 0..STREAM_RECORDS {
        let sums = expected
            .entry((i / 1000 * 1000, key_of(seed, i, STREAM_KEYS)))
            .or_default();
        sums.0 += 1;
        sums.1 += i;
    }
    let mut rows: Vec<String> = expected
        .into_iter()
        .map(|((start, key), (count, sum))| format!("{start} {key} {count} {sum}"))
        .collect();
    rows.sort_unstable();
    rows
}

/// A round's streaming job with checkpoints and one induced failure (see the module
/// documentation), in `dir` (created, then deleted): its restarts, and what was wrong.
///
/// # Errors
///
/// The job's errors (it failed beyond its restarts); the directory cannot be made.
fn streaming_round(seed: u64, dir: &std::path::Path) -> Result<(u32, Vec<String>)> {
    // A directory of its own (made here, so deleting it deletes only the job's files).
    std::fs::create_dir(dir).map_err(|e| WeirError::file("create", dir, e))?;
    let outcome = run_stream(seed, dir);
    std::fs::remove_dir_all(dir).map_err(|e| WeirError::file("delete", dir, e))?;
    outcome
}

/// [`streaming_round`]'s job and its check, in `dir`.
fn run_stream(seed: u64, dir: &std::path::Path) -> Result<(u32, Vec<String>)> {
    let (out, checkpoints) = (dir.join("out"), dir.join("checkpoints"));
    let fail_at = STREAM_RECORDS / 4 + mix(seed) % (STREAM_RECORDS / 2);
    let armed = Arc::new(AtomicBool::new(true));
    let flow = Dataflow::new();
    flow.generate(STREAM_RECORDS, |i| i)
        .map(|i| {
            // Slow enough for a few checkpoints before the failure.
            if i % 200 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            i
        })
        .try_map(move |i| {
            if i == fail_at && armed.swap(false, Ordering::SeqCst) {
                return Err(format!("the soak's induced failure at record {i}"));
            }
            Ok(i)
        })
        .event_time(
            |i| *i as i64,
            Watermarks::bounded(Duration::ZERO).every(Duration::ZERO),
        )
        .key_by(move |i| key_of(seed, *i, STREAM_KEYS))
        .window(Windows::tumbling(Duration::from_secs(1)), |i| *i as i64)
        .aggregate(
            |i| (1u64, *i),
            |a, b| {
                a.0 += b.0;
                a.1 += b.1;
            },
        )
        .write_committed(&out, |(window, key, (count, sum))| {
            format!("{} {key} {count} {sum}", window.start)
        });
    let config = Config {
        slots: 2,
        memory: 16 << 20,
        barrier_interval: Some(Duration::from_millis(20)),
        checkpoint: Some(CheckpointConfig::new(&checkpoints)),
        ..Config::default()
    };
    let report = runtime::execute(&flow, &config, None)?;
    let mut problems = Vec::new();
    if report.restarts != 1 {
        problems.push(format!(
            "stream: {} restarts after one induced failure",
            report.restarts
        ));
    }
    if !report.leak_free {
        problems.push("stream: segments leaked".to_owned());
    }
    let want = stream_rows(seed);
    let mut got = read_committed(&out)?;
    got.sort_unstable();
    if got != want {
        problems.push(format!(
            "stream: {} rows committed after a restart from a checkpoint, want {} (the \
             failure at record {fail_at})",
            got.len(),
            want.len()
        ));
    }
    Ok((report.restarts, problems))
}

/// Watches `rows_read` while `running`: when it does not move for [`STALL_LIMIT`], reports
/// a deadlock and ends the process (its peers then fail on the lost connection).
pub fn watchdog(
    rows_read: Arc<AtomicU64>,
    running: Arc<AtomicBool>,
    round: u64,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut last = rows_read.load(Ordering::Relaxed);
        let mut since = Instant::now();
        while running.load(Ordering::Acquire) {
            std::thread::park_timeout(Duration::from_millis(200));
            let now = rows_read.load(Ordering::Relaxed);
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= STALL_LIMIT && running.load(Ordering::Acquire) {
                weir::lifecycle::report_line(&format!(
                    "weir soak: round {round}: no progress for {STALL_LIMIT:?}: deadlock"
                ));
                // Stop the workers too (a stopped one included), and remove the cluster
                // directory, as on a signal.
                weir::lifecycle::clean_up();
                std::process::exit(1);
            }
        }
    })
}

/// Checks a round: every worker leak-free and every result right.
///
/// # Errors
///
/// [`WeirError::Usage`] naming the round and what was wrong.
pub fn verdict(report: &RoundReport) -> Result<()> {
    let mut problems = report.problems.clone();
    for w in &report.workers {
        if !w.leak_free {
            problems.push(format!("worker {} leaked segments", w.process));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(WeirError::WrongAnswer {
        detail: format!("soak round {}: {}", report.round, problems.join("; ")),
    })
}

/// `weir bench soak`: how long, how much, and the workers' configuration.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// Minutes to keep starting rounds.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Records per pipeline per round (three pipelines run at once).
    #[arg(long, default_value_t = 300_000)]
    pub records: u64,
    /// The first round's seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The workers' configuration.
    #[command(flatten)]
    pub config: crate::args::ConfigArgs,
}

/// `weir worker … soak`: one worker's part of one round.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakWorkerArgs {
    /// The round.
    #[arg(long)]
    pub round: u64,
    /// Records per pipeline.
    #[arg(long)]
    pub records: u64,
    /// The first round's seed.
    #[arg(long)]
    pub seed: u64,
    /// The workers' configuration.
    #[command(flatten)]
    pub config: crate::args::ConfigArgs,
}

impl SoakArgs {
    fn job(&self) -> Result<SoakJob> {
        let config = with_barriers(&self.config).to_config()?;
        if config.workers != 2 {
            return Err(WeirError::Usage {
                message: format!(
                    "--workers {}: the soak runs 2 worker processes",
                    config.workers
                ),
            });
        }
        if !(self.minutes > 0.0 && self.minutes <= 24.0 * 60.0) {
            return Err(WeirError::Usage {
                message: format!("--minutes {}: allowed above 0, at most 1440", self.minutes),
            });
        }
        Ok(SoakJob {
            duration: Duration::from_secs_f64(self.minutes * 60.0),
            records: self.records.max(1),
            seed: self.seed,
            config,
        })
    }
}

/// Runs worker 1's part of a soak round and prints its report line.
///
/// # Errors
///
/// As [`run_round`].
pub fn soak_worker(
    process: u32,
    peers: Vec<std::net::SocketAddr>,
    args: &SoakWorkerArgs,
) -> Result<()> {
    let job = SoakJob {
        duration: Duration::ZERO,
        records: args.records,
        seed: args.seed,
        config: args.config.to_config()?,
    };
    let network = NetworkConfig::new(process, peers);
    let (report, problems) = run_round(&job, args.round, Some(network), &Arc::default())?;
    if let Some(problem) = problems.first() {
        return Err(WeirError::WrongAnswer {
            detail: format!("soak round {}: {problem}", args.round),
        });
    }
    crate::report::print_worker_line(&report)
}

/// The soak's configuration flags with the runtime's barriers every
/// [`BARRIER_INTERVAL`].
fn with_barriers(config: &crate::args::ConfigArgs) -> crate::args::ConfigArgs {
    let mut config = config.clone();
    config.barrier_interval_ms = Some(BARRIER_INTERVAL.as_millis() as u64);
    config
}

/// Runs the soak: rounds until the time is up, a line per round, then a summary and the
/// JSON line.
///
/// # Errors
///
/// Invalid flags; a round that fails, leaks or computes a wrong result.
#[allow(
    clippy::too_many_lines,
    reason = "a soak round's steps in order: launch, watch, check, print"
)]
pub fn soak(args: &SoakArgs) -> Result<()> {
    let job = args.job()?;
    let exe = std::env::current_exe().map_err(|e| WeirError::file("find", "weir", e))?;
    let started = Instant::now();
    let mut rounds = Vec::new();
    let mut records = 0u64;
    while started.elapsed() < job.duration {
        let round = rounds.len() as u64;
        let cluster = weir::workers::LocalCluster::new(2)?;
        let mut job_args = vec![
            "soak".to_string(),
            format!("--round={round}"),
            format!("--records={}", job.records),
            format!("--seed={}", job.seed),
        ];
        job_args.extend(with_barriers(&args.config).to_args());
        let rows = Arc::new(AtomicU64::new(0));
        let running = Arc::new(AtomicBool::new(true));
        let dog = watchdog(Arc::clone(&rows), Arc::clone(&running), round);
        let peers = cluster.peers().to_vec();
        let round_started = Instant::now();
        let outcome = cluster.run_beside(&exe, &job_args, Duration::from_secs(300), || {
            run_round(&job, round, Some(NetworkConfig::new(0, peers)), &rows)
        });
        running.store(false, Ordering::Release);
        dog.thread().unpark();
        let _ = dog.join();
        let ((mine, problems), lines) = outcome?;
        let wall = round_started.elapsed().as_secs_f64();
        let mut workers = vec![mine];
        for line in lines {
            workers.push(crate::report::parse_worker_line(&line)?);
        }
        let stream_dir =
            std::env::temp_dir().join(format!("weir-soak-{}-round-{round}", std::process::id()));
        let (stream_restarts, stream_problems) =
            streaming_round(mix(job.seed.wrapping_add(round)), &stream_dir)?;
        let report = RoundReport {
            round,
            workers,
            rss_after: weir_kernel::sys::resident_memory().map_or(0, |r| r.current_bytes),
            problems: problems.into_iter().chain(stream_problems).collect(),
        };
        // Five pipelines' worth of generated records: shuffle, sort, and both join sides.
        let round_records = 3 * job.records + (job.records / 8).max(1);
        records += round_records;
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        println!(
            "round {round:>4} at {:>6.1} s: {:.2} M records/s, shuffled {:.1} MiB, spilled {:.1} MiB, \
             in flight max {:.1} KiB, worker 0 RSS {:.1} MiB (peak {:.1}), worker 1 peak {:.1} MiB, \
             back-pressured {:.2} s, stream restarts {stream_restarts} — {}",
            started.elapsed().as_secs_f64(),
            round_records as f64 / wall / 1e6,
            mib(report.workers.iter().map(|w| w.bytes_exchanged).sum()),
            mib(report.workers.iter().map(|w| w.spilled_bytes).sum()),
            report
                .workers
                .iter()
                .map(|w| w.in_flight_bytes)
                .max()
                .unwrap_or(0) as f64
                / 1024.0,
            mib(report.rss_after),
            mib(report.workers[0].peak_rss),
            mib(report.workers.get(1).map_or(0, |w| w.peak_rss)),
            report
                .workers
                .iter()
                .map(|w| w.back_pressured_us)
                .sum::<u64>() as f64
                / 1e6,
            if report.problems.is_empty() {
                "ok"
            } else {
                "WRONG"
            },
        );
        verdict(&report)?;
        rounds.push(report);
    }
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    let first = rounds.first().map_or(0, |r| r.rss_after);
    let last = rounds.last().map_or(0, |r| r.rss_after);
    let rss_max = rounds
        .iter()
        .flat_map(|r| r.workers.iter().map(|w| w.peak_rss))
        .max()
        .unwrap_or(0);
    let in_flight = rounds
        .iter()
        .flat_map(|r| r.workers.iter().map(|w| w.in_flight_bytes))
        .max()
        .unwrap_or(0);
    let wall = started.elapsed().as_secs_f64();
    println!(
        "soak: {} rounds in {wall:.0} s, {:.2} M records/s, every result right, every barrier aligned, \
         no leak; worker 0 RSS after \
         the first round {:.1} MiB, after the last {:.1} MiB; peak RSS {:.1} MiB",
        rounds.len(),
        records as f64 / wall / 1e6,
        mib(first),
        mib(last),
        mib(rss_max),
    );
    #[derive(serde::Serialize)]
    struct Line {
        rounds: usize,
        wall_s: f64,
        records_per_s: f64,
        rss_first_mib: f64,
        rss_last_mib: f64,
        peak_rss_mib: f64,
        inflight_bytes_max: u64,
        valid: bool,
    }
    let line = Line {
        rounds: rounds.len(),
        wall_s: crate::report::round(wall, 1),
        records_per_s: (records as f64 / wall).round(),
        rss_first_mib: crate::report::round(mib(first), 1),
        rss_last_mib: crate::report::round(mib(last), 1),
        peak_rss_mib: crate::report::round(mib(rss_max), 1),
        inflight_bytes_max: in_flight,
        valid: true,
    };
    println!("{}", crate::report::Report::new("soak", line).to_json());
    Ok(())
}
