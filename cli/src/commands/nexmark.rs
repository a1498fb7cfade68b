//! `weir run nexmark` and `weir gen nexmark`: the Nexmark queries as dataflow jobs on
//! worker processes (through the library's SPMD entry point, as a user's program runs),
//! and the events as CSV for other engines to check answers with.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use weir::config::Config;
use weir::dataflow::{Collected, Dataflow, JobReport, Stream, WorkerReport};
use weir::error::{Result, WeirError};
use weir::output::OutputFile;
use weir::record_file::{read_header, write_records};
use weir::spmd;

use crate::args::ConfigArgs;
use crate::nexmark::{
    EVENT_RATE_DEFAULT, EVENTS_HEADER, Event, Events, Row, check_query, event_csv, events,
    final_rows, first_events, generator_rate, header, line_digest, model, model_lines, model_of,
    parse_event_csv,
};
use crate::report::Report;

/// `weir run nexmark`.
#[derive(Debug, Clone, Args)]
pub(crate) struct NexmarkArgs {
    /// The query: 0 (pass-through), 1 (currency conversion), 2 (selection), 3 (local
    /// item suggestion: a stream join on keyed state), 4 (average price per category:
    /// keyed state and timers, a changelog), 5 (hot items: sliding windows), 7 (highest
    /// bid: tumbling windows) or 8 (new users: a windowed join).
    #[arg(long, default_value_t = 1)]
    query: u32,
    /// Events to generate in all, across the source's tasks.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Read the events from a file of `weir gen nexmark` instead of generating them
    /// (--events is ignored): a record file (`--format records`), or CSV when the name
    /// ends in `.csv` (split across tasks by byte ranges; a malformed line fails the job
    /// naming it, unless --skip-bad-lines).
    #[arg(long)]
    input: Option<PathBuf>,
    /// With a CSV --input: drop malformed lines and count them (`skipped_lines` in the
    /// JSON) instead of failing.
    #[arg(long)]
    skip_bad_lines: bool,
    /// Events per second in all (default: as fast as the generator goes).
    #[arg(long)]
    rate: Option<u64>,
    /// Events per second of event time, how close together the generator puts the
    /// events' timestamps: more means more keys per window (state). With --input, the
    /// rate the file was generated with (for the check).
    #[arg(long, default_value_t = EVENT_RATE_DEFAULT)]
    event_rate: u64,
    /// Write the query's rows as CSV to DIR/part-T (one file per task), each through a
    /// temporary file renamed when its task ends.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Skip checking the rows against a plain loop over the same events (that check
    /// runs after the job, outside its wall time, and regenerates every event).
    #[arg(long)]
    no_verify: bool,
    /// Also measure the generator alone (events generated and dropped, one task's share
    /// on one thread, times the tasks), the ceiling of a job fed by it, after the job.
    #[arg(long)]
    ceiling: bool,
    #[command(flatten)]
    config: ConfigArgs,
}

/// The JSON line of `weir run nexmark` (docs/WORKLOADS.md).
#[derive(Debug, Serialize)]
struct NexmarkReport {
    query: u32,
    workers: usize,
    slots: usize,
    events: u64,
    wall_s: f64,
    events_per_s: f64,
    rows: u64,
    peak_rss_mib: f64,
    /// Peak RSS of each worker process, in MiB, by process index.
    worker_rss_mib: Vec<f64>,
    /// Bytes of keyed state in memory (q3, q4: the largest each keyed process operator
    /// held), all workers.
    state_bytes: u64,
    /// Bytes the kernel operators (window and keyed state) spilled, all workers.
    spilled_bytes: u64,
    /// Records that came after the watermark had closed their windows (dropped).
    late_records: u64,
    /// Malformed lines of a CSV input dropped (--skip-bad-lines).
    skipped_lines: u64,
    /// Windows fired by a watermark before the end of the input, all workers.
    windows_fired: u64,
    /// From a watermark's emit at the source to the end of the results of a window it
    /// fired: the median and 99th percentile, in milliseconds (the worst worker's).
    window_latency_p50_ms: f64,
    window_latency_p99_ms: f64,
    /// The generator's own rate for as many tasks as the job had (`--ceiling`).
    #[serde(skip_serializing_if = "Option::is_none")]
    generator_events_per_s: Option<f64>,
    #[serde(flatten)]
    recovery: Recovery,
    /// The rows' count and digest equal a plain loop's over the same events (`null`
    /// with `--no-verify`).
    valid: Option<bool>,
}

