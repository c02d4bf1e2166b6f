//! A campaign as the API shows it.
//!
//! Built from the aggregate a command just changed (create and every action:
//! read-your-write, no waiting for a projection) or from the campaigns read model
//! (reads and lists). Either way the per-wave device counts, the decision log and
//! the creator come from read models, which may trail a command by a moment.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ota_domain::campaign::{Campaign as CampaignState, CampaignStatus, Target};
use ota_domain::device_update::UpdateState;
use ota_domain::rollout::{GateReport, RolloutPlan};
use ota_projections::campaigns::{CampaignView, DecisionView, WaveView};
use ota_projections::updates::WaveCounts;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;

#[derive(Debug, Serialize, ToSchema)]
pub struct Campaign {
    pub id: Uuid,
    pub name: String,
    pub status: CampaignStatus,
    pub firmware: FirmwareRef,
    pub target: Target,
    pub rollout: RolloutPlan,
    /// The campaign this one rolls back (an abort with `rollback_on_abort` creates it).
    pub rollback_of: Option<Uuid>,
    /// Members once started (all waves); before that, the explicitly listed devices.
    pub device_count: i64,
    /// Devices the target named that could not take part (another model, unknown ids).
    pub excluded: i64,
    pub current_wave: Option<i64>,
    /// The current wave passed and the next waits for `POST /campaigns/{id}/approve`.
    pub awaiting_approval: bool,
    pub waves: Vec<Wave>,
    /// Members not assigned yet (after a cancel or abort: never to be).
    pub unassigned: i64,
    /// Devices whose update is assigned, notified, downloading, downloaded or installing.
    pub in_flight: i64,
    /// Every step the campaign took, with the numbers each gate saw.
    pub decisions: Vec<Decision>,
    /// The reason given with the last pause, cancel or abort that had one.
    pub last_reason: Option<String>,
    /// `kind:id` of whoever created it.
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When the status or the current wave last changed.
    pub updated_at: DateTime<Utc>,
    /// How often the status changed since creation.
    pub status_changes: i64,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// The firmware a campaign ships.
#[derive(Debug, Serialize, ToSchema)]
pub struct FirmwareRef {
    pub id: Uuid,
    pub name: String,
    pub version: String,
    pub device_model: String,
}

/// One wave: its size, how far assignment got, and its devices by update state.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Wave {
    /// From 0.
    pub wave: i64,
    pub size: i64,
    pub assigned: i64,
    /// Members that could not be assigned (busy with another update).
    pub skipped: i64,
    pub started_at: Option<DateTime<Utc>>,
    /// Assigned, notified, downloading, downloaded or installing.
    pub in_progress: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub rejected: i64,
    pub timed_out: i64,
    pub cancelled: i64,
    pub rolled_back: i64,
}

/// One step of the decision log.
#[derive(Debug, Serialize, ToSchema)]
pub struct Decision {
    /// The campaign event's sequence number.
    pub sequence: i64,
    /// `edited`, `scheduled`, `started`, `wave_started`, `approval_requested`, `wave_approved`,
    /// `members_joined`, `paused`, `resumed`, `cancelled`, `completed` or `aborted`.
    pub decision: String,
    pub wave: Option<i32>,
    /// For gate decisions: the numbers the gate saw.
    #[schema(value_type = Option<GateReport>)]
    pub gate: Option<serde_json::Value>,
    pub reason: Option<String>,
    /// `kind:id`: a user, or `system:rollout` for the process manager.
    pub actor: Option<String>,
    pub decided_at: DateTime<Utc>,
}

/// What read models add to a campaign: its waves' counts and its decisions.
#[derive(Debug, Default)]
struct Extras {
    waves: Vec<WaveView>,
    counts: Vec<WaveCounts>,
    decisions: Vec<DecisionView>,
}

impl Campaign {
    /// The campaign a command just produced, with what the read models know of it.
    pub async fn from_state(pool: &PgPool, state: CampaignState) -> Result<Self, ApiError> {
        let id = state.id.ok_or_else(|| ApiError::internal_text("campaign state without id"))?.as_uuid();
        let extras = Extras::load(pool, &[id]).await?.remove(&id).unwrap_or_default();
        let created_by = ota_projections::campaigns::get(pool, id).await?.and_then(|view| view.created_by);
        Self::from_aggregate(state, extras, created_by)
    }

    /// A campaign just created: nothing is projected yet, the creator is the caller.
    pub fn created(state: CampaignState, created_by: String) -> Result<Self, ApiError> {
        Self::from_aggregate(state, Extras::default(), Some(created_by))
    }

