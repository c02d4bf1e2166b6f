//! `next_steps` rule by rule, plus `timed_out` and `should_retry`.

use super::*;
use crate::device_update::UpdateState;

const NOW: &str = "2026-03-01T12:30:20Z";

fn steps(view: &RolloutView) -> Vec<Decision> {
    next_steps(view, at(NOW))
}

#[test]
fn nothing_is_decided_for_a_campaign_that_is_neither_running_nor_scheduled() {
    for status in [
        CampaignStatus::Draft,
        CampaignStatus::Paused,
        CampaignStatus::Completed,
        CampaignStatus::Cancelled,
        CampaignStatus::Aborted,
    ] {
        // Even with crossed failures: a paused or ended campaign is for an operator now.
        let view = RolloutView { status, waves: vec![WaveTally { failed: 5, ..tally(5) }], ..running_view(5) };
        assert_eq!(steps(&view), [], "{status}");
    }
}

#[test]
fn a_scheduled_campaign_starts_once_its_start_time_has_come() {
    let scheduled = |start_at: Option<&str>, started_at| RolloutView {
        status: CampaignStatus::Scheduled,
        plan: RolloutPlan { start_at: start_at.map(at), ..RolloutPlan::default() },
        current_wave: None,
        started_at,
        ..running_view(5)
    };
    let cases = [
        (scheduled(Some("2026-03-01T13:00:00Z"), None), vec![Decision::WakeAt(at("2026-03-01T13:00:00Z"))]),
        (scheduled(Some(NOW), None), vec![Decision::Start]),
        (scheduled(Some("2026-03-01T12:00:00Z"), None), vec![Decision::Start]),
        (scheduled(None, None), vec![]),
        (scheduled(Some("2026-03-01T12:00:00Z"), Some(at(NOW))), vec![]),
    ];
    for (view, expected) in cases {
        assert_eq!(steps(&view), expected, "start_at {:?}", view.plan.start_at);
    }
}

#[test]
fn a_running_campaign_without_a_current_wave_starts_the_first() {
    let view = RolloutView { current_wave: None, ..running_view(5) };
    assert_eq!(steps(&view), [Decision::StartWave(0)]);
    let empty = RolloutView { current_wave: None, waves: vec![], ..running_view(0) };
    assert_eq!(steps(&empty), [Decision::Complete]);
}

#[test]
fn a_pending_wave_assigns_all_its_unassigned_devices_when_the_rate_is_unlimited() {
    assert_eq!(steps(&running_view(250)), [Decision::Assign { wave: 0, count: 250 }]);
    let all_assigned = RolloutView { unassigned_in_current_wave: 0, ..running_view(250) };
    assert_eq!(steps(&all_assigned), []);
}

#[test]
fn the_rate_budget_caps_assignments_and_wakes_at_the_next_minute() {
    let next = Decision::WakeAt(at("2026-03-01T12:31:00Z"));
    // (max_per_minute, assigned this minute, unassigned, expected)
    let cases = [
        (10, 0, 5, vec![Decision::Assign { wave: 0, count: 5 }]),
        (10, 0, 10, vec![Decision::Assign { wave: 0, count: 10 }]),
        (10, 0, 11, vec![Decision::Assign { wave: 0, count: 10 }, next.clone()]),
        (10, 4, 30, vec![Decision::Assign { wave: 0, count: 6 }, next.clone()]),
        (10, 10, 30, vec![next.clone()]),
        (10, 12, 30, vec![next.clone()]),
    ];
    for (rate, assigned_this_minute, unassigned, expected) in cases {
        let view = RolloutView {
            plan: RolloutPlan { max_per_minute: Some(rate), ..RolloutPlan::default() },
            assigned_this_minute,
            unassigned_in_current_wave: unassigned,
            ..running_view(30)
        };
        assert_eq!(steps(&view), expected, "rate {rate}, {assigned_this_minute} assigned, {unassigned} left");
    }
}

#[test]
fn a_ramp_raises_the_budget_after_enough_successes() {
    let plan = RolloutPlan {
        ramp: Some(Ramp { base_per_minute: 5, factor_tenths: 20, every_successes: 10 }),
        ..RolloutPlan::default()
    };
    let view = |successes| RolloutView { plan: plan.clone(), successes, ..running_view(100) };
    assert_eq!(steps(&view(9))[0], Decision::Assign { wave: 0, count: 5 });
    assert_eq!(steps(&view(10))[0], Decision::Assign { wave: 0, count: 10 });
    assert_eq!(steps(&view(25))[0], Decision::Assign { wave: 0, count: 20 });
}

#[test]
fn outside_the_window_nothing_is_assigned_and_it_wakes_at_the_opening() {
    let in_window = |start: &str| RolloutView {
        plan: RolloutPlan { maintenance_window: Some(window(start, 60, "-05:00")), ..RolloutPlan::default() },
        ..running_view(8)
    };
    // 12:30:20 UTC is 07:30:20 at -05:00.
    assert_eq!(steps(&in_window("07:00")), [Decision::Assign { wave: 0, count: 8 }]);
    assert_eq!(steps(&in_window("08:00")), [Decision::WakeAt(at("2026-03-01T13:00:00Z"))]);
    assert_eq!(steps(&in_window("06:00")), [Decision::WakeAt(at("2026-03-02T11:00:00Z"))]);
}

