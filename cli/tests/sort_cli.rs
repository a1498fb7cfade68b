//! The `weir gen sort-records` and `weir sort` commands end to end, on a small file: the
//! output is the sorted input, the last line is the JSON summary, and bad input is a
//! one-line error with exit code 2.
#![allow(
    clippy::too_many_lines,
    reason = "a test is a scenario read top to bottom"
)]
use std::path::Path;
use std::process::Output;

use weir_cli::workloads::w1_records::{self as w1, Checksum, OrderCheck, RECORD_SIZE};

mod support;

use support::{Dir, path, weir};

#[test]
fn gen_writes_the_specified_bytes() {
    let dir = Dir::new("gen");
    let out = dir.file("in.w1");
    let result = weir(&[
        "gen",
        "sort-records",
        "--count",
        "1000",
        "--seed",
        "7",
        "--out",
        path(&out),
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(bytes.len(), 1000 * RECORD_SIZE);
    let mut expected = [0u8; RECORD_SIZE];
    for i in [0u64, 1, 999] {
        w1::record(7, i, &mut expected);
        let at = i as usize * RECORD_SIZE;
        assert_eq!(&bytes[at..at + RECORD_SIZE], &expected[..]);
    }
}

#[test]
fn sort_spills_verifies_and_reports() {
    let dir = Dir::new("sort");
    let (input, output) = (dir.file("in.w1"), dir.file("out.w1"));
    let spill = dir.file("spill");
    std::fs::create_dir_all(&spill).unwrap();
    assert!(
        weir(&[
            "gen",
            "sort-records",
            "--count",
            "50000",
            "--out",
            path(&input)
        ])
        .status
        .success()
    );
    for extra in [
        &["--threads", "1"][..],
        &["--threads", "2"],
        &["--compress"],
    ] {
        let mut args = vec![
            "sort",
            "--input",
            path(&input),
            "--output",
            path(&output),
            "--memory",
            "2MiB",
            "--spill-dir",
            path(&spill),
            "--verify",
        ];
        args.extend_from_slice(extra);
        let result = weir(&args);
        let stdout = String::from_utf8_lossy(&result.stdout);
        assert!(
            result.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&result.stderr)
        );
        let json = stdout.lines().last().unwrap();
        assert!(json.starts_with("{\"workload\":\"W1\""), "{json}");
        assert!(json.contains("\"valid\":true"), "{json}");
        assert!(json.contains("\"records\":50000"), "{json}");
        assert!(
            !json.contains("\"runs\":0,"),
            "2 MiB for 5 MB spills: {json}"
        );
        // Check the output independently of the command's own verification.
        let (sorted, original) = (
            std::fs::read(&output).unwrap(),
            std::fs::read(&input).unwrap(),
        );
        let (mut order, mut out_sum, mut in_sum) = (
            OrderCheck::default(),
            Checksum::default(),
            Checksum::default(),
        );
        for record in sorted.chunks_exact(RECORD_SIZE) {
            order.check(record);
            out_sum.add(record);
        }
        original
            .chunks_exact(RECORD_SIZE)
            .for_each(|r| in_sum.add(r));
        assert_eq!(order.violations, 0);
        assert_eq!(out_sum, in_sum);
        assert_eq!(
            std::fs::read_dir(&spill).unwrap().count(),
            0,
            "spill files left"
        );
    }
}

fn assert_usage_error(result: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
}

#[test]
fn bad_input_is_a_one_line_error_with_exit_code_2() {
    let dir = Dir::new("bad");
    let (input, output) = (dir.file("in.w1"), dir.file("out.w1"));
    std::fs::write(&input, vec![b'x'; 250]).unwrap();
    let sort = |input: &Path, output: &Path, memory: &str| {
        weir(&[
            "sort",
            "--input",
            path(input),
            "--output",
            path(output),
            "--memory",
            memory,
        ])
    };
    assert_usage_error(&sort(&input, &output, "8MiB"), "not a multiple of 100");
    assert_usage_error(
        &sort(&dir.file("missing.w1"), &output, "8MiB"),
        "cannot open input",
    );
    std::fs::write(&input, vec![b'x'; 300]).unwrap();
    assert_usage_error(
        &sort(&input, &dir.file("no/such/dir/out.w1"), "8MiB"),
        "its directory",
    );
    assert_usage_error(&sort(&input, &output, "64KiB"), "below the minimum");
    // Flag values are checked by the argument parser, which adds a pointer to --help.
    let result = sort(&input, &output, "lots");
    assert_eq!(result.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.lines().next().unwrap().contains("invalid size"),
        "{stderr}"
    );
}

/// Asserts that `output` holds the records of `input` in key order (ties in any order).
fn assert_sorted_copy(input: &[u8], output: &[u8]) {
    assert_eq!(output.len(), input.len(), "every record, once");
    let (mut order, mut out_sum, mut in_sum) = (
        OrderCheck::default(),
        Checksum::default(),
        Checksum::default(),
    );
    for record in output.chunks_exact(RECORD_SIZE) {
        order.check(record);
        out_sum.add(record);
    }
    input.chunks_exact(RECORD_SIZE).for_each(|r| in_sum.add(r));
    assert_eq!(order.violations, 0, "out of key order");
    assert_eq!(out_sum, in_sum, "not the input's records");
}

/// `weir sort --verify` of `input` into `output` with `threads` threads under `memory`;
/// asserts success, a valid JSON line and an empty spill directory.
fn sort_verified(input: &Path, output: &Path, spill: &Path, memory: &str, threads: usize) {
    let threads = threads.to_string();
    let result = weir(&[
        "sort",
        "--input",
        path(input),
        "--output",
        path(output),
        "--memory",
        memory,
        "--threads",
        &threads,
        "--spill-dir",
        path(spill),
        "--verify",
    ]);
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let json = stdout.lines().last().unwrap();
    assert!(json.contains("\"valid\":true"), "{json}");
    assert!(json.contains(&format!("\"threads\":{threads},")), "{json}");
    assert_eq!(
        std::fs::read_dir(spill).unwrap().count(),
        0,
        "spill files left"
    );
}

#[test]
fn more_threads_write_the_same_bytes_as_one() {
    let dir = Dir::new("sort-threads");
    let (input, spill) = (dir.file("in.w1"), dir.spill());
    assert!(
        weir(&[
            "gen",
            "sort-records",
            "--count",
            "30000",
            "--seed",
            "11",
            "--out",
            path(&input)
        ])
        .status
        .success()
    );
    // 3 MB under 2 MiB: every thread spills runs and merges them.
    let one = dir.file("out1.w1");
    sort_verified(&input, &one, &spill, "2MiB", 1);
    let expected = std::fs::read(&one).unwrap();
    assert_sorted_copy(&std::fs::read(&input).unwrap(), &expected);
    for threads in [2, 3] {
        let output = dir.file(&format!("out{threads}.w1"));
        sort_verified(&input, &output, &spill, "2MiB", threads);
        // W1 keys are distinct here, so there is one sorted order.
        assert!(
            std::fs::read(&output).unwrap() == expected,
            "{threads} threads differ from 1"
        );
    }
}

#[test]
fn skewed_and_tiny_inputs_sort_with_three_threads() {
    let dir = Dir::new("sort-skew");
    let (input, output, spill) = (dir.file("in.w1"), dir.file("out.w1"), dir.spill());
    // W1 records (seed 5) with the keys `key` gives them.
    let records = |count: u64, key: &dyn Fn(u64) -> [u8; 10]| {
        let mut bytes = Vec::with_capacity(count as usize * RECORD_SIZE);
        let mut record = [0u8; RECORD_SIZE];
        for i in 0..count {
            w1::record(5, i, &mut record);
            record[..10].copy_from_slice(&key(i));
            bytes.extend_from_slice(&record);
        }
        bytes
    };
    let cases: [(&str, Vec<u8>); 5] = [
        ("all keys equal", records(30_000, &|_| [7; 10])),
        (
            "three keys",
            records(30_000, &|i| {
                [[0xff; 10], [0; 10], [0x80; 10]][(i % 3) as usize]
            }),
        ),
        (
            "one key but a few",
            records(30_000, &|i| {
                if i % 1000 == 0 {
                    [i as u8; 10]
                } else {
                    [9; 10]
                }
            }),
        ),
        (
            "fewer records than threads",
            records(2, &|i| [2 - i as u8; 10]),
        ),
        ("no records", Vec::new()),
    ];
    for (case, bytes) in cases {
        std::fs::write(&input, &bytes).unwrap();
        sort_verified(&input, &output, &spill, "2MiB", 3);
        let sorted = std::fs::read(&output).unwrap();
        assert_sorted_copy(&bytes, &sorted);
        println!("{case}: sorted");
    }
}
