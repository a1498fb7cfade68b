//! The API against straightforward computations, in one process with several slots.

use std::collections::{BTreeMap, HashMap};

use weir_kernel::hash::JoinType;

use super::*;
use crate::config::Config;

pub(super) fn config(slots: usize, memory: u64) -> Config {
    Config {
        slots,
        memory,
        ..Config::default()
    }
}

pub(super) fn run(flow: &Dataflow, config: &Config) -> WorkerReport {
    let report = runtime::execute(flow, config, None).unwrap();
    assert!(report.leak_free);
    report
}

#[test]
fn aggregate_by_key_equals_a_hash_map() {
    for slots in [1, 3] {
        let flow = Dataflow::new();
        let sums = flow
            .generate(50_000, |i| (i * 7919 % 1000, i))
            .filter(|(_, v)| v % 3 != 0)
            .key_by(|(k, _)| *k)
            .aggregate(
                |(_, v)| (*v, 1u64),
                |a, b| {
                    a.0 += b.0;
                    a.1 += b.1;
                },
            )
            .collect();
        let report = run(&flow, &config(slots, 16 << 20));
        assert!(report.records_exchanged > 0);
        let mut expected: HashMap<u64, (u64, u64)> = HashMap::new();
        for i in (0..50_000u64).filter(|v| v % 3 != 0) {
            let e = expected.entry(i * 7919 % 1000).or_default();
            e.0 += i;
            e.1 += 1;
        }
        let got: HashMap<u64, (u64, u64)> = sums.take().into_iter().collect();
        assert_eq!(got, expected, "slots {slots}");
    }
}

/// What a join of `join_type` of `left` with `right` on the first field returns, sorted.
pub(super) fn nested_loop_join(
    left: &[(u32, i64)],
    right: &[(u32, String)],
    join_type: JoinType,
) -> Vec<JoinedRow> {
    let mut expected = Vec::new();
    for l in left {
        let matches: Vec<_> = right.iter().filter(|r| r.0 == l.0).collect();
        match join_type {
            JoinType::Inner | JoinType::LeftOuter | JoinType::RightOuter | JoinType::FullOuter => {
                for r in &matches {
                    expected.push((Some(*l), Some((*r).clone())));
                }
                let outer = matches!(join_type, JoinType::LeftOuter | JoinType::FullOuter);
                if matches.is_empty() && outer {
                    expected.push((Some(*l), None));
                }
            }
            JoinType::LeftSemi if !matches.is_empty() => expected.push((Some(*l), None)),
            JoinType::LeftAnti if matches.is_empty() => expected.push((Some(*l), None)),
            _ => {}
        }
    }
    for r in right {
        let matched = left.iter().any(|l| l.0 == r.0);
        let alone = match join_type {
            JoinType::RightOuter | JoinType::FullOuter | JoinType::RightAnti => !matched,
            JoinType::RightSemi => matched,
            _ => false,
        };
        if alone {
            expected.push((None, Some(r.clone())));
        }
    }
    expected.sort();
    expected
}

/// A row of the test joins.
pub(super) type JoinedRow = (Option<(u32, i64)>, Option<(u32, String)>);

/// The right side of the test joins.
pub(super) type Orders = Vec<(u32, String)>;

/// The join tests' inputs: orders (the right side) and items (the left).
pub(super) fn join_inputs() -> (Orders, Vec<(u32, i64)>) {
    let orders = (0..300).map(|i| (i % 120, format!("o{i}"))).collect();
    let items = (0..900).map(|i| (i % 150, i64::from(i))).collect();
    (orders, items)
}

/// A program whose left stream is `items` and right stream `orders`, keyed by their
/// first field and joined by `join`; returns the program and its collected rows.
pub(super) fn join_flow<Row: Data>(
    join: impl FnOnce(KeyedStream<u32, (u32, i64)>, KeyedStream<u32, (u32, String)>) -> Stream<Row>,
) -> (Dataflow, Collected<Row>) {
    let (orders, items) = join_inputs();
    let flow = Dataflow::new();
    let left = flow
        .generate(items.len() as u64, move |i| items[i as usize])
        .key_by(|(k, _)| *k);
    let right = flow
        .generate(orders.len() as u64, move |i| orders[i as usize].clone())
        .key_by(|(k, _)| *k);
    let rows = join(left, right).collect();
    (flow, rows)
}

