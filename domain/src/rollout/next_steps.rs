//! `next_steps`: what the process manager should do next, given a view of the rollout and the time.
//!
//! This is the `react` half of the campaign: it reads a [`RolloutView`] the caller built
//! from the campaign's and its devices' events and returns [`Decision`]s, which the
//! process manager turns into commands. It holds every rollout rule; the process
//! manager holds none. Also here are the per-device helpers [`timed_out`] and
//! [`should_retry`].

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::gates::{evaluate_gate, GateKind, GateOutcome, GateReport, WaveTally};
use super::plan::{OnFailure, RolloutPlan};
use super::rate::{allowed_assignments, next_minute};
use crate::campaign::CampaignStatus;
use crate::device_update::UpdateState;

/// Everything `next_steps` needs, built by the caller; pure data, no handles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutView {
    pub status: CampaignStatus,
    pub plan: RolloutPlan,
    /// The wave being rolled out; `None` before the first wave starts.
    pub current_wave: Option<usize>,
    /// One tally per wave, sizes from membership.
    pub waves: Vec<WaveTally>,
    /// Devices of the current wave not yet assigned.
    pub unassigned_in_current_wave: u32,
    /// Whether an `AwaitApproval` for the current wave was already recorded.
    pub awaiting_approval: bool,
    /// Assignments already made in the minute bucket of `now` (see `minute_bucket`).
    pub assigned_this_minute: u32,
    /// Successful updates so far in the whole campaign; drives the rate ramp.
    pub successes: u64,
    /// When the campaign started; `None` until it has.
    pub started_at: Option<DateTime<Utc>>,
}

/// One step for the process manager to carry out.
///
/// `next_steps` returns decisions sorted in the order of the variants below (the
/// order of [`Decision::rank`]): a state change first, then assignments, then the
/// wake-up, which is always last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Start a scheduled campaign whose `start_at` has come.
    Start,
    /// Open this wave.
    StartWave(usize),
    /// Assign this many more devices of this wave, in membership order.
    Assign { wave: usize, count: u32 },
    /// The wave passed and the plan wants an approval before the next one.
    AwaitApproval { wave: usize },
    /// Pause the campaign; a gate said so.
    Pause { reason: GateReport },
    /// Abort the campaign; the failure gate said so and the plan asked for it.
    Abort { reason: GateReport },
    /// The last wave passed.
    Complete,
    /// Call `next_steps` again at this time, even if no event arrives.
    WakeAt(DateTime<Utc>),
}

impl Decision {
    /// The position of this decision in `next_steps`' output.
    pub fn rank(&self) -> u8 {
        match self {
            Decision::Start => 0,
            Decision::StartWave(_) => 1,
            Decision::Assign { .. } => 2,
            Decision::AwaitApproval { .. } => 3,
            Decision::Pause { .. } => 4,
            Decision::Abort { .. } => 5,
            Decision::Complete => 6,
            Decision::WakeAt(_) => 7,
        }
    }
}

/// Decides what to do next. Deterministic: the same view and time give the same decisions.
///
/// - *Scheduled*: `Start` once `start_at` has come, else `WakeAt(start_at)`; nothing without a `start_at`.
/// - *Running*, no wave yet: `StartWave(0)` (or `Complete` if there are no waves).
/// - *Running*, in a wave: the gate first. A crossed failure threshold gives `Pause` or
///   `Abort` (per `on_failure`), a missed success threshold gives `Pause`; a passed wave
///   gives `StartWave(next)`, `AwaitApproval` (once) or, after the last wave, `Complete`.
///   While the gate is pending, unassigned devices are assigned, but only inside the
///   maintenance window (else `WakeAt(next opening)`) and within the minute's rate
///   budget (a spent or partly used budget adds `WakeAt(next minute)`).
/// - Any other status, or a view whose current wave does not exist: nothing.
pub fn next_steps(state: &RolloutView, now: DateTime<Utc>) -> Vec<Decision> {
    let mut decisions = match state.status {
        CampaignStatus::Scheduled => scheduled_steps(state, now),
        CampaignStatus::Running => running_steps(state, now),
        CampaignStatus::Draft
        | CampaignStatus::Paused
        | CampaignStatus::Completed
        | CampaignStatus::Cancelled
        | CampaignStatus::Aborted => Vec::new(),
    };
    decisions.sort_by_key(Decision::rank);
    decisions
}

