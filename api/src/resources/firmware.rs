//! A firmware image as the API shows it: what it is, its hashes, its signature verdict.

use chrono::{DateTime, Utc};
use ota_domain::firmware::{Firmware as FirmwareState, FirmwareStatus};
use ota_domain::signature::SignatureCheck;
use ota_projections::firmware::FirmwareView;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;

#[derive(Debug, Serialize, ToSchema)]
pub struct Firmware {
    /// Derived from name, version and device model (UUID v5): the same upload has the same id.
    pub id: Uuid,
    pub name: String,
    pub version: String,
    pub device_model: String,
    /// Hardware versions it is built for; empty means every one of the model.
    pub hardware_versions: Vec<String>,
    pub release_notes: Option<String>,
    /// The artifact's file name, as devices download it.
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    pub sha1: String,
    pub md5: String,
    pub status: FirmwareStatus,
    /// The check of the upload's signature against OTA_FIRMWARE_KEYS.
    pub signature: SignatureCheck,
    /// `kind:id` of whoever uploaded it.
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Firmware {
    /// The firmware a command just stored (or found stored), and who uploaded it.
    pub fn from_state(firmware: FirmwareState, created_by: Option<String>) -> Result<Self, ApiError> {
        let (Some(id), Some(spec), Some(binary), Some(created_at)) =
            (firmware.id, firmware.spec, firmware.binary, firmware.uploaded_at)
        else {
            return Err(ApiError::internal_text("firmware state without upload"));
        };
        Ok(Firmware {
            id: id.as_uuid(),
            name: spec.name,
            version: spec.version,
            device_model: spec.device_model,
            hardware_versions: spec.hardware_versions,
            release_notes: spec.release_notes,
            filename: binary.filename,
            size: binary.size,
            sha256: binary.sha256,
            sha1: binary.sha1,
            md5: binary.md5,
            status: firmware.status,
            signature: firmware.signature,
            created_by,
            created_at,
            updated_at: firmware.updated_at.unwrap_or(created_at),
        })
    }

    pub fn from_view(view: FirmwareView) -> Result<Self, ApiError> {
        let corrupt = |what: &str, e: &dyn std::fmt::Display| {
            ApiError::internal_text(format!("firmware {} read model: {what}: {e}", view.id))
        };
        let hardware_versions =
            serde_json::from_value(view.hardware_versions.clone()).map_err(|e| corrupt("hardware_versions", &e))?;
        let signature = serde_json::from_value(view.signature.clone()).map_err(|e| corrupt("signature", &e))?;
        let status = match view.status.as_str() {
            "active" => FirmwareStatus::Active,
            "deprecated" => FirmwareStatus::Deprecated,
            other => return Err(corrupt("status", &other)),
        };
        Ok(Firmware {
            id: view.id,
            name: view.name,
            version: view.version,
            device_model: view.device_model,
            hardware_versions,
            release_notes: view.release_notes,
            filename: view.filename,
            size: u64::try_from(view.size).map_err(|e| corrupt("size", &e))?,
            sha256: view.sha256,
            sha1: view.sha1,
            md5: view.md5,
            status,
            signature,
            created_by: view.created_by,
            created_at: view.created_at,
            updated_at: view.updated_at,
        })
    }
}