#[test]
fn joins_equal_a_nested_loop() {
    let (orders, items) = join_inputs();
    for join_type in JoinType::ALL {
        let (flow, rows) = join_flow(|left, right| left.join_as(right, join_type));
        run(&flow, &config(2, 16 << 20));
        let mut got = rows.take();
        got.sort();
        let expected = nested_loop_join(&items, &orders, join_type);
        assert_eq!(got, expected, "{join_type:?}");
    }
}

#[test]
fn broadcast_joins_equal_a_nested_loop_and_shuffle_only_the_right_side() {
    let (orders, items) = join_inputs();
    for slots in [1, 3] {
        for join_type in [
            JoinType::Inner,
            JoinType::LeftOuter,
            JoinType::LeftSemi,
            JoinType::LeftAnti,
        ] {
            let (flow, rows) = join_flow(|left, right| left.broadcast_join_as(right, join_type));
            let report = run(&flow, &config(slots, 16 << 20));
            let mut got = rows.take();
            got.sort();
            let expected = nested_loop_join(&items, &orders, join_type);
            // The right side (a broadcast record counts once), then the joined rows to the
            // collecting task: the left side is never exchanged.
            let sent = (orders.len() + expected.len()) as u64;
            let case = format!("{join_type:?}, {slots} slots");
            assert_eq!(report.records_exchanged, sent, "{case}");
            assert_eq!(got, expected, "{case}");
        }
    }
    let (flow, rows) = join_flow(|left, right| left.broadcast_join(right));
    run(&flow, &config(2, 16 << 20));
    let mut got: Vec<JoinedRow> = rows
        .take()
        .into_iter()
        .map(|(l, r)| (Some(l), Some(r)))
        .collect();
    got.sort();
    assert_eq!(got, nested_loop_join(&items, &orders, JoinType::Inner));
}

#[test]
#[should_panic(expected = "cannot be a RightOuter join")]
fn a_broadcast_join_refuses_join_types_that_would_repeat_right_rows() {
    let flow = Dataflow::new();
    let left = flow.generate(10, |i| i).key_by(|i| *i);
    let right = flow.generate(10, |i| i).key_by(|i| *i);
    let _ = left.broadcast_join_as(right, JoinType::RightOuter);
}

#[test]
fn a_global_sort_with_limit_spills_and_orders() {
    let flow = Dataflow::new();
    let top = flow
        .generate(200_000, |i| {
            (i * 2_654_435_761 % 1_000_003, format!("{i:0>40}"))
        })
        .sort_by(|(k, _)| crate::serde_fmt::Descending(*k), Some(1000))
        .gather()
        .sort_by(|(k, _)| crate::serde_fmt::Descending(*k), Some(1000))
        .collect();
    let report = run(&flow, &config(2, 8 << 20));
    assert!(report.spilled_bytes > 0, "{report:?}");
    let got: Vec<u64> = top.take().into_iter().map(|(k, _)| k).collect();
    let mut expected: Vec<u64> = (0..200_000u64)
        .map(|i| i * 2_654_435_761 % 1_000_003)
        .collect();
    expected.sort_unstable_by(|a, b| b.cmp(a));
    expected.truncate(1000);
    assert_eq!(got, expected);
}

#[test]
fn union_flat_map_rebalance_broadcast_and_count() {
    let flow = Dataflow::new();
    let words = flow
        .generate(1000, |i| format!("a b c{}", i % 10))
        .flat_map(|line| line.split(' ').map(str::to_string).collect::<Vec<_>>());
    let more = flow.generate(100, |i| format!("d{i}")).rebalance();
    let counted = words
        .union(more)
        .key_by(|w: &String| w.clone())
        .aggregate(|_| 1u64, |a, b| *a += b);
    let counts: BTreeMap<String, u64> = {
        let handle = counted.collect();
        run(&flow, &config(3, 48 << 20));
        handle.take().into_iter().collect()
    };
    assert_eq!(counts["a"], 1000);
    assert_eq!(counts["c3"], 100);
    assert_eq!(counts["d42"], 1);
    assert_eq!(counts.len(), 2 + 10 + 100);

    let flow = Dataflow::new();
    let n = flow.generate(10, |i| i).broadcast().count();
    run(&flow, &config(3, 48 << 20));
    assert_eq!(n.take().iter().sum::<u64>(), 30);
}

