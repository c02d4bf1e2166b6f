use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{CampaignCommand, CampaignError, CampaignEvent};
use crate::decide::Decide;
use crate::ids::{CampaignId, DeviceId, FirmwareId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    #[default]
    Draft,
    Scheduled,
    Running,
    Paused,
    Completed,
    Cancelled,
    Aborted,
}

impl CampaignStatus {
    pub const ALL: [CampaignStatus; 7] = [
        CampaignStatus::Draft,
        CampaignStatus::Scheduled,
        CampaignStatus::Running,
        CampaignStatus::Paused,
        CampaignStatus::Completed,
        CampaignStatus::Cancelled,
        CampaignStatus::Aborted,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            CampaignStatus::Draft => "draft",
            CampaignStatus::Scheduled => "scheduled",
            CampaignStatus::Running => "running",
            CampaignStatus::Paused => "paused",
            CampaignStatus::Completed => "completed",
            CampaignStatus::Cancelled => "cancelled",
            CampaignStatus::Aborted => "aborted",
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            CampaignStatus::Completed | CampaignStatus::Cancelled | CampaignStatus::Aborted
        )
    }
}

impl fmt::Display for CampaignStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CampaignStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown campaign status {s:?}"))
    }
}

/// The firmware a campaign ships, copied at creation so the stream is self-describing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignFirmware {
    pub id: FirmwareId,
    pub name: String,
    pub version: String,
    pub device_model: String,
}

/// Who a campaign targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Target {
    #[serde(default)]
    pub device_ids: Vec<DeviceId>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    pub id: Option<CampaignId>,
    pub name: String,
    pub firmware: Option<CampaignFirmware>,
    pub target: Target,
    pub status: CampaignStatus,
    pub created_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl Campaign {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    fn refuse(&self, command: &CampaignCommand) -> CampaignError {
        CampaignError::InvalidTransition {
            action: command.action(),
            status: self.status,
        }
    }

    fn validate_new(name: &str, target: &Target) -> Result<(), CampaignError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(CampaignError::BadName);
        }
        if target.device_ids.is_empty() {
            return Err(CampaignError::EmptyTarget);
        }
        let mut seen = BTreeSet::new();
        if let Some(dup) = target.device_ids.iter().find(|d| !seen.insert(*d)) {
            return Err(CampaignError::DuplicateDevice(dup.to_string()));
        }
        Ok(())
    }
}

impl Decide for Campaign {
    fn decide(&self, command: CampaignCommand) -> Result<Vec<CampaignEvent>, CampaignError> {
        use CampaignStatus as S;
        if let CampaignCommand::Create {
            id,
            name,
            firmware,
            target,
            at,
        } = command
        {
            if self.exists() {
                return Err(CampaignError::AlreadyExists);
            }
            Self::validate_new(&name, &target)?;
            let name = name.trim().to_owned();
            return Ok(vec![CampaignEvent::CampaignCreated {
                id,
                name,
                firmware,
                target,
                at,
            }]);
        }
        if !self.exists() {
            return Err(CampaignError::NotFound);
        }
        let event = match (&command, self.status) {
            (CampaignCommand::Start { at }, S::Draft | S::Scheduled) => {
                CampaignEvent::CampaignStarted { at: *at }
            }
            (CampaignCommand::Pause { reason, at }, S::Running) => CampaignEvent::CampaignPaused {
                reason: reason.clone(),
                at: *at,
            },
            (CampaignCommand::Resume { at }, S::Paused) => {
                CampaignEvent::CampaignResumed { at: *at }
            }
            (
                CampaignCommand::Cancel { reason, at },
                S::Draft | S::Scheduled | S::Running | S::Paused,
            ) => CampaignEvent::CampaignCancelled {
                reason: reason.clone(),
                at: *at,
            },
            (CampaignCommand::Complete { at }, S::Running) => {
                CampaignEvent::CampaignCompleted { at: *at }
            }
            (CampaignCommand::Abort { reason, at }, S::Running | S::Paused) => {
                CampaignEvent::CampaignAborted {
                    reason: reason.clone(),
                    at: *at,
                }
            }
            _ => return Err(self.refuse(&command)),
        };
        Ok(vec![event])
    }
}

impl Aggregate for Campaign {
    const TYPE: &'static str = "Campaign";
    type Command = CampaignCommand;
    type Event = CampaignEvent;
    type Error = CampaignError;
    type Services = ();

    async fn handle(
        &mut self,
        command: CampaignCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), CampaignError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: CampaignEvent) {
        match event {
            CampaignEvent::CampaignCreated {
                id,
                name,
                firmware,
                target,
                at,
            } => {
                self.id = Some(id);
                self.name = name;
                self.firmware = Some(firmware);
                self.target = target;
                self.status = CampaignStatus::Draft;
                self.created_at = Some(at);
            }
            CampaignEvent::CampaignStarted { at } => {
                self.status = CampaignStatus::Running;
                self.started_at = Some(at);
            }
            CampaignEvent::CampaignPaused { .. } => self.status = CampaignStatus::Paused,
            CampaignEvent::CampaignResumed { .. } => self.status = CampaignStatus::Running,
            CampaignEvent::CampaignCancelled { at, .. } => {
                self.status = CampaignStatus::Cancelled;
                self.ended_at = Some(at);
            }
            CampaignEvent::CampaignCompleted { at } => {
                self.status = CampaignStatus::Completed;
                self.ended_at = Some(at);
            }
            CampaignEvent::CampaignAborted { at, .. } => {
                self.status = CampaignStatus::Aborted;
                self.ended_at = Some(at);
            }
        }
    }
}
