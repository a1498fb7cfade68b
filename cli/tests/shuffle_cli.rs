//! `weir bench shuffle` end to end on a small run: the last line is the docs/WORKLOADS.md JSON
//! with `valid: true`, and bad arguments are a one-line error with exit code 2.

mod support;

use support::weir;

#[test]
fn a_small_shuffle_prints_a_valid_json_line() {
    for record_size in ["16", "1024"] {
        let output = weir(&[
            "bench",
            "shuffle",
            "--workers",
            "1",
            "--records",
            "50000",
            "--record-size",
            record_size,
            "--flush",
            "every",
        ]);
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let json = stdout.lines().last().unwrap();
        assert!(json.starts_with("{\"workload\":\"W4\""), "{json}");
        for field in [
            "\"records\":50000",
            "\"valid\":true",
            "\"records_per_s\":",
            "\"bytes_per_s\":",
        ] {
            assert!(json.contains(field), "{field} in {json}");
        }
    }
}

#[test]
fn bad_arguments_are_usage_errors() {
    for (args, message) in [
        (
            &["bench", "shuffle", "--record-size", "8"][..],
            "--record-size 8: allowed 16",
        ),
        (&["bench", "shuffle", "--workers", "0"][..], "1 to 64"),
        (
            &["bench", "shuffle", "--flush", "soon"][..],
            "expected every, full, idle",
        ),
    ] {
        let output = weir(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}
