//! `forecast`: a whole rollout played on a simulated clock, for the plan preview.
//!
//! The forecast drives the same [`next_steps`] the process manager calls, so its
//! waves, rate, window and gates are the real rules, not a second copy of them.
//! Only the fleet is assumed: every attempt takes a fixed time from assignment to
//! its report, and a caller-supplied function says which attempts fail. The clock
//! jumps to the earliest of the decisions' `WakeAt` and the next report, as the
//! real scheduler does, so the rate and the window are checked at the times the
//! decisions would be taken.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::gates::GateReport;
use super::membership::SplitMix64;
use super::next_steps::{next_steps, should_retry, Decision, RolloutView};
use super::plan::RolloutPlan;
use super::rate::minute_bucket;
use super::WaveTally;
use crate::campaign::CampaignStatus;
use crate::device_update::UpdateState;

/// How far ahead a forecast looks; a plan that has not ended by then is `Unfinished`.
pub const HORIZON_DAYS: i64 = 366;

/// What the forecast assumes about the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Assumptions {
    /// Share of attempts that fail, 0 to 100.
    pub failure_percent: u32,
    /// Seconds from an assignment to the device's final report.
    pub update_secs: u64,
    /// Seeds the draw of which attempts fail.
    pub seed: u64,
}

/// How the forecast rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ForecastOutcome {
    /// The last wave passed.
    Completed,
    /// A gate paused the campaign; the report holds the numbers it saw.
    Paused { reason: GateReport },
    /// The failure gate aborted the campaign.
    Aborted { reason: GateReport },
    /// Still running at the horizon (say, a one-a-minute rate over a large fleet).
    Unfinished,
}

/// One wave as the forecast saw it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WaveForecast {
    /// Devices the wave assigns (members that would be skipped are not counted).
    pub size: u32,
    /// When the wave opens; `None` if the rollout ends before it.
    pub starts_at: Option<DateTime<Utc>>,
    pub first_assigned_at: Option<DateTime<Utc>>,
    pub last_assigned_at: Option<DateTime<Utc>>,
    /// When its gate decided: passed, paused, aborted or awaited approval.
    pub gate_decided_at: Option<DateTime<Utc>>,
    /// Whether the plan stops for an approval after this wave; the forecast
    /// assumes it is given at once.
    pub awaits_approval: bool,
    pub succeeded: u32,
    /// Devices whose last attempt failed.
    pub failed: u32,
    /// Attempts, retries included.
    pub attempts: u32,
}

/// One `Assign` decision: `count` devices of `wave` at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentBatch {
    pub at: DateTime<Utc>,
    pub wave: usize,
    pub count: u32,
}

/// A rollout played to its end (or the horizon).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forecast {
    /// When the campaign starts: `start_at`, or now if that is earlier or unset.
    pub starts_at: DateTime<Utc>,
    pub waves: Vec<WaveForecast>,
    pub outcome: ForecastOutcome,
    /// When it ended; `None` when `Unfinished`.
    pub ended_at: Option<DateTime<Utc>>,
    pub batches: Vec<AssignmentBatch>,
}

/// Plays `plan` over waves of `sizes` devices from `now`, each attempt failing
/// with `failure_percent` probability, drawn with SplitMix64 from `seed`.
pub fn forecast_with(plan: &RolloutPlan, sizes: &[u32], now: DateTime<Utc>, assume: Assumptions) -> Forecast {
    let mut rng = SplitMix64::new(assume.seed);
    let update = TimeDelta::seconds(i64::try_from(assume.update_secs).unwrap_or(i64::MAX).min(HORIZON_DAYS * 86_400));
    let failure_percent = u64::from(assume.failure_percent.min(100));
    forecast(plan, sizes, now, update, |_, _, _| rng.below(100) < failure_percent)
}

/// Plays `plan` over waves of `sizes` devices from `now`. Every attempt reports
/// `update` after its assignment; `fails(wave, index, attempt)` says whether it
/// failed, `index` being the device's place in its wave and `attempt` 0 for the
/// first try. Deterministic for a deterministic `fails`.
pub fn forecast(
    plan: &RolloutPlan,
    sizes: &[u32],
    now: DateTime<Utc>,
    update: TimeDelta,
    fails: impl FnMut(usize, u32, u32) -> bool,
) -> Forecast {
    Sim::new(plan, sizes, now, update, fails).run()
}

/// A report due at a time: (due, wave, index in wave, attempt).
type Report = Reverse<(DateTime<Utc>, usize, u32, u32)>;

struct Sim<F> {
    now: DateTime<Utc>,
    horizon: DateTime<Utc>,
    update: TimeDelta,
    view: RolloutView,
    fails: F,
    running: BinaryHeap<Report>,
    /// The minute bucket of the latest assignments and how many it holds.
    bucket: (DateTime<Utc>, u32),
    out: Forecast,
}

