//! Resolving a campaign's target into its wave membership when it starts.
//!
//! The target (explicit ids and/or an inventory filter) is matched against each
//! device's latest profile in the event store itself, not a read model that may
//! trail a registration made a moment ago. The result and its seed are recorded
//! as an event, so the membership is reproducible and never changes behind the
//! operator's back.

use std::collections::BTreeMap;

use ota_domain::campaign::{Campaign, Membership, Target};
use ota_domain::device::{DeviceEvent, DeviceProfile};
use ota_domain::rollout::{assign_waves, DeviceCandidate};
use ota_domain::upcast::{self, DecodeError};
use ota_domain::DeviceId;
use sqlx::PgPool;

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("reading the inventory: {0}")]
    Inventory(#[from] sqlx::Error),
    #[error("device {device} has an undecodable profile")]
    Corrupt { device: String, source: DecodeError },
    #[error("device {device}'s latest inventory event carries no profile")]
    NoProfile { device: String },
}

/// The latest profile of every registered device (or of `only` those ids).
async fn profiles(pool: &PgPool, only: Option<&[String]>) -> Result<BTreeMap<String, DeviceProfile>, MembershipError> {
    let rows: Vec<(String, String, String, serde_json::Value)> = sqlx::query_as(
        "SELECT DISTINCT ON (aggregate_id) aggregate_id, event_type, event_version, payload FROM events
         WHERE aggregate_type = 'Device' AND event_type IN ('DeviceRegistered', 'DeviceProfileChanged')
           AND ($1::text[] IS NULL OR aggregate_id = ANY($1))
         ORDER BY aggregate_id, sequence DESC",
    )
    .bind(only)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(device, event_type, version, payload)| {
            match upcast::decode::<DeviceEvent>("Device", &event_type, &version, payload) {
                Ok(event) => match event.profile() {
                    Some(profile) => Ok((device, profile.clone())),
                    None => Err(MembershipError::NoProfile { device }),
                },
                Err(source) => Err(MembershipError::Corrupt { device, source }),
            }
        })
        .collect()
}

/// Why a device the target names is not a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotMember {
    /// An explicit id that was never registered.
    Unknown,
    /// An explicit id of a device of another model than the firmware's.
    OtherModel { model: String },
}

/// A target matched against the inventory: who may join, and which explicit ids may not.
#[derive(Debug, Clone, Default)]
pub struct Matched {
    pub candidates: Vec<DeviceCandidate>,
    pub not_members: Vec<(String, NotMember)>,
}

/// Matches a target against the inventory for firmware built for `model`.
pub async fn match_target(pool: &PgPool, model: &str, target: &Target) -> Result<Matched, MembershipError> {
    let mut found: BTreeMap<String, Option<String>> = BTreeMap::new();
    let explicit: Vec<String> = target.device_ids.iter().map(|d| d.to_string()).collect();
    let mut not_members = Vec::new();
    if !explicit.is_empty() {
        let known = profiles(pool, Some(&explicit)).await?;
        for id in &explicit {
            match known.get(id) {
                Some(profile) if profile.device_model == model => {
                    found.insert(id.clone(), profile.hardware_version.clone());
                }
                // Built for another model, or unknown: the firmware cannot go there.
                Some(profile) => {
                    not_members.push((id.clone(), NotMember::OtherModel { model: profile.device_model.clone() }))
                }
                None => not_members.push((id.clone(), NotMember::Unknown)),
            }
        }
    }
    if let Some(filter) = &target.filter {
        for (id, profile) in profiles(pool, None).await? {
            if filter.matches(model, &profile) {
                found.insert(id, profile.hardware_version);
            }
        }
    }
    let candidates = found
        .into_iter()
        .filter_map(|(id, hardware_version)| {
            DeviceId::parse(&id).ok().map(|id| DeviceCandidate { id, hardware_version })
        })
        .collect();
    Ok(Matched { candidates, not_members })
}

/// Matches the campaign's target against the inventory and splits it into waves.
pub async fn resolve(pool: &PgPool, campaign: &Campaign, seed: u64) -> Result<Membership, MembershipError> {
    let model = campaign.firmware.as_ref().map(|f| f.device_model.clone()).unwrap_or_default();
    let matched = match_target(pool, &model, &campaign.target).await?;
    let waves = assign_waves(&matched.candidates, &campaign.rollout, seed);
    let excluded = u32::try_from(matched.not_members.len()).unwrap_or(u32::MAX);
    Ok(Membership { seed, waves, excluded })
}
