use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::state::{CampaignFirmware, Target};
use crate::ids::CampaignId;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub enum CampaignCommand {
    Create {
        id: CampaignId,
        name: String,
        firmware: CampaignFirmware,
        target: Target,
        at: DateTime<Utc>,
    },
    Start {
        at: DateTime<Utc>,
    },
    Pause {
        reason: Option<String>,
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
        at: DateTime<Utc>,
    },
    Abort {
        reason: String,
        at: DateTime<Utc>,
    },
}

impl CampaignCommand {
    /// The verb an operator would use, for refusals that name the attempted action.
    pub fn action(&self) -> &'static str {
        match self {
            CampaignCommand::Create { .. } => "create",
            CampaignCommand::Start { .. } => "start",
            CampaignCommand::Pause { .. } => "pause",
            CampaignCommand::Resume { .. } => "resume",
            CampaignCommand::Cancel { .. } => "cancel",
            CampaignCommand::Complete { .. } => "complete",
            CampaignCommand::Abort { .. } => "abort",
        }
    }
}