#[test]
fn crossed_failures_pause_or_abort_with_the_numbers_the_gate_saw() {
    let failing = WaveTally { assigned: 2, in_progress: 3, succeeded: 3, failed: 1, timed_out: 1, ..tally(20) };
    let report = GateReport {
        wave: 1,
        gate: GateKind::FailureThreshold,
        failed: 2,
        finished: 5,
        succeeded: 3,
        size: 20,
        threshold_percent: 20,
    };
    for (on_failure, expected) in
        [(OnFailure::Pause, Decision::Pause { reason: report }), (OnFailure::Abort, Decision::Abort { reason: report })]
    {
        let view = RolloutView {
            plan: RolloutPlan { on_failure, ..percent_waves(&[10, 100]) },
            current_wave: Some(1),
            waves: vec![WaveTally { succeeded: 2, ..tally(2) }, failing],
            unassigned_in_current_wave: 11,
            ..running_view(20)
        };
        // The failure stops assignment: no Assign for the 11 devices still waiting.
        assert_eq!(steps(&view), [expected]);
    }
}

#[test]
fn a_passed_wave_starts_the_next_and_the_last_one_completes() {
    let done = |size| WaveTally { succeeded: size, ..tally(size) };
    let view = |current| RolloutView {
        plan: percent_waves(&[10, 100]),
        current_wave: Some(current),
        waves: vec![done(1), done(9)],
        unassigned_in_current_wave: 0,
        ..running_view(10)
    };
    assert_eq!(steps(&view(0)), [Decision::StartWave(1)]);
    assert_eq!(steps(&view(1)), [Decision::Complete]);
}

#[test]
fn a_passed_wave_awaits_approval_once_when_the_plan_says_pause() {
    let view = |current, awaiting_approval| RolloutView {
        plan: RolloutPlan { after_success: AfterSuccess::Pause, ..percent_waves(&[50, 100]) },
        current_wave: Some(current),
        waves: vec![WaveTally { succeeded: 2, ..tally(2) }, WaveTally { succeeded: 2, ..tally(2) }],
        unassigned_in_current_wave: 0,
        awaiting_approval,
        ..running_view(2)
    };
    assert_eq!(steps(&view(0, false)), [Decision::AwaitApproval { wave: 0 }]);
    assert_eq!(steps(&view(0, true)), []);
    // No approval is needed to finish: there is no next wave to guard.
    assert_eq!(steps(&view(1, false)), [Decision::Complete]);
}

#[test]
fn a_wave_finishing_below_the_success_threshold_pauses_with_its_numbers() {
    let view = RolloutView {
        waves: vec![WaveTally { succeeded: 9, failed: 1, ..tally(10) }],
        unassigned_in_current_wave: 0,
        ..running_view(10)
    };
    let reason = GateReport {
        wave: 0,
        gate: GateKind::SuccessThreshold,
        failed: 1,
        finished: 10,
        succeeded: 9,
        size: 10,
        threshold_percent: 100,
    };
    assert_eq!(steps(&view), [Decision::Pause { reason }]);
}

#[test]
fn a_current_wave_beyond_the_tallies_decides_nothing() {
    assert_eq!(steps(&RolloutView { current_wave: Some(3), ..running_view(5) }), []);
}

#[test]
fn decisions_are_ranked_in_variant_order() {
    let ranks: Vec<u8> = [
        Decision::Start,
        Decision::StartWave(0),
        Decision::Assign { wave: 0, count: 1 },
        Decision::AwaitApproval { wave: 0 },
        Decision::Pause { reason: GateReport::new(0, GateKind::FailureThreshold, &tally(1), &RolloutPlan::default()) },
        Decision::Abort { reason: GateReport::new(0, GateKind::FailureThreshold, &tally(1), &RolloutPlan::default()) },
        Decision::Complete,
        Decision::WakeAt(at(NOW)),
    ]
    .iter()
    .map(Decision::rank)
    .collect();
    assert_eq!(ranks, (0..8).collect::<Vec<u8>>());
}

#[test]
fn a_device_times_out_exactly_at_its_deadline() {
    let since = at("2026-03-01T12:00:00Z");
    let cases = [
        (None, "2030-01-01T00:00:00Z", false),
        (Some(600), "2026-03-01T12:09:59Z", false),
        (Some(600), "2026-03-01T12:10:00Z", true),
        (Some(600), "2026-03-01T13:00:00Z", true),
        (Some(u64::MAX), "2030-01-01T00:00:00Z", false),
    ];
    for (timeout, now, expected) in cases {
        assert_eq!(timed_out(since, timeout, at(now)), expected, "{timeout:?} at {now}");
    }
}

#[test]
fn only_failed_and_timed_out_updates_are_retried_and_only_max_retries_times() {
    for state in UpdateState::ALL {
        let retryable = matches!(state, UpdateState::Failed | UpdateState::TimedOut);
        assert_eq!(should_retry(state, 1, 2), retryable, "{state}");
    }
    // (attempts so far, max_retries, retry?)
    for (attempts, max_retries, expected) in
        [(1, 0, false), (0, 0, false), (1, 1, true), (2, 1, false), (3, 3, true), (4, 3, false)]
    {
        assert_eq!(should_retry(UpdateState::Failed, attempts, max_retries), expected, "{attempts} of 1+{max_retries}");
    }
}