fn scheduled_steps(state: &RolloutView, now: DateTime<Utc>) -> Vec<Decision> {
    // A view that already records a start is stale; starting twice would be refused anyway.
    match (state.plan.start_at, state.started_at) {
        (Some(start_at), None) if start_at <= now => vec![Decision::Start],
        (Some(start_at), None) => vec![Decision::WakeAt(start_at)],
        _ => Vec::new(),
    }
}

fn running_steps(state: &RolloutView, now: DateTime<Utc>) -> Vec<Decision> {
    let Some(wave) = state.current_wave else {
        return vec![if state.waves.is_empty() { Decision::Complete } else { Decision::StartWave(0) }];
    };
    let Some(tally) = state.waves.get(wave) else {
        return Vec::new();
    };
    let plan = &state.plan;
    let is_last = wave + 1 >= state.waves.len();
    match evaluate_gate(plan, tally) {
        GateOutcome::FailureCrossed { action, .. } => {
            let reason = GateReport::new(wave, GateKind::FailureThreshold, tally, plan);
            vec![match action {
                OnFailure::Pause => Decision::Pause { reason },
                OnFailure::Abort => Decision::Abort { reason },
            }]
        }
        GateOutcome::SuccessMissed { .. } => {
            vec![Decision::Pause { reason: GateReport::new(wave, GateKind::SuccessThreshold, tally, plan) }]
        }
        // The approval guards the start of the next wave; after the last there is none.
        GateOutcome::Passed | GateOutcome::PassedAwaitApproval if is_last => vec![Decision::Complete],
        GateOutcome::Passed => vec![Decision::StartWave(wave + 1)],
        GateOutcome::PassedAwaitApproval if state.awaiting_approval => Vec::new(),
        GateOutcome::PassedAwaitApproval => vec![Decision::AwaitApproval { wave }],
        GateOutcome::Pending => assign_steps(state, wave, now),
    }
}

fn assign_steps(state: &RolloutView, wave: usize, now: DateTime<Utc>) -> Vec<Decision> {
    let wanted = state.unassigned_in_current_wave;
    if wanted == 0 {
        // Everything is assigned; device reports (or the caller's timeouts) move the gate.
        return Vec::new();
    }
    if let Some(window) = &state.plan.maintenance_window {
        // An invalid window (refused when the plan was validated) is read as closed.
        if !window.is_open(now) {
            return vec![Decision::WakeAt(window.next_open(now))];
        }
    }
    let budget = allowed_assignments(&state.plan, state.assigned_this_minute, state.successes);
    let count = budget.map_or(wanted, |budget| budget.min(wanted));
    let mut decisions = Vec::with_capacity(2);
    if count > 0 {
        decisions.push(Decision::Assign { wave, count });
    }
    if count < wanted {
        // The rate held some back; the budget refills at the next minute bucket.
        decisions.push(Decision::WakeAt(next_minute(now)));
    }
    decisions
}

/// Whether a device last heard from at `since` (assigned, or its latest report) has timed out.
///
/// `None` means the plan sets no timeout. Exactly `timeout_secs` after `since` counts as
/// timed out, so a sleep until that instant finds the device timed out.
pub fn timed_out(since: DateTime<Utc>, timeout_secs: Option<u64>, now: DateTime<Utc>) -> bool {
    let Some(secs) = timeout_secs else {
        return false;
    };
    let limit = i64::try_from(secs).ok().and_then(TimeDelta::try_seconds);
    match limit.and_then(|limit| since.checked_add_signed(limit)) {
        Some(deadline) => now >= deadline,
        // A timeout beyond the representable calendar never expires.
        None => false,
    }
}

/// Whether a device whose update ended with `outcome` after `attempts` attempts
/// (the first one included) gets another try.
///
/// Only `failed` and `timed_out` are retried, as AWS IoT Jobs does: a `rejected`
/// update is the device refusing, and a `cancelled` one was stopped on purpose.
/// `max_retries` counts retries, so the device gets at most `1 + max_retries` attempts.
pub fn should_retry(outcome: UpdateState, attempts: u32, max_retries: u32) -> bool {
    let retryable = matches!(outcome, UpdateState::Failed | UpdateState::TimedOut);
    // An outcome means at least one attempt was made, even if the caller says zero.
    let retries_used = attempts.saturating_sub(1);
    retryable && retries_used < max_retries
}
