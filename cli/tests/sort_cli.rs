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
