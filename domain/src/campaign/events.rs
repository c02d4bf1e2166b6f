use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::state::{CampaignFirmware, Target};
use crate::ids::{CampaignId, DeviceId};
use crate::rollout::{GateReport, RolloutPlan};

/// Decisions carry the gate numbers they saw (`passed`, `gate`), so the stream
/// explains itself to an auditor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CampaignEvent {
    CampaignCreated {
        id: CampaignId,
        name: String,
        firmware: CampaignFirmware,
        target: Target,
        #[serde(default)]
        rollout: RolloutPlan,
        /// Set on a rollback campaign: the aborted campaign whose devices it rolls back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rollback_of: Option<CampaignId>,
        /// The creator, whom four eyes keep from approving its waves (absent before it was recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        created_by: Option<String>,
        at: DateTime<Utc>,
    },
    /// A draft's definition changed; the event holds all of it.
    CampaignEdited {
        name: String,
        firmware: CampaignFirmware,
        target: Target,
        rollout: RolloutPlan,
        at: DateTime<Utc>,
    },
    /// A draft was withdrawn: the campaign no longer exists (its events stay, for the audit).
    CampaignDeleted {
        at: DateTime<Utc>,
    },
    CampaignScheduled {
        start_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    CampaignStarted {
        at: DateTime<Utc>,
    },
    /// The reproducible membership snapshot taken at start.
    MembershipResolved {
        seed: u64,
        waves: Vec<Vec<DeviceId>>,
        /// Targeted devices left out (unknown, or of another model).
        excluded: u32,
        at: DateTime<Utc>,
    },
    /// Devices that came to match a continuous campaign joined its last wave.
    MembersJoined {
        wave: usize,
        devices: Vec<DeviceId>,
        at: DateTime<Utc>,
    },
    WaveStarted {
        wave: usize,
        #[serde(default)]
        passed: Option<GateReport>,
        at: DateTime<Utc>,
    },
    AssignmentsRecorded {
        wave: usize,
        through: u32,
        skipped: u32,
        at: DateTime<Utc>,
    },
    ApprovalRequested {
        wave: usize,
        #[serde(default)]
        passed: Option<GateReport>,
        at: DateTime<Utc>,
    },
    WaveApproved {
        wave: usize,
        /// The approver (absent in events from before it was recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// Set when an admin approved a campaign it created, with the reason given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        override_reason: Option<String>,
        at: DateTime<Utc>,
    },
    CampaignPaused {
        reason: Option<String>,
        #[serde(default)]
        gate: Option<GateReport>,
        at: DateTime<Utc>,
    },
    CampaignResumed {
        at: DateTime<Utc>,
    },
    CampaignCancelled {
        reason: Option<String>,
        at: DateTime<Utc>,
    },
    CampaignCompleted {
        #[serde(default)]
        passed: Option<GateReport>,
        at: DateTime<Utc>,
    },
    CampaignAborted {
        reason: String,
        #[serde(default)]
        gate: Option<GateReport>,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for CampaignEvent {
    fn event_type(&self) -> String {
        match self {
            CampaignEvent::CampaignCreated { .. } => "CampaignCreated",
            CampaignEvent::CampaignEdited { .. } => "CampaignEdited",
            CampaignEvent::CampaignDeleted { .. } => "CampaignDeleted",
            CampaignEvent::CampaignScheduled { .. } => "CampaignScheduled",
            CampaignEvent::CampaignStarted { .. } => "CampaignStarted",
            CampaignEvent::MembershipResolved { .. } => "MembershipResolved",
            CampaignEvent::MembersJoined { .. } => "MembersJoined",
            CampaignEvent::WaveStarted { .. } => "WaveStarted",
            CampaignEvent::AssignmentsRecorded { .. } => "AssignmentsRecorded",
            CampaignEvent::ApprovalRequested { .. } => "ApprovalRequested",
            CampaignEvent::WaveApproved { .. } => "WaveApproved",
            CampaignEvent::CampaignPaused { .. } => "CampaignPaused",
            CampaignEvent::CampaignResumed { .. } => "CampaignResumed",
            CampaignEvent::CampaignCancelled { .. } => "CampaignCancelled",
            CampaignEvent::CampaignCompleted { .. } => "CampaignCompleted",
            CampaignEvent::CampaignAborted { .. } => "CampaignAborted",
        }
        .to_owned()
    }
    /// Bumped with an upcaster in `crate::upcast` whenever a shape changes.
    fn event_version(&self) -> String {
        match self {
            CampaignEvent::CampaignCreated { .. } | CampaignEvent::WaveApproved { .. } => "1.1",
            CampaignEvent::CampaignScheduled { .. }
            | CampaignEvent::CampaignStarted { .. }
            | CampaignEvent::MembershipResolved { .. }
            | CampaignEvent::MembersJoined { .. }
            | CampaignEvent::WaveStarted { .. }
            | CampaignEvent::AssignmentsRecorded { .. }
            | CampaignEvent::ApprovalRequested { .. }
            | CampaignEvent::CampaignPaused { .. }
            | CampaignEvent::CampaignResumed { .. }
            | CampaignEvent::CampaignCancelled { .. }
            | CampaignEvent::CampaignEdited { .. }
            | CampaignEvent::CampaignDeleted { .. }
            | CampaignEvent::CampaignCompleted { .. }
            | CampaignEvent::CampaignAborted { .. } => "1.0",
        }
        .to_owned()
    }
}
