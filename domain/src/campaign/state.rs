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
use crate::rollout::{minute_bucket, RolloutPlan};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

    pub fn as_str(self) -> &'static str {
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

    /// The statuses the process manager drives: waiting for its start, or rolling out.
    pub const ACTIVE: [CampaignStatus; 2] = [CampaignStatus::Scheduled, CampaignStatus::Running];

    /// The statuses a campaign never leaves.
    pub const TERMINAL: [CampaignStatus; 3] =
        [CampaignStatus::Completed, CampaignStatus::Cancelled, CampaignStatus::Aborted];

    /// True once the campaign is over: completed, cancelled or aborted.
    pub fn is_terminal(&self) -> bool {
        match self {
            CampaignStatus::Completed | CampaignStatus::Cancelled | CampaignStatus::Aborted => true,
            CampaignStatus::Draft | CampaignStatus::Scheduled | CampaignStatus::Running | CampaignStatus::Paused => {
                false
            }
        }
    }
}

impl fmt::Display for CampaignStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that names no campaign status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown campaign status {value:?}")]
pub struct UnknownCampaignStatus {
    pub value: String,
}

impl FromStr for CampaignStatus {
    type Err = UnknownCampaignStatus;
    fn from_str(s: &str) -> Result<Self, UnknownCampaignStatus> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownCampaignStatus { value: s.chars().take(64).collect() })
    }
}

/// The firmware a campaign ships, copied at creation so the stream is self-describing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CampaignFirmware {
    pub id: FirmwareId,
    pub name: String,
    pub version: String,
    pub device_model: String,
}

/// Who a campaign targets: explicit devices and/or a filter over the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Target {
    #[serde(default)]
    pub device_ids: Vec<DeviceId>,
    #[serde(default)]
    pub filter: Option<TargetFilter>,
    /// Devices that come to match the filter later join while the campaign runs.
    #[serde(default)]
    pub continuous: bool,
}

/// Inventory criteria; every given criterion must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TargetFilter {
    #[serde(default)]
    pub device_model: Option<String>,
    #[serde(default)]
    pub hardware_versions: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub firmware_version: Option<String>,
}

impl TargetFilter {
    /// Whether a device with this profile is targeted by the filter, for firmware built for `firmware_model`.
    pub fn matches(&self, firmware_model: &str, profile: &crate::device::DeviceProfile) -> bool {
        profile.device_model == firmware_model
            && self.device_model.as_deref().is_none_or(|m| m == firmware_model)
            && (self.hardware_versions.is_empty()
                || profile.hardware_version.as_ref().is_some_and(|h| self.hardware_versions.contains(h)))
            && self.tags.iter().all(|t| profile.tags.contains(t))
            && self.firmware_version.as_ref().is_none_or(|v| profile.firmware_version.as_ref() == Some(v))
    }
}

/// Who is in which wave, fixed at start by a seeded, stratified shuffle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Membership {
    pub seed: u64,
    pub waves: Vec<Vec<DeviceId>>,
    pub excluded: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    pub id: Option<CampaignId>,
    pub name: String,
    pub firmware: Option<CampaignFirmware>,
    pub target: Target,
    #[serde(default)]
    pub rollout: RolloutPlan,
    #[serde(default)]
    pub rollback_of: Option<CampaignId>,
    pub status: CampaignStatus,
    pub created_at: Option<DateTime<Utc>>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub membership: Option<Membership>,
    pub current_wave: Option<usize>,
    /// Per wave: devices assigned so far (a cursor into the wave's members).
    pub assigned: Vec<u32>,
    /// Per wave: members that could not be assigned (busy with another update).
    pub skipped: Vec<u32>,
    pub awaiting_approval: bool,
    /// Per wave: when it started.
    #[serde(default)]
    pub wave_started_at: Vec<Option<DateTime<Utc>>>,
    /// The reason given with the last pause, cancel or abort that had one.
    #[serde(default)]
    pub last_reason: Option<String>,
    /// When the status or the current wave last changed.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    /// How often the status changed since creation.
    #[serde(default)]
    pub status_changes: u32,
    /// The wave whose successor an operator approved.
    #[serde(default)]
    pub approved_wave: Option<usize>,
    /// Who created the campaign (an actor), when recorded.
    #[serde(default)]
    pub created_by: Option<String>,
    /// Assignments in the minute bucket `rate_minute`, for the rate limit.
    pub rate_minute: Option<DateTime<Utc>>,
    pub rate_count: u32,
}