#[test]
fn a_failing_operator_fails_the_job_and_frees_everything() {
    let flow = Dataflow::new();
    let _sums = flow
        .generate(100_000, |i| i)
        .key_by(|i| i % 100)
        .aggregate(|i| *i, |a, b| *a += b)
        .map(|(k, v)| {
            assert!(k != 42, "operator failure at key 42");
            (k, v)
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("weir-fail-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = Config {
        spill_dir: dir.clone(),
        ..config(2, 16 << 20)
    };
    let error = runtime::execute(&flow, &config, None).unwrap_err();
    assert!(error.to_string().contains("panicked"), "{error}");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "no spill file left"
    );
    std::fs::remove_dir(&dir).unwrap();
}

#[test]
fn memory_too_small_for_the_operators_names_the_field() {
    let flow = Dataflow::new();
    let _ = flow
        .generate(10, |i| i)
        .key_by(|i| *i)
        .aggregate(|i| *i, |a, b| *a += b)
        .collect();
    let error = runtime::execute(&flow, &config(16, 4 << 20), None).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("invalid configuration: memory = 4MiB, allowed at least"),
        "{error}"
    );
}

#[test]
fn fold_gives_one_state_per_task_and_keys_land_where_task_of_key_says() {
    for slots in [1, 3] {
        let flow = Dataflow::new();
        // Per task: (task, records, records whose key belongs to another task).
        let states = flow
            .generate(10_000, |i| (i * 31 % 257, i))
            .key_by(|(k, _)| *k)
            .partition()
            .fold(
                |ctx| (ctx.task(), ctx.parallelism(), 0u64, 0u64),
                |(task, parallelism, records, misplaced), (key, _)| {
                    *records += 1;
                    *misplaced += u64::from(task_of_key(&key, *parallelism) != *task);
                },
                |state| state,
            )
            .collect();
        run(&flow, &config(slots, 16 << 20));
        let mut states = states.take();
        states.sort_unstable();
        assert_eq!(states.len(), slots, "one state per task");
        assert_eq!(states.iter().map(|s| s.2).sum::<u64>(), 10_000);
        assert!(states.iter().all(|s| s.3 == 0), "{states:?}");
        if slots > 1 {
            assert!(states.iter().all(|s| s.2 > 0), "keys spread: {states:?}");
        }
    }
}

/// Fixed-size accumulators (updated in place) and variable-size ones (re-appended) both
/// equal a hash map when the aggregation spills at the smallest budget it accepts.
#[test]
fn aggregations_that_spill_equal_a_hash_map_for_fixed_and_variable_accumulators() {
    const KEYS: u64 = 150_000;
    let mut expected: HashMap<u64, (i64, u64)> = HashMap::new();
    for i in 0..300_000u64 {
        let e = expected.entry(i * 7919 % KEYS).or_default();
        e.0 += i as i64 - 1000;
        e.1 += 1;
    }
    // Fixed: (i64, u64) encodes to 16 bytes for every value.
    let flow = Dataflow::new();
    let sums = flow
        .generate(300_000, |i| (i * 7919 % KEYS, i as i64 - 1000))
        .key_by(|(k, _)| *k)
        .aggregate(
            |(_, v)| (*v, 1u64),
            |a, b| {
                a.0 += b.0;
                a.1 += b.1;
            },
        )
        .collect();
    let report = run(&flow, &config(1, 5 << 20));
    assert!(report.spilled_bytes > 0, "{report:?}");
    let got: HashMap<u64, (i64, u64)> = sums.take().into_iter().collect();
    assert_eq!(got, expected);
    // Variable: the count as a decimal string.
    let flow = Dataflow::new();
    let counts = flow
        .generate(300_000, |i| i * 7919 % KEYS)
        .key_by(|k| *k)
        .aggregate(
            |_| "1".to_string(),
            |a, b| *a = (a.parse::<u64>().unwrap() + b.parse::<u64>().unwrap()).to_string(),
        )
        .collect();
    let report = run(&flow, &config(1, 5 << 20));
    assert!(report.spilled_bytes > 0, "{report:?}");
    let got: HashMap<u64, u64> = counts
        .take()
        .into_iter()
        .map(|(k, n)| (k, n.parse().unwrap()))
        .collect();
    let want: HashMap<u64, u64> = expected.iter().map(|(k, v)| (*k, v.1)).collect();
    assert_eq!(got, want);
}

