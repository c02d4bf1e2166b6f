//! Tests of the rollout module: one file per source file, a simulated rollout, and properties.
//!
//! Time is always an argument; `at("…")` builds it from RFC 3339 text so every
//! instant in a test reads as what it is.

use chrono::{DateTime, Utc};

use super::*;
use crate::campaign::CampaignStatus;
use crate::ids::DeviceId;
use crate::refusal::Refused;

mod gates;
mod membership;
mod next_steps;
mod plan;
mod properties;
mod rate;
mod simulation;
mod window;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("test times are valid RFC 3339").with_timezone(&Utc)
}

fn device_id(id: &str) -> DeviceId {
    DeviceId::parse(id).expect("test device ids are valid")
}

fn device(id: &str, hardware_version: Option<&str>) -> DeviceCandidate {
    DeviceCandidate { id: device_id(id), hardware_version: hardware_version.map(str::to_owned) }
}

fn window(start: &str, duration_minutes: u32, utc_offset: &str) -> MaintenanceWindow {
    MaintenanceWindow { start: start.to_owned(), duration_minutes, utc_offset: utc_offset.to_owned() }
}

fn percent_waves(percents: &[u32]) -> RolloutPlan {
    RolloutPlan { waves: percents.iter().map(|&p| WaveSpec::Percent(p)).collect(), ..RolloutPlan::default() }
}

fn tally(size: u32) -> WaveTally {
    WaveTally { size, ..WaveTally::default() }
}

/// A running campaign in wave 0 of one wave of `size` devices, none assigned yet.
fn running_view(size: u32) -> RolloutView {
    RolloutView {
        status: CampaignStatus::Running,
        plan: RolloutPlan::default(),
        current_wave: Some(0),
        waves: vec![tally(size)],
        unassigned_in_current_wave: size,
        awaiting_approval: false,
        assigned_this_minute: 0,
        successes: 0,
        started_at: Some(at("2026-03-01T00:00:00Z")),
    }
}
