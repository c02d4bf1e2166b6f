//! The plan preview: what starting a campaign would do, computed without doing it.
//!
//! It runs the same steps as a real start and rollout, on the inventory as it
//! is now: the target matched by `membership::match_target`, waves drawn by the
//! same seeded `assign_waves`, each member checked by the rollout's own
//! [`FitCheck`] plus the one thing only an assignment finds out (a device busy
//! with another update), and the plan played by `rollout::forecast_with`, the
//! real `next_steps` on a simulated clock. Started with the preview's seed
//! before the inventory changes, a campaign gets exactly these waves and skips.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ota_domain::campaign::Target;
use ota_domain::device_update::DeviceUpdate;
use ota_domain::firmware::{DeliveryPolicy, Firmware};
use ota_domain::rollout::{assign_waves, forecast_with, Assumptions, ForecastOutcome, RolloutPlan, WaveForecast};
use ota_domain::{DeviceId, FirmwareId};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::devices::{unavailable, AssignError};
use crate::fit::FitCheck;
use crate::membership::{match_target, MembershipError, NotMember};
use crate::store::Store;

/// At most this many excluded devices are listed; the counts cover all of them.
pub const MAX_LISTED_EXCLUSIONS: usize = 1_000;

/// Devices checked per read of the store.
const CHUNK: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("reading the inventory")]
    Inventory(#[from] MembershipError),
    #[error("reading devices")]
    Devices(#[source] AssignError),
}

/// What the preview is asked about.
pub struct Plan<'a> {
    pub firmware_id: FirmwareId,
    pub firmware: &'a Firmware,
    pub target: &'a Target,
    pub rollout: &'a RolloutPlan,
    /// Draws the waves, and then which attempts fail.
    pub seed: u64,
    pub failure_percent: u32,
    pub update_secs: u64,
}

/// A device the target names that would not be updated, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Exclusion {
    pub device_id: String,
    /// The code a single update of this device would be refused with, such as
    /// `update.already_installed` or `device_update.already_active`.
    pub reason: String,
    pub message: String,
    /// The wave the device is drawn into and skipped in at assignment; absent
    /// for a named device that never becomes a member (unknown, other model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<usize>,
}

/// One wave: its members as drawn, and how its rollout would go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WavePreview {
    pub wave: usize,
    /// Members in assignment order, skipped ones included.
    pub members: Vec<String>,
    /// Members that would be skipped at assignment (listed in `excluded` with this wave).
    pub skipped: u32,
    #[serde(flatten)]
    pub forecast: WaveForecast,
}

/// What starting the plan now would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Preview {
    /// Start the campaign with this seed to get these waves.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "seed_text")]
    pub seed: u64,
    /// Devices that would be assigned the update.
    pub updating: u32,
    /// Devices drawn into waves, skipped ones included.
    pub members: u32,
    /// Named devices that never become members (the campaign's `excluded`).
    pub not_members: u32,
    /// Every exclusion, members skipped or not, counted by reason.
    pub excluded_by_reason: BTreeMap<String, u32>,
    /// The first `MAX_LISTED_EXCLUSIONS` exclusions, in wave order.
    pub excluded: Vec<Exclusion>,
    pub waves: Vec<WavePreview>,
    pub forecast: ForecastSummary,
}

/// The simulated rollout as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForecastSummary {
    pub failure_percent: u32,
    pub update_secs: u64,
    pub starts_at: DateTime<Utc>,
    pub outcome: ForecastOutcome,
    pub ended_at: Option<DateTime<Utc>>,
    /// From the start to the end; absent when `unfinished`.
    pub duration_secs: Option<i64>,
}

