//! A device's update (or rollback) as the API shows it: the current one, a command's
//! result, and each entry of the device's history are this one shape.

use chrono::{DateTime, Utc};
use ota_domain::device_update::{Lane, LaneKind, UpdateState};
use ota_domain::DeviceId;
use ota_projections::updates::UpdateRecord;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceUpdate {
    pub device_id: String,
    /// Numbered per device from 1; with the device id it is the hawkBit action id.
    pub action: i64,
    /// `update`, or `rollback` (then `rolls_back_action` names the update it undoes).
    #[schema(example = "update")]
    pub kind: String,
    pub rolls_back_action: Option<i64>,
    /// The campaign it belongs to; none for a single-device update or rollback.
    pub campaign_id: Option<Uuid>,
    pub wave: Option<i64>,
    /// 0 for the first try, then one more per retry.
    pub retry: i64,
    pub firmware_id: Uuid,
    pub firmware_version: String,
    /// What the device ran before, as far as known.
    pub from_version: Option<String>,
    pub state: UpdateState,
    /// Percent, as the device last reported it.
    pub progress: Option<i64>,
    /// The device's last message, or the cancel handshake's.
    pub message: Option<String>,
    /// The device was asked to cancel and has not answered yet.
    pub cancel_requested: bool,
    /// `kind:id` of whoever assigned it (`system:rollout` for campaigns).
    pub assigned_by: Option<String>,
    pub assigned_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When it reached its outcome (succeeded, failed, rejected, timed out, cancelled, rolled back).
    pub finished_at: Option<DateTime<Utc>>,
}

impl DeviceUpdate {
    /// The update a command just changed, and who assigned it.
    pub fn from_lane(device: &DeviceId, lane: Lane, assigned_by: Option<String>) -> Self {
        let rolls_back_action = match lane.kind {
            LaneKind::Update => None,
            LaneKind::Rollback { of_action } => Some(i64::from(of_action)),
        };
        DeviceUpdate {
            device_id: device.to_string(),
            action: i64::from(lane.action),
            kind: if rolls_back_action.is_some() { "rollback" } else { "update" }.to_owned(),
            rolls_back_action,
            campaign_id: lane.origin.campaign.map(|c| c.as_uuid()),
            wave: lane.origin.wave.map(i64::from),
            retry: i64::from(lane.origin.retry),
            firmware_id: lane.firmware.id.as_uuid(),
            firmware_version: lane.firmware.version,
            from_version: lane.from.map(|f| f.version),
            state: lane.state,
            progress: lane.progress.map(i64::from),
            message: lane.message,
            cancel_requested: lane.cancel_requested,
            assigned_by,
            assigned_at: lane.assigned_at,
            updated_at: lane.updated_at,
            finished_at: lane.state.is_terminal().then_some(lane.updated_at),
        }
    }

    pub fn from_record(record: UpdateRecord) -> Result<Self, ApiError> {
        let state = record.state.parse::<UpdateState>().map_err(|e| {
            ApiError::internal_text(format!("update {}/{} read model: {e}", record.device_id, record.action))
        })?;
        Ok(DeviceUpdate {
            device_id: record.device_id,
            action: i64::from(record.action),
            kind: record.kind,
            rolls_back_action: record.rolls_back_action.map(i64::from),
            campaign_id: record.campaign_id,
            wave: record.wave.map(i64::from),
            retry: i64::from(record.retry),
            firmware_id: record.firmware_id,
            firmware_version: record.firmware_version,
            from_version: record.from_version,
            state,
            progress: record.progress.map(i64::from),
            message: record.message,
            cancel_requested: record.cancel_requested,
            assigned_by: record.assigned_by,
            assigned_at: record.assigned_at,
            updated_at: record.updated_at,
            finished_at: record.finished_at,
        })
    }
}
