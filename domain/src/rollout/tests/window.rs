//! `MaintenanceWindow`: open or closed, and when it next opens, across midnight and offsets.

use super::*;

/// (window, now, open?, next_open)
type Case = (MaintenanceWindow, &'static str, bool, &'static str);

fn check(cases: &[Case]) {
    for (window, now, open, next) in cases {
        let now = at(now);
        assert_eq!(window.is_open(now), *open, "{window:?} open at {now}");
        assert_eq!(window.next_open(now), at(next), "{window:?} next opening after {now}");
    }
}

#[test]
fn a_utc_window_opens_at_its_start_inclusive_and_closes_at_its_end_exclusive() {
    let w = window("02:00", 60, "+00:00");
    check(&[
        (w.clone(), "2026-03-01T01:59:59Z", false, "2026-03-01T02:00:00Z"),
        (w.clone(), "2026-03-01T02:00:00Z", true, "2026-03-01T02:00:00Z"),
        (w.clone(), "2026-03-01T02:59:59Z", true, "2026-03-01T02:59:59Z"),
        (w.clone(), "2026-03-01T03:00:00Z", false, "2026-03-02T02:00:00Z"),
        (w.clone(), "2026-03-01T23:59:59Z", false, "2026-03-02T02:00:00Z"),
    ]);
}

#[test]
fn a_window_crossing_midnight_is_open_on_both_sides_of_it() {
    let w = window("22:00", 240, "+00:00");
    check(&[
        (w.clone(), "2026-03-01T21:59:00Z", false, "2026-03-01T22:00:00Z"),
        (w.clone(), "2026-03-01T23:30:00Z", true, "2026-03-01T23:30:00Z"),
        (w.clone(), "2026-03-02T00:00:00Z", true, "2026-03-02T00:00:00Z"),
        (w.clone(), "2026-03-02T01:59:59Z", true, "2026-03-02T01:59:59Z"),
        (w.clone(), "2026-03-02T02:00:00Z", false, "2026-03-02T22:00:00Z"),
        (w.clone(), "2026-03-02T12:00:00Z", false, "2026-03-02T22:00:00Z"),
    ]);
}

#[test]
fn a_negative_offset_moves_the_window_later_in_utc() {
    // 22:00 to 02:00 at UTC-05:00 is 03:00 to 07:00 UTC: midnight is crossed locally only.
    let w = window("22:00", 240, "-05:00");
    check(&[
        (w.clone(), "2026-03-01T02:59:59Z", false, "2026-03-01T03:00:00Z"),
        (w.clone(), "2026-03-01T03:00:00Z", true, "2026-03-01T03:00:00Z"),
        (w.clone(), "2026-03-01T06:59:59Z", true, "2026-03-01T06:59:59Z"),
        (w.clone(), "2026-03-01T07:00:00Z", false, "2026-03-02T03:00:00Z"),
        (w.clone(), "2026-03-01T22:30:00Z", false, "2026-03-02T03:00:00Z"),
    ]);
}

#[test]
fn a_positive_offset_can_put_the_window_across_midnight_utc() {
    // 08:30 to 10:30 at UTC+09:30 is 23:00 to 01:00 UTC.
    let w = window("08:30", 120, "+09:30");
    check(&[
        (w.clone(), "2026-03-01T22:59:59Z", false, "2026-03-01T23:00:00Z"),
        (w.clone(), "2026-03-01T23:00:00Z", true, "2026-03-01T23:00:00Z"),
        (w.clone(), "2026-03-02T00:59:59Z", true, "2026-03-02T00:59:59Z"),
        (w.clone(), "2026-03-02T01:00:00Z", false, "2026-03-02T23:00:00Z"),
    ]);
}

#[test]
fn the_widest_offsets_work_both_ways() {
    check(&[
        // 00:00 at +14:00 is 10:00 UTC the day before.
        (window("00:00", 30, "+14:00"), "2026-03-01T10:15:00Z", true, "2026-03-01T10:15:00Z"),
        (window("00:00", 30, "+14:00"), "2026-03-01T10:30:00Z", false, "2026-03-02T10:00:00Z"),
        // 23:00 at -14:00 is 13:00 UTC the day after.
        (window("23:00", 30, "-14:00"), "2026-03-01T12:00:00Z", false, "2026-03-01T13:00:00Z"),
    ]);
}

#[test]
fn sub_second_times_round_into_the_window_they_fall_in() {
    let w = window("02:00", 1, "+00:00");
    check(&[
        (w.clone(), "2026-03-01T01:59:59.999Z", false, "2026-03-01T02:00:00Z"),
        (w.clone(), "2026-03-01T02:00:59.999Z", true, "2026-03-01T02:00:59.999Z"),
        (w.clone(), "2026-03-01T02:01:00.001Z", false, "2026-03-02T02:00:00Z"),
    ]);
}

#[test]
fn a_full_day_window_is_always_open() {
    let w = window("13:37", 1440, "-03:30");
    for now in ["2026-03-01T00:00:00Z", "2026-03-01T17:06:59Z", "2026-03-01T17:07:00Z", "2026-03-01T23:59:59Z"] {
        assert!(w.is_open(at(now)), "{now}");
        assert_eq!(w.next_open(at(now)), at(now));
    }
}

#[test]
fn an_invalid_window_is_closed_and_rechecked_a_day_later() {
    let now = at("2026-03-01T12:00:00Z");
    for w in [window("25:00", 60, "+00:00"), window("01:00", 0, "+00:00"), window("01:00", 60, "UTC")] {
        assert!(!w.is_open(now), "{w:?}");
        assert_eq!(w.next_open(now), at("2026-03-02T12:00:00Z"), "{w:?}");
    }
}

#[test]
fn a_valid_window_parses_into_typed_fields() {
    let parsed = window("22:30", 240, "-05:00").parse().expect("valid window");
    assert_eq!(
        parsed,
        DailyWindow {
            start: chrono::NaiveTime::from_hms_opt(22, 30, 0).expect("valid time"),
            duration: chrono::TimeDelta::minutes(240),
            offset: chrono::FixedOffset::west_opt(5 * 3600).expect("valid offset"),
        }
    );
}

#[test]
fn each_malformed_field_has_its_own_window_error_and_code() {
    let cases = [
        (window("24:00", 60, "+00:00"), WindowError::Start { value: "24:00".into() }, "rollout.bad_window_start"),
        (window("01:00", 0, "+00:00"), WindowError::Duration { minutes: 0 }, "rollout.bad_window_duration"),
        (window("01:00", 1441, "+00:00"), WindowError::Duration { minutes: 1441 }, "rollout.bad_window_duration"),
        (window("01:00", 60, "+14:01"), WindowError::Offset { value: "+14:01".into() }, "rollout.bad_window_offset"),
    ];
    for (window, error, code) in cases {
        assert_eq!(window.parse(), Err(error.clone()), "{window:?}");
        assert_eq!(error.code(), code);
    }
}

#[test]
fn a_plan_error_wraps_the_window_error_as_its_source() {
    use std::error::Error as _;
    let plan = RolloutPlan { maintenance_window: Some(window("7:00", 60, "+00:00")), ..RolloutPlan::default() };
    let error = plan.validate().expect_err("malformed start");
    assert_eq!(error, PlanError::Window(WindowError::Start { value: "7:00".into() }));
    assert_eq!(error.code(), "rollout.bad_window_start");
    assert_eq!(error.to_string(), "rollout.maintenance_window.start: must be HH:MM (00:00 to 23:59), got \"7:00\"");
    let source = error.source().expect("the window error is the source").to_string();
    assert!(source.starts_with("start: "), "{source}");
}
