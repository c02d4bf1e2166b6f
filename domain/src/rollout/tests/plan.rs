//! `RolloutPlan`: JSON names, defaults, the tenths factor and validation.

use serde_json::json;

use super::*;
use crate::refusal::Refusal;

fn parse(value: serde_json::Value) -> Result<RolloutPlan, serde_json::Error> {
    serde_json::from_value(value)
}

#[test]
fn an_empty_rollout_object_gives_the_documented_defaults() {
    let plan = parse(json!({})).expect("an empty object is a plan");
    assert_eq!(plan, RolloutPlan::default());
    assert_eq!(plan.waves, vec![WaveSpec::Percent(100)]);
    assert_eq!((plan.success_threshold_percent, plan.after_success), (100, AfterSuccess::Next));
    assert_eq!((plan.failure_threshold_percent, plan.min_finished, plan.on_failure), (20, 1, OnFailure::Pause));
    assert_eq!((plan.max_per_minute, plan.ramp, plan.device_timeout_secs), (None, None, None));
    assert_eq!((plan.max_retries, plan.maintenance_window.clone(), plan.start_at), (0, None, None));
    assert!(!plan.rollback_on_abort);
    assert_eq!(plan.validate(), Ok(()));
}

#[test]
fn a_full_rollout_object_parses_with_its_json_names_and_round_trips() {
    let plan = parse(json!({
        "waves": [{"count": 5}, {"percent": 10}, {"percent": 100}],
        "success_threshold_percent": 95,
        "after_success": "pause",
        "failure_threshold_percent": 5,
        "min_finished": 10,
        "on_failure": "abort",
        "max_per_minute": 100,
        "ramp": {"base_per_minute": 5, "factor": 1.5, "every_successes": 50},
        "device_timeout_secs": 3600,
        "max_retries": 2,
        "maintenance_window": {"start": "22:30", "duration_minutes": 240, "utc_offset": "-05:00"},
        "start_at": "2026-03-01T12:00:00Z",
        "rollback_on_abort": true,
        "action_type": "soft",
        "defer_install_outside_window": true,
        "allow_downgrade": true
    }))
    .expect("a full plan parses");
    let expected = RolloutPlan {
        waves: vec![WaveSpec::Count(5), WaveSpec::Percent(10), WaveSpec::Percent(100)],
        success_threshold_percent: 95,
        after_success: AfterSuccess::Pause,
        failure_threshold_percent: 5,
        min_finished: 10,
        on_failure: OnFailure::Abort,
        max_per_minute: Some(100),
        ramp: Some(Ramp { base_per_minute: 5, factor_tenths: 15, every_successes: 50 }),
        device_timeout_secs: Some(3600),
        max_retries: 2,
        maintenance_window: Some(window("22:30", 240, "-05:00")),
        start_at: Some(at("2026-03-01T12:00:00Z")),
        rollback_on_abort: true,
        end_at: None,
        action_type: ActionType::Soft,
        defer_install_outside_window: true,
        allow_downgrade: true,
    };
    assert_eq!(plan, expected);
    assert_eq!(plan.validate(), Ok(()));
    let written = serde_json::to_value(&plan).expect("a plan serialises");
    assert_eq!(written["ramp"]["factor"], json!(1.5));
    assert_eq!(written["waves"][0], json!({"count": 5}));
    assert_eq!(parse(written).expect("and parses back"), plan);
}

#[test]
fn unknown_fields_are_refused_at_every_level() {
    for body in [
        json!({"wave": []}),
        json!({"ramp": {"base": 5}}),
        json!({"maintenance_window": {"start": "01:00", "tz": "Europe/Paris"}}),
        json!({"waves": [{"share": 10}]}),
        json!({"waves": [{"percent": 10, "count": 3}]}),
        json!({"after_success": "continue"}),
    ] {
        assert!(parse(body.clone()).is_err(), "{body} should be refused");
    }
}

#[test]
fn nested_objects_take_their_own_defaults_for_missing_fields() {
    let plan = parse(json!({"ramp": {"base_per_minute": 3}, "maintenance_window": {"start": "02:00"}}))
        .expect("partial nested objects parse");
    assert_eq!(plan.ramp, Some(Ramp { base_per_minute: 3, ..Ramp::default() }));
    assert_eq!(plan.maintenance_window, Some(window("02:00", 60, "+00:00")));
}

#[test]
fn the_ramp_factor_accepts_at_most_one_decimal_and_is_kept_in_tenths() {
    let cases = [
        (json!(2), Some(20)),
        (json!(2.0), Some(20)),
        (json!(1.5), Some(15)),
        (json!(1.1), Some(11)),
        (json!(10.0), Some(100)),
        (json!(0.7), Some(7)),
        (json!(1.25), None),
        (json!(1.05), None),
        (json!(-1.0), None),
        (json!("2.0"), None),
    ];
    for (factor, expected) in cases {
        let parsed = parse(json!({"ramp": {"factor": factor}})).ok().and_then(|p| p.ramp).map(|r| r.factor_tenths);
        assert_eq!(parsed, expected, "factor {factor}");
    }
}

