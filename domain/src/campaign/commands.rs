use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::state::{CampaignFirmware, Membership, Target};
use crate::ids::CampaignId;
use crate::rollout::{GateReport, RolloutPlan};

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub enum CampaignCommand {
    Create {
        id: CampaignId,
        name: String,
        firmware: CampaignFirmware,
        target: Target,
        rollout: RolloutPlan,
        /// Who creates it (an actor, `user:alice`): the one who may not approve its waves.
        created_by: String,
        at: DateTime<Utc>,
    },
    /// A campaign that rolls the succeeded devices of an aborted campaign back.
    CreateRollback {
        id: CampaignId,
        of: CampaignId,
        name: String,
        firmware: CampaignFirmware,
        devices: Vec<crate::ids::DeviceId>,
        at: DateTime<Utc>,
    },
    /// Without membership a campaign with a future `start_at` is scheduled; with
    /// it the campaign starts and records who is in which wave.
    Start {
        membership: Option<Membership>,
        at: DateTime<Utc>,
    },
    StartWave {
        wave: usize,
        passed: Option<GateReport>,
        at: DateTime<Utc>,
    },
    /// The process manager assigned the wave's devices up to `through` (exclusive).
    RecordAssignments {
        wave: usize,
        through: u32,
        skipped: u32,
        at: DateTime<Utc>,
    },
    AwaitApproval {
        wave: usize,
        passed: Option<GateReport>,
        at: DateTime<Utc>,
    },
    /// Four eyes: `by` may not be the campaign's creator, unless an admin records
    /// why with `override_reason` (the edge checks the caller is an admin).
    Approve {
        by: String,
        override_reason: Option<String>,
        at: DateTime<Utc>,
    },
    /// Devices that came to match a continuous campaign's filter join its last wave.
    AddMembers {
        devices: Vec<crate::ids::DeviceId>,
        at: DateTime<Utc>,
    },
    /// A draft's new definition, whole (the edge merges a partial change into it).
    Edit {
        name: String,
        firmware: CampaignFirmware,
        target: Target,
        rollout: RolloutPlan,
        at: DateTime<Utc>,
    },
    /// A draft is withdrawn: as if it had never been created (its events stay).
    Delete {
        at: DateTime<Utc>,
    },
    Pause {
        reason: Option<String>,
        gate: Option<GateReport>,
        at: DateTime<Utc>,
    },
    Resume {
        at: DateTime<Utc>,
    },
    Cancel {
        reason: Option<String>,
        at: DateTime<Utc>,
    },
    Complete {
        passed: Option<GateReport>,
        at: DateTime<Utc>,
    },
    Abort {
        reason: String,
        gate: Option<GateReport>,
        at: DateTime<Utc>,
    },
}

impl CampaignCommand {
    /// The verb an operator would use, for refusals that name the attempted action.
    pub fn action(&self) -> &'static str {
        match self {
            CampaignCommand::Create { .. } | CampaignCommand::CreateRollback { .. } => "create",
            CampaignCommand::Start { .. } => "start",
            CampaignCommand::StartWave { .. } => "start a wave of",
            CampaignCommand::RecordAssignments { .. } => "assign devices of",
            CampaignCommand::AwaitApproval { .. } => "await approval of",
            CampaignCommand::Approve { .. } => "approve",
            CampaignCommand::AddMembers { .. } => "add devices to",
            CampaignCommand::Edit { .. } => "edit",
            CampaignCommand::Delete { .. } => "delete",
            CampaignCommand::Pause { .. } => "pause",
            CampaignCommand::Resume { .. } => "resume",
            CampaignCommand::Cancel { .. } => "cancel",
            CampaignCommand::Complete { .. } => "complete",
            CampaignCommand::Abort { .. } => "abort",
        }
    }
}
