//! `weir run nexmark` and `weir gen nexmark` end to end on small runs: the queries across
//! two worker processes (the library's SPMD launch of the weir binary itself), their rows
//! checked against a plain loop, written as CSV when asked; the events as CSV.

mod support;

use support::{Dir, path, weir};

#[test]
fn each_query_across_two_workers_equals_the_plain_loop() {
    for query in ["0", "1", "2"] {
        let source = ["--events", "30000", "--workers", "2"];
        let _ = assert_valid_run(query, &source, "\"events\":30000");
    }
    // 150k events are 15 s of event time: the windowed queries fire windows on the way,
    // and no event is late.
    for query in ["5", "7", "8"] {
        let source = ["--events", "150000", "--workers", "2"];
        let json = assert_valid_run(query, &source, "\"late_records\":0");
        assert!(!json.contains("\"windows_fired\":0,"), "{json}");
    }
}

/// Runs `weir run nexmark --query QUERY SOURCE… --memory 16MiB` and checks its JSON line:
/// the workload, `expected`, `valid: true` and a rate.
fn assert_valid_run(query: &str, source: &[&str], expected: &str) -> String {
    let mut args = vec!["run", "nexmark", "--query", query, "--memory", "16MiB"];
    args.extend_from_slice(source);
    let output = weir(&args);
    assert!(output.status.success(), "q{query}: {output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let json = stdout.lines().last().unwrap();
    assert!(json.starts_with("{\"workload\":\"nexmark\""), "{json}");
    for field in [expected, "\"valid\":true", "\"events_per_s\":"] {
        assert!(json.contains(field), "{field} in {json}");
    }
    json.to_owned()
}

#[test]
fn rows_are_written_as_csv_per_task_when_asked() {
    let dir = Dir::new("nexmark-output");
    let out = dir.file("q2");
    let output = weir(&[
        "run",
        "nexmark",
        "--query",
        "2",
        "--events",
        "50000",
        "--workers",
        "1",
        "--slots",
        "2",
        "--output",
        path(&out),
    ]);
    assert!(output.status.success(), "{output:?}");
    let mut lines = 0;
    for part in ["part-0", "part-1"] {
        let text = std::fs::read_to_string(out.join(part)).unwrap();
        for line in text.lines() {
            let (auction, price) = line.split_once(',').unwrap();
            assert_eq!(auction.parse::<u64>().unwrap() % 123, 0, "{line}");
            price.parse::<u64>().unwrap();
            lines += 1;
        }
    }
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains(&format!("\"rows\":{lines},")),
        "{lines} lines: {stdout}"
    );
}

#[test]
fn gen_nexmark_writes_the_events_as_csv() {
    let dir = Dir::new("nexmark-gen");
    let file = dir.file("events.csv");
    let output = weir(&["gen", "nexmark", "--events", "1000", "--out", path(&file)]);
    assert!(output.status.success(), "{output:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines = text.lines();
    let columns = lines.next().unwrap().split(',').count();
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1000);
    assert!(rows.iter().all(|r| r.split(',').count() == columns));
    // Deterministic: a second run writes the same bytes.
    let again = dir.file("again.csv");
    assert!(
        weir(&["gen", "nexmark", "--events", "1000", "--out", path(&again)])
            .status
            .success()
    );
    assert_eq!(std::fs::read(&again).unwrap(), text.as_bytes());
    assert_eq!(
        dir.names(),
        ["again.csv", "events.csv"],
        "no temporary file left"
    );
}

#[test]
fn a_query_not_built_yet_is_a_usage_error() {
    let output = weir(&["run", "nexmark", "--query", "6", "--events", "10"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("q6, the average price"), "{stderr}");
}

#[test]
fn a_record_file_of_events_is_read_by_every_query_with_the_same_rows() {
    let dir = Dir::new("nexmark-records");
    let file = dir.file("events.rec");
    let output = weir(&[
        "gen",
        "nexmark",
        "--events",
        "20000",
        "--out",
        path(&file),
        "--format",
        "records",
    ]);
    assert!(output.status.success(), "{output:?}");
    for query in ["0", "1", "2", "5", "7", "8"] {
        let source = ["--input", path(&file), "--workers", "2", "--slots", "2"];
        let _ = assert_valid_run(query, &source, "\"events\":20000");
    }
    // A damaged block fails the job naming the file, not with a wrong answer.
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[4096 * 5 + 200] ^= 0x10;
    let damaged = dir.file("damaged.rec");
    std::fs::write(&damaged, bytes).unwrap();
    let output = weir(&[
        "run",
        "nexmark",
        "--query",
        "0",
        "--input",
        path(&damaged),
        "--workers",
        "1",
    ]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("damaged.rec") && stderr.contains("checksum"),
        "{stderr}"
    );
}

#[test]
fn a_csv_of_events_is_read_and_a_bad_line_fails_the_job_or_is_counted() {
    let dir = Dir::new("nexmark-csv-input");
    let csv = dir.file("events.csv");
    let output = weir(&["gen", "nexmark", "--events", "20000", "--out", path(&csv)]);
    assert!(output.status.success(), "{output:?}");
    for query in ["1", "7"] {
        let source = ["--input", path(&csv), "--workers", "2"];
        let _ = assert_valid_run(query, &source, "\"events\":20000");
    }
    // Line 101 loses its columns.
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[100] = "2,1767225600000,oops";
    let bad = dir.file("bad.csv");
    std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
    let output = weir(&["run", "nexmark", "--query", "7", "--input", path(&bad)]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("bad.csv line 101") && stderr.contains("3 columns"),
        "{stderr}"
    );
    let source = ["--input", path(&bad), "--skip-bad-lines", "--workers", "2"];
    let _ = assert_valid_run("7", &source, "\"skipped_lines\":1");
}
