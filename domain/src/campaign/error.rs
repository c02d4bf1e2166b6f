use super::state::CampaignStatus;
use crate::refusal::{Refusal, Refused};
use crate::rollout::PlanError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CampaignError {
    #[error("campaign already exists")]
    AlreadyExists,
    #[error("campaign does not exist")]
    NotFound,
    #[error("cannot {action} a campaign that is {status}")]
    InvalidTransition { action: &'static str, status: CampaignStatus },
    #[error("campaign name must be 1 to 200 characters")]
    BadName,
    #[error("campaign target names no device and no filter")]
    EmptyTarget,
    #[error("campaign target lists device {0} more than once")]
    DuplicateDevice(String),
    #[error(transparent)]
    BadPlan(#[from] PlanError),
    #[error("campaign cannot start without a membership")]
    MembershipMissing,
    #[error("the membership matches no device")]
    NoMembers,
    #[error("wave {wave} does not follow the current wave {current:?} of {waves}")]
    WaveOutOfOrder { wave: usize, current: Option<usize>, waves: usize },
    #[error("no wave is waiting for approval")]
    NothingToApprove,
    #[error("{0} created this campaign and may not approve its waves: another approver must, or an admin with a recorded override")]
    OwnApproval(String),
}

impl Refused for CampaignError {
    fn refusal(&self) -> Refusal {
        match self {
            CampaignError::AlreadyExists
            | CampaignError::InvalidTransition { .. }
            | CampaignError::WaveOutOfOrder { .. }
            | CampaignError::NothingToApprove => Refusal::Conflict,
            CampaignError::NotFound => Refusal::NotFound,
            CampaignError::BadName
            | CampaignError::EmptyTarget
            | CampaignError::DuplicateDevice(_)
            | CampaignError::BadPlan(_)
            | CampaignError::MembershipMissing
            | CampaignError::NoMembers => Refusal::Invalid,
            CampaignError::OwnApproval(_) => Refusal::Forbidden,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            CampaignError::AlreadyExists => "campaign.already_exists",
            CampaignError::NotFound => "campaign.not_found",
            CampaignError::InvalidTransition { .. } => "campaign.invalid_transition",
            CampaignError::BadName => "campaign.bad_name",
            CampaignError::EmptyTarget => "campaign.empty_target",
            CampaignError::DuplicateDevice(_) => "campaign.duplicate_device",
            CampaignError::BadPlan(e) => e.code(),
            CampaignError::MembershipMissing => "campaign.membership_missing",
            CampaignError::NoMembers => "campaign.no_members",
            CampaignError::WaveOutOfOrder { .. } => "campaign.wave_out_of_order",
            CampaignError::NothingToApprove => "campaign.nothing_to_approve",
            CampaignError::OwnApproval(_) => "campaign.own_approval",
        }
    }
}
