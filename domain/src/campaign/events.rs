use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::state::{CampaignFirmware, Target};
use crate::ids::CampaignId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CampaignEvent {
    CampaignCreated {
        id: CampaignId,
        name: String,
        firmware: CampaignFirmware,
        target: Target,
        at: DateTime<Utc>,
    },
    CampaignStarted {
        at: DateTime<Utc>,
    },
    CampaignPaused {
        reason: Option<String>,
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
        at: DateTime<Utc>,
    },
    CampaignAborted {
        reason: String,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for CampaignEvent {
    fn event_type(&self) -> String {
        match self {
            CampaignEvent::CampaignCreated { .. } => "CampaignCreated",
            CampaignEvent::CampaignStarted { .. } => "CampaignStarted",
            CampaignEvent::CampaignPaused { .. } => "CampaignPaused",
            CampaignEvent::CampaignResumed { .. } => "CampaignResumed",
            CampaignEvent::CampaignCancelled { .. } => "CampaignCancelled",
            CampaignEvent::CampaignCompleted { .. } => "CampaignCompleted",
            CampaignEvent::CampaignAborted { .. } => "CampaignAborted",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
