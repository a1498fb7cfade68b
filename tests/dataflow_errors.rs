//! Errors keep their meaning through the runtime: a bad setting is a configuration error
//! naming the field (exit code 2), a program that does not fit its budget names the
//! budget, a panicking task is a task failure naming stage and task, and bad data from a
//! source stays bad data (exit code 1) — every segment home in each case.

use weir::config::Config;
use weir::dataflow::{Dataflow, runtime};
use weir::error::WeirError;

fn summing_program() -> Dataflow {
    let flow = Dataflow::new();
    let _sums = flow
        .generate(10_000, |i| (i % 10, i))
        .key_by(|(k, _): &(u64, u64)| *k)
        .aggregate(|(_, v)| *v, |a, b| *a += b)
        .collect();
    flow
}

#[test]
fn a_setting_out_of_range_is_a_configuration_error_naming_the_field() {
    let config = Config {
        slots: 0,
        ..Config::default()
    };
    let error = runtime::execute(&summing_program(), &config, None).unwrap_err();
    assert!(
        matches!(&error, WeirError::Config { field: "slots", .. }),
        "{error:?}"
    );
    assert_eq!(error.exit_code(), 2);
}

#[test]
fn a_program_over_its_budget_names_the_budget_and_the_need() {
    let config = Config {
        memory: 4 << 20,
        slots: 8,
        ..Config::default()
    };
    let error = runtime::execute(&summing_program(), &config, None).unwrap_err();
    match &error {
        WeirError::Config { field, allowed, .. } => {
            assert_eq!(*field, "memory");
            assert!(allowed.starts_with("at least"), "{allowed}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    assert_eq!(error.exit_code(), 2);
}

#[test]
fn a_panicking_task_is_a_task_failure_naming_stage_and_task() {
    let flow = Dataflow::new();
    let _out = flow
        .generate(1000, |i| i)
        .map(|i| {
            assert!(i != 500, "record 500 is poison");
            i
        })
        .collect();
    let error = runtime::execute(&flow, &Config::default(), None).unwrap_err();
    assert!(
        matches!(&error, WeirError::Task { task: 0, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("panicked"), "{error}");
    assert_eq!(error.exit_code(), 1);
}

#[test]
fn bad_data_from_a_source_stays_a_data_error() {
    let flow = Dataflow::new();
    let _out = flow
        .source_fn("parser", |_| {
            Ok(["1", "2", "three"].into_iter().map(|text| {
                text.parse::<u64>().map_err(|e| WeirError::Data {
                    message: format!("{text:?} is not a number: {e}"),
                })
            }))
        })
        .collect();
    let error = runtime::execute(&flow, &Config::default(), None).unwrap_err();
    assert!(matches!(&error, WeirError::Data { .. }), "{error:?}");
    assert_eq!(error.exit_code(), 1);
}
