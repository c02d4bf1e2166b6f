use super::state::CampaignStatus;
use crate::refusal::Refusal;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CampaignError {
    #[error("campaign already exists")]
    AlreadyExists,
    #[error("campaign does not exist")]
    NotFound,
    #[error("cannot {action} a campaign that is {status}")]
    InvalidTransition {
        action: &'static str,
        status: CampaignStatus,
    },
    #[error("campaign name must be 1 to 200 characters")]
    BadName,
    #[error("campaign target names no device")]
    EmptyTarget,
    #[error("campaign target lists device {0} more than once")]
    DuplicateDevice(String),
}

impl CampaignError {
    pub fn refusal(&self) -> Refusal {
        match self {
            CampaignError::AlreadyExists | CampaignError::InvalidTransition { .. } => {
                Refusal::Conflict
            }
            CampaignError::NotFound => Refusal::NotFound,
            CampaignError::BadName
            | CampaignError::EmptyTarget
            | CampaignError::DuplicateDevice(_) => Refusal::Invalid,
        }
    }
    pub fn code(&self) -> &'static str {
        match self {
            CampaignError::AlreadyExists => "campaign.already_exists",
            CampaignError::NotFound => "campaign.not_found",
            CampaignError::InvalidTransition { .. } => "campaign.invalid_transition",
            CampaignError::BadName => "campaign.bad_name",
            CampaignError::EmptyTarget => "campaign.empty_target",
            CampaignError::DuplicateDevice(_) => "campaign.duplicate_device",
        }
    }
}