#[test]
fn validation_names_the_offending_field_and_gives_a_stable_code() {
    let plan = RolloutPlan::default;
    let cases: Vec<(RolloutPlan, &str, &str)> = vec![
        (RolloutPlan { waves: vec![], ..plan() }, "rollout.no_waves", "rollout.waves:"),
        (percent_waves(&vec![100; 101]), "rollout.too_many_waves", "rollout.waves: at most 100"),
        (percent_waves(&[10, 10]), "rollout.bad_wave_percent", "rollout.waves[1].percent: must be 1..=100"),
        (percent_waves(&[50, 10, 100]), "rollout.bad_wave_percent", "rollout.waves[1].percent"),
        (percent_waves(&[0, 100]), "rollout.bad_wave_percent", "rollout.waves[0].percent"),
        (percent_waves(&[10, 101]), "rollout.bad_wave_percent", "rollout.waves[1].percent"),
        (
            RolloutPlan { waves: vec![WaveSpec::Percent(5), WaveSpec::Count(0)], ..plan() },
            "rollout.bad_wave_count",
            "rollout.waves[1].count: must be at least 1",
        ),
        (
            RolloutPlan { success_threshold_percent: 101, ..plan() },
            "rollout.bad_threshold",
            "rollout.success_threshold_percent",
        ),
        (
            RolloutPlan { failure_threshold_percent: 101, ..plan() },
            "rollout.bad_threshold",
            "rollout.failure_threshold_percent",
        ),
        (RolloutPlan { max_per_minute: Some(0), ..plan() }, "rollout.bad_max_per_minute", "rollout.max_per_minute"),
        (
            RolloutPlan { ramp: Some(Ramp { base_per_minute: 0, ..Ramp::default() }), ..plan() },
            "rollout.bad_ramp",
            "rollout.ramp.base_per_minute",
        ),
        (
            RolloutPlan { ramp: Some(Ramp { every_successes: 0, ..Ramp::default() }), ..plan() },
            "rollout.bad_ramp",
            "rollout.ramp.every_successes",
        ),
        (
            RolloutPlan { ramp: Some(Ramp { factor_tenths: 9, ..Ramp::default() }), ..plan() },
            "rollout.bad_ramp",
            "rollout.ramp.factor",
        ),
        (
            RolloutPlan { ramp: Some(Ramp { factor_tenths: 101, ..Ramp::default() }), ..plan() },
            "rollout.bad_ramp",
            "rollout.ramp.factor",
        ),
        (
            RolloutPlan { device_timeout_secs: Some(0), ..plan() },
            "rollout.bad_device_timeout",
            "rollout.device_timeout_secs",
        ),
        (
            RolloutPlan { device_timeout_secs: Some(30 * 86_400 + 1), ..plan() },
            "rollout.bad_device_timeout",
            "rollout.device_timeout_secs",
        ),
        (RolloutPlan { max_retries: 11, ..plan() }, "rollout.bad_max_retries", "rollout.max_retries"),
        (
            RolloutPlan { maintenance_window: Some(window("24:00", 60, "+00:00")), ..plan() },
            "rollout.bad_window_start",
            "rollout.maintenance_window.start",
        ),
        (
            RolloutPlan { maintenance_window: Some(window("01:00", 0, "+00:00")), ..plan() },
            "rollout.bad_window_duration",
            "rollout.maintenance_window.duration_minutes",
        ),
        (
            RolloutPlan { maintenance_window: Some(window("01:00", 1441, "+00:00")), ..plan() },
            "rollout.bad_window_duration",
            "rollout.maintenance_window.duration_minutes",
        ),
        (
            RolloutPlan { maintenance_window: Some(window("01:00", 60, "+14:01")), ..plan() },
            "rollout.bad_window_offset",
            "rollout.maintenance_window.utc_offset",
        ),
    ];
    for (plan, code, message) in cases {
        let error = plan.validate().expect_err(message);
        assert_eq!(error.code(), code, "{error}");
        assert!(error.to_string().starts_with(message), "{error} should start with {message}");
        assert_eq!(error.refusal(), Refusal::Invalid);
    }
}

#[test]
fn validation_accepts_every_boundary_value() {
    let ramp = |factor_tenths| Some(Ramp { base_per_minute: 1, factor_tenths, every_successes: 1 });
    let plans = [
        RolloutPlan { success_threshold_percent: 0, failure_threshold_percent: 0, ..RolloutPlan::default() },
        RolloutPlan { success_threshold_percent: 100, failure_threshold_percent: 100, ..RolloutPlan::default() },
        RolloutPlan { max_per_minute: Some(1), ramp: ramp(10), ..RolloutPlan::default() },
        RolloutPlan { ramp: ramp(100), ..RolloutPlan::default() },
        RolloutPlan { device_timeout_secs: Some(1), max_retries: 10, ..RolloutPlan::default() },
        RolloutPlan { device_timeout_secs: Some(30 * 86_400), ..RolloutPlan::default() },
        RolloutPlan { maintenance_window: Some(window("00:00", 1, "-14:00")), ..RolloutPlan::default() },
        RolloutPlan { maintenance_window: Some(window("23:59", 1440, "+14:00")), ..RolloutPlan::default() },
        RolloutPlan {
            waves: vec![WaveSpec::Count(1), WaveSpec::Percent(1), WaveSpec::Count(3)],
            ..RolloutPlan::default()
        },
        percent_waves(&[1, 10, 50, 100]),
    ];
    for plan in plans {
        assert_eq!(plan.validate(), Ok(()), "{plan:?}");
    }
}

#[test]
fn malformed_window_times_and_offsets_are_refused() {
    for start in ["7:00", "07:60", "07-00", "0700", "ab:cd", "", "07:00:00", "+1:00"] {
        let error = window(start, 60, "+00:00").validate().expect_err(start);
        assert_eq!(error.code(), "rollout.bad_window_start", "{start}");
    }
    for offset in ["05:00", "+5:00", "+15:00", "-14:30", "+01:60", "Z", "", "+01:00x"] {
        let error = window("01:00", 60, offset).validate().expect_err(offset);
        assert_eq!(error.code(), "rollout.bad_window_offset", "{offset}");
    }
}
