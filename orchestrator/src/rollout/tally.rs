//! What the process manager reads: active campaigns and wave tallies, from the
//! incrementally kept read models (never a COUNT over devices per decision).

use ota_domain::campaign::{Campaign, CampaignStatus};
use ota_domain::device_update::UpdateState;
use ota_domain::rollout::WaveTally;
use ota_domain::CampaignId;
use std::collections::HashMap;

use sqlx::PgPool;
use uuid::Uuid;

use crate::store::TallyRow;

/// The outcomes a device may be retried after.
const RETRYABLE: [UpdateState; 2] = [UpdateState::Failed, UpdateState::TimedOut];

pub async fn active_campaigns(pool: &PgPool) -> Result<Vec<CampaignId>, sqlx::Error> {
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM campaigns WHERE status = ANY($1) ORDER BY created_at")
        .bind(&CampaignStatus::ACTIVE.map(CampaignStatus::as_str)[..])
        .fetch_all(pool)
        .await?;
    Ok(ids.into_iter().map(CampaignId::from_uuid).collect())
}

/// Every campaign ever created or edited as continuous, from the event store itself
/// (indexed), so a campaign created a moment ago is never missed; the caller checks
/// each one's status and target in its own stream.
pub async fn continuous_campaigns(pool: &PgPool) -> Result<Vec<CampaignId>, sqlx::Error> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT e.aggregate_id FROM (
             SELECT aggregate_id FROM events
              WHERE aggregate_type = 'Campaign' AND event_type = 'CampaignCreated'
                AND (payload -> 'CampaignCreated' -> 'target' ->> 'continuous') = 'true'
             UNION ALL
             SELECT aggregate_id FROM events
              WHERE aggregate_type = 'Campaign' AND event_type = 'CampaignEdited'
                AND (payload -> 'CampaignEdited' -> 'target' ->> 'continuous') = 'true') e
         WHERE NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.id::text = e.aggregate_id
                           AND c.status = ANY($1))
         ORDER BY e.aggregate_id",
    )
    .bind(&CampaignStatus::TERMINAL.map(CampaignStatus::as_str)[..])
    .fetch_all(pool)
    .await?;
    Ok(ids.into_iter().filter_map(|id| id.parse().ok()).collect())
}

/// Single updates assigned with a timeout that are still in flight and have had no
/// report for longer than it: (device, action). From the event store's timeouts
/// (indexed: only such assignments carry one) and the updates read model's progress.
pub async fn overdue_single_updates(pool: &PgPool) -> Result<Vec<(String, i32)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.device_id, d.action FROM events e
           JOIN device_updates d ON d.device_id = e.aggregate_id
                AND d.action = (e.payload -> 'UpdateAssigned' ->> 'action')::int
          WHERE e.aggregate_type = 'DeviceUpdate' AND e.event_type = 'UpdateAssigned'
            AND (e.payload -> 'UpdateAssigned' -> 'origin') ? 'timeout_secs'
            AND d.campaign_id IS NULL AND d.state = ANY($1)
            AND d.updated_at + make_interval(secs => (e.payload -> 'UpdateAssigned' -> 'origin' ->> 'timeout_secs')::int)
                < now()
          ORDER BY d.device_id",
    )
    .bind(&UpdateState::IN_FLIGHT.map(UpdateState::as_str)[..])
    .fetch_all(pool)
    .await
}

/// One tally per wave: sizes from the membership and cursor, states from the
/// counters the store keeps in the reports' own transactions.
pub async fn wave_tallies(pool: &PgPool, campaign: &Campaign) -> Result<Vec<WaveTally>, sqlx::Error> {
    let Some(id) = campaign.id else { return Ok(vec![]) };
    let counters = crate::store::campaign_tallies(pool, id).await?;
    Ok(tallies_of(campaign, &counters))
}

/// The gates' view of a campaign's counters.
fn tallies_of(campaign: &Campaign, counters: &[TallyRow]) -> Vec<WaveTally> {
    // A failure that will be retried is still in flight: it neither trips nor passes a gate.
    let retried = |retry: i32| (retry as i64) < i64::from(campaign.rollout.max_retries);
    let mut tallies = Vec::with_capacity(campaign.wave_count());
    for wave in 0..campaign.wave_count() {
        let members = campaign.wave_members(wave).len() as u32;
        let skipped = campaign.skipped.get(wave).copied().unwrap_or(0);
        let assigned = campaign.assigned.get(wave).copied().unwrap_or(0).saturating_sub(skipped);
        let rows = counters.iter().filter(|(w, ..)| *w == wave as i32);
        let (mut n, mut retrying) = (HashMap::<&str, i64>::new(), 0i64);
        for (_, state, retry, count) in rows {
            let will_retry = RETRYABLE.iter().any(|s| s.as_str() == state) && retried(*retry);
            match will_retry {
                true => retrying += count,
                false => *n.entry(state.as_str()).or_default() += count,
            }
        }
        let n = |s: UpdateState| n.get(s.as_str()).copied().unwrap_or(0).max(0) as u32;
        tallies.push(WaveTally {
            size: members.saturating_sub(skipped),
            assigned,
            in_progress: UpdateState::IN_FLIGHT.into_iter().map(n).sum::<u32>() + retrying.max(0) as u32,
            // A rollback campaign succeeds when devices are back on their previous firmware.
            succeeded: if campaign.rollback_of.is_some() {
                n(UpdateState::RolledBack)
            } else {
                n(UpdateState::Succeeded)
            },
            failed: n(UpdateState::Failed),
            timed_out: n(UpdateState::TimedOut),
            rejected: n(UpdateState::Rejected),
            cancelled: n(UpdateState::Cancelled)
                + if campaign.rollback_of.is_some() { 0 } else { n(UpdateState::RolledBack) },
        });
    }
    tallies
}

/// A device of a campaign in a given state: id, action, wave, retry count, state, last change.
pub type DeviceInState = (String, i32, Option<i32>, i32, UpdateState, chrono::DateTime<chrono::Utc>);

/// A `DeviceInState` as stored, its state as text.
type DeviceRow = (String, i32, Option<i32>, i32, String, chrono::DateTime<chrono::Utc>);

/// Devices of a campaign in the given states; a row whose state text is unknown
/// (written by a newer version) is left out.
pub async fn devices_in(
    pool: &PgPool,
    campaign: CampaignId,
    states: &[UpdateState],
) -> Result<Vec<DeviceInState>, sqlx::Error> {
    let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
    let rows: Vec<DeviceRow> = sqlx::query_as(
        "SELECT device_id, action, wave, retry, state, updated_at FROM device_updates
         WHERE campaign_id = $1 AND state = ANY($2) ORDER BY device_id",
    )
    .bind(campaign.as_uuid())
    .bind(&states[..])
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(device, action, wave, retry, state, at)| {
            Some((device, action, wave, retry, state.parse().ok()?, at))
        })
        .collect())
}
