use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::decide::Decide;
use crate::ids::{CampaignId, FirmwareId};
use crate::refusal::{Refusal, Refused};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum UpdateState {
    Assigned,
    Notified,
    Downloading,
    Downloaded,
    Installing,
    Succeeded,
    Failed,
    Rejected,
    TimedOut,
    Cancelled,
    RolledBack,
}

impl UpdateState {
    pub const ALL: [UpdateState; 11] = [
        UpdateState::Assigned,
        UpdateState::Notified,
        UpdateState::Downloading,
        UpdateState::Downloaded,
        UpdateState::Installing,
        UpdateState::Succeeded,
        UpdateState::Failed,
        UpdateState::Rejected,
        UpdateState::TimedOut,
        UpdateState::Cancelled,
        UpdateState::RolledBack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpdateState::Assigned => "assigned",
            UpdateState::Notified => "notified",
            UpdateState::Downloading => "downloading",
            UpdateState::Downloaded => "downloaded",
            UpdateState::Installing => "installing",
            UpdateState::Succeeded => "succeeded",
            UpdateState::Failed => "failed",
            UpdateState::Rejected => "rejected",
            UpdateState::TimedOut => "timed_out",
            UpdateState::Cancelled => "cancelled",
            UpdateState::RolledBack => "rolled_back",
        }
    }

    /// The states of an update still under way: assigned and not yet finished.
    /// Queries that need the text bind `IN_FLIGHT.map(UpdateState::as_str)`.
    pub const IN_FLIGHT: [UpdateState; 5] = [
        UpdateState::Assigned,
        UpdateState::Notified,
        UpdateState::Downloading,
        UpdateState::Downloaded,
        UpdateState::Installing,
    ];

    /// True while the update is under way (the device may still report progress).
    pub fn is_in_flight(&self) -> bool {
        match self {
            UpdateState::Assigned
            | UpdateState::Notified
            | UpdateState::Downloading
            | UpdateState::Downloaded
            | UpdateState::Installing => true,
            UpdateState::Succeeded
            | UpdateState::Failed
            | UpdateState::Rejected
            | UpdateState::TimedOut
            | UpdateState::Cancelled
            | UpdateState::RolledBack => false,
        }
    }

    /// True once the update has its outcome; no report moves it any more.
    pub fn is_terminal(&self) -> bool {
        !self.is_in_flight()
    }

    /// Progress order within one update; reports may only move it forward.
    pub fn rank(&self) -> u8 {
        match self {
            UpdateState::Assigned => 0,
            UpdateState::Notified => 1,
            UpdateState::Downloading => 2,
            UpdateState::Downloaded => 3,
            UpdateState::Installing => 4,
            UpdateState::Succeeded
            | UpdateState::Failed
            | UpdateState::Rejected
            | UpdateState::TimedOut
            | UpdateState::Cancelled
            | UpdateState::RolledBack => 5,
        }
    }

    /// States a device may report itself.
    pub fn is_reportable(&self) -> bool {
        matches!(
            self,
            UpdateState::Downloading
                | UpdateState::Downloaded
                | UpdateState::Installing
                | UpdateState::Succeeded
                | UpdateState::Failed
                | UpdateState::Rejected
                | UpdateState::Cancelled
        )
    }
}

impl fmt::Display for UpdateState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that names no update state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown update state {value:?}")]
pub struct UnknownUpdateState {
    pub value: String,
}

impl FromStr for UpdateState {
    type Err = UnknownUpdateState;
    fn from_str(s: &str) -> Result<Self, UnknownUpdateState> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownUpdateState { value: s.chars().take(64).collect() })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateFirmware {
    pub id: FirmwareId,
    pub version: String,
}

/// Why an update was assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LaneKind {
    #[default]
    Update,
    /// Back to the previous good firmware; success ends in `rolled_back`.
    Rollback { of_action: u32 },
}

