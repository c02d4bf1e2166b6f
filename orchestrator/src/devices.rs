//! Device-side operations shared by every edge (HTTP, NATS, DDI, the process
//! manager): assigning an update with its compatibility checks, rolling back,
//! and recording a device's status report.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ota_domain::device::{Device, DeviceCommand, DeviceError};
use ota_domain::device_update::{
    DeviceUpdate, DeviceUpdateCommand, DeviceUpdateError, Origin, UpdateFirmware, UpdateState,
};
use ota_domain::firmware::{DeliveryPolicy, Firmware, FirmwareError, Undeliverable};
use ota_domain::{CommandMeta, DeviceId, FirmwareId, Refusal, Refused};
use serde::Deserialize;

use crate::store::{ChainedBatcher, Committed, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    #[error("device {0} is not registered")]
    UnknownDevice(String),
    #[error(transparent)]
    Undeliverable(#[from] Undeliverable),
    #[error("firmware is for device model {firmware}, device is {device}")]
    ModelMismatch { device: String, firmware: String },
    #[error("firmware supports hardware versions {supported:?}, device has {device:?}")]
    HardwareMismatch { device: Option<String>, supported: Vec<String> },
    #[error("device already runs version {0}")]
    AlreadyInstalled(String),
    #[error(transparent)]
    Update(StoreError<DeviceUpdateError>),
    #[error("event store unavailable")]
    Store(#[source] crate::store::Cause),
}

impl AssignError {
    pub fn refusal(&self) -> (Refusal, &'static str) {
        match self {
            AssignError::UnknownDevice(_) => (Refusal::NotFound, "device.not_found"),
            AssignError::Undeliverable(u) => (Refusal::Invalid, update_code(u)),
            AssignError::ModelMismatch { .. } => (Refusal::Invalid, "update.model_mismatch"),
            AssignError::HardwareMismatch { .. } => (Refusal::Invalid, "update.hardware_mismatch"),
            AssignError::AlreadyInstalled(_) => (Refusal::Invalid, "update.already_installed"),
            AssignError::Update(StoreError::Rejected(e)) => (e.refusal(), e.code()),
            AssignError::Update(_) | AssignError::Store(_) => (Refusal::Conflict, "unavailable"),
        }
    }

    /// True when the failure is a dependency's, not the request's.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, AssignError::Store(_) | AssignError::Update(StoreError::Unavailable(_)))
    }
}

/// The stable code of an image refused for a device (`campaign.*` for campaigns).
pub fn update_code(undeliverable: &Undeliverable) -> &'static str {
    match undeliverable {
        Undeliverable::Unknown(_) => "update.unknown_firmware",
        Undeliverable::Deprecated(_) => "update.deprecated_firmware",
        Undeliverable::Unverified(_) => "update.unverified_firmware",
        Undeliverable::Downgrade { .. } => "update.downgrade",
    }
}

pub(crate) fn unavailable<E: std::error::Error + Send + Sync + 'static>(e: StoreError<E>) -> AssignError {
    AssignError::Store(std::sync::Arc::new(e))
}

/// Checks that `firmware` may be delivered and fits the device: registered,
/// same model, a supported hardware version, not already installed, and not
/// an earlier release than the one it runs (`running_counter`) unless allowed.
pub fn check_fit(
    device_id: &DeviceId,
    device: &Device,
    firmware_id: FirmwareId,
    firmware: &Firmware,
    policy: DeliveryPolicy,
    running_counter: Option<u64>,
) -> Result<(), AssignError> {
    if !device.exists() {
        return Err(AssignError::UnknownDevice(device_id.to_string()));
    }
    policy.admit(firmware_id, firmware)?;
    let Some(spec) = firmware.spec.as_ref() else {
        return Err(Undeliverable::Unknown(firmware_id).into());
    };
    let profile = &device.profile;
    if profile.device_model != spec.device_model {
        return Err(AssignError::ModelMismatch {
            device: profile.device_model.clone(),
            firmware: spec.device_model.clone(),
        });
    }
    let hardware_fits = spec.hardware_versions.is_empty()
        || profile.hardware_version.as_ref().is_some_and(|h| spec.hardware_versions.contains(h));
    if !hardware_fits {
        return Err(AssignError::HardwareMismatch {
            device: profile.hardware_version.clone(),
            supported: spec.hardware_versions.clone(),
        });
    }
    if profile.firmware_version.as_deref() == Some(spec.version.as_str()) {
        return Err(AssignError::AlreadyInstalled(spec.version.clone()));
    }
    policy.admit_for(running_counter, firmware_id, firmware)?;
    Ok(())
}

