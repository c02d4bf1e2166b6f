//! Properties: membership partitions the fleet in proportion; `next_steps` keeps its promises.

use std::collections::BTreeMap;

use chrono::TimeDelta;
use proptest::prelude::*;

use super::*;

fn any_fleet() -> impl Strategy<Value = Vec<DeviceCandidate>> {
    // Up to five hardware versions (index 0 is "no version") with up to 60 devices each.
    prop::collection::vec(0usize..60, 1..6).prop_map(|counts| {
        let mut devices = Vec::new();
        for (version, count) in counts.into_iter().enumerate() {
            let hw = (version > 0).then(|| format!("hw{version}"));
            devices.extend(
                (0..count).map(|i| DeviceCandidate {
                    id: device_id(&format!("v{version}-{i}")),
                    hardware_version: hw.clone(),
                }),
            );
        }
        devices
    })
}

fn any_waves() -> impl Strategy<Value = Vec<WaveSpec>> {
    let wave = prop_oneof![(1u32..=100).prop_map(WaveSpec::Percent), (1u32..40).prop_map(WaveSpec::Count)];
    prop::collection::vec(wave, 1..8)
}

fn any_window() -> impl Strategy<Value = MaintenanceWindow> {
    (0u32..24, 0u32..60, 1u32..=1440, -14i32..=14, 0u32..60).prop_map(|(h, m, duration, oh, om)| {
        let sign = if oh < 0 { '-' } else { '+' };
        let om = if oh.abs() == 14 { 0 } else { om };
        window(&format!("{h:02}:{m:02}"), duration, &format!("{sign}{:02}:{om:02}", oh.abs()))
    })
}

fn any_tally() -> impl Strategy<Value = WaveTally> {
    (prop::array::uniform7(0u32..12), 0u32..40).prop_map(|(c, extra)| WaveTally {
        size: c.iter().sum::<u32>() + extra,
        assigned: c[0],
        in_progress: c[1],
        succeeded: c[2],
        failed: c[3],
        timed_out: c[4],
        rejected: c[5],
        cancelled: c[6],
    })
}

fn any_plan() -> impl Strategy<Value = RolloutPlan> {
    let ramp = (1u32..20, 10u32..=30, 1u64..50).prop_map(|(base_per_minute, factor_tenths, every_successes)| Ramp {
        base_per_minute,
        factor_tenths,
        every_successes,
    });
    (
        (0u32..=100, 0u32..=100, 0u32..6, any::<bool>(), any::<bool>()),
        (prop::option::of(1u32..30), prop::option::of(ramp), prop::option::of(any_window())),
        prop::option::of(0i64..3 * 86_400),
    )
        .prop_map(|((success, failure, min_finished, abort, pause), (max_per_minute, ramp, window), start)| {
            RolloutPlan {
                waves: vec![WaveSpec::Percent(10), WaveSpec::Percent(50), WaveSpec::Percent(100)],
                success_threshold_percent: success,
                after_success: if pause { AfterSuccess::Pause } else { AfterSuccess::Next },
                failure_threshold_percent: failure,
                min_finished,
                on_failure: if abort { OnFailure::Abort } else { OnFailure::Pause },
                max_per_minute,
                ramp,
                maintenance_window: window,
                start_at: start.map(|secs| at("2026-03-01T00:00:00Z") + TimeDelta::seconds(secs)),
                ..RolloutPlan::default()
            }
        })
}

