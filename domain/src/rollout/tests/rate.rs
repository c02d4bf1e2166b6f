//! The per-minute budget, the exponential ramp and the minute buckets.

use super::*;

fn ramp(base_per_minute: u32, factor_tenths: u32, every_successes: u64) -> Option<Ramp> {
    Some(Ramp { base_per_minute, factor_tenths, every_successes })
}

#[test]
fn without_a_rate_assignments_are_unlimited() {
    let plan = RolloutPlan::default();
    assert_eq!(current_rate(&plan, 0), None);
    assert_eq!(allowed_assignments(&plan, 1_000_000, 5), None);
}

#[test]
fn the_budget_is_the_rate_less_what_this_minute_already_assigned() {
    let plan = RolloutPlan { max_per_minute: Some(10), ..RolloutPlan::default() };
    for (assigned, budget) in [(0, 10), (3, 7), (9, 1), (10, 0), (15, 0), (u32::MAX, 0)] {
        assert_eq!(allowed_assignments(&plan, assigned, 0), Some(budget), "after {assigned}");
    }
}

#[test]
fn a_ramp_doubles_at_each_step_of_successes_as_aws_documents() {
    // AWS's example: base 50, factor 2, every 1000 gives 50/100/200/400 per minute.
    let plan = RolloutPlan { ramp: ramp(50, 20, 1000), ..RolloutPlan::default() };
    for (successes, rate) in [(0, 50), (999, 50), (1000, 100), (1999, 100), (2000, 200), (3000, 400)] {
        assert_eq!(current_rate(&plan, successes), Some(rate), "after {successes} successes");
    }
    assert_eq!(allowed_assignments(&plan, 30, 1000), Some(70));
}

#[test]
fn a_fractional_factor_floors_only_the_final_rate() {
    // 10 × 1.5^k = 10, 15, 22.5, 33.75, 50.625: flooring each step would give 10, 15, 22, 33, 49.
    let plan = RolloutPlan { ramp: ramp(10, 15, 1), ..RolloutPlan::default() };
    let rates: Vec<_> = (0..5).map(|successes| current_rate(&plan, successes)).collect();
    assert_eq!(rates, [Some(10), Some(15), Some(22), Some(33), Some(50)]);
    // A small base still grows: 1 × 1.5^k = 1, 1.5, 2.25, 3.375.
    let plan = RolloutPlan { ramp: ramp(1, 15, 1), ..RolloutPlan::default() };
    let rates: Vec<_> = (0..4).map(|successes| current_rate(&plan, successes)).collect();
    assert_eq!(rates, [Some(1), Some(1), Some(2), Some(3)]);
}

#[test]
fn max_per_minute_caps_a_ramp() {
    let plan = RolloutPlan { max_per_minute: Some(120), ramp: ramp(50, 20, 10), ..RolloutPlan::default() };
    for (successes, rate) in [(0, 50), (10, 100), (20, 120), (1_000_000, 120)] {
        assert_eq!(current_rate(&plan, successes), Some(rate), "after {successes} successes");
    }
    assert_eq!(allowed_assignments(&plan, 119, 20), Some(1));
}

#[test]
fn a_ramp_saturates_instead_of_overflowing_and_a_flat_factor_stays_put() {
    let steep = RolloutPlan { ramp: ramp(1000, 100, 1), ..RolloutPlan::default() };
    assert_eq!(current_rate(&steep, u64::MAX), Some(u32::MAX));
    let flat = RolloutPlan { ramp: ramp(7, 10, 1), ..RolloutPlan::default() };
    assert_eq!(current_rate(&flat, u64::MAX), Some(7));
}

#[test]
fn minute_buckets_start_on_the_whole_minute() {
    let cases = [
        ("2026-03-01T12:34:00Z", "2026-03-01T12:34:00Z", "2026-03-01T12:35:00Z"),
        ("2026-03-01T12:34:59.999Z", "2026-03-01T12:34:00Z", "2026-03-01T12:35:00Z"),
        ("2026-03-01T23:59:30Z", "2026-03-01T23:59:00Z", "2026-03-02T00:00:00Z"),
        ("1969-12-31T23:59:59.5Z", "1969-12-31T23:59:00Z", "1970-01-01T00:00:00Z"),
    ];
    for (now, bucket, next) in cases {
        assert_eq!(minute_bucket(at(now)), at(bucket), "{now}");
        assert_eq!(next_minute(at(now)), at(next), "{now}");
    }
}
