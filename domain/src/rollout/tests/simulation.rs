//! A whole rollout on a simulated clock: the test plays the process manager and the fleet.
//!
//! The clock jumps to the earliest of the decisions' `WakeAt` and the next device
//! report, exactly as the real scheduler would, so the rate and the window are
//! checked against the times the decisions were taken at.

use chrono::TimeDelta;

use super::*;

/// How a simulated device's update ends, three minutes after it was assigned.
type Outcome = fn(wave: usize, index: usize) -> bool;

struct Sim {
    now: DateTime<Utc>,
    view: RolloutView,
    members: Vec<Vec<DeviceId>>,
    succeeds: Outcome,
    /// (finishes at, wave, succeeded?)
    running: Vec<(DateTime<Utc>, usize, bool)>,
    /// (assigned at, wave, device)
    assigned: Vec<(DateTime<Utc>, usize, DeviceId)>,
    started_waves: Vec<usize>,
    ended: Option<Decision>,
}

impl Sim {
    fn new(plan: RolloutPlan, fleet: usize, succeeds: Outcome) -> Self {
        let devices: Vec<_> =
            (0..fleet).map(|i| device(&format!("dev-{i:03}"), Some(["r1", "r2", "r3"][i % 3]))).collect();
        let members = assign_waves(&devices, &plan, 2026);
        let waves = members.iter().map(|m| tally(u32::try_from(m.len()).expect("small fleet"))).collect();
        let view = RolloutView {
            status: CampaignStatus::Scheduled,
            plan,
            current_wave: None,
            waves,
            unassigned_in_current_wave: 0,
            awaiting_approval: false,
            assigned_this_minute: 0,
            successes: 0,
            started_at: None,
        };
        Self {
            now: at("2026-03-01T00:00:00Z"),
            view,
            members,
            succeeds,
            running: vec![],
            assigned: vec![],
            started_waves: vec![],
            ended: None,
        }
    }

    /// Runs until the campaign ends or nothing is left to wait for.
    fn run(mut self) -> Self {
        for _ in 0..10_000 {
            self.deliver_reports();
            let bucket = minute_bucket(self.now);
            self.view.assigned_this_minute =
                u32::try_from(self.assigned.iter().filter(|(t, ..)| minute_bucket(*t) == bucket).count())
                    .expect("small");
            let decisions = next_steps(&self.view, self.now);
            assert_eq!(decisions, next_steps(&self.view, self.now), "next_steps is deterministic");
            let mut wake = None;
            let mut acted = false;
            for decision in decisions {
                match decision {
                    Decision::WakeAt(t) => wake = Some(t),
                    other => {
                        self.apply(other);
                        acted = true;
                    }
                }
            }
            if self.ended.is_some() {
                return self;
            }
            if acted {
                // Like the process manager, react to our own commands before sleeping.
                continue;
            }
            let next_report = self.running.iter().map(|(t, ..)| *t).min();
            let next = wake.into_iter().chain(next_report).min();
            let next = next.unwrap_or_else(|| panic!("nothing left to wait for: {:?}", self.view));
            assert!(next > self.now, "time must move forward");
            self.now = next;
        }
        panic!("the rollout did not end: {:?}", self.view);
    }

    fn apply(&mut self, decision: Decision) {
        match decision {
            Decision::Start => {
                self.view.status = CampaignStatus::Running;
                self.view.started_at = Some(self.now);
            }
            Decision::StartWave(wave) => {
                self.started_waves.push(wave);
                self.view.current_wave = Some(wave);
                self.view.unassigned_in_current_wave = self.view.waves[wave].size;
            }
            Decision::Assign { wave, count } => {
                for _ in 0..count {
                    let index = self.members[wave].len() - self.view.unassigned_in_current_wave as usize;
                    let id = self.members[wave][index].clone();
                    self.assigned.push((self.now, wave, id));
                    self.running.push((self.now + TimeDelta::minutes(3), wave, (self.succeeds)(wave, index)));
                    self.view.unassigned_in_current_wave -= 1;
                    self.view.waves[wave].in_progress += 1;
                }
            }
            Decision::AwaitApproval { .. } => self.view.awaiting_approval = true,
            Decision::Pause { .. } | Decision::Abort { .. } | Decision::Complete => self.ended = Some(decision),
            Decision::WakeAt(_) => {}
        }
    }

    fn deliver_reports(&mut self) {
        let now = self.now;
        for (_, wave, ok) in self.running.iter().filter(|(t, ..)| *t <= now) {
            let tally = &mut self.view.waves[*wave];
            tally.in_progress -= 1;
            if *ok {
                tally.succeeded += 1;
                self.view.successes += 1;
            } else {
                tally.failed += 1;
            }
        }
        self.running.retain(|(t, ..)| *t > now);
    }
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
    let sim = Sim::new(plan(), 100, |_, _| true).run();
    assert_eq!(sim.ended, Some(Decision::Complete));
    assert_eq!(sim.view.started_at, Some(at("2026-03-01T01:00:00Z")));
    assert_eq!(sim.started_waves, [0, 1, 2]);
    let mut ids: Vec<&DeviceId> = sim.assigned.iter().map(|(_, _, id)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 100, "every device assigned exactly once");
    assert_eq!(sim.assigned.first().map(|(t, ..)| *t), Some(at("2026-03-01T03:00:00Z")));
    let window = sim.view.plan.maintenance_window.clone().expect("the plan has a window");
    for (t, ..) in &sim.assigned {
        assert!(window.is_open(*t), "assigned at {t}, outside the window");
        let in_bucket = sim.assigned.iter().filter(|(u, ..)| minute_bucket(*u) == minute_bucket(*t)).count();
        assert!(in_bucket <= 7, "{in_bucket} assigned in the minute of {t}");
    }
    // A wave's devices are all assigned before the next wave's first.
    assert!(sim.assigned.windows(2).all(|pair| pair[0].1 <= pair[1].1));
}

#[test]
fn a_rollout_that_misses_the_window_waits_for_the_next_day() {
    // Start at 06:58 UTC: two minutes of window, then the rest at 03:00 the next day.
    let plan = RolloutPlan { start_at: Some(at("2026-03-01T06:58:00Z")), ..plan() };
    let sim = Sim::new(plan, 100, |_, _| true).run();
    assert_eq!(sim.ended, Some(Decision::Complete));
    let days: Vec<u32> = sim.assigned.iter().map(|(t, ..)| chrono::Datelike::day(t)).collect();
    assert!(days.contains(&1) && days.contains(&2), "{days:?}");
    assert!(sim.assigned.iter().all(|(t, ..)| *t < at("2026-03-01T07:00:00Z") || *t >= at("2026-03-02T03:00:00Z")));
}

#[test]
fn a_failing_second_wave_pauses_and_stops_assigning() {
    // A quarter of wave 1 fails, over the 20 % threshold.
    let sim = Sim::new(plan(), 100, |wave, index| wave != 1 || index % 4 != 0).run();
    let Some(Decision::Pause { reason }) = sim.ended else { panic!("expected a pause, got {:?}", sim.ended) };
    assert_eq!((reason.wave, reason.gate), (1, GateKind::FailureThreshold));
    assert!(reason.failed * 100 > 20 * reason.finished, "{reason:?}");
    assert_eq!(sim.started_waves, [0, 1]);
    assert!(sim.assigned.iter().all(|(_, wave, _)| *wave < 2));
}
