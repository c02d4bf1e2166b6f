//! Whole rollouts on a simulated clock, through `forecast`, which plays the
//! process manager and the fleet with the real `next_steps`.

use chrono::TimeDelta;

use super::*;

const FLEET: usize = 100;

/// The three waves of a 100-device fleet, as membership sizes them.
fn sizes(plan: &RolloutPlan) -> Vec<u32> {
    wave_sizes(FLEET, plan).into_iter().map(|s| u32::try_from(s).expect("small fleet")).collect()
}

/// Each attempt reports three minutes after its assignment.
fn play(plan: &RolloutPlan, fails: impl FnMut(usize, u32, u32) -> bool) -> Forecast {
    forecast(plan, &sizes(plan), at("2026-03-01T00:00:00Z"), TimeDelta::minutes(3), fails)
}

fn plan() -> RolloutPlan {
    RolloutPlan {
        max_per_minute: Some(7),
        // 22:00 to 02:00 at UTC-05:00: 03:00 to 07:00 UTC.
        maintenance_window: Some(window("22:00", 240, "-05:00")),
        start_at: Some(at("2026-03-01T01:00:00Z")),
        ..percent_waves(&[10, 50, 100])
    }
}

#[test]
fn a_healthy_rollout_completes_within_the_window_and_the_rate() {
    let run = play(&plan(), |_, _, _| false);
    assert_eq!(run.outcome, ForecastOutcome::Completed);
    assert_eq!(run.starts_at, at("2026-03-01T01:00:00Z"));
    assert!(run.waves.iter().all(|w| w.starts_at.is_some()), "{:?}", run.waves);
    assert_eq!(run.batches.iter().map(|b| b.count as usize).sum::<usize>(), FLEET, "every device assigned once");
    assert_eq!(run.batches.first().map(|b| b.at), Some(at("2026-03-01T03:00:00Z")));
    let window = plan().maintenance_window.expect("the plan has a window");
    for batch in &run.batches {
        assert!(window.is_open(batch.at), "assigned at {}, outside the window", batch.at);
        let in_bucket: u32 =
            run.batches.iter().filter(|b| minute_bucket(b.at) == minute_bucket(batch.at)).map(|b| b.count).sum();
        assert!(in_bucket <= 7, "{in_bucket} assigned in the minute of {}", batch.at);
    }
    // A wave's devices are all assigned before the next wave's first.
    assert!(run.batches.windows(2).all(|pair| pair[0].wave <= pair[1].wave));
    let succeeded: u32 = run.waves.iter().map(|w| w.succeeded).sum();
    assert_eq!(succeeded as usize, FLEET);
    assert_eq!(run.ended_at, run.waves.last().and_then(|w| w.gate_decided_at));
}

#[test]
fn a_rollout_that_misses_the_window_waits_for_the_next_day() {
    // Start at 06:58 UTC: two minutes of window, then the rest at 03:00 the next day.
    let plan = RolloutPlan { start_at: Some(at("2026-03-01T06:58:00Z")), ..plan() };
    let run = play(&plan, |_, _, _| false);
    assert_eq!(run.outcome, ForecastOutcome::Completed);
    let days: Vec<u32> = run.batches.iter().map(|b| chrono::Datelike::day(&b.at)).collect();
    assert!(days.contains(&1) && days.contains(&2), "{days:?}");
    assert!(run.batches.iter().all(|b| b.at < at("2026-03-01T07:00:00Z") || b.at >= at("2026-03-02T03:00:00Z")));
}

#[test]
fn a_failing_second_wave_pauses_and_stops_assigning() {
    // A quarter of wave 1 fails, over the 20 % threshold.
    let run = play(&plan(), |wave, index, _| wave == 1 && index % 4 == 0);
    let ForecastOutcome::Paused { reason } = run.outcome else { panic!("expected a pause, got {:?}", run.outcome) };
    assert_eq!((reason.wave, reason.gate), (1, GateKind::FailureThreshold));
    assert!(reason.failed * 100 > 20 * reason.finished, "{reason:?}");
    assert_eq!(run.waves[2].starts_at, None);
    assert!(run.batches.iter().all(|b| b.wave < 2));
    assert_eq!(run.waves[1].gate_decided_at, run.ended_at);
}

#[test]
fn retries_turn_a_first_failure_into_a_success_and_take_another_update_time() {
    let plan = RolloutPlan { max_retries: 1, ..percent_waves(&[100]) };
    let run = play(&plan, |_, index, attempt| index == 0 && attempt == 0);
    assert_eq!(run.outcome, ForecastOutcome::Completed);
    assert_eq!((run.waves[0].succeeded, run.waves[0].failed, run.waves[0].attempts), (100, 0, 101));
    assert_eq!(run.ended_at, Some(at("2026-03-01T00:06:00Z")), "the retry took a second three minutes");
}

#[test]
fn an_approval_is_assumed_at_once_and_shown() {
    let plan = RolloutPlan { after_success: AfterSuccess::Pause, ..percent_waves(&[10, 100]) };
    let run = play(&plan, |_, _, _| false);
    assert_eq!(run.outcome, ForecastOutcome::Completed);
    assert!(run.waves[0].awaits_approval && !run.waves[1].awaits_approval);
    assert_eq!(run.waves[1].starts_at, Some(at("2026-03-01T00:03:00Z")));
    assert_eq!(run.ended_at, Some(at("2026-03-01T00:06:00Z")));
}

#[test]
fn an_abort_plan_ends_aborted() {
    let plan = RolloutPlan { on_failure: OnFailure::Abort, ..percent_waves(&[100]) };
    let run = play(&plan, |_, _, _| true);
    assert!(matches!(run.outcome, ForecastOutcome::Aborted { .. }), "{:?}", run.outcome);
}

#[test]
fn a_rate_that_cannot_finish_within_the_horizon_is_unfinished() {
    let plan = RolloutPlan {
        max_per_minute: Some(1),
        maintenance_window: Some(window("00:00", 1, "+00:00")),
        ..percent_waves(&[100])
    };
    // One device a day: 100,000 devices would take centuries.
    let sizes = [100_000];
    let run = forecast(&plan, &sizes, at("2026-03-01T00:00:00Z"), TimeDelta::minutes(3), |_, _, _| false);
    assert_eq!(run.outcome, ForecastOutcome::Unfinished);
    assert_eq!(run.ended_at, None);
    assert!(run.batches.len() <= usize::try_from(HORIZON_DAYS).expect("small") + 1);
}

#[test]
fn the_seeded_failure_draw_is_reproducible_and_near_its_rate() {
    let plan = RolloutPlan { failure_threshold_percent: 100, success_threshold_percent: 0, ..percent_waves(&[100]) };
    let assume = Assumptions { failure_percent: 30, update_secs: 60, seed: 7 };
    let now = at("2026-03-01T00:00:00Z");
    let first = forecast_with(&plan, &[10_000], now, assume);
    assert_eq!(first, forecast_with(&plan, &[10_000], now, assume));
    let failed = first.waves[0].failed;
    assert!((2_800..3_200).contains(&failed), "{failed} of 10,000 failed at 30 %");
    let other_seed = forecast_with(&plan, &[10_000], now, Assumptions { seed: 8, ..assume });
    assert_ne!(other_seed.waves[0].failed, failed);
}
