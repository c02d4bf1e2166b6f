//! Which campaign members may be assigned its firmware: the check the rollout
//! makes before every assignment, shared with the plan preview so that what
//! the preview says would be skipped is what a real start skips.

use std::collections::HashMap;

use ota_domain::device::Device;
use ota_domain::device_update::UpdateFirmware;
use ota_domain::firmware::{DeliveryPolicy, Firmware};
use ota_domain::{DeviceId, FirmwareId};

use crate::devices::{check_fit, running_image, unavailable, AssignError, RunningImage};
use crate::store::Store;

/// Checks devices against one firmware under one delivery policy, remembering
/// each running version's catalogue entry across calls.
pub struct FitCheck<'a> {
    store: &'a Store,
    firmware_id: FirmwareId,
    firmware: &'a Firmware,
    policy: DeliveryPolicy,
    running: HashMap<String, Option<RunningImage>>,
}

impl<'a> FitCheck<'a> {
    pub fn new(store: &'a Store, firmware_id: FirmwareId, firmware: &'a Firmware, policy: DeliveryPolicy) -> Self {
        Self { store, firmware_id, firmware, policy, running: HashMap::new() }
    }

    /// Each device's verdict, in order: the image it runs now if the catalogue
    /// knows it (where a rollback would take it), or why it must be skipped.
    /// The outer error is the store being unavailable.
    pub async fn check(
        &mut self,
        ids: &[DeviceId],
    ) -> Result<Vec<Result<Option<UpdateFirmware>, AssignError>>, AssignError> {
        let keys: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let devices = self.store.load_many::<Device>(&keys).await.map_err(unavailable)?;
        let mut verdicts = Vec::with_capacity(ids.len());
        for device_id in ids {
            let (device, _) = devices.get(device_id.as_str()).cloned().unwrap_or_default();
            let now_running = match &device.profile.firmware_version {
                Some(version) => self.running_image(version).await?,
                None => None,
            };
            let counter = now_running.as_ref().and_then(|r| r.release_counter);
            verdicts.push(
                check_fit(device_id, &device, self.firmware_id, self.firmware, self.policy, counter)
                    .map(|()| now_running.map(|r| r.firmware)),
            );
        }
        Ok(verdicts)
    }

    async fn running_image(&mut self, version: &str) -> Result<Option<RunningImage>, AssignError> {
        if let Some(known) = self.running.get(version) {
            return Ok(known.clone());
        }
        // Without a spec the image is undeliverable anyway; check_fit says so.
        let Some(spec) = self.firmware.spec.as_ref() else { return Ok(None) };
        let found = running_image(self.store, &spec.name, version, &spec.device_model).await?;
        self.running.insert(version.to_owned(), found.clone());
        Ok(found)
    }
}