/// Runs `weir run nexmark`.
///
/// # Errors
///
/// A usage error (a query not built, an invalid configuration); the job's error.
pub(crate) fn run_nexmark(args: &NexmarkArgs) -> Result<()> {
    check_query(args.query)?;
    // The events a record file holds are the generator's first N: the model checks them
    // so. A CSV file's are counted (and checked) by reading it.
    let mut args = args.clone();
    match &args.input {
        Some(input) if is_csv(input) => {
            // Read once before the job: a malformed line is an error naming its number.
            args.events = csv_count(input, args.skip_bad_lines)?;
        }
        Some(input) => args.events = read_header(input)?.records,
        None => {}
    }
    // A streaming job: buffer debloating on unless the command line says otherwise.
    args.config.debloat.get_or_insert(true);
    let args = &args;
    let config = args.config.to_config()?;
    let committed = config.checkpoint.is_some();
    if committed && args.output.is_none() {
        return Err(WeirError::Usage {
            message: "--checkpoint-dir needs --output: the rows are committed there with each \
                      checkpoint (exactly once)"
                .to_owned(),
        });
    }
    let outcome = spmd::run(&config, |flow| job(flow, args, committed))?;
    let Some(outcome) = outcome else {
        return Ok(()); // a worker process: its part is done
    };
    let (rows, valid) = checked_rows(args, &outcome.records, committed)?;
    let wall_s = outcome.report.wall_s();
    let ceiling = args.ceiling.then(|| ceiling(args.events, wall_s, &config));
    let worker_rss_mib = rss_mib(&outcome.report);
    eprintln!("{}", summary(args, &config, rows, wall_s, valid));
    if let Some(dir) = &args.output {
        eprintln!(
            "weir: rows in {}/part-* as CSV: {}",
            dir.display(),
            header(args.query)
        );
    }
    let report = NexmarkReport {
        query: args.query,
        workers: config.workers,
        slots: config.slots,
        events: args.events,
        wall_s,
        events_per_s: args.events as f64 / wall_s,
        rows,
        peak_rss_mib: worker_rss_mib.iter().copied().fold(0.0, f64::max),
        worker_rss_mib,
        state_bytes: outcome.report.total(|w| w.state_bytes),
        spilled_bytes: outcome.report.total(|w| w.spilled_bytes),
        late_records: outcome.report.total(|w| w.late_records),
        skipped_lines: outcome.report.total(|w| w.skipped_records),
        windows_fired: outcome.report.total(|w| w.windows_fired),
        window_latency_p50_ms: worst_ms(&outcome.report, |w| w.window_latency_p50_us),
        window_latency_p99_ms: worst_ms(&outcome.report, |w| w.window_latency_p99_us),
        generator_events_per_s: ceiling,
        recovery: Recovery::of(&outcome.report),
        valid,
    };
    println!("{}", Report::new("nexmark", report).to_json());
    if valid == Some(false) {
        return Err(WeirError::Data {
            message: format!(
                "Nexmark q{}: the job's rows differ from a plain loop's over the same events",
                args.query
            ),
        });
    }
    Ok(())
}

/// q4's committed changelog reduced to each category's last line (the most auctions):
/// its final rows. (The changelog itself depends on when watermarks came.)
fn q4_last_lines(lines: Vec<String>) -> Vec<String> {
    let mut last: std::collections::HashMap<String, (u64, String)> =
        std::collections::HashMap::new();
    for line in lines {
        let mut fields = line.split(',');
        let category = fields.next().unwrap_or_default().to_owned();
        let auctions = fields.next().and_then(|a| a.parse().ok()).unwrap_or(0);
        let kept = last.entry(category).or_insert((0, String::new()));
        if auctions >= kept.0 {
            *kept = (auctions, line);
        }
    }
    last.into_values().map(|(_, line)| line).collect()
}

