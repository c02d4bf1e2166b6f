//! The assignment rate: how many devices may be assigned in the current minute.
//!
//! The rate is counted per calendar minute ([`minute_bucket`]): the caller counts
//! the assignments whose time falls in the bucket of `now` and passes the count in.
//! A fixed bucket is simpler to count from events than a sliding window, and it
//! never lets more than the rate through in any one bucket.

use chrono::{DateTime, TimeDelta, Utc};

use super::plan::{Ramp, RolloutPlan};

/// Fixed-point scale of the ramp computation: six decimal places.
const RAMP_SCALE: u128 = 1_000_000;

/// The per-minute rate the plan allows after `successes` successes; `None` means unlimited.
///
/// Without a ramp this is `max_per_minute`. With a ramp it is
/// `min(max_per_minute, base_per_minute × factor^(successes / every_successes))`: each
/// multiplication by the factor is done in fixed point with six decimal places and
/// floored, and the result is floored to whole devices (`10 × 1.5^4 = 50.625` gives 50).
/// A missing `max_per_minute` caps a ramp at `u32::MAX`.
pub fn current_rate(plan: &RolloutPlan, successes: u64) -> Option<u32> {
    match (&plan.ramp, plan.max_per_minute) {
        (None, cap) => cap,
        (Some(ramp), cap) => Some(ramped_rate(ramp, successes, cap.unwrap_or(u32::MAX))),
    }
}

/// How many more devices may be assigned in the current minute; `None` means unlimited.
pub fn allowed_assignments(plan: &RolloutPlan, assigned_this_minute: u32, successes: u64) -> Option<u32> {
    current_rate(plan, successes).map(|rate| rate.saturating_sub(assigned_this_minute))
}

/// The start of the minute holding `now`; assignments are counted per bucket.
pub fn minute_bucket(now: DateTime<Utc>) -> DateTime<Utc> {
    let secs = now.timestamp();
    DateTime::<Utc>::from_timestamp(secs - secs.rem_euclid(60), 0).unwrap_or(now)
}

/// The start of the minute after the one holding `now`: when a spent budget refills.
pub fn next_minute(now: DateTime<Utc>) -> DateTime<Utc> {
    minute_bucket(now).checked_add_signed(TimeDelta::minutes(1)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn ramped_rate(ramp: &Ramp, successes: u64, cap: u32) -> u32 {
    let steps = successes / ramp.every_successes.max(1);
    let cap_scaled = u128::from(cap) * RAMP_SCALE;
    let factor = u128::from(ramp.factor_tenths);
    let mut rate = u128::from(ramp.base_per_minute) * RAMP_SCALE;
    // A factor of 1.0 or less (the latter refused by validation) never grows the rate.
    // Above 1.0 the rate grows by at least 10 % a step, so the loop reaches the cap,
    // at most u32::MAX, within about 240 steps however many successes there were.
    if factor > 10 {
        let mut step = 0;
        while step < steps && rate > 0 && rate < cap_scaled {
            rate = rate * factor / 10;
            step += 1;
        }
    }
    u32::try_from(rate.min(cap_scaled) / RAMP_SCALE).unwrap_or(u32::MAX)
}
