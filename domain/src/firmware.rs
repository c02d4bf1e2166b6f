//! The `Firmware` aggregate: an uploaded, checksummed image, identified by
//! `name:version:device_model`. Re-uploading the same bytes is a no-op; other
//! bytes under the same id are a conflict, never a silent overwrite.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::decide::Decide;
use crate::ids::FirmwareId;
use crate::refusal::{Refusal, Refused};
use std::collections::BTreeSet;

use crate::release::{Release, SignedRelease};
use crate::signature::SignatureCheck;

/// What an operator says about an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareSpec {
    pub name: String,
    pub version: String,
    pub device_model: String,
    #[serde(default)]
    pub hardware_versions: Vec<String>,
    #[serde(default)]
    pub release_notes: Option<String>,
}

impl FirmwareSpec {
    /// How an upload of this spec with these bytes differs from what was signed,
    /// if it does: a relabelled image (another name, version, model or
    /// hardware) or other bytes.
    pub fn differs_from(&self, release: &Release, sha256: &str, size: u64) -> Option<String> {
        let hardware = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
        let differs = |field: &str, signed: &str, uploaded: &str| {
            (signed != uploaded)
                .then(|| format!("{field}: the signed release says {signed:?}, the upload {uploaded:?}"))
        };
        differs("name", &release.name, &self.name)
            .or_else(|| differs("version", &release.version, &self.version))
            .or_else(|| differs("device_model", &release.device_model, &self.device_model))
            .or_else(|| {
                (hardware(&release.hardware_versions) != hardware(&self.hardware_versions)).then(|| {
                    format!(
                        "hardware_versions: the signed release says {:?}, the upload {:?}",
                        release.hardware_versions, self.hardware_versions
                    )
                })
            })
            .or_else(|| differs("sha256", &release.sha256, sha256))
            .or_else(|| {
                (release.size != size)
                    .then(|| format!("size: the signed release says {} bytes, the upload has {size}", release.size))
            })
    }

    pub fn id(&self) -> FirmwareId {
        FirmwareId::derive(&self.name, &self.version, &self.device_model)
    }
}

