//! `evaluate_gate` at the exact threshold boundaries.

use super::*;

fn plan(failure_threshold_percent: u32, min_finished: u32, success_threshold_percent: u32) -> RolloutPlan {
    RolloutPlan { failure_threshold_percent, min_finished, success_threshold_percent, ..RolloutPlan::default() }
}

fn crossed(failed: u64, finished: u64, threshold_percent: u32) -> GateOutcome {
    GateOutcome::FailureCrossed { action: OnFailure::Pause, failed, finished, threshold_percent }
}

#[test]
fn the_failure_gate_trips_only_strictly_above_the_threshold() {
    let p = plan(20, 1, 100);
    let cases = [
        // 2 of 10 is exactly 20 %: tolerated.
        (WaveTally { succeeded: 8, failed: 2, ..tally(100) }, GateOutcome::Pending),
        (WaveTally { succeeded: 7, failed: 3, ..tally(100) }, crossed(3, 10, 20)),
        // Timed out and rejected count as failures; cancelled does not.
        (WaveTally { succeeded: 7, timed_out: 2, rejected: 1, ..tally(100) }, crossed(3, 10, 20)),
        (WaveTally { succeeded: 7, failed: 2, cancelled: 1, ..tally(100) }, GateOutcome::Pending),
        // 1 of 5 is exactly 20 %, 1 of 4 is 25 %.
        (WaveTally { succeeded: 4, failed: 1, ..tally(100) }, GateOutcome::Pending),
        (WaveTally { succeeded: 3, failed: 1, ..tally(100) }, crossed(1, 4, 20)),
        // Devices still running are not in the denominator.
        (WaveTally { in_progress: 50, assigned: 40, succeeded: 4, failed: 1, ..tally(100) }, GateOutcome::Pending),
    ];
    for (tally, expected) in cases {
        assert_eq!(evaluate_gate(&p, &tally), expected, "{tally:?}");
    }
}

#[test]
fn min_finished_holds_the_failure_gate_back_until_enough_devices_finished() {
    let p = plan(20, 5, 100);
    assert_eq!(evaluate_gate(&p, &WaveTally { failed: 4, ..tally(100) }), GateOutcome::Pending);
    assert_eq!(evaluate_gate(&p, &WaveTally { failed: 5, ..tally(100) }), crossed(5, 5, 20));
    // 1 of 4 would cross 20 %, but only 4 of the 5 needed have finished.
    assert_eq!(evaluate_gate(&p, &WaveTally { failed: 1, succeeded: 3, ..tally(100) }), GateOutcome::Pending);
}

#[test]
fn the_extreme_failure_thresholds_mean_never_and_at_the_first_failure() {
    let all_failed = WaveTally { failed: 10, ..tally(10) };
    assert!(matches!(evaluate_gate(&plan(100, 1, 0), &all_failed), GateOutcome::Passed));
    let first = WaveTally { failed: 1, in_progress: 9, ..tally(10) };
    assert_eq!(evaluate_gate(&plan(0, 1, 100), &first), crossed(1, 1, 0));
    let clean = WaveTally { succeeded: 1, in_progress: 9, ..tally(10) };
    assert_eq!(evaluate_gate(&plan(0, 1, 100), &clean), GateOutcome::Pending);
}

#[test]
fn the_success_gate_needs_every_device_finished_and_the_threshold_met() {
    let p = plan(20, 1, 90);
    let cases = [
        // 9 of 10 with one still installing: not finished.
        (WaveTally { succeeded: 9, in_progress: 1, ..tally(10) }, GateOutcome::Pending),
        // 9 of 10 is exactly 90 %.
        (WaveTally { succeeded: 9, cancelled: 1, ..tally(10) }, GateOutcome::Passed),
        (WaveTally { succeeded: 9, failed: 1, ..tally(10) }, GateOutcome::Passed),
        (
            WaveTally { succeeded: 8, cancelled: 2, ..tally(10) },
            GateOutcome::SuccessMissed { succeeded: 8, size: 10, threshold_percent: 90 },
        ),
        (WaveTally { succeeded: 10, ..tally(10) }, GateOutcome::Passed),
    ];
    for (tally, expected) in cases {
        assert_eq!(evaluate_gate(&p, &tally), expected, "{tally:?}");
    }
}

#[test]
fn the_default_plan_pauses_a_finished_wave_with_a_tolerated_failure() {
    // One failure in ten stays under 20 %, but 100 % success was asked for.
    let outcome = evaluate_gate(&RolloutPlan::default(), &WaveTally { succeeded: 9, failed: 1, ..tally(10) });
    assert_eq!(outcome, GateOutcome::SuccessMissed { succeeded: 9, size: 10, threshold_percent: 100 });
}

#[test]
fn a_passed_wave_awaits_approval_when_the_plan_says_pause() {
    let p = RolloutPlan { after_success: AfterSuccess::Pause, ..RolloutPlan::default() };
    assert_eq!(evaluate_gate(&p, &WaveTally { succeeded: 3, ..tally(3) }), GateOutcome::PassedAwaitApproval);
}

#[test]
fn the_failure_gate_is_checked_before_the_success_gate() {
    let p = RolloutPlan { on_failure: OnFailure::Abort, ..plan(20, 1, 0) };
    let outcome = evaluate_gate(&p, &WaveTally { succeeded: 7, failed: 3, ..tally(10) });
    assert_eq!(
        outcome,
        GateOutcome::FailureCrossed { action: OnFailure::Abort, failed: 3, finished: 10, threshold_percent: 20 }
    );
}

#[test]
fn an_empty_wave_passes_at_once() {
    assert_eq!(evaluate_gate(&RolloutPlan::default(), &tally(0)), GateOutcome::Passed);
}

#[test]
fn counts_near_u32_max_do_not_overflow() {
    let huge = WaveTally { succeeded: u32::MAX, failed: u32::MAX, timed_out: u32::MAX, ..tally(u32::MAX) };
    assert_eq!(huge.finished(), 3 * u64::from(u32::MAX));
    assert!(matches!(evaluate_gate(&RolloutPlan::default(), &huge), GateOutcome::FailureCrossed { .. }));
}