/// The job's rows and whether they equal a plain loop's: the committed lines read back
/// (what a failure and a restore must not change; q4's last line per category), or the
/// collected count and digest.
fn checked_rows(
    args: &NexmarkArgs,
    collected: &[((), (u64, u64))],
    committed: bool,
) -> Result<(u64, Option<bool>)> {
    let (rows, digest) = match (&args.output, committed) {
        (Some(dir), true) => {
            let mut lines = weir::dataflow::read_committed(dir)?;
            if args.query == 4 {
                lines = q4_last_lines(lines);
            }
            lines.iter().fold((0u64, 0u64), |(n, d), line| {
                (n + 1, d.wrapping_add(line_digest(line)))
            })
        }
        _ => collected
            .iter()
            .fold((0u64, 0u64), |(n, d), ((), (rows, digest))| {
                (n + rows, d.wrapping_add(*digest))
            }),
    };
    let valid = if args.no_verify {
        None
    } else if committed {
        Some(model_lines(args.query, args.events, args.event_rate)? == (rows, digest))
    } else {
        Some(expected(args)? == (rows, digest))
    };
    Ok((rows, valid))
}

/// The checkpoints and restarts of a job, in its JSON line.
#[derive(Debug, Serialize)]
struct Recovery {
    /// Times the job restarted from a checkpoint after a failure.
    restarts: u32,
    /// From the last failure's detection to the restarted job's tasks running, in
    /// milliseconds.
    recovery_ms: f64,
    /// Checkpoints completed (of the last run when the job restarted).
    checkpoints: usize,
    /// Their duration, from the barrier's scheduled time to the manifest in place: the
    /// median and 99th percentile, in milliseconds.
    checkpoint_p50_ms: f64,
    checkpoint_p99_ms: f64,
    /// The largest checkpoint's bytes.
    checkpoint_bytes_max: u64,
    /// The longest a task's checkpoint file took to finish in the background (fsync,
    /// rename) while the task went on, in milliseconds: the asynchronous part.
    checkpoint_async_ms_max: f64,
    /// Every gate's barriers: from the barrier's scheduled time to its alignment, and
    /// from its first channel's barrier to its last's; 99th percentiles, in milliseconds.
    barrier_delay_p99_ms: f64,
    alignment_p99_ms: f64,
    /// Barriers the gates released unaligned (`--alignment-timeout-ms`), and the bytes of
    /// channel state they recorded.
    barriers_unaligned: u64,
    channel_state_bytes: u64,
}

impl Recovery {
    fn of(report: &JobReport) -> Recovery {
        let first = report.workers.first();
        // The final checkpoint (taken once every task ended) is not one of the interval's.
        let checkpoints = || {
            report
                .workers
                .iter()
                .flat_map(|w| &w.checkpoints)
                .filter(|c| !c.is_final)
        };
        let barriers = || report.workers.iter().flat_map(|w| &w.barriers);
        Recovery {
            restarts: first.map_or(0, |w| w.restarts),
            recovery_ms: first.map_or(0.0, |w| w.recovery_us as f64 / 1e3),
            checkpoints: checkpoints().count(),
            checkpoint_p50_ms: percentile_ms(checkpoints().map(|c| c.duration_us), 50),
            checkpoint_p99_ms: percentile_ms(checkpoints().map(|c| c.duration_us), 99),
            checkpoint_bytes_max: checkpoints().map(|c| c.bytes).max().unwrap_or(0),
            checkpoint_async_ms_max: report.max_of(|w| w.checkpoint_async_us_max) as f64 / 1e3,
            barrier_delay_p99_ms: percentile_ms(barriers().map(|b| b.delay_us), 99),
            alignment_p99_ms: percentile_ms(barriers().map(|b| b.alignment_us), 99),
            barriers_unaligned: report.total(|w| w.barriers_unaligned),
            channel_state_bytes: report.total(|w| w.channel_state_bytes),
        }
    }
}