/// Checks that `firmware` may be delivered under `policy` and fits the device, and assigns it.
pub async fn assign_update(
    store: &Store,
    device_id: &DeviceId,
    firmware_id: FirmwareId,
    origin: Origin,
    policy: DeliveryPolicy,
    meta: &CommandMeta,
    at: DateTime<Utc>,
) -> Result<Committed<DeviceUpdate>, AssignError> {
    let (device, _) = store.load::<Device>(device_id).await.map_err(unavailable::<DeviceError>)?;
    let (firmware, _) = store.load::<Firmware>(&firmware_id).await.map_err(unavailable::<FirmwareError>)?;
    let running = match (&device.profile.firmware_version, &firmware.spec) {
        (Some(version), Some(spec)) => running_image(store, &spec.name, version, &spec.device_model).await?,
        _ => None,
    };
    let running_counter = running.as_ref().and_then(|r| r.release_counter);
    check_fit(device_id, &device, firmware_id, &firmware, policy, running_counter)?;
    let spec = firmware.spec.as_ref().ok_or(Undeliverable::Unknown(firmware_id))?;
    let command = DeviceUpdateCommand::Assign {
        origin,
        firmware: UpdateFirmware { id: firmware_id, version: spec.version.clone() },
        from: running.map(|r| r.firmware),
        at,
    };
    store.execute::<DeviceUpdate>(device_id, command, meta).await.map_err(AssignError::Update)
}

/// The image a rollback of `device` would install, checked under `policy`: a
/// rollback ships only what the catalogue holds and delivery allows, whatever
/// version the device reported about itself. `Ok(None)`: nothing to roll back to.
pub async fn check_rollback(
    store: &Store,
    device: &DeviceId,
    policy: DeliveryPolicy,
) -> Result<Option<FirmwareId>, AssignError> {
    let (lanes, _) = store.load::<DeviceUpdate>(device).await.map_err(unavailable::<DeviceUpdateError>)?;
    let Some(target) = lanes.rollback_target() else { return Ok(None) };
    let (firmware, _) = store.load::<Firmware>(&target.id).await.map_err(unavailable::<FirmwareError>)?;
    policy.admit(target.id, &firmware)?;
    Ok(Some(target.id))
}

/// What a device runs now, as the catalogue knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningImage {
    /// Where a rollback would go: only what the catalogue stores.
    pub firmware: UpdateFirmware,
    /// Its signed release counter, against which a downgrade is judged.
    pub release_counter: Option<u64>,
}

/// The catalogue entry of the version a device runs, if we have it.
pub async fn running_image(
    store: &Store,
    name: &str,
    version: &str,
    model: &str,
) -> Result<Option<RunningImage>, AssignError> {
    let id = FirmwareId::derive(name, version, model);
    let (firmware, _) = store.load::<Firmware>(&id).await.map_err(unavailable::<FirmwareError>)?;
    Ok(firmware.exists().then(|| RunningImage {
        firmware: UpdateFirmware { id, version: version.to_owned() },
        release_counter: firmware.release_counter(),
    }))
}

/// A device's own report about its current update, from any channel.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"state": "downloading", "progress": 40, "action": 3})))]
pub struct StatusReport {
    pub state: UpdateState,
    /// Percent, 0 to 100.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 100))]
    pub progress: Option<u8>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub firmware_version: Option<String>,
    /// The action the report is about; absent means the current one.
    #[serde(default)]
    pub action: Option<u32>,
}

