//! Resolving a campaign's target into its wave membership when it starts.
//!
//! The target (explicit ids and/or an inventory filter) is matched against the
//! device inventory once; the result and its seed are recorded as an event, so
//! the membership is reproducible and never changes behind the operator's back.

use std::collections::BTreeMap;

use ota_domain::campaign::{Campaign, Membership};
use ota_domain::device::{Device, DeviceError};
use ota_domain::rollout::{assign_waves, DeviceCandidate};
use ota_domain::DeviceId;
use sqlx::PgPool;

use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("reading the inventory: {0}")]
    Inventory(#[from] sqlx::Error),
    #[error("reading a device: {0}")]
    Device(#[from] StoreError<DeviceError>),
}

/// Matches the campaign's target against the inventory and splits it into waves.
pub async fn resolve(store: &Store, campaign: &Campaign, seed: u64) -> Result<Membership, MembershipError> {
    let pool: &PgPool = store.pool();
    let model = campaign.firmware.as_ref().map(|f| f.device_model.clone()).unwrap_or_default();
    let mut found: BTreeMap<String, Option<String>> = BTreeMap::new();
    let explicit: Vec<String> = campaign.target.device_ids.iter().map(|d| d.to_string()).collect();
    let mut excluded = 0u32;
    if !explicit.is_empty() {
        let rows = ota_projections::devices::by_ids(pool, &explicit).await?;
        let mut known: BTreeMap<String, (String, Option<String>)> =
            rows.into_iter().map(|r| (r.id, (r.device_model, r.hardware_version))).collect();
        // The inventory read model may trail a registration made a moment ago; the
        // device's own stream settles it for ids the read model does not know yet.
        let unknown: Vec<String> = explicit.iter().filter(|id| !known.contains_key(*id)).cloned().collect();
        for id in unknown {
            let (device, _) = store.load::<Device>(&id).await?;
            if device.exists() {
                known.insert(id, (device.profile.device_model, device.profile.hardware_version));
            }
        }
        for id in &explicit {
            match known.remove(id) {
                Some((device_model, hardware)) if device_model == model => {
                    found.insert(id.clone(), hardware);
                }
                _ => excluded += 1,
            }
        }
    }
    if let Some(filter) = &campaign.target.filter {
        // A filter never reaches devices the firmware is not built for.
        if filter.device_model.as_deref().is_none_or(|m| m == model) {
            let rows = ota_projections::devices::matching(
                pool,
                &model,
                &filter.hardware_versions,
                &filter.tags,
                filter.firmware_version.as_deref(),
            )
            .await?;
            found.extend(rows.into_iter().map(|r| (r.id, r.hardware_version)));
        }
    }
    let candidates: Vec<DeviceCandidate> = found
        .into_iter()
        .filter_map(|(id, hardware_version)| {
            DeviceId::parse(&id).ok().map(|id| DeviceCandidate { id, hardware_version })
        })
        .collect();
    let waves = assign_waves(&candidates, &campaign.rollout, seed);
    Ok(Membership { seed, waves, excluded })
}