/// The `percent`-th percentile of microseconds, in milliseconds (nearest rank; 0 when
/// there are none).
fn percentile_ms(values: impl Iterator<Item = u64>, percent: usize) -> f64 {
    let mut values: Vec<u64> = values.collect();
    if values.is_empty() {
        return 0.0;
    }
    values.sort_unstable();
    let rank = (values.len() * percent).div_ceil(100).max(1);
    values[rank - 1] as f64 / 1e3
}

/// Each worker's peak RSS in MiB, by process index.
fn rss_mib(report: &JobReport) -> Vec<f64> {
    report
        .workers
        .iter()
        .map(|w| w.peak_rss as f64 / (1 << 20) as f64)
        .collect()
}

/// The program every worker builds: the events (generated, or read from `--input`), the
/// query's rows (also written as CSV on `--output`), and their count and digest.
fn job(flow: &Dataflow, args: &NexmarkArgs, committed: bool) -> Collected<((), (u64, u64))> {
    let events = match &args.input {
        Some(path) if is_csv(path) => {
            let lines = flow
                .text_lines(path.clone())
                .filter(|line| !line.starts_with("event_type,"));
            let parse = |line: String| {
                parse_event_csv(&line).map_err(|why| {
                    let shown: String = line.chars().take(120).collect();
                    format!("a malformed event line ({why}): {shown:?}")
                })
            };
            if args.skip_bad_lines {
                lines.try_map_or_skip(parse)
            } else {
                lines.try_map(parse)
            }
        }
        Some(path) => flow.read_records::<Event>(path.clone()),
        None => events(
            flow,
            Events {
                count: Some(args.events),
                rate: args.rate,
                event_rate: args.event_rate,
            },
        ),
    };
    let query = args.query;
    let rows = crate::nexmark::query(events, query).expect("checked before the job");
    let rows = match &args.output {
        Some(dir) if committed => {
            rows.write_committed(dir.clone(), move |row| row.csv(query));
            return Collected::none();
        }
        Some(dir) => {
            let (out, rest) = rows.tee();
            out.write_lines(dir.clone(), move |row| row.csv(query));
            rest
        }
        None => rows,
    };
    digest(final_rows(rows, query))
}

/// The rows' count and digest a plain loop makes of the job's events: the generator's
/// (also for a record file, which holds its first N), or a CSV input's lines.
fn expected(args: &NexmarkArgs) -> Result<(u64, u64)> {
    match &args.input {
        Some(input) if is_csv(input) => model_of(args.query, || {
            csv_lines(input)
                .expect("read once already")
                .filter_map(std::result::Result::ok)
        }),
        _ => model(args.query, args.events, args.event_rate),
    }
}

/// Whether `--input` names a CSV file.
fn is_csv(path: &std::path::Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("csv"))
}

/// The events of a CSV file of `weir gen nexmark`, in order, read by one plain loop
/// (streamed, never held): each line's event, or the error naming the line's number. The
/// header line is skipped.
fn csv_lines(path: &std::path::Path) -> Result<impl Iterator<Item = Result<Event>>> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(|e| WeirError::file("open", path, e))?;
    let path = path.to_path_buf();
    Ok(std::io::BufReader::with_capacity(1 << 16, file)
        .lines()
        .enumerate()
        .filter(|(number, line)| {
            !(*number == 0 && line.as_ref().is_ok_and(|l| l.starts_with("event_type,")))
        })
        .map(move |(number, line)| {
            let line = line.map_err(|e| WeirError::file("read", &path, e))?;
            parse_event_csv(&line).map_err(|why| WeirError::Data {
                message: format!("{} line {}: {why}", path.display(), number + 1),
            })
        }))
}