/// Where an assignment comes from: a campaign wave, and the how-manieth try it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Origin {
    pub campaign: Option<CampaignId>,
    // No serde defaults: events from before `wave` and `retry` existed are
    // `UpdateAssigned` 1.0, whose upcaster (`crate::upcast`) fills them in.
    pub wave: Option<u32>,
    /// 0 for the first try, then one more per retry.
    pub retry: u32,
    /// A single update's timeout: seconds without a report after which it times out
    /// (campaigns use their plan's `device_timeout_secs`). Absent when none was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u32>,
}

/// One update of the device: from assignment to its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lane {
    /// Numbered per device from 1; with the device id it is the hawkBit action id.
    pub action: u32,
    pub kind: LaneKind,
    pub origin: Origin,
    pub firmware: UpdateFirmware,
    pub from: Option<UpdateFirmware>,
    pub state: UpdateState,
    pub progress: Option<u8>,
    /// The server asked the device to cancel and awaits its answer (hawkBit's CANCELING).
    #[serde(default)]
    pub cancel_requested: bool,
    /// The last message about this update: the device's last report that had one, or the cancel handshake's.
    #[serde(default)]
    pub message: Option<String>,
    pub assigned_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IgnoredReason {
    /// The update had already ended; a late report never reopens it.
    Closed,
    /// The report would move the update backwards.
    OutOfOrder,
    /// The report names another action than the current one.
    StaleAction,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub enum DeviceUpdateCommand {
    Assign {
        origin: Origin,
        firmware: UpdateFirmware,
        from: Option<UpdateFirmware>,
        at: DateTime<Utc>,
    },
    /// Assigns the firmware the device ran before its last successful update.
    RollBack {
        origin: Origin,
        at: DateTime<Utc>,
    },
    MarkNotified {
        at: DateTime<Utc>,
    },
    Report {
        action: Option<u32>,
        state: UpdateState,
        progress: Option<u8>,
        message: Option<String>,
        at: DateTime<Utc>,
    },
    /// With `campaign`, only an update of that campaign is cancelled. An update the
    /// device has not fetched yet is cancelled at once; otherwise the device is asked
    /// and the update ends when it agrees, unless `force` closes it without asking.
    Cancel {
        campaign: Option<CampaignId>,
        force: bool,
        at: DateTime<Utc>,
    },
    /// The device's answer to a cancel request.
    AnswerCancel {
        action: u32,
        accepted: bool,
        message: Option<String>,
        at: DateTime<Utc>,
    },
    /// A download of the update's image was served (whole or a range).
    RecordDownload {
        action: u32,
        download: Download,
        at: DateTime<Utc>,
    },
    /// With `action`, only that update times out (the reader may be behind).
    TimeOut {
        action: Option<u32>,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DeviceUpdateEvent {
    /// Version 1.1: every field explicit (1.0 rows may lack `kind`, `origin.wave`, `origin.retry`).
    UpdateAssigned {
        action: u32,
        kind: LaneKind,
        origin: Origin,
        firmware: UpdateFirmware,
        from: Option<UpdateFirmware>,
        at: DateTime<Utc>,
    },
    DeviceNotified {
        action: u32,
        at: DateTime<Utc>,
    },
    ProgressReported {
        action: u32,
        state: UpdateState,
        progress: Option<u8>,
        message: Option<String>,
        at: DateTime<Utc>,
    },
    ReportIgnored {
        action: u32,
        state: UpdateState,
        reason: IgnoredReason,
        at: DateTime<Utc>,
    },
    UpdateCancelled {
        action: u32,
        at: DateTime<Utc>,
    },
    UpdateTimedOut {
        action: u32,
        at: DateTime<Utc>,
    },
    CancelRequested {
        action: u32,
        at: DateTime<Utc>,
    },
    /// The device refused to cancel; the update goes on.
    CancelRefused {
        action: u32,
        message: Option<String>,
        at: DateTime<Utc>,
    },
    DownloadServed {
        action: u32,
        download: Download,
        at: DateTime<Utc>,
    },
}

/// What download requests of one update delivered over a few seconds (range reads
/// from streaming clients are many, so they are summed rather than logged one by one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Download {
    pub firmware: FirmwareId,
    pub requests: u32,
    /// Lowest byte offset served.
    pub offset: u64,
    /// Bytes actually sent (less than asked when the device hung up).
    pub bytes: u64,
    /// Whether every response was sent in full.
    pub complete: bool,
    /// Whether a request asked for the whole image (no Range).
    pub whole: bool,
    /// `signed_url`, `target_token` or `gateway_token`.
    pub via: String,
}

impl DeviceUpdateEvent {
    /// The action (update number) the event belongs to.
    pub fn action(&self) -> u32 {
        match self {
            DeviceUpdateEvent::UpdateAssigned { action, .. }
            | DeviceUpdateEvent::DeviceNotified { action, .. }
            | DeviceUpdateEvent::ProgressReported { action, .. }
            | DeviceUpdateEvent::ReportIgnored { action, .. }
            | DeviceUpdateEvent::UpdateCancelled { action, .. }
            | DeviceUpdateEvent::UpdateTimedOut { action, .. }
            | DeviceUpdateEvent::CancelRequested { action, .. }
            | DeviceUpdateEvent::CancelRefused { action, .. }
            | DeviceUpdateEvent::DownloadServed { action, .. } => *action,
        }
    }
}

impl DomainEvent for DeviceUpdateEvent {
    fn event_type(&self) -> String {
        match self {
            DeviceUpdateEvent::UpdateAssigned { .. } => "UpdateAssigned",
            DeviceUpdateEvent::DeviceNotified { .. } => "DeviceNotified",
            DeviceUpdateEvent::ProgressReported { .. } => "ProgressReported",
            DeviceUpdateEvent::ReportIgnored { .. } => "ReportIgnored",
            DeviceUpdateEvent::UpdateCancelled { .. } => "UpdateCancelled",
            DeviceUpdateEvent::UpdateTimedOut { .. } => "UpdateTimedOut",
            DeviceUpdateEvent::CancelRequested { .. } => "CancelRequested",
            DeviceUpdateEvent::CancelRefused { .. } => "CancelRefused",
            DeviceUpdateEvent::DownloadServed { .. } => "DownloadServed",
        }
        .to_owned()
    }
    /// Bumped with an upcaster in `crate::upcast` whenever a shape changes.
    fn event_version(&self) -> String {
        match self {
            DeviceUpdateEvent::UpdateAssigned { .. } => "1.1",
            DeviceUpdateEvent::DeviceNotified { .. }
            | DeviceUpdateEvent::ProgressReported { .. }
            | DeviceUpdateEvent::ReportIgnored { .. }
            | DeviceUpdateEvent::UpdateCancelled { .. }
            | DeviceUpdateEvent::UpdateTimedOut { .. }
            | DeviceUpdateEvent::CancelRequested { .. }
            | DeviceUpdateEvent::CancelRefused { .. }
            | DeviceUpdateEvent::DownloadServed { .. } => "1.0",
        }
        .to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceUpdateError {
    #[error("device already has an active update (action {action}, {state})")]
    AlreadyActive { action: u32, state: UpdateState },
    #[error("device has no update")]
    NoUpdate,
    #[error("no previous good firmware is recorded for this device")]
    NothingToRollBackTo,
    #[error("device has no active update (last one is {state})")]
    NotActive { state: UpdateState },
    #[error("a device cannot report state {0}")]
    NotReportable(UpdateState),
    #[error("progress must be between 0 and 100, got {0}")]
    BadProgress(u8),
    #[error("action {action} is not the device's current update")]
    UnknownAction { action: u32 },
    #[error("no cancellation was requested for action {action}")]
    CancelNotRequested { action: u32 },
}

impl Refused for DeviceUpdateError {
    fn refusal(&self) -> Refusal {
        match self {
            DeviceUpdateError::AlreadyActive { .. }
            | DeviceUpdateError::NotActive { .. }
            | DeviceUpdateError::NothingToRollBackTo
            | DeviceUpdateError::CancelNotRequested { .. } => Refusal::Conflict,
            DeviceUpdateError::NoUpdate | DeviceUpdateError::UnknownAction { .. } => Refusal::NotFound,
            DeviceUpdateError::NotReportable(_) | DeviceUpdateError::BadProgress(_) => Refusal::Invalid,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            DeviceUpdateError::AlreadyActive { .. } => "device_update.already_active",
            DeviceUpdateError::NoUpdate => "device_update.none",
            DeviceUpdateError::NothingToRollBackTo => "device_update.no_rollback_target",
            DeviceUpdateError::NotActive { .. } => "device_update.not_active",
            DeviceUpdateError::NotReportable(_) => "device_update.state_not_reportable",
            DeviceUpdateError::BadProgress(_) => "device_update.bad_progress",
            DeviceUpdateError::UnknownAction { .. } => "device_update.unknown_action",
            DeviceUpdateError::CancelNotRequested { .. } => "device_update.cancel_not_requested",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceUpdate {
    pub current: Option<Lane>,
    /// Firmware the device ran successfully, oldest first; the last is what it runs
    /// now, the one before is where a rollback goes.
    pub installed: Vec<UpdateFirmware>,
    /// The last update that ended in success (or a rollback that worked): hawkBit's installed base.
    #[serde(default)]
    pub last_installed: Option<(u32, UpdateFirmware)>,
}

impl DeviceUpdate {
    /// The firmware a rollback would install.
    pub fn rollback_target(&self) -> Option<&UpdateFirmware> {
        self.installed.len().checked_sub(2).and_then(|i| self.installed.get(i))
    }

    pub fn active(&self) -> Option<&Lane> {
        self.current.as_ref().filter(|lane| !lane.state.is_terminal())
    }

    fn active_or_refuse(&self) -> Result<&Lane, DeviceUpdateError> {
        match &self.current {
            None => Err(DeviceUpdateError::NoUpdate),
            Some(lane) if lane.state.is_terminal() => Err(DeviceUpdateError::NotActive { state: lane.state }),
            Some(lane) => Ok(lane),
        }
    }

    fn next_action(&self) -> Result<u32, DeviceUpdateError> {
        if let Some(lane) = self.active() {
            return Err(DeviceUpdateError::AlreadyActive { action: lane.action, state: lane.state });
        }
        Ok(self.current.as_ref().map_or(1, |lane| lane.action + 1))
    }

    fn decide_report(
        &self,
        action: Option<u32>,
        state: UpdateState,
        progress: Option<u8>,
        message: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<Vec<DeviceUpdateEvent>, DeviceUpdateError> {
        if !state.is_reportable() {
            return Err(DeviceUpdateError::NotReportable(state));
        }
        if let Some(p) = progress.filter(|p| *p > 100) {
            return Err(DeviceUpdateError::BadProgress(p));
        }
        let lane = self.current.as_ref().ok_or(DeviceUpdateError::NoUpdate)?;
        // A rollback that worked is recorded as rolled back, not as another success.
        let state = match (state, lane.kind) {
            (UpdateState::Succeeded, LaneKind::Rollback { .. }) => UpdateState::RolledBack,
            _ => state,
        };
        let ignored = |reason| Ok(vec![DeviceUpdateEvent::ReportIgnored { action: lane.action, state, reason, at }]);
        if action.is_some_and(|a| a != lane.action) {
            return ignored(IgnoredReason::StaleAction);
        }
        if lane.state.is_terminal() {
            // The same final word twice is a duplicate, not news.
            return if lane.state == state { Ok(vec![]) } else { ignored(IgnoredReason::Closed) };
        }
        if state.rank() < lane.state.rank() {
            return ignored(IgnoredReason::OutOfOrder);
        }
        if state == UpdateState::Cancelled {
            // A device may only agree to a cancellation the server asked for.
            return match lane.cancel_requested {
                true => Ok(vec![DeviceUpdateEvent::UpdateCancelled { action: lane.action, at }]),
                false => Err(DeviceUpdateError::CancelNotRequested { action: lane.action }),
            };
        }
        if state == lane.state && progress.is_none_or(|p| Some(p) == lane.progress) {
            return Ok(vec![]);
        }
        Ok(vec![DeviceUpdateEvent::ProgressReported { action: lane.action, state, progress, message, at }])
    }
}

impl DeviceUpdate {
    /// A campaign re-sending an assignment it made (after a restart, before its cursor
    /// was recorded) repeats it: the device's current lane has that very origin.
    fn is_repeat(&self, origin: &Origin) -> bool {
        origin.campaign.is_some() && self.current.as_ref().is_some_and(|lane| lane.origin == *origin)
    }
}

impl Decide for DeviceUpdate {
    fn decide(&self, command: DeviceUpdateCommand) -> Result<Vec<DeviceUpdateEvent>, DeviceUpdateError> {
        match command {
            DeviceUpdateCommand::Assign { origin, firmware, from, at } => {
                if self.is_repeat(&origin) {
                    return Ok(vec![]);
                }
                let action = self.next_action()?;
                Ok(vec![DeviceUpdateEvent::UpdateAssigned {
                    action,
                    kind: LaneKind::Update,
                    origin,
                    firmware,
                    from,
                    at,
                }])
            }
            DeviceUpdateCommand::RollBack { origin, at } => {
                // Issue 11: unguarded, a repeat counted as skipped while the rollback ran, and
                // after it a second one took the device one version further back.
                if self.is_repeat(&origin) {
                    return Ok(vec![]);
                }
                let action = self.next_action()?;
                let firmware = self.rollback_target().cloned().ok_or(DeviceUpdateError::NothingToRollBackTo)?;
                let of_action = self.current.as_ref().map_or(0, |lane| lane.action);
                let from = self.installed.last().cloned();
                let kind = LaneKind::Rollback { of_action };
                Ok(vec![DeviceUpdateEvent::UpdateAssigned { action, kind, origin, firmware, from, at }])
            }
            DeviceUpdateCommand::MarkNotified { at } => {
                let lane = self.active_or_refuse()?;
                match lane.state {
                    UpdateState::Assigned => Ok(vec![DeviceUpdateEvent::DeviceNotified { action: lane.action, at }]),
                    _ => Ok(vec![]),
                }
            }
            DeviceUpdateCommand::Report { action, state, progress, message, at } => {
                self.decide_report(action, state, progress, message, at)
            }
            DeviceUpdateCommand::Cancel { campaign, force, at } => {
                let lane = self.active_or_refuse()?;
                if campaign.is_some() && lane.origin.campaign != campaign {
                    return Ok(vec![]);
                }
                let action = lane.action;
                // Nobody has fetched it yet, so nobody needs asking.
                if force || lane.state == UpdateState::Assigned {
                    return Ok(vec![DeviceUpdateEvent::UpdateCancelled { action, at }]);
                }
                if lane.cancel_requested {
                    return Ok(vec![]);
                }
                Ok(vec![DeviceUpdateEvent::CancelRequested { action, at }])
            }
            DeviceUpdateCommand::AnswerCancel { action, accepted, message, at } => {
                let lane = self.current.as_ref().ok_or(DeviceUpdateError::NoUpdate)?;
                if lane.action != action {
                    return Err(DeviceUpdateError::UnknownAction { action });
                }
                if lane.state == UpdateState::Cancelled {
                    return Ok(vec![]);
                }
                if lane.state.is_terminal() {
                    return Err(DeviceUpdateError::NotActive { state: lane.state });
                }
                if !lane.cancel_requested {
                    return Err(DeviceUpdateError::CancelNotRequested { action });
                }
                Ok(vec![match accepted {
                    true => DeviceUpdateEvent::UpdateCancelled { action, at },
                    false => DeviceUpdateEvent::CancelRefused { action, message, at },
                }])
            }
            DeviceUpdateCommand::RecordDownload { action, download, at } => {
                let lane = self.current.as_ref().ok_or(DeviceUpdateError::NoUpdate)?;
                // Downloads of an earlier, closed action are still worth recording.
                if action > lane.action || action == 0 {
                    return Err(DeviceUpdateError::UnknownAction { action });
                }
                Ok(vec![DeviceUpdateEvent::DownloadServed { action, download, at }])
            }
            DeviceUpdateCommand::TimeOut { action, at } => {
                let lane = self.active_or_refuse()?;
                if action.is_some_and(|a| a != lane.action) {
                    return Ok(vec![]);
                }
                Ok(vec![DeviceUpdateEvent::UpdateTimedOut { action: lane.action, at }])
            }
        }
    }
}

impl Aggregate for DeviceUpdate {
    const TYPE: &'static str = "DeviceUpdate";
    type Command = DeviceUpdateCommand;
    type Event = DeviceUpdateEvent;
    type Error = DeviceUpdateError;
    type Services = ();

    async fn handle(
        &mut self,
        command: DeviceUpdateCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DeviceUpdateError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: DeviceUpdateEvent) {
        // As the updates read model folds them, so a command's answer and a later read agree.
        let set_state = |lane: &mut Option<Lane>, state: UpdateState, message: Option<String>, at| {
            if let Some(lane) = lane {
                lane.state = state;
                lane.updated_at = at;
                lane.message = message.or(lane.message.take());
                if state.is_terminal() {
                    lane.cancel_requested = false;
                }
            }
        };
        match event {
            DeviceUpdateEvent::UpdateAssigned { action, kind, origin, firmware, from, at } => {
                // The first update tells us what the device ran before.
                if self.installed.is_empty() {
                    self.installed.extend(from.clone());
                }
                self.current = Some(Lane {
                    action,
                    kind,
                    origin,
                    firmware,
                    from,
                    state: UpdateState::Assigned,
                    progress: None,
                    cancel_requested: false,
                    message: None,
                    assigned_at: at,
                    updated_at: at,
                });
            }
            DeviceUpdateEvent::DeviceNotified { at, .. } => {
                set_state(&mut self.current, UpdateState::Notified, None, at)
            }
            DeviceUpdateEvent::ProgressReported { state, progress, message, at, .. } => {
                set_state(&mut self.current, state, message, at);
                if let Some(lane) = &mut self.current {
                    lane.progress = progress.or(lane.progress);
                    match state {
                        UpdateState::Succeeded => self.installed.push(lane.firmware.clone()),
                        UpdateState::RolledBack => {
                            self.installed.pop();
                        }
                        _ => {}
                    }
                    if matches!(state, UpdateState::Succeeded | UpdateState::RolledBack) {
                        self.last_installed = Some((lane.action, lane.firmware.clone()));
                    }
                }
            }
            DeviceUpdateEvent::ReportIgnored { .. } => {}
            DeviceUpdateEvent::UpdateCancelled { at, .. } => {
                set_state(&mut self.current, UpdateState::Cancelled, None, at)
            }
            DeviceUpdateEvent::UpdateTimedOut { at, .. } => {
                set_state(&mut self.current, UpdateState::TimedOut, None, at)
            }
            DeviceUpdateEvent::CancelRequested { at, .. } => {
                if let Some(lane) = &mut self.current {
                    lane.cancel_requested = true;
                    lane.message = Some("cancel requested".into());
                    lane.updated_at = at;
                }
            }
            DeviceUpdateEvent::CancelRefused { message, at, .. } => {
                if let Some(lane) = &mut self.current {
                    lane.cancel_requested = false;
                    lane.message = Some(message.unwrap_or_else(|| "cancel refused by the device".into()));
                    lane.updated_at = at;
                }
            }
            DeviceUpdateEvent::DownloadServed { .. } => {}
        }
    }
}