#[test]
fn tasks_split_a_text_file_by_bytes_and_read_every_line_once() {
    // A new directory (create_dir fails on an existing one), so the removal at the end
    // removes only what this test made.
    let dir = std::env::temp_dir().join(format!("weir-text-lines-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    // Lines of 0 to 40 bytes, some with CRLF, one of several kilobytes, no final newline.
    let mut lines: Vec<String> = (0..500u32)
        .map(|i| "x".repeat((i * 7919 % 41) as usize) + &i.to_string())
        .collect();
    lines[3] = String::new();
    lines[250] = "long".repeat(2000);
    let mut text = String::new();
    for (i, line) in lines.iter().enumerate() {
        text.push_str(line);
        if i + 1 < lines.len() {
            text.push_str(if i % 5 == 0 { "\r\n" } else { "\n" });
        }
    }
    let path = dir.join("lines.txt");
    std::fs::write(&path, &text).unwrap();
    for slots in [1, 2, 3, 7, 16] {
        let flow = Dataflow::new();
        let got = flow
            .text_lines(&path)
            .fold(|_| Vec::new(), |all, line| all.push(line), |all| all)
            .collect();
        run(&flow, &config(slots, 64 << 20));
        let mut got: Vec<String> = got.take().into_iter().flatten().collect();
        got.sort();
        let mut expected = lines.clone();
        expected.sort();
        assert_eq!(got, expected, "{slots} slots");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_combiner_that_does_not_reduce_forwards_and_one_that_does_keeps_its_table() {
    // Keys in runs of four (as an orders' line items): the cache folds each run, the
    // combiner's table would hold a group per record it takes, so it forwards; the final
    // aggregation still sees every group.
    let sums = |keys: fn(u64) -> u64, records: u64, slots: usize| {
        let flow = Dataflow::new();
        let sums = flow
            .generate(records, move |i| (keys(i), 1u64))
            .key_by(|(k, _)| *k)
            .aggregate(|(_, n)| *n, |a, b| *a += b)
            .collect();
        let report = run(&flow, &config(slots, 32 << 20));
        let got: BTreeMap<u64, u64> = sums.take().into_iter().collect();
        let mut want: BTreeMap<u64, u64> = BTreeMap::new();
        for i in 0..records {
            *want.entry(keys(i)).or_default() += 1;
        }
        assert_eq!(got, want);
        (report.records_exchanged, want.len() as u64)
    };
    // One task generates every record: runs stay runs.
    let (exchanged, groups) = sums(|i| i / 4, 400_000, 1);
    // Each run once into the exchange, then each group once to the collector.
    assert_eq!(exchanged, 2 * groups, "forwarded runs");
    // 1,000 keys spread over 400,000 records: the table reduces them to 1,000 partials
    // a task.
    let (exchanged, groups) = sums(|i| i * 7919 % 1000, 400_000, 2);
    assert_eq!(groups, 1000);
    assert!(
        exchanged <= 2 * 1000 + 1000,
        "{exchanged} records exchanged"
    );
}

#[test]
fn a_full_combiner_hands_its_groups_on_and_the_answer_stays_exact() {
    // Blocks of 120,000 records, each cycling four times over 30,000 keys of its own
    // (each task sees half of them): the table reduces its input (it keeps it past the
    // probation), and after a few blocks it is full: it hands its groups on to the
    // exchange, without writing any to disk, and starts again, so the keys of the block
    // in progress cross the exchange twice; the final aggregation, with the rest of the
    // budget, merges the partial sums exactly.
    let (records, keys) = (800_000u64, 7 * 30_000);
    let key = |i: u64| i % 30_000 + 30_000 * (i / 120_000);
    let flow = Dataflow::new();
    let sums = flow
        .generate(records, move |i| (key(i), i))
        .key_by(|(k, _)| *k)
        .aggregate(|(_, v)| *v, |a, b| *a += b)
        .collect();
    let dir = std::env::temp_dir().join(format!("weir-combine-full-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    let config = Config {
        spill_dir: dir.clone(),
        // Each task's combiner gets about 2 MiB: less than its 105,000 groups take.
        ..config(2, 8 << 20)
    };
    let report = run(&flow, &config);
    let mut want: HashMap<u64, u64> = HashMap::new();
    for i in 0..records {
        *want.entry(key(i)).or_default() += i;
    }
    let got: HashMap<u64, u64> = sums.take().into_iter().collect();
    assert_eq!(got, want);
    // Six blocks of 30,000 keys, and a last one of 80,000 records over 30,000 keys.
    assert_eq!(want.len() as u64, keys);
    // The combiners sent more partial groups than a table holding them all would (one
    // per key), fewer than the records, and wrote nothing to disk.
    let combiners: Vec<_> = report
        .operators
        .iter()
        .filter(|o| o.operator == "combiner")
        .collect();
    let sent: u64 = combiners.iter().map(|o| o.records_out).sum();
    assert!(sent > keys && sent < records / 2, "{combiners:?}");
    assert!(
        combiners.iter().all(|o| o.spilled_bytes == 0),
        "{combiners:?}"
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "no spill file left"
    );
    std::fs::remove_dir(&dir).unwrap();
}

#[test]
fn operators_get_memory_by_need_and_the_error_names_the_one_that_needs_most() {
    // Six combiners and six aggregations and one join per task, three tasks: 39 kernel
    // operators. Equal shares of at least a join's minimum each would need 80 MiB; by
    // need, each gets its own minimum and 48 MiB do.
    let flow = Dataflow::new();
    let mut streams = Vec::new();
    for n in 0..6u64 {
        streams.push(
            flow.generate(20_000, move |i| (i % (10 + n), 1u64))
                .key_by(|(k, _)| *k)
                .aggregate(|(_, c)| *c, |a, b| *a += b),
        );
    }
    let all = streams.into_iter().reduce(Stream::union).unwrap();
    let right = flow.generate(100, |i| (i, ())).key_by(|(k, _)| *k);
    let joined = all.key_by(|(k, _)| *k).join(right).count();
    run(&flow, &config(3, 48 << 20));
    // Every group of the six aggregations has a key below 100: 10 + 11 + … + 15 rows.
    assert_eq!(joined.take().iter().sum::<u64>(), 75);
    // Too little: the message names the operator that needs the most.
    let error = runtime::execute(&flow, &config(3, 16 << 20), None).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("3 joins, 18 aggregates") && message.contains("a join needs at least"),
        "{message}"
    );
}

#[test]
fn the_report_has_each_kernel_operators_records_and_spill() {
    // generate → combine ─hash─▶ aggregate → sort (top 5) ─gather─▶ sort → collect, at
    // 2 slots, spilling: each operator's counts add up across its tasks.
    let flow = Dataflow::new();
    let top = flow
        .generate(60_000, |i| (i % 20_000, 1u64))
        .key_by(|(k, _)| *k)
        .aggregate(|(_, n)| *n, |a, b| *a += b)
        .sort_by(|(k, _)| *k, Some(5))
        .gather()
        .sort_by(|(k, _)| *k, Some(5))
        .collect();
    let report = run(&flow, &config(2, 16 << 20));
    assert_eq!(top.take().len(), 5);
    let ops: Vec<(&str, u64, u64, u64)> = report
        .operators
        .iter()
        .map(|o| (o.operator.as_str(), o.tasks, o.records_in, o.records_out))
        .collect();
    let combined = report.operators[0].records_out;
    assert_eq!(
        ops,
        [
            ("combiner", 2, 60_000, combined),
            ("aggregate", 2, combined, 20_000),
            ("sort", 2, 20_000, 10),
            ("sort", 1, 10, 5),
        ]
    );
    assert_eq!(report.operators[1].index, 0);
    assert_eq!(report.operators[2].index, 1, "the sort after the aggregate");
    let spilled: u64 = report.operators.iter().map(|o| o.spilled_bytes).sum();
    assert_eq!(spilled, report.spilled_bytes);
    // Bytes: the sorts hold (u64 key, (u64, u64) record) pairs: a key of 8 bytes and a
    // record of 1 to 10 bytes per varint field, the same pairs in as out.
    let [_, aggregate, first_sort, last_sort] = &report.operators[..] else {
        unreachable!("four operators, checked above")
    };
    assert!(aggregate.bytes_in > 0 && aggregate.bytes_out > 0);
    for sort in [first_sort, last_sort] {
        assert!(sort.bytes_in >= sort.records_in * 10, "{sort:?}");
        assert!(sort.bytes_in <= sort.records_in * 28, "{sort:?}");
    }
    assert!(last_sort.bytes_out <= last_sort.bytes_in);
}
