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