impl Campaign {
    /// The shape of this struct as snapshots store it. Bump it with any change to
    /// its fields or their meaning: snapshots of another version are then dropped
    /// and each campaign is rebuilt from its events (`docs/events.md`). The golden
    /// test `the_campaign_snapshot_shape_is_unchanged` fails until you do.
    pub const SNAPSHOT_VERSION: u32 = 2;

    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    pub fn wave_members(&self, wave: usize) -> &[DeviceId] {
        self.membership.as_ref().and_then(|m| m.waves.get(wave)).map_or(&[], Vec::as_slice)
    }

    pub fn is_member(&self, device: &DeviceId) -> bool {
        self.membership.as_ref().is_some_and(|m| m.waves.iter().any(|w| w.contains(device)))
    }

    pub fn wave_count(&self) -> usize {
        self.membership.as_ref().map_or(0, |m| m.waves.len())
    }

    /// Members of `wave` not assigned yet.
    pub fn unassigned(&self, wave: usize) -> u32 {
        let members = self.wave_members(wave).len() as u32;
        members.saturating_sub(self.assigned.get(wave).copied().unwrap_or(0))
    }

    /// Assignments made in the minute bucket of `now`.
    pub fn assigned_in_minute(&self, now: DateTime<Utc>) -> u32 {
        if self.rate_minute == Some(minute_bucket(now)) {
            self.rate_count
        } else {
            0
        }
    }

    fn refuse(&self, command: &CampaignCommand) -> CampaignError {
        CampaignError::InvalidTransition { action: command.action(), status: self.status }
    }

    fn validate_new(name: &str, target: &Target, rollout: &RolloutPlan) -> Result<(), CampaignError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(CampaignError::BadName);
        }
        Self::validate_plan(target, rollout)
    }

    /// Checks a target and a rollout plan as creating a campaign does; the
    /// plan preview refuses what creation would.
    pub fn validate_plan(target: &Target, rollout: &RolloutPlan) -> Result<(), CampaignError> {
        if target.device_ids.is_empty() && target.filter.is_none() {
            return Err(CampaignError::EmptyTarget);
        }
        let mut seen = BTreeSet::new();
        if let Some(dup) = target.device_ids.iter().find(|d| !seen.insert(*d)) {
            return Err(CampaignError::DuplicateDevice(dup.to_string()));
        }
        rollout.validate()?;
        Ok(())
    }

    fn decide_start(
        &self,
        membership: Option<Membership>,
        at: DateTime<Utc>,
    ) -> Result<Vec<CampaignEvent>, CampaignError> {
        use CampaignStatus as S;
        if !matches!(self.status, S::Draft | S::Scheduled) {
            return Err(CampaignError::InvalidTransition { action: "start", status: self.status });
        }
        match (membership, self.rollout.start_at) {
            (None, Some(start_at)) if start_at > at && self.status == S::Draft => {
                Ok(vec![CampaignEvent::CampaignScheduled { start_at, at }])
            }
            (None, _) => Err(CampaignError::MembershipMissing),
            (Some(m), _) if m.waves.iter().all(Vec::is_empty) => Err(CampaignError::NoMembers),
            (Some(m), _) => Ok(vec![
                CampaignEvent::CampaignStarted { at },
                CampaignEvent::MembershipResolved { seed: m.seed, waves: m.waves, excluded: m.excluded, at },
            ]),
        }
    }

    fn decide_rollout_step(&self, command: CampaignCommand) -> Result<Vec<CampaignEvent>, CampaignError> {
        let waves = self.wave_count();
        match command {
            CampaignCommand::StartWave { wave, passed, at } => {
                let expected = self.current_wave.map_or(0, |w| w + 1);
                if self.current_wave.is_some_and(|w| wave <= w) {
                    return Ok(vec![]);
                }
                if wave != expected || wave >= waves {
                    return Err(CampaignError::WaveOutOfOrder { wave, current: self.current_wave, waves });
                }
                Ok(vec![CampaignEvent::WaveStarted { wave, passed, at }])
            }
            CampaignCommand::RecordAssignments { wave, through, skipped, at } => {
                if self.current_wave != Some(wave) {
                    return Err(CampaignError::WaveOutOfOrder { wave, current: self.current_wave, waves });
                }
                let done = self.assigned.get(wave).copied().unwrap_or(0);
                if through <= done {
                    return Ok(vec![]);
                }
                let members = self.wave_members(wave).len() as u32;
                Ok(vec![CampaignEvent::AssignmentsRecorded { wave, through: through.min(members), skipped, at }])
            }
            CampaignCommand::AwaitApproval { wave, passed, at } => {
                if self.awaiting_approval && self.current_wave == Some(wave) {
                    return Ok(vec![]);
                }
                Ok(vec![CampaignEvent::ApprovalRequested { wave, passed, at }])
            }
            _ => Ok(vec![]),
        }
    }
}