fn any_view() -> impl Strategy<Value = (RolloutView, DateTime<Utc>)> {
    (
        (prop::sample::select(CampaignStatus::ALL.to_vec()), any_plan(), prop::collection::vec(any_tally(), 1..4)),
        (prop::option::of(0usize..5), 0u32..50, any::<bool>(), 0u32..40, 0u64..400, any::<bool>()),
        0i64..3 * 86_400,
    )
        .prop_map(
            |((status, plan, waves), (current_wave, unassigned, awaiting, this_minute, successes, started), secs)| {
                let now = at("2026-03-01T00:00:00Z") + TimeDelta::seconds(secs);
                let view = RolloutView {
                    status,
                    plan,
                    current_wave,
                    waves,
                    unassigned_in_current_wave: unassigned,
                    awaiting_approval: awaiting,
                    assigned_this_minute: this_minute,
                    successes,
                    started_at: started.then_some(now),
                };
                (view, now)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn assign_waves_places_every_device_in_exactly_one_wave_in_proportion(
        devices in any_fleet(), waves in any_waves(), seed in any::<u64>(),
    ) {
        let plan = RolloutPlan { waves, ..RolloutPlan::default() };
        let assigned = assign_waves(&devices, &plan, seed);
        let mut placed: Vec<&DeviceId> = assigned.iter().flatten().collect();
        placed.sort();
        let mut expected: Vec<&DeviceId> = devices.iter().map(|d| &d.id).collect();
        expected.sort();
        prop_assert_eq!(placed, expected);
        let sizes: Vec<usize> = assigned.iter().map(Vec::len).collect();
        prop_assert_eq!(sizes.clone(), wave_sizes(devices.len(), &plan));

        let n = devices.len() as i64;
        let version: BTreeMap<&DeviceId, &Option<String>> = devices.iter().map(|d| (&d.id, &d.hardware_version)).collect();
        let mut fleet_mix: BTreeMap<&Option<String>, i64> = BTreeMap::new();
        for d in &devices { *fleet_mix.entry(&d.hardware_version).or_default() += 1; }
        for (wave, size) in assigned.iter().zip(&sizes) {
            let mut mix: BTreeMap<&Option<String>, i64> = BTreeMap::new();
            for id in wave { *mix.entry(version[id]).or_default() += 1; }
            for (hw, &in_fleet) in &fleet_mix {
                // |count - size × in_fleet / n| < 1, cross-multiplied by n.
                let count = mix.get(hw).copied().unwrap_or(0);
                prop_assert!((count * n - *size as i64 * in_fleet).abs() < n,
                    "wave of {} has {} of {:?}; the fleet has {} of {}", size, count, hw, in_fleet, n);
            }
        }
    }

    #[test]
    fn assign_waves_depends_only_on_the_fleet_the_plan_and_the_seed(
        (devices, shuffled) in any_fleet().prop_flat_map(|d| (Just(d.clone()), Just(d).prop_shuffle())),
        waves in any_waves(), seed in any::<u64>(),
    ) {
        let plan = RolloutPlan { waves, ..RolloutPlan::default() };
        let first = assign_waves(&devices, &plan, seed);
        prop_assert_eq!(&first, &assign_waves(&devices, &plan, seed));
        prop_assert_eq!(&first, &assign_waves(&shuffled, &plan, seed));
    }

    #[test]
    fn next_steps_never_assigns_beyond_the_budget_the_wave_or_the_window((view, now) in any_view()) {
        let decisions = next_steps(&view, now);
        let budget = allowed_assignments(&view.plan, view.assigned_this_minute, view.successes);
        let window_closed = view.plan.maintenance_window.as_ref().is_some_and(|w| !w.is_open(now));
        for decision in &decisions {
            if let Decision::Assign { wave, count } = *decision {
                prop_assert_eq!(view.status, CampaignStatus::Running);
                prop_assert_eq!(Some(wave), view.current_wave);
                prop_assert!(count >= 1 && count <= view.unassigned_in_current_wave);
                prop_assert!(budget.is_none_or(|b| count <= b), "{} over a budget of {:?}", count, budget);
                prop_assert!(!window_closed, "assigned outside the window at {}", now);
            }
            if let Decision::WakeAt(t) = *decision {
                prop_assert!(t > now, "a wake-up at {} is not after {}", t, now);
            }
        }
    }

    #[test]
    fn next_steps_always_stops_a_wave_whose_failures_crossed_the_threshold((view, now) in any_view()) {
        let current = view.current_wave.and_then(|w| view.waves.get(w));
        if let (CampaignStatus::Running, Some(tally)) = (view.status, current) {
            let finished = tally.finished();
            let failures = u64::from(tally.failed) + u64::from(tally.timed_out) + u64::from(tally.rejected);
            let crossed = finished >= u64::from(view.plan.min_finished)
                && failures * 100 > u64::from(view.plan.failure_threshold_percent) * finished;
            let decisions = next_steps(&view, now);
            if crossed {
                prop_assert_eq!(decisions.len(), 1);
                let stopped = match (&decisions[0], view.plan.on_failure) {
                    (Decision::Pause { reason }, OnFailure::Pause) | (Decision::Abort { reason }, OnFailure::Abort) => {
                        reason.gate == GateKind::FailureThreshold && reason.failed == failures
                    }
                    _ => false,
                };
                prop_assert!(stopped, "{:?}", decisions);
            }
        }
    }

    #[test]
    fn next_steps_is_deterministic_and_sorted((view, now) in any_view()) {
        let decisions = next_steps(&view, now);
        prop_assert_eq!(&decisions, &next_steps(&view.clone(), now));
        let ranks: Vec<u8> = decisions.iter().map(Decision::rank).collect();
        prop_assert!(ranks.windows(2).all(|pair| pair[0] < pair[1]), "{:?}", decisions);
    }

    #[test]
    fn next_open_is_the_first_open_instant_at_or_after_now(w in any_window(), secs in 0i64..7 * 86_400) {
        let now = at("2026-03-01T00:00:00Z") + TimeDelta::seconds(secs);
        let next = w.next_open(now);
        prop_assert!(next >= now && next - now < TimeDelta::days(1));
        prop_assert!(w.is_open(next));
        if next > now {
            prop_assert!(!w.is_open(now));
            prop_assert!(!w.is_open(next - TimeDelta::seconds(1)));
        }
    }

    #[test]
    fn a_ramp_never_slows_down_and_never_exceeds_its_cap(plan in any_plan(), successes in 0u64..10_000) {
        let now = current_rate(&plan, successes);
        let later = current_rate(&plan, successes + 1);
        prop_assert!(now <= later || later.is_none() && now.is_none());
        if let (Some(cap), Some(rate)) = (plan.max_per_minute, now) {
            prop_assert!(rate <= cap);
        }
    }
}