/// How many events a CSV file holds (malformed lines skipped when `skip_bad`, an error
/// naming the first one otherwise).
fn csv_count(path: &std::path::Path, skip_bad: bool) -> Result<u64> {
    let mut count = 0;
    for event in csv_lines(path)? {
        match event {
            Ok(_) => count += 1,
            Err(WeirError::Data { .. }) if skip_bad => {}
            Err(e) => return Err(e),
        }
    }
    Ok(count)
}

/// The largest of a per-worker figure in microseconds, in milliseconds.
fn worst_ms(report: &JobReport, figure: impl Fn(&WorkerReport) -> u64) -> f64 {
    report.workers.iter().map(figure).max().unwrap_or(0) as f64 / 1e3
}

/// The job's one-line summary on stderr.
fn summary(
    args: &NexmarkArgs,
    config: &Config,
    rows: u64,
    wall_s: f64,
    valid: Option<bool>,
) -> String {
    format!(
        "weir: Nexmark q{} over {} events ({}) across {} worker process{} × {} slot{}: {rows} rows in {wall_s:.2} s, {:.2} M events/s{}",
        args.query,
        args.events,
        args.rate
            .map_or_else(|| "unthrottled".to_owned(), |r| format!("{r} events/s")),
        config.workers,
        if config.workers == 1 { "" } else { "es" },
        config.slots,
        if config.slots == 1 { "" } else { "s" },
        args.events as f64 / wall_s / 1e6,
        match valid {
            Some(true) => "; rows equal a plain loop's over the same events",
            Some(false) => "; ROWS DIFFER from a plain loop's over the same events",
            None => "",
        },
    )
}

/// The generator's own rate for as many tasks as the job had, said on stderr beside the
/// job's.
fn ceiling(events: u64, wall_s: f64, config: &Config) -> f64 {
    let threads = config.workers * config.slots;
    let rate = generator_rate(events, threads);
    eprintln!(
        "weir: the generator alone, for {threads} tasks: {:.2} M events/s; the job ran at {:.0}% of it",
        rate / 1e6,
        100.0 * events as f64 / wall_s / rate
    );
    rate
}

/// The rows' count and the wrapping sum of their digests, folded per task and summed on
/// one task.
fn digest(rows: Stream<Row>) -> Collected<((), (u64, u64))> {
    rows.key_by(|_| ())
        .aggregate(
            |row| (1u64, row.digest()),
            |a, b| {
                a.0 += b.0;
                a.1 = a.1.wrapping_add(b.1);
            },
        )
        .collect()
}

/// Runs `weir gen nexmark`: the first `count` events as CSV ([`EVENTS_HEADER`]) or as a
/// record file to `out`, through a temporary file renamed when complete.
///
/// # Errors
///
/// [`WeirError::Usage`] for an output that may not be written or an unknown format; a
/// write that fails.
pub(crate) fn gen_nexmark(
    count: u64,
    event_rate: u64,
    out: &std::path::Path,
    format: &str,
) -> Result<()> {
    match format {
        "csv" => {}
        "records" => {
            let header = write_records(out, first_events(count, event_rate))?;
            eprintln!(
                "weir: {} Nexmark events written to {} as a record file ({} blocks)",
                header.records,
                out.display(),
                header.blocks
            );
            return Ok(());
        }
        _ => {
            return Err(WeirError::Usage {
                message: format!("--format {format}: expected csv or records"),
            });
        }
    }
    let file = OutputFile::create("--out", out, &[])?;
    let write = |e| WeirError::file("write", file.temp_path(), e);
    let mut writer = BufWriter::with_capacity(1 << 20, file.try_clone()?);
    writeln!(writer, "{EVENTS_HEADER}").map_err(write)?;
    for event in first_events(count, event_rate) {
        writeln!(writer, "{}", event_csv(&event)).map_err(write)?;
    }
    writer.flush().map_err(write)?;
    drop(writer);
    file.commit()?;
    eprintln!("weir: {count} Nexmark events written to {}", out.display());
    Ok(())
}