impl Decide for Campaign {
    fn decide(&self, command: CampaignCommand) -> Result<Vec<CampaignEvent>, CampaignError> {
        use CampaignStatus as S;
        if let CampaignCommand::Create { id, name, firmware, target, rollout, created_by, at } = command {
            if self.exists() {
                return Err(CampaignError::AlreadyExists);
            }
            Self::validate_new(&name, &target, &rollout)?;
            let name = name.trim().to_owned();
            return Ok(vec![CampaignEvent::CampaignCreated {
                id,
                name,
                firmware,
                target,
                rollout,
                rollback_of: None,
                created_by: Some(created_by),
                at,
            }]);
        }
        if let CampaignCommand::CreateRollback { id, of, name, firmware, devices, at } = command {
            if self.exists() {
                return Ok(vec![]);
            }
            let target = Target { device_ids: devices, filter: None, continuous: false };
            let rollout = RolloutPlan::default();
            Self::validate_new(&name, &target, &rollout)?;
            return Ok(vec![CampaignEvent::CampaignCreated {
                id,
                name,
                firmware,
                target,
                rollout,
                rollback_of: Some(of),
                created_by: None,
                at,
            }]);
        }
        if !self.exists() {
            return Err(CampaignError::NotFound);
        }
        let event = match (command, self.status) {
            (CampaignCommand::Start { membership, at }, _) => return self.decide_start(membership, at),
            (
                command @ (CampaignCommand::StartWave { .. }
                | CampaignCommand::RecordAssignments { .. }
                | CampaignCommand::AwaitApproval { .. }),
                S::Running,
            ) => return self.decide_rollout_step(command),
            (CampaignCommand::AddMembers { devices, at }, S::Running | S::Paused) if self.target.continuous => {
                let mut fresh: Vec<DeviceId> = devices.into_iter().filter(|d| !self.is_member(d)).collect();
                fresh.sort();
                fresh.dedup();
                let Some(wave) = self.wave_count().checked_sub(1) else { return Ok(vec![]) };
                if fresh.is_empty() {
                    return Ok(vec![]);
                }
                CampaignEvent::MembersJoined { wave, devices: fresh, at }
            }
            (CampaignCommand::Approve { by, override_reason, at }, S::Running | S::Paused) => {
                let Some(wave) = self.current_wave.filter(|_| self.awaiting_approval) else {
                    return Err(CampaignError::NothingToApprove);
                };
                if self.created_by.as_deref() == Some(by.as_str()) && override_reason.is_none() {
                    return Err(CampaignError::OwnApproval(by));
                }
                CampaignEvent::WaveApproved { wave, by: Some(by), override_reason, at }
            }
            (CampaignCommand::Edit { name, firmware, target, rollout, at }, S::Draft) => {
                Self::validate_new(&name, &target, &rollout)?;
                let name = name.trim().to_owned();
                let same = name == self.name
                    && self.firmware.as_ref() == Some(&firmware)
                    && target == self.target
                    && rollout == self.rollout;
                if same {
                    return Ok(vec![]);
                }
                CampaignEvent::CampaignEdited { name, firmware, target, rollout, at }
            }
            (CampaignCommand::Delete { at }, S::Draft) => CampaignEvent::CampaignDeleted { at },
            (CampaignCommand::Pause { reason, gate, at }, S::Running) => {
                CampaignEvent::CampaignPaused { reason, gate, at }
            }
            (CampaignCommand::Resume { at }, S::Paused) => CampaignEvent::CampaignResumed { at },
            (CampaignCommand::Cancel { reason, at }, S::Draft | S::Scheduled | S::Running | S::Paused) => {
                CampaignEvent::CampaignCancelled { reason, at }
            }
            (CampaignCommand::Complete { passed, at }, S::Running) => CampaignEvent::CampaignCompleted { passed, at },
            (CampaignCommand::Abort { reason, gate, at }, S::Running | S::Paused) => {
                CampaignEvent::CampaignAborted { reason, gate, at }
            }
            (command, _) => return Err(self.refuse(&command)),
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

    async fn handle(&mut self, command: CampaignCommand, _: &(), sink: &EventSink<Self>) -> Result<(), CampaignError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: CampaignEvent) {
        self.note_change(&event);
        match event {
            CampaignEvent::CampaignCreated { id, name, firmware, target, rollout, rollback_of, created_by, at } => {
                self.rollback_of = rollback_of;
                self.created_by = created_by;
                self.id = Some(id);
                self.name = name;
                self.firmware = Some(firmware);
                self.target = target;
                self.rollout = rollout;
                self.status = CampaignStatus::Draft;
                self.created_at = Some(at);
            }
            CampaignEvent::CampaignEdited { name, firmware, target, rollout, .. } => {
                self.name = name;
                self.firmware = Some(firmware);
                self.target = target;
                self.rollout = rollout;
            }
            CampaignEvent::CampaignDeleted { .. } => *self = Campaign::default(),
            CampaignEvent::CampaignScheduled { start_at, .. } => {
                self.status = CampaignStatus::Scheduled;
                self.scheduled_for = Some(start_at);
            }
            CampaignEvent::CampaignStarted { at } => {
                self.status = CampaignStatus::Running;
                self.started_at = Some(at);
            }
            CampaignEvent::MembershipResolved { seed, waves, excluded, .. } => {
                self.assigned = vec![0; waves.len()];
                self.skipped = vec![0; waves.len()];
                self.wave_started_at = vec![None; waves.len()];
                self.membership = Some(Membership { seed, waves, excluded });
            }
            CampaignEvent::MembersJoined { wave, devices, .. } => {
                if let Some(members) = self.membership.as_mut().and_then(|m| m.waves.get_mut(wave)) {
                    members.extend(devices);
                }
            }
            CampaignEvent::WaveStarted { wave, at, .. } => {
                self.current_wave = Some(wave);
                self.awaiting_approval = false;
                if self.wave_started_at.len() <= wave {
                    self.wave_started_at.resize(wave + 1, None);
                }
                self.wave_started_at[wave] = Some(at);
            }
            CampaignEvent::AssignmentsRecorded { wave, through, skipped, at } => {
                let before = self.assigned.get(wave).copied().unwrap_or(0);
                if let Some(slot) = self.assigned.get_mut(wave) {
                    *slot = through;
                }
                if let Some(slot) = self.skipped.get_mut(wave) {
                    *slot += skipped;
                }
                let bucket = minute_bucket(at);
                if self.rate_minute != Some(bucket) {
                    self.rate_minute = Some(bucket);
                    self.rate_count = 0;
                }
                self.rate_count += through.saturating_sub(before);
            }
            CampaignEvent::ApprovalRequested { .. } => self.awaiting_approval = true,
            CampaignEvent::WaveApproved { wave, .. } => {
                self.awaiting_approval = false;
                self.approved_wave = Some(wave);
            }
            CampaignEvent::CampaignPaused { .. } => self.status = CampaignStatus::Paused,
            CampaignEvent::CampaignResumed { .. } => self.status = CampaignStatus::Running,
            CampaignEvent::CampaignCancelled { at, .. } => {
                self.status = CampaignStatus::Cancelled;
                self.ended_at = Some(at);
            }
            CampaignEvent::CampaignCompleted { at, .. } => {
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

impl Campaign {
    /// `updated_at`, `last_reason` and `status_changes`, as the campaigns read model keeps
    /// them: the time of the last change of status or wave, the last reason given, and how
    /// many status changes there were.
    fn note_change(&mut self, event: &CampaignEvent) {
        let (at, reason, status_change) = match event {
            CampaignEvent::CampaignCreated { at, .. }
            | CampaignEvent::CampaignEdited { at, .. }
            | CampaignEvent::WaveStarted { at, .. } => (*at, None, false),
            CampaignEvent::CampaignScheduled { at, .. }
            | CampaignEvent::CampaignStarted { at }
            | CampaignEvent::CampaignResumed { at }
            | CampaignEvent::CampaignCompleted { at, .. } => (*at, None, true),
            CampaignEvent::CampaignPaused { reason, at, .. } | CampaignEvent::CampaignCancelled { reason, at } => {
                (*at, reason.as_ref(), true)
            }
            CampaignEvent::CampaignAborted { reason, at, .. } => (*at, Some(reason), true),
            CampaignEvent::MembershipResolved { .. }
            | CampaignEvent::CampaignDeleted { .. }
            | CampaignEvent::MembersJoined { .. }
            | CampaignEvent::AssignmentsRecorded { .. }
            | CampaignEvent::ApprovalRequested { .. }
            | CampaignEvent::WaveApproved { .. } => return,
        };
        if status_change {
            self.status_changes += 1;
        }
        self.updated_at = Some(at);
        if let Some(reason) = reason {
            self.last_reason = Some(reason.clone());
        }
    }
}