impl<F: FnMut(usize, u32, u32) -> bool> Sim<F> {
    fn new(plan: &RolloutPlan, sizes: &[u32], now: DateTime<Utc>, update: TimeDelta, fails: F) -> Self {
        let scheduled = plan.start_at.is_some_and(|t| t > now);
        let view = RolloutView {
            status: if scheduled { CampaignStatus::Scheduled } else { CampaignStatus::Running },
            plan: plan.clone(),
            current_wave: None,
            waves: sizes.iter().map(|&size| WaveTally { size, ..WaveTally::default() }).collect(),
            unassigned_in_current_wave: 0,
            awaiting_approval: false,
            assigned_this_minute: 0,
            successes: 0,
            started_at: (!scheduled).then_some(now),
        };
        let starts_at = plan.start_at.filter(|_| scheduled).unwrap_or(now);
        Self {
            now,
            horizon: starts_at + TimeDelta::days(HORIZON_DAYS),
            update,
            view,
            fails,
            running: BinaryHeap::new(),
            bucket: (minute_bucket(now), 0),
            out: Forecast {
                starts_at,
                waves: vec![WaveForecast::default(); sizes.len()],
                outcome: ForecastOutcome::Unfinished,
                ended_at: None,
                batches: Vec::new(),
            },
        }
    }

    fn run(mut self) -> Forecast {
        for (wave, forecast) in self.out.waves.iter_mut().enumerate() {
            forecast.size = self.view.waves[wave].size;
        }
        while self.now <= self.horizon {
            self.deliver_reports();
            if self.bucket.0 != minute_bucket(self.now) {
                self.bucket = (minute_bucket(self.now), 0);
            }
            self.view.assigned_this_minute = self.bucket.1;
            let mut wake = None;
            let mut acted = false;
            for decision in next_steps(&self.view, self.now) {
                match decision {
                    Decision::WakeAt(t) => wake = Some(t),
                    other => {
                        acted = true;
                        if self.apply(other) {
                            self.out.ended_at = Some(self.now);
                            return self.out;
                        }
                    }
                }
            }
            if acted {
                // Like the process manager, react to our own commands before sleeping.
                continue;
            }
            let next_report = self.running.peek().map(|Reverse((t, ..))| *t);
            match wake.into_iter().chain(next_report).min() {
                Some(next) if next > self.now => self.now = next,
                // Nothing left to wait for, or a clock that would not move: stop here.
                _ => break,
            }
        }
        self.out.outcome = ForecastOutcome::Unfinished;
        self.out
    }

    /// Carries out one decision; true when it ends the rollout.
    fn apply(&mut self, decision: Decision) -> bool {
        let now = self.now;
        match decision {
            Decision::Start => {
                self.view.status = CampaignStatus::Running;
                self.view.started_at = Some(now);
            }
            Decision::StartWave(wave) => self.open(wave),
            Decision::Assign { wave, count } => {
                let size = self.view.waves[wave].size;
                for _ in 0..count {
                    let index = size - self.view.unassigned_in_current_wave;
                    self.running.push(Reverse((now + self.update, wave, index, 0)));
                    self.view.unassigned_in_current_wave -= 1;
                    self.view.waves[wave].in_progress += 1;
                }
                self.bucket.1 += count;
                let forecast = &mut self.out.waves[wave];
                forecast.first_assigned_at.get_or_insert(now);
                forecast.last_assigned_at = Some(now);
                forecast.attempts += count;
                self.out.batches.push(AssignmentBatch { at: now, wave, count });
            }
            Decision::AwaitApproval { wave } => {
                let forecast = &mut self.out.waves[wave];
                forecast.awaits_approval = true;
                forecast.gate_decided_at = Some(now);
                // The approval is assumed to come at once.
                self.open(wave + 1);
            }
            Decision::Pause { reason } | Decision::Abort { reason } => {
                self.out.waves[reason.wave].gate_decided_at = Some(now);
                self.out.outcome = if matches!(decision, Decision::Pause { .. }) {
                    ForecastOutcome::Paused { reason }
                } else {
                    ForecastOutcome::Aborted { reason }
                };
                return true;
            }
            Decision::Complete => {
                if let Some(wave) = self.view.current_wave {
                    self.out.waves[wave].gate_decided_at = Some(now);
                }
                self.out.outcome = ForecastOutcome::Completed;
                return true;
            }
            Decision::WakeAt(_) => {}
        }
        false
    }

    fn open(&mut self, wave: usize) {
        if let Some(previous) = self.view.current_wave {
            self.out.waves[previous].gate_decided_at.get_or_insert(self.now);
        }
        self.view.current_wave = Some(wave);
        self.view.awaiting_approval = false;
        self.view.unassigned_in_current_wave = self.view.waves.get(wave).map_or(0, |t| t.size);
        if let Some(forecast) = self.out.waves.get_mut(wave) {
            forecast.starts_at = Some(self.now);
        }
    }

    fn deliver_reports(&mut self) {
        while let Some(Reverse((due, wave, index, attempt))) = self.running.peek().copied() {
            if due > self.now {
                return;
            }
            self.running.pop();
            let failed = (self.fails)(wave, index, attempt);
            if failed && should_retry(UpdateState::Failed, attempt + 1, self.view.plan.max_retries) {
                // A retry stays in progress, as the process manager tallies it.
                self.running.push(Reverse((due + self.update, wave, index, attempt + 1)));
                self.out.waves[wave].attempts += 1;
                continue;
            }
            let tally = &mut self.view.waves[wave];
            tally.in_progress -= 1;
            if failed {
                tally.failed += 1;
                self.out.waves[wave].failed += 1;
            } else {
                tally.succeeded += 1;
                self.view.successes += 1;
                self.out.waves[wave].succeeded += 1;
            }
        }
    }
}
