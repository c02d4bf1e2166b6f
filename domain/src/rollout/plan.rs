//! `RolloutPlan`: the campaign request's `rollout` object, its defaults and its validation.
//!
//! The wire names are the JSON names; every field is optional. Thresholds are
//! whole percents compared with integer arithmetic, and the ramp factor, which
//! arrives as a JSON number with one decimal, is stored in tenths, so no decision
//! ever depends on floating-point rounding.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::window::{MaintenanceWindow, WindowError};
use crate::refusal::{Refusal, Refused};

/// Most waves a plan may have; hawkBit's default quota is 500 groups, ours is smaller
/// because every wave boundary is an event and a gate an operator may have to read.
pub const MAX_WAVES: usize = 100;
/// Most automatic retries per device, as AWS IoT Jobs allows.
pub const MAX_RETRIES: u32 = 10;
/// Shortest device timeout: one second (labs and tests use short ones).
pub const MIN_DEVICE_TIMEOUT_SECS: u64 = 1;
/// Longest device timeout: thirty days.
pub const MAX_DEVICE_TIMEOUT_SECS: u64 = 30 * 24 * 3600;

/// How a campaign rolls out: waves, gates, rate, timeouts, retries, window and start time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutPlan {
    /// The waves in order; the last one always takes the remainder of the fleet.
    pub waves: Vec<WaveSpec>,
    /// Share of a wave's devices that must succeed before the wave passes.
    pub success_threshold_percent: u32,
    /// What a passed wave leads to: the next wave, or a pause for approval.
    pub after_success: AfterSuccess,
    /// Share of finished devices that may fail (failed, timed out or rejected) before the gate trips.
    pub failure_threshold_percent: u32,
    /// Finished devices needed before the failure gate may trip, so one early failure is not 100 %.
    pub min_finished: u32,
    /// What a tripped failure gate does.
    pub on_failure: OnFailure,
    /// Assignments per minute; `None` means unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_per_minute: Option<u32>,
    /// An exponential ramp of the per-minute rate, driven by successes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ramp: Option<Ramp>,
    /// Seconds a device may stay assigned or in progress without news before it times out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_timeout_secs: Option<u64>,
    /// Automatic retries of a failed or timed-out device.
    pub max_retries: u32,
    /// The daily window in which devices may be assigned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintenance_window: Option<MaintenanceWindow>,
    /// When a scheduled campaign starts by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_at: Option<DateTime<Utc>>,
    /// Whether aborting also rolls back the devices that already updated.
    pub rollback_on_abort: bool,
    /// When a continuous campaign stops taking new devices and completes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_at: Option<DateTime<Utc>>,
    /// How hard devices are told to update (hawkBit's action type, shown to DDI clients).
    pub action_type: ActionType,
    /// Whether assigned devices are also told to hold off installing (DDI `update: skip`)
    /// while the maintenance window is closed. Off by default: SWUpdate answers `skip`
    /// by reporting success without installing.
    pub defer_install_outside_window: bool,
    /// Whether devices running a later release (a higher signed release counter)
    /// may be taken back to this one. Only an admin may set it; without it such
    /// devices are skipped.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_downgrade: bool,
}

/// hawkBit's action types as DDI clients see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ActionType {
    /// Download and install now (`forced`).
    #[default]
    Forced,
    /// The device may choose when (`attempt`).
    Soft,
}

impl Default for RolloutPlan {
    fn default() -> Self {
        Self {
            waves: vec![WaveSpec::Percent(100)],
            success_threshold_percent: 100,
            after_success: AfterSuccess::Next,
            failure_threshold_percent: 20,
            min_finished: 1,
            on_failure: OnFailure::Pause,
            max_per_minute: None,
            ramp: None,
            device_timeout_secs: None,
            max_retries: 0,
            maintenance_window: None,
            start_at: None,
            rollback_on_abort: false,
            end_at: None,
            action_type: ActionType::Forced,
            defer_install_outside_window: false,
            allow_downgrade: false,
        }
    }
}

/// One wave: `{"percent": n}` is the cumulative share of the fleet reached by the end
/// of this wave; `{"count": n}` is the number of devices in this wave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum WaveSpec {
    Percent(u32),
    Count(u32),
}

/// What happens when a wave passes its success gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AfterSuccess {
    /// Start the next wave at once.
    #[default]
    Next,
    /// Wait for an operator to approve the next wave.
    Pause,
}

/// What happens when a wave crosses its failure threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum OnFailure {
    /// Pause the campaign; an operator may resume or abort it.
    #[default]
    Pause,
    /// Abort the campaign.
    Abort,
}

/// An exponential rate ramp: `base_per_minute × factor^(successes / every_successes)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ramp {
    /// The rate before any step.
    pub base_per_minute: u32,
    /// The growth per step, in tenths (`2.0` on the wire is 20 here).
    #[serde(rename = "factor", with = "tenths")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 2.0))]
    pub factor_tenths: u32,
    /// Successes per step.
    pub every_successes: u64,
}

impl Default for Ramp {
    /// Ten a minute, doubling every hundred successes.
    fn default() -> Self {
        Self { base_per_minute: 10, factor_tenths: 20, every_successes: 100 }
    }
}

