//! Folding a batch of update events over the devices' current rows, in memory.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use ota_domain::device_update::{DeviceUpdateEvent, LaneKind, UpdateState};
use ota_domain::EventRecord;
use uuid::Uuid;

/// A device's current update, as the `device_updates` row holds it.
pub type Current = super::queries::UpdateView;

/// A history row: new ones carry everything, existing ones only what changed.
#[derive(Debug, Clone)]
pub struct History {
    pub new: bool,
    pub current: Current,
    pub assigned_by: Option<String>,
    pub last_message: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
    /// For rollback lanes: the action rolled back.
    pub rolls_back: Option<i32>,
}

#[derive(Debug, Default)]
pub struct Changes {
    /// Final current rows of every touched device.
    pub current: BTreeMap<String, Current>,
    /// Touched history rows by (device, action).
    pub history: BTreeMap<(String, i32), History>,
    pub wave_deltas: HashMap<(Uuid, i32, String), i64>,
    pub state_deltas: HashMap<String, i64>,
}

impl Changes {
    fn count(&mut self, campaign: Option<Uuid>, wave: Option<i32>, state: &str, by: i64) {
        if let (Some(c), Some(w)) = (campaign, wave) {
            *self.wave_deltas.entry((c, w, state.to_owned())).or_default() += by;
        }
        *self.state_deltas.entry(state.to_owned()).or_default() += by;
    }
}

fn kind_str(kind: LaneKind) -> &'static str {
    match kind {
        LaneKind::Update => "update",
        LaneKind::Rollback { .. } => "rollback",
    }
}

pub fn fold(current: HashMap<String, Current>, events: &[(&EventRecord, DeviceUpdateEvent)]) -> Changes {
    let mut changes = Changes { current: current.into_iter().collect(), ..Changes::default() };
    for (record, event) in events {
        let device = record.aggregate_id.clone();
        match event {
            DeviceUpdateEvent::UpdateAssigned { action, kind, origin, firmware, from, at } => {
                let lane = Current {
                    device_id: device.clone(),
                    action: *action as i32,
                    kind: kind_str(*kind).to_owned(),
                    campaign_id: origin.campaign.map(|c| c.as_uuid()),
                    wave: origin.wave.map(|w| w as i32),
                    retry: origin.retry as i32,
                    firmware_id: firmware.id.as_uuid(),
                    firmware_version: firmware.version.clone(),
                    from_version: from.as_ref().map(|f| f.version.clone()),
                    state: UpdateState::Assigned.as_str().to_owned(),
                    progress: None,
                    message: None,
                    cancel_requested: false,
                    assigned_at: *at,
                    updated_at: *at,
                };
                // A retry replaces the device's earlier attempt in its wave's tally (not in the overall counts).
                if let Some(previous) = changes.current.get(&device) {
                    let same_wave = previous.campaign_id.is_some()
                        && previous.campaign_id == lane.campaign_id
                        && previous.wave.is_some()
                        && previous.wave == lane.wave;
                    if same_wave {
                        let (c, w, s) = (previous.campaign_id, previous.wave, previous.state.clone());
                        if let (Some(c), Some(w)) = (c, w) {
                            *changes.wave_deltas.entry((c, w, s)).or_default() -= 1;
                        }
                    }
                }
                changes.count(lane.campaign_id, lane.wave, UpdateState::Assigned.as_str(), 1);
                let rolls_back = match kind {
                    LaneKind::Rollback { of_action } => Some(*of_action as i32),
                    LaneKind::Update => None,
                };
                let history = History {
                    new: true,
                    current: lane.clone(),
                    assigned_by: record.meta().map(|m| m.actor.to_string()),
                    last_message: None,
                    finished_at: None,
                    rolls_back,
                };
                changes.history.insert((device.clone(), lane.action), history);
                changes.current.insert(device, lane);
            }
            DeviceUpdateEvent::DeviceNotified { action, at } => {
                transition(&mut changes, device, *action, UpdateState::Notified, None, None, *at)
            }
            DeviceUpdateEvent::ProgressReported { action, state, progress, message, at } => {
                transition(&mut changes, device, *action, *state, *progress, message.clone(), *at)
            }
            DeviceUpdateEvent::ReportIgnored { .. } => {}
            DeviceUpdateEvent::UpdateCancelled { action, at } => {
                transition(&mut changes, device, *action, UpdateState::Cancelled, None, None, *at)
            }
            DeviceUpdateEvent::UpdateTimedOut { action, at } => {
                transition(&mut changes, device, *action, UpdateState::TimedOut, None, None, *at)
            }
            DeviceUpdateEvent::CancelRequested { action, at } => {
                flag_cancel(&mut changes, device, *action, true, Some("cancel requested".into()), *at)
            }
            DeviceUpdateEvent::CancelRefused { action, message, at } => {
                let message = Some(message.clone().unwrap_or_else(|| "cancel refused by the device".into()));
                flag_cancel(&mut changes, device, *action, false, message, *at)
            }
            DeviceUpdateEvent::DownloadServed { .. } => {}
        }
    }
    changes
}

/// A cancel request (or its refusal) keeps the state; it is recorded as a transition to the same state.
fn flag_cancel(
    changes: &mut Changes,
    device: String,
    action: u32,
    requested: bool,
    message: Option<String>,
    at: DateTime<Utc>,
) {
    let Some(row) = changes.current.get_mut(&device).filter(|row| row.action == action as i32) else { return };
    row.cancel_requested = requested;
    let state = row.state.parse().unwrap_or(UpdateState::Assigned);
    transition(changes, device, action, state, None, message, at);
}

fn transition(
    changes: &mut Changes,
    device: String,
    action: u32,
    state: UpdateState,
    progress: Option<u8>,
    message: Option<String>,
    at: DateTime<Utc>,
) {
    let action = action as i32;
    let Some(row) = changes.current.get_mut(&device).filter(|row| row.action == action) else { return };
    let old = std::mem::replace(&mut row.state, state.as_str().to_owned());
    if state.is_terminal() {
        row.cancel_requested = false;
    }
    row.progress = progress.map(i16::from).or(row.progress);
    row.message = message.clone().or(row.message.take());
    row.updated_at = at;
    let row = row.clone();
    let finished_at = state.is_terminal().then_some(at);
    let history = changes.history.entry((device, action)).or_insert_with(|| History {
        new: false,
        current: row.clone(),
        assigned_by: None,
        last_message: None,
        finished_at: None,
        rolls_back: None,
    });
    history.current.state = row.state.clone();
    history.current.updated_at = at;
    history.last_message = message.or(history.last_message.take());
    history.finished_at = finished_at.or(history.finished_at);
    if old != row.state {
        changes.count(row.campaign_id, row.wave, &old, -1);
        changes.count(row.campaign_id, row.wave, &row.state, 1);
    }
}