/// What the server measured while storing the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareBinary {
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    pub sha1: String,
    pub md5: String,
    /// Object-store key, relative to the configured store.
    pub storage_path: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub enum FirmwareCommand {
    Upload {
        spec: FirmwareSpec,
        binary: FirmwareBinary,
        signature: SignatureCheck,
        release: Option<SignedRelease>,
        at: DateTime<Utc>,
    },
    Deprecate {
        reason: Option<String>,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FirmwareEvent {
    FirmwareUploaded {
        id: FirmwareId,
        spec: FirmwareSpec,
        binary: FirmwareBinary,
        /// The signature check made at upload (absent in events from before signatures: unsigned).
        #[serde(default)]
        signature: SignatureCheck,
        /// The signed release metadata, delivered to devices with the image (absent before 1.1 and for unsigned uploads).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        release: Option<SignedRelease>,
        at: DateTime<Utc>,
    },
    FirmwareDeprecated {
        reason: Option<String>,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for FirmwareEvent {
    fn event_type(&self) -> String {
        match self {
            FirmwareEvent::FirmwareUploaded { .. } => "FirmwareUploaded",
            FirmwareEvent::FirmwareDeprecated { .. } => "FirmwareDeprecated",
        }
        .to_owned()
    }
    /// Bumped with an upcaster in `crate::upcast` whenever a shape changes.
    fn event_version(&self) -> String {
        match self {
            FirmwareEvent::FirmwareUploaded { .. } => "1.1",
            FirmwareEvent::FirmwareDeprecated { .. } => "1.0",
        }
        .to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FirmwareError {
    #[error("firmware {id} already exists with different content (stored sha256 {stored_sha256}, uploaded {uploaded_sha256})")]
    DifferentContent { id: FirmwareId, stored_sha256: String, uploaded_sha256: String },
    #[error("firmware does not exist")]
    NotFound,
    #[error("firmware is already deprecated")]
    AlreadyDeprecated,
}

impl Refused for FirmwareError {
    fn refusal(&self) -> Refusal {
        match self {
            FirmwareError::DifferentContent { .. } | FirmwareError::AlreadyDeprecated => Refusal::Conflict,
            FirmwareError::NotFound => Refusal::NotFound,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            FirmwareError::DifferentContent { .. } => "firmware.content_conflict",
            FirmwareError::NotFound => "firmware.not_found",
            FirmwareError::AlreadyDeprecated => "firmware.already_deprecated",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FirmwareStatus {
    #[default]
    Active,
    Deprecated,
}

impl FirmwareStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            FirmwareStatus::Active => "active",
            FirmwareStatus::Deprecated => "deprecated",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Firmware {
    pub id: Option<FirmwareId>,
    pub spec: Option<FirmwareSpec>,
    pub binary: Option<FirmwareBinary>,
    pub status: FirmwareStatus,
    pub uploaded_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub signature: SignatureCheck,
    /// The upload, or the deprecation since.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub release: Option<SignedRelease>,
}

impl Firmware {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    /// The signed release counter, for images uploaded with a verified release.
    pub fn release_counter(&self) -> Option<u64> {
        self.release.as_ref().map(|r| r.release.release_counter)
    }
}

/// What may reach a device. Every delivery path asks the same question (campaign
/// create and start, each wave, retries, continuous joins, single updates, the
/// rollback route and rollback campaigns), so no path is a way around it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// `OTA_REQUIRE_SIGNED_FIRMWARE`: only images whose signature verified at upload.
    pub require_signature: bool,
    /// An admin allowed taking devices back to an earlier release (a campaign's
    /// `allow_downgrade`, or a single update's).
    pub allow_downgrade: bool,
}

/// Why an image may not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Undeliverable {
    #[error("firmware {0} does not exist")]
    Unknown(FirmwareId),
    #[error("firmware {0} is deprecated")]
    Deprecated(FirmwareId),
    #[error("firmware {0} has no verified signature and this server requires one")]
    Unverified(FirmwareId),
    #[error("the device runs release {running} and firmware {id} is release {offered}: a downgrade needs allow_downgrade from an admin")]
    Downgrade { id: FirmwareId, running: u64, offered: u64 },
}

impl Undeliverable {
    /// The last part of the stable error code (`campaign.<kind>`, `update.<kind>`).
    pub fn kind(&self) -> &'static str {
        match self {
            Undeliverable::Unknown(_) => "unknown_firmware",
            Undeliverable::Deprecated(_) => "deprecated_firmware",
            Undeliverable::Unverified(_) => "unverified_firmware",
            Undeliverable::Downgrade { .. } => "downgrade",
        }
    }
}

impl DeliveryPolicy {
    pub fn admit(&self, id: FirmwareId, firmware: &Firmware) -> Result<(), Undeliverable> {
        if !firmware.exists() {
            return Err(Undeliverable::Unknown(id));
        }
        if firmware.status == FirmwareStatus::Deprecated {
            return Err(Undeliverable::Deprecated(id));
        }
        if self.require_signature && !firmware.signature.is_verified() {
            return Err(Undeliverable::Unverified(id));
        }
        Ok(())
    }

    /// [`admit`](Self::admit) for a device whose running image has the signed
    /// release counter `running`: a lower counter is a downgrade. Either counter
    /// unknown (an unsigned image) decides nothing.
    pub fn admit_for(&self, running: Option<u64>, id: FirmwareId, firmware: &Firmware) -> Result<(), Undeliverable> {
        self.admit(id, firmware)?;
        let offered = firmware.release.as_ref().map(|r| r.release.release_counter);
        match (running, offered) {
            (Some(running), Some(offered)) if offered < running && !self.allow_downgrade => {
                Err(Undeliverable::Downgrade { id, running, offered })
            }
            _ => Ok(()),
        }
    }

    pub fn allowing_downgrade(self, allow_downgrade: bool) -> Self {
        Self { allow_downgrade, ..self }
    }
}

impl Decide for Firmware {
    fn decide(&self, command: FirmwareCommand) -> Result<Vec<FirmwareEvent>, FirmwareError> {
        match command {
            FirmwareCommand::Upload { spec, binary, signature, release, at } => match (&self.id, &self.binary) {
                (Some(_), Some(stored)) if stored.sha256 == binary.sha256 => Ok(vec![]),
                (Some(id), Some(stored)) => Err(FirmwareError::DifferentContent {
                    id: *id,
                    stored_sha256: stored.sha256.clone(),
                    uploaded_sha256: binary.sha256,
                }),
                _ => Ok(vec![FirmwareEvent::FirmwareUploaded { id: spec.id(), spec, binary, signature, release, at }]),
            },
            FirmwareCommand::Deprecate { reason, at } => match self.status {
                _ if !self.exists() => Err(FirmwareError::NotFound),
                FirmwareStatus::Deprecated => Err(FirmwareError::AlreadyDeprecated),
                FirmwareStatus::Active => Ok(vec![FirmwareEvent::FirmwareDeprecated { reason, at }]),
            },
        }
    }
}

impl Aggregate for Firmware {
    const TYPE: &'static str = "Firmware";
    type Command = FirmwareCommand;
    type Event = FirmwareEvent;
    type Error = FirmwareError;
    type Services = ();

    async fn handle(&mut self, command: FirmwareCommand, _: &(), sink: &EventSink<Self>) -> Result<(), FirmwareError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: FirmwareEvent) {
        match event {
            FirmwareEvent::FirmwareUploaded { id, spec, binary, signature, release, at } => {
                self.signature = signature;
                self.release = release;
                self.id = Some(id);
                self.spec = Some(spec);
                self.binary = Some(binary);
                self.uploaded_at = Some(at);
                self.updated_at = Some(at);
            }
            FirmwareEvent::FirmwareDeprecated { at, .. } => {
                self.status = FirmwareStatus::Deprecated;
                self.updated_at = Some(at);
            }
        }
    }
}

#[cfg(test)]
mod tests;