/// A JSON number with at most one decimal, stored as an integer count of tenths.
mod tenths {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(tenths: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(f64::from(*tenths) / 10.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let value = f64::deserialize(d)?;
        let scaled = value * 10.0;
        let rounded = scaled.round();
        // The tolerance absorbs binary representation (1.1 * 10 is 11.000000000000002),
        // not a second decimal, which is at least 0.1 tenths away.
        let one_decimal = value.is_finite() && (scaled - rounded).abs() < 1e-6;
        if !one_decimal || rounded < 0.0 || rounded > f64::from(u32::MAX) {
            return Err(de::Error::custom("factor must be a non-negative number with at most one decimal"));
        }
        // In range and integral, checked just above, so the cast is exact.
        Ok(rounded as u32)
    }
}

/// Why a rollout plan was refused. The message names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("rollout.waves: must name at least one wave")]
    NoWaves,
    #[error("rollout.waves: at most {MAX_WAVES} waves, got {count}")]
    TooManyWaves { count: usize },
    #[error("rollout.waves[{index}].percent: must be 1..=100 and increasing, got {percent}")]
    WavePercent { index: usize, percent: u32 },
    #[error("rollout.waves[{index}].count: must be at least 1")]
    WaveCount { index: usize },
    #[error("rollout.{field}: must be 0..=100, got {value}")]
    Threshold { field: &'static str, value: u32 },
    #[error("rollout.max_per_minute: must be at least 1")]
    MaxPerMinute,
    #[error("rollout.ramp.{field}: must be at least 1")]
    RampValue { field: &'static str },
    #[error("rollout.ramp.factor: must be between 1.0 and 10.0")]
    RampFactor { tenths: u32 },
    #[error("rollout.device_timeout_secs: must be {MIN_DEVICE_TIMEOUT_SECS}..={MAX_DEVICE_TIMEOUT_SECS}, got {secs}")]
    DeviceTimeout { secs: u64 },
    #[error("rollout.max_retries: must be at most {MAX_RETRIES}, got {value}")]
    MaxRetries { value: u32 },
    /// The message repeats the window's own, prefixed with its place in the request.
    #[error("rollout.maintenance_window.{0}")]
    Window(#[from] WindowError),
}

impl Refused for PlanError {
    /// Every plan error is a malformed request.
    fn refusal(&self) -> Refusal {
        Refusal::Invalid
    }

    /// A stable code for the error body; never change one once published.
    fn code(&self) -> &'static str {
        match self {
            PlanError::NoWaves => "rollout.no_waves",
            PlanError::TooManyWaves { .. } => "rollout.too_many_waves",
            PlanError::WavePercent { .. } => "rollout.bad_wave_percent",
            PlanError::WaveCount { .. } => "rollout.bad_wave_count",
            PlanError::Threshold { .. } => "rollout.bad_threshold",
            PlanError::MaxPerMinute => "rollout.bad_max_per_minute",
            PlanError::RampValue { .. } | PlanError::RampFactor { .. } => "rollout.bad_ramp",
            PlanError::DeviceTimeout { .. } => "rollout.bad_device_timeout",
            PlanError::MaxRetries { .. } => "rollout.bad_max_retries",
            PlanError::Window(e) => e.code(),
        }
    }
}

impl RolloutPlan {
    /// Checks every field; the first problem found, in field order, is returned.
    pub fn validate(&self) -> Result<(), PlanError> {
        self.validate_waves()?;
        for (field, value) in [
            ("success_threshold_percent", self.success_threshold_percent),
            ("failure_threshold_percent", self.failure_threshold_percent),
        ] {
            if value > 100 {
                return Err(PlanError::Threshold { field, value });
            }
        }
        if self.max_per_minute == Some(0) {
            return Err(PlanError::MaxPerMinute);
        }
        if let Some(ramp) = &self.ramp {
            ramp.validate()?;
        }
        if let Some(secs) = self.device_timeout_secs {
            if !(MIN_DEVICE_TIMEOUT_SECS..=MAX_DEVICE_TIMEOUT_SECS).contains(&secs) {
                return Err(PlanError::DeviceTimeout { secs });
            }
        }
        if self.max_retries > MAX_RETRIES {
            return Err(PlanError::MaxRetries { value: self.max_retries });
        }
        match &self.maintenance_window {
            Some(window) => Ok(window.validate()?),
            None => Ok(()),
        }
    }

    fn validate_waves(&self) -> Result<(), PlanError> {
        if self.waves.is_empty() {
            return Err(PlanError::NoWaves);
        }
        if self.waves.len() > MAX_WAVES {
            return Err(PlanError::TooManyWaves { count: self.waves.len() });
        }
        // Percent waves are cumulative, so each must exceed the previous percent wave.
        let mut last_percent = 0;
        for (index, wave) in self.waves.iter().enumerate() {
            match *wave {
                WaveSpec::Percent(percent) if percent <= last_percent || percent > 100 => {
                    return Err(PlanError::WavePercent { index, percent });
                }
                WaveSpec::Percent(percent) => last_percent = percent,
                WaveSpec::Count(0) => return Err(PlanError::WaveCount { index }),
                WaveSpec::Count(_) => {}
            }
        }
        Ok(())
    }
}

impl Ramp {
    fn validate(&self) -> Result<(), PlanError> {
        if self.base_per_minute == 0 {
            return Err(PlanError::RampValue { field: "base_per_minute" });
        }
        if self.every_successes == 0 {
            return Err(PlanError::RampValue { field: "every_successes" });
        }
        if !(10..=100).contains(&self.factor_tenths) {
            return Err(PlanError::RampFactor { tenths: self.factor_tenths });
        }
        Ok(())
    }
}
