//! A device of the inventory as the API shows it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use ota_domain::device::Device as DeviceState;
use ota_projections::devices::DeviceView;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;

#[derive(Debug, Serialize, ToSchema)]
pub struct Device {
    /// The device's own id (hawkBit's controllerId).
    pub id: String,
    pub device_model: String,
    pub hardware_version: Option<String>,
    /// What it runs, as registered or last reported.
    pub firmware_version: Option<String>,
    pub tags: BTreeSet<String>,
    pub attributes: BTreeMap<String, String>,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Its last DDI poll (written in batches every few seconds).
    pub last_seen: Option<DateTime<Utc>>,
    /// The device's DDI secret (`Authorization: TargetToken <it>`): only in the answer that
    /// created the device or rotated its token, never again (only its hash is kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_token: Option<String>,
}

impl Device {
    /// The device a command just changed.
    pub fn from_state(device: DeviceState, last_seen: Option<DateTime<Utc>>) -> Result<Self, ApiError> {
        let (Some(id), Some(registered_at)) = (device.id, device.registered_at) else {
            return Err(ApiError::internal_text("device state without registration"));
        };
        Ok(Device {
            id: id.to_string(),
            device_model: device.profile.device_model,
            hardware_version: device.profile.hardware_version,
            firmware_version: device.profile.firmware_version,
            tags: device.profile.tags,
            attributes: device.profile.attributes,
            registered_at,
            updated_at: device.updated_at.unwrap_or(registered_at),
            last_seen,
            target_token: None,
        })
    }

    pub fn from_view(view: DeviceView) -> Result<Self, ApiError> {
        let corrupt = |what: &str, e: serde_json::Error| {
            ApiError::internal_text(format!("device {} read model: {what}: {e}", view.id))
        };
        Ok(Device {
            tags: serde_json::from_value(view.tags.clone()).map_err(|e| corrupt("tags", e))?,
            attributes: serde_json::from_value(view.attributes.clone()).map_err(|e| corrupt("attributes", e))?,
            id: view.id,
            device_model: view.device_model,
            hardware_version: view.hardware_version,
            firmware_version: view.firmware_version,
            registered_at: view.registered_at,
            updated_at: view.updated_at,
            last_seen: view.last_seen,
            target_token: None,
        })
    }
}