/// Seeds are 64-bit; JSON numbers past 2^53 lose digits in JavaScript, so the
/// seed travels as decimal text.
mod seed_text {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(seed: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&seed.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

/// Previews `plan` against the inventory as it is at `now`.
pub async fn preview(
    pool: &PgPool,
    store: &Store,
    delivery: DeliveryPolicy,
    plan: &Plan<'_>,
    now: DateTime<Utc>,
) -> Result<Preview, PreviewError> {
    let model = plan.firmware.spec.as_ref().map(|s| s.device_model.clone()).unwrap_or_default();
    let matched = match_target(pool, &model, plan.target).await?;
    let drawn = assign_waves(&matched.candidates, plan.rollout, plan.seed);
    let mut excluded: Vec<Exclusion> = matched
        .not_members
        .into_iter()
        .map(|(device_id, why)| match why {
            NotMember::Unknown => Exclusion {
                message: format!("device {device_id} is not registered"),
                device_id,
                reason: "device.not_found".into(),
                wave: None,
            },
            NotMember::OtherModel { model: theirs } => Exclusion {
                message: format!("firmware is for device model {model}, device is {theirs}"),
                device_id,
                reason: "update.model_mismatch".into(),
                wave: None,
            },
        })
        .collect();
    let not_members = count(excluded.len());
    let policy = delivery.allowing_downgrade(plan.rollout.allow_downgrade);
    let mut fit = FitCheck::new(store, plan.firmware_id, plan.firmware, policy);
    let mut skipped = vec![0u32; drawn.len()];
    for (wave, members) in drawn.iter().enumerate() {
        for chunk in members.chunks(CHUNK) {
            let before = excluded.len();
            skips(store, &mut fit, chunk, wave, &mut excluded).await?;
            skipped[wave] += count(excluded.len() - before);
        }
    }
    let sizes: Vec<u32> = drawn.iter().zip(&skipped).map(|(m, s)| count(m.len()).saturating_sub(*s)).collect();
    let assume = Assumptions { failure_percent: plan.failure_percent, update_secs: plan.update_secs, seed: plan.seed };
    let run = forecast_with(plan.rollout, &sizes, now, assume);
    let mut excluded_by_reason = BTreeMap::new();
    for exclusion in &excluded {
        *excluded_by_reason.entry(exclusion.reason.clone()).or_insert(0) += 1;
    }
    excluded.truncate(MAX_LISTED_EXCLUSIONS);
    let waves = drawn
        .into_iter()
        .zip(run.waves)
        .enumerate()
        .map(|(wave, (members, forecast))| WavePreview {
            wave,
            members: members.iter().map(ToString::to_string).collect(),
            skipped: skipped[wave],
            forecast,
        })
        .collect::<Vec<_>>();
    Ok(Preview {
        seed: plan.seed,
        updating: sizes.iter().sum(),
        members: waves.iter().map(|w| count(w.members.len())).sum(),
        not_members,
        excluded_by_reason,
        excluded,
        waves,
        forecast: ForecastSummary {
            failure_percent: plan.failure_percent,
            update_secs: plan.update_secs,
            starts_at: run.starts_at,
            outcome: run.outcome,
            ended_at: run.ended_at,
            duration_secs: run.ended_at.map(|end| (end - run.starts_at).num_seconds()),
        },
    })
}

/// Appends the members of `chunk` that assignment would skip: those the rollout's
/// fit check refuses, and those busy with another update (which the rollout only
/// learns when the assignment is refused).
async fn skips(
    store: &Store,
    fit: &mut FitCheck<'_>,
    chunk: &[DeviceId],
    wave: usize,
    excluded: &mut Vec<Exclusion>,
) -> Result<(), PreviewError> {
    let verdicts = fit.check(chunk).await.map_err(PreviewError::Devices)?;
    let keys: Vec<String> = chunk.iter().map(ToString::to_string).collect();
    let lanes = store.load_many::<DeviceUpdate>(&keys).await.map_err(|e| PreviewError::Devices(unavailable(e)))?;
    for (device_id, verdict) in chunk.iter().zip(verdicts) {
        let exclusion = match verdict {
            Err(refused) => Some((refused.refusal().1.to_owned(), refused.to_string())),
            Ok(_) => lanes.get(device_id.as_str()).and_then(|(lane, _)| lane.active()).map(|lane| {
                let state = serde_json::to_value(lane.state).ok().and_then(|v| v.as_str().map(str::to_owned));
                let state = state.unwrap_or_default();
                let message = format!("busy with update {} ({state})", lane.action);
                ("device_update.already_active".to_owned(), message)
            }),
        };
        if let Some((reason, message)) = exclusion {
            excluded.push(Exclusion { device_id: device_id.to_string(), reason, message, wave: Some(wave) });
        }
    }
    Ok(())
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
