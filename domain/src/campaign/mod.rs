//! The `Campaign` aggregate: what to ship, to whom, and where the rollout stands.
//!
//! Per-device facts never land here (they live in `DeviceUpdate` streams), so a
//! campaign stream stays short however large the fleet.

mod commands;
mod error;
mod events;
mod state;
#[cfg(test)]
mod tests;

pub use commands::CampaignCommand;
pub use error::CampaignError;
pub use events::CampaignEvent;
pub use state::{Campaign, CampaignFirmware, CampaignStatus, Membership, Target, TargetFilter, UnknownCampaignStatus};
