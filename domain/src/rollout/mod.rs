//! Rollout policy and the pure decisions that drive a campaign through its waves.
//!
//! The campaign request's `rollout` object parses into a [`RolloutPlan`]. From it
//! come the seeded, stratified wave membership ([`assign_waves`]), the per-minute
//! assignment budget ([`allowed_assignments`]), the maintenance window
//! ([`MaintenanceWindow`]), the wave gates ([`evaluate_gate`]) and finally
//! [`next_steps`], which the process manager calls after every event and on every
//! wake-up; [`forecast`] plays a whole plan on a simulated clock for the
//! preview. Nothing here reads the clock or draws entropy: time and the seed are
//! arguments, so a recorded campaign replays to the same decisions.

mod forecast;
mod gates;
mod membership;
mod next_steps;
mod plan;
mod rate;
mod window;

#[cfg(test)]
mod tests;

pub use forecast::{
    forecast, forecast_with, AssignmentBatch, Assumptions, Forecast, ForecastOutcome, WaveForecast, HORIZON_DAYS,
};
pub use gates::{evaluate_gate, GateKind, GateOutcome, GateReport, WaveTally};
pub use membership::{assign_waves, wave_sizes, DeviceCandidate, SplitMix64};
pub use next_steps::{next_steps, should_retry, timed_out, Decision, RolloutView};
pub use plan::{ActionType, AfterSuccess, OnFailure, PlanError, Ramp, RolloutPlan, WaveSpec};
pub use rate::{allowed_assignments, current_rate, minute_bucket, next_minute};
pub use window::{DailyWindow, MaintenanceWindow, WindowError};
