//! `weir bench w3` end to end at SF 0.01: the join's count and sum equal a `HashMap` join
//! over the decoded rows, in memory and at a budget that spills partitions and re-joins
//! them; bad arguments are one-line errors with exit code 2; no spill file is left.

use std::collections::HashMap;
use std::path::Path;

use weir_cli::tpch::{Lineitem, Order};

mod support;

use support::{Dir, path, weir};

/// The rows of a table file, decoded in full, after its header.
fn rows<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Vec<T> {
    let header = weir_cli::tpch::block::read_header(&bytes[..4096]).unwrap();
    let table = weir_cli::tpch::Table::from_name(header.table).unwrap();
    let (_, rows) = weir_cli::tpch::table_rows(bytes, table).unwrap();
    rows.into_iter()
        .map(|row| weir::serde_fmt::from_slice(row).unwrap())
        .collect()
}

/// The value of a numeric field of the JSON line.
fn json_number(line: &str, field: &str) -> f64 {
    let start = line.find(&format!("\"{field}\":")).unwrap() + field.len() + 3;
    let end = line[start..].find([',', '}']).unwrap() + start;
    line[start..end].parse().unwrap()
}

/// The expected CSV: a hash join of the decoded tables in a `HashMap`.
fn expected_csv(input: &Path) -> String {
    let orders = std::fs::read(input.join("orders")).unwrap();
    let lineitem = std::fs::read(input.join("lineitem")).unwrap();
    let mut keys: HashMap<i64, u64> = HashMap::new();
    for order in rows::<Order<'_>>(&orders) {
        *keys.entry(order.o_orderkey).or_default() += 1;
    }
    let (mut count, mut sum) = (0u64, 0i128);
    for item in rows::<Lineitem<'_>>(&lineitem) {
        let matches = keys.get(&item.l_orderkey).copied().unwrap_or(0);
        count += matches;
        sum += i128::from(item.l_extendedprice) * i128::from(matches);
    }
    assert!(count > 0);
    format!(
        "count,sum_extendedprice\n{count},{}.{:02}\n",
        sum / 100,
        sum % 100
    )
}

/// Runs W3, which must succeed and be valid; returns its JSON line and its CSV output.
fn bench(dir: &Dir, input: &Path, memory: &str, build: &str) -> (String, String) {
    let (output, spill) = (dir.file("w3.csv"), dir.spill());
    let result = weir(&[
        "bench",
        "w3",
        "--input",
        path(input),
        "--memory",
        memory,
        "--build",
        build,
        "--output",
        path(&output),
        "--spill-dir",
        path(&spill),
    ]);
    let stdout = String::from_utf8(result.stdout).unwrap();
    assert!(
        result.status.success(),
        "w3 at {memory}, build {build}: {stdout}{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let json = stdout.lines().last().unwrap().to_owned();
    assert!(json.contains("\"workload\":\"W3\""), "{json}");
    assert!(json.contains("\"valid\":true"), "{json}");
    assert_eq!(
        std::fs::read_dir(&spill).unwrap().count(),
        0,
        "spill files left behind"
    );
    (json, std::fs::read_to_string(output).unwrap())
}

#[test]
fn w3_equals_a_hashmap_join_in_memory_and_spilling() {
    let dir = Dir::new("join");
    let input = dir.file("tpch");
    let generated = weir(&["gen", "tpch", "--scale", "0.01", "--out", path(&input)]);
    assert!(generated.status.success());
    let expected = expected_csv(&input);
    // The default build side, orders, fits a generous budget and the smallest one; it is
    // broadcast (15,000 keys, and the one task's answer collected), lineitem is not
    // exchanged.
    for memory in ["64MiB", "8MiB"] {
        let (json, csv) = bench(&dir, &input, memory, "orders");
        assert_eq!(csv, expected, "at {memory}");
        assert_eq!(json_number(&json, "spilled_bytes"), 0.0, "{json}");
        assert_eq!(json_number(&json, "rows_read"), 75_175.0, "{json}");
        assert_eq!(json_number(&json, "records_exchanged"), 15_001.0, "{json}");
    }
    // Built on lineitem, the smallest budget spills partitions and re-joins them.
    let (json, csv) = bench(&dir, &input, "8MiB", "lineitem");
    assert_eq!(csv, expected);
    assert!(json_number(&json, "spilled_bytes") > 0.0, "{json}");
    let (json, csv) = bench(&dir, &input, "64MiB", "lineitem");
    assert_eq!(csv, expected);
    assert_eq!(json_number(&json, "spilled_bytes"), 0.0, "{json}");
}

#[test]
fn bad_arguments_are_clear_errors() {
    let dir = Dir::new("errors");
    let spill = dir.spill();
    let fails = |extra: &[&str], needle: &str| {
        let mut args = vec!["bench", "w3", "--spill-dir", path(&spill)];
        args.extend_from_slice(extra);
        let result = weir(&args);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    };
    let nowhere = dir.file("nowhere");
    let input = path(&nowhere);
    fails(
        &["--input", input, "--memory", "64MiB", "--threads", "0"],
        "slots",
    );
    fails(&["--input", input, "--memory", "7MiB"], "below the minimum");
    fails(&["--input", input, "--memory", "lots"], "invalid size");
    fails(
        &["--input", input, "--memory", "64MiB", "--build", "customer"],
        "expected orders or lineitem",
    );
    fails(
        &["--input", input, "--memory", "64MiB"],
        "cannot open input",
    );
    assert_eq!(
        std::fs::read_dir(&spill).unwrap().count(),
        0,
        "spill files left behind"
    );
}