/// Records what devices say through group commits: many devices' reports share
/// one transaction, each caller still gets its own answer once it is durable.
/// A report that installs firmware changes the device's inventory version in
/// the same transaction. A device's own inventory commands (registering on
/// first contact through a gateway, configData) are group-committed too, so a
/// fleet enrolling at once is not one transaction per device.
#[derive(Clone)]
pub struct Reports {
    updates: ChainedBatcher<DeviceUpdate, Device>,
    devices: ChainedBatcher<Device, DeviceUpdate>,
}

impl Reports {
    pub fn spawn(store: &Store) -> Self {
        Self { updates: ChainedBatcher::spawn(store.clone()), devices: ChainedBatcher::spawn(store.clone()) }
    }

    /// A device's own inventory command, through the group commits.
    pub async fn execute_device(
        &self,
        device_id: &DeviceId,
        command: DeviceCommand,
        meta: &CommandMeta,
    ) -> Result<Committed<Device>, StoreError<DeviceError>> {
        let none = Arc::new(|_: &Committed<Device>| None);
        let (device, _) = self.devices.execute(device_id.as_str(), command, meta, none).await?;
        device
    }

    /// Any other command on a device's updates, through the same group commits.
    pub async fn execute(
        &self,
        device_id: &str,
        command: DeviceUpdateCommand,
        meta: &CommandMeta,
    ) -> Result<Committed<DeviceUpdate>, StoreError<DeviceUpdateError>> {
        let (update, _) =
            self.updates.execute(device_id, command, meta, Arc::new(|_: &Committed<DeviceUpdate>| None)).await?;
        update
    }

    /// Records a report; a success also updates the device's inventory version.
    pub async fn report(
        &self,
        device_id: &DeviceId,
        report: StatusReport,
        meta: &CommandMeta,
        at: DateTime<Utc>,
    ) -> Result<Committed<DeviceUpdate>, StoreError<DeviceUpdateError>> {
        let message = report.message.map(|m| m.chars().take(1000).collect());
        let command = DeviceUpdateCommand::Report {
            action: report.action,
            state: report.state,
            progress: report.progress,
            message,
            at,
        };
        let device = device_id.to_string();
        let reported = report.firmware_version;
        let inventory = move |committed: &Committed<DeviceUpdate>| {
            let installed = committed.state.current.as_ref().filter(|lane| {
                matches!(lane.state, UpdateState::Succeeded | UpdateState::RolledBack) && !committed.unchanged()
            });
            let version = installed.map(|lane| lane.firmware.version.clone()).or_else(|| reported.clone())?;
            Some((device.clone(), DeviceCommand::ReportFirmware { version, at }))
        };
        let (update, inventory) = self.updates.execute(device_id.as_str(), command, meta, Arc::new(inventory)).await?;
        if let Some(Err(e)) = inventory {
            // Only a refusal gets here (a device never registered has no inventory):
            // a race is decided again together with the update, never split from it.
            tracing::warn!(device = %device_id, error = %e, "the inventory refused the device's firmware version");
        }
        update
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum BusReportError {
    #[error("the subject names no device")]
    NoDevice,
    #[error("invalid status report: {0}")]
    Invalid(#[source] serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError<DeviceUpdateError>),
}

impl Reports {
    /// Stores a status report that arrived on a device's `.status` or `.report` subject.
    pub(crate) async fn report_from_bus(
        &self,
        subject: &str,
        payload: &[u8],
    ) -> Result<Committed<DeviceUpdate>, BusReportError> {
        let device = ota_domain::bus::device_of_subject(subject)
            .and_then(|raw| DeviceId::parse(&raw).ok())
            .ok_or(BusReportError::NoDevice)?;
        let report = serde_json::from_slice::<StatusReport>(payload).map_err(BusReportError::Invalid)?;
        let meta = CommandMeta::new(ota_domain::Actor::device(device.to_string()));
        Ok(self.report(&device, report, &meta, Utc::now()).await?)
    }
}
