//! `weir bench soak` end to end, briefly: rounds of shuffles, sorts and joins across two
//! worker processes, every result checked, the JSON line last.

use std::process::Command;

#[test]
fn a_short_soak_checks_every_round() {
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["bench", "soak", "--minutes", "0.05", "--records", "20000"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("round    0 "), "{stdout}");
    assert!(stdout.contains("every result right, no leak"), "{stdout}");
    let json = stdout.lines().last().unwrap();
    assert!(
        json.starts_with("{\"workload\":\"soak\"") && json.contains("\"valid\":true"),
        "{json}"
    );
}

#[test]
fn a_soak_on_other_than_two_workers_is_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["bench", "soak", "--workers", "3"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--workers 3: the soak runs 2"));
}
