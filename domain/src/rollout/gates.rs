//! Wave gates: given a wave's tally, has it failed, passed, or is it still running?
//!
//! The failure gate is checked first, so a wave that both finished and crossed the
//! failure threshold stops the campaign instead of advancing it. All comparisons
//! are cross-multiplied integers (`failed × 100 > threshold × finished`), widened
//! to `u64`, so "is 20 % over a 20 % threshold?" has one exact answer.

use serde::{Deserialize, Serialize};

use super::plan::{AfterSuccess, OnFailure, RolloutPlan};

/// The devices of one wave, counted by where their update stands.
///
/// The buckets partition the wave's assigned devices: each device is in exactly one.
/// A device whose failure will be retried (see `should_retry`) belongs in
/// `in_progress`, not `failed`, so a retry in flight neither trips nor blocks a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WaveTally {
    /// Devices in the wave, from membership.
    pub size: u32,
    /// Assigned (or notified) but not yet started.
    pub assigned: u32,
    /// Downloading or installing.
    pub in_progress: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub timed_out: u32,
    pub rejected: u32,
    pub cancelled: u32,
}

impl WaveTally {
    /// Devices whose update has ended, whatever the outcome.
    pub fn finished(&self) -> u64 {
        [self.succeeded, self.failed, self.timed_out, self.rejected, self.cancelled].into_iter().map(u64::from).sum()
    }

    /// Ended updates that count against the failure threshold; cancelled ones do not.
    pub fn failures(&self) -> u64 {
        [self.failed, self.timed_out, self.rejected].into_iter().map(u64::from).sum()
    }
}

/// What a wave's gate says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateOutcome {
    /// Devices are still to be assigned or still running.
    Pending,
    /// Every device finished and enough succeeded; go on.
    Passed,
    /// Every device finished and enough succeeded; the plan wants an approval first.
    PassedAwaitApproval,
    /// Failures (failed + timed out + rejected) crossed the threshold.
    FailureCrossed { action: OnFailure, failed: u64, finished: u64, threshold_percent: u32 },
    /// Every device finished, the failure threshold was not crossed, and yet too few
    /// succeeded (say one failure in ten with a 100 % success threshold). Without this
    /// outcome such a wave would wait forever; it pauses for an operator instead.
    SuccessMissed { succeeded: u32, size: u32, threshold_percent: u32 },
}

/// Which gate a reported decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum GateKind {
    /// Failures crossed `failure_threshold_percent`.
    FailureThreshold,
    /// The wave finished below `success_threshold_percent`.
    SuccessThreshold,
}

/// The numbers a gate decision saw, recorded with the pause or abort it caused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GateReport {
    pub wave: usize,
    pub gate: GateKind,
    /// Failed + timed out + rejected.
    pub failed: u64,
    pub finished: u64,
    pub succeeded: u32,
    pub size: u32,
    /// The threshold of the gate named by `gate`.
    pub threshold_percent: u32,
}

impl GateReport {
    /// The report of `wave`'s tally against the gate of the given kind.
    pub fn new(wave: usize, gate: GateKind, tally: &WaveTally, plan: &RolloutPlan) -> Self {
        let threshold_percent = match gate {
            GateKind::FailureThreshold => plan.failure_threshold_percent,
            GateKind::SuccessThreshold => plan.success_threshold_percent,
        };
        Self {
            wave,
            gate,
            failed: tally.failures(),
            finished: tally.finished(),
            succeeded: tally.succeeded,
            size: tally.size,
            threshold_percent,
        }
    }
}

/// Evaluates a wave's gates: failure first, then success.
///
/// - Failure: `finished >= min_finished` and `failures × 100 > failure_threshold_percent × finished`.
///   Strictly greater, so a 20 % threshold tolerates exactly 20 %; 100 % never trips.
/// - Success: every device finished and `succeeded × 100 >= success_threshold_percent × size`.
///   An empty wave passes at once.
pub fn evaluate_gate(plan: &RolloutPlan, tally: &WaveTally) -> GateOutcome {
    let finished = tally.finished();
    let failed = tally.failures();
    let threshold = u64::from(plan.failure_threshold_percent);
    if finished >= u64::from(plan.min_finished) && failed * 100 > threshold * finished {
        return GateOutcome::FailureCrossed {
            action: plan.on_failure,
            failed,
            finished,
            threshold_percent: plan.failure_threshold_percent,
        };
    }
    if finished < u64::from(tally.size) {
        return GateOutcome::Pending;
    }
    let size = u64::from(tally.size);
    if u64::from(tally.succeeded) * 100 < u64::from(plan.success_threshold_percent) * size {
        return GateOutcome::SuccessMissed {
            succeeded: tally.succeeded,
            size: tally.size,
            threshold_percent: plan.success_threshold_percent,
        };
    }
    match plan.after_success {
        AfterSuccess::Next => GateOutcome::Passed,
        AfterSuccess::Pause => GateOutcome::PassedAwaitApproval,
    }
}