    fn from_aggregate(state: CampaignState, extras: Extras, created_by: Option<String>) -> Result<Self, ApiError> {
        let missing = || ApiError::internal_text("campaign state without creation");
        let (id, firmware, created_at) =
            (state.id.ok_or_else(missing)?, state.firmware.ok_or_else(missing)?, state.created_at.ok_or_else(missing)?);
        let sizes: Vec<usize> =
            state.membership.as_ref().map_or_else(Vec::new, |m| m.waves.iter().map(Vec::len).collect());
        let views = sizes.iter().enumerate().map(|(w, size)| WaveView {
            wave: w as i32,
            size: *size as i32,
            assigned: state.assigned.get(w).copied().unwrap_or(0) as i32,
            skipped: state.skipped.get(w).copied().unwrap_or(0) as i32,
            started_at: state.wave_started_at.get(w).copied().flatten(),
        });
        let waves: Vec<Wave> = views.map(|view| Wave::of(view, &extras.counts)).collect();
        Ok(Campaign {
            id: id.as_uuid(),
            name: state.name,
            status: state.status,
            firmware: FirmwareRef {
                id: firmware.id.as_uuid(),
                name: firmware.name,
                version: firmware.version,
                device_model: firmware.device_model,
            },
            device_count: state
                .membership
                .as_ref()
                .map_or(state.target.device_ids.len(), |m| m.waves.iter().map(Vec::len).sum())
                as i64,
            excluded: i64::from(state.membership.as_ref().map_or(0, |m| m.excluded)),
            target: state.target,
            rollout: state.rollout,
            rollback_of: state.rollback_of.map(|c| c.as_uuid()),
            current_wave: state.current_wave.map(|w| w as i64),
            awaiting_approval: state.awaiting_approval,
            unassigned: waves.iter().map(|w: &Wave| (w.size - w.assigned).max(0)).sum(),
            in_flight: waves.iter().map(|w: &Wave| w.in_progress).sum(),
            waves,
            decisions: extras.decisions.into_iter().map(Decision::from).collect(),
            last_reason: state.last_reason,
            created_by,
            updated_at: state.updated_at.unwrap_or(created_at),
            status_changes: i64::from(state.status_changes),
            created_at,
            scheduled_for: state.scheduled_for,
            started_at: state.started_at,
            ended_at: state.ended_at,
        })
    }

    /// Campaigns as the read model has them, with their waves, counts and decisions.
    pub async fn from_views(pool: &PgPool, views: Vec<CampaignView>) -> Result<Vec<Self>, ApiError> {
        let ids: Vec<Uuid> = views.iter().map(|v| v.id).collect();
        let mut extras = Extras::load(pool, &ids).await?;
        views
            .into_iter()
            .map(|view| {
                let extra = extras.remove(&view.id).unwrap_or_default();
                Self::from_view(view, extra)
            })
            .collect()
    }

    fn from_view(view: CampaignView, extras: Extras) -> Result<Self, ApiError> {
        let corrupt = |what: &str, e: &dyn std::fmt::Display| {
            ApiError::internal_text(format!("campaign {} read model: {what}: {e}", view.id))
        };
        let status = view.status.parse::<CampaignStatus>().map_err(|e| corrupt("status", &e))?;
        let target: Target = serde_json::from_value(view.target.clone()).map_err(|e| corrupt("target", &e))?;
        let rollout: RolloutPlan = serde_json::from_value(view.rollout.clone()).map_err(|e| corrupt("rollout", &e))?;
        let counts = extras.counts;
        let waves: Vec<Wave> = extras.waves.into_iter().map(|view| Wave::of(view, &counts)).collect();
        Ok(Campaign {
            id: view.id,
            name: view.name,
            status,
            firmware: FirmwareRef {
                id: view.firmware_id,
                name: view.firmware_name,
                version: view.firmware_version,
                device_model: view.device_model,
            },
            target,
            rollout,
            rollback_of: view.rollback_of,
            device_count: i64::from(view.device_count),
            excluded: i64::from(view.excluded),
            current_wave: view.current_wave.map(i64::from),
            awaiting_approval: view.awaiting_approval,
            unassigned: waves.iter().map(|w: &Wave| (w.size - w.assigned).max(0)).sum(),
            in_flight: waves.iter().map(|w: &Wave| w.in_progress).sum(),
            waves,
            decisions: extras.decisions.into_iter().map(Decision::from).collect(),
            last_reason: view.last_reason,
            created_by: view.created_by,
            created_at: view.created_at,
            updated_at: view.updated_at,
            status_changes: i64::from(view.status_changes),
            scheduled_for: view.scheduled_for,
            started_at: view.started_at,
            ended_at: view.ended_at,
        })
    }
}

impl Wave {
    /// A wave's sizes and cursor, with its devices by state when the counts have it.
    fn of(view: WaveView, counts: &[WaveCounts]) -> Self {
        let mut wave = Wave {
            wave: i64::from(view.wave),
            size: i64::from(view.size),
            assigned: i64::from(view.assigned),
            skipped: i64::from(view.skipped),
            started_at: view.started_at,
            ..Wave::default()
        };
        if let Some(counts) = counts.iter().find(|c| c.wave == view.wave) {
            wave.count(counts);
        }
        wave
    }

    fn count(&mut self, counts: &WaveCounts) {
        self.in_progress = counts.in_flight();
        self.succeeded = counts.of(UpdateState::Succeeded);
        self.failed = counts.of(UpdateState::Failed);
        self.rejected = counts.of(UpdateState::Rejected);
        self.timed_out = counts.of(UpdateState::TimedOut);
        self.cancelled = counts.of(UpdateState::Cancelled);
        self.rolled_back = counts.of(UpdateState::RolledBack);
    }
}

impl From<DecisionView> for Decision {
    fn from(d: DecisionView) -> Self {
        Decision {
            sequence: d.sequence,
            decision: d.decision,
            wave: d.wave,
            gate: d.gate,
            reason: d.reason,
            actor: d.actor,
            decided_at: d.decided_at,
        }
    }
}

impl Extras {
    /// The read models' part of several campaigns, in three queries whatever their number.
    async fn load(pool: &PgPool, ids: &[Uuid]) -> Result<HashMap<Uuid, Extras>, ApiError> {
        let mut extras: HashMap<Uuid, Extras> = HashMap::new();
        for (id, wave) in ota_projections::campaigns::waves_of(pool, ids).await? {
            extras.entry(id).or_default().waves.push(wave);
        }
        for (id, counts) in ota_projections::updates::wave_counts_of(pool, ids).await? {
            extras.entry(id).or_default().counts.push(counts);
        }
        for (id, decision) in ota_projections::campaigns::decisions_of(pool, ids).await? {
            extras.entry(id).or_default().decisions.push(decision);
        }
        Ok(extras)
    }
}
