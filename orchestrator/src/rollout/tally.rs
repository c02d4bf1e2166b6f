//! What the process manager reads: active campaigns and wave tallies, from the
//! incrementally kept read models (never a COUNT over devices per decision).

use std::collections::BTreeMap;

use ota_domain::campaign::Campaign;
use ota_domain::rollout::WaveTally;
use ota_domain::CampaignId;
use sqlx::PgPool;
use uuid::Uuid;

pub async fn active_campaigns(pool: &PgPool) -> Result<Vec<CampaignId>, sqlx::Error> {
    let ids: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM campaigns WHERE status IN ('scheduled', 'running') ORDER BY created_at")
            .fetch_all(pool)
            .await?;
    Ok(ids.into_iter().map(CampaignId::from_uuid).collect())
}

/// Every continuous campaign ever created, from the event store itself (indexed),
/// so a campaign created a moment ago is never missed; the caller checks each
/// one's status in its own stream.
pub async fn continuous_campaigns(pool: &PgPool) -> Result<Vec<CampaignId>, sqlx::Error> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT e.aggregate_id FROM events e
         WHERE e.aggregate_type = 'Campaign' AND e.event_type = 'CampaignCreated'
           AND (e.payload -> 'CampaignCreated' -> 'target' ->> 'continuous') = 'true'
           AND NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.id::text = e.aggregate_id
                           AND c.status IN ('completed', 'cancelled', 'aborted'))
         ORDER BY e.aggregate_id",
    )
    .fetch_all(pool)
    .await?;
    Ok(ids.into_iter().filter_map(|id| id.parse().ok()).collect())
}

/// One tally per wave: sizes from the membership and cursor, states from the counters.
pub async fn wave_tallies(pool: &PgPool, campaign: &Campaign) -> Result<Vec<WaveTally>, sqlx::Error> {
    let Some(id) = campaign.id else { return Ok(vec![]) };
    let counts = ota_projections::updates::wave_counts(pool, id.as_uuid()).await?;
    // A failure that will be retried is still in flight: it neither trips nor passes a gate.
    let pending_retries: Vec<(i32, String, i64)> = if campaign.rollout.max_retries > 0 {
        sqlx::query_as(
            "SELECT wave, state, count(*) FROM device_updates WHERE campaign_id = $1
             AND state IN ('failed', 'timed_out') AND retry < $2 AND wave IS NOT NULL GROUP BY wave, state",
        )
        .bind(id.as_uuid())
        .bind(campaign.rollout.max_retries as i32)
        .fetch_all(pool)
        .await?
    } else {
        Vec::new()
    };
    let mut tallies = Vec::with_capacity(campaign.wave_count());
    for wave in 0..campaign.wave_count() {
        let members = campaign.wave_members(wave).len() as u32;
        let skipped = campaign.skipped.get(wave).copied().unwrap_or(0);
        let assigned = campaign.assigned.get(wave).copied().unwrap_or(0).saturating_sub(skipped);
        let empty = BTreeMap::new();
        let by_state = counts.iter().find(|c| c.wave == wave as i32).map_or(&empty, |c| &c.by_state);
        let n = |s: &str| by_state.get(s).copied().unwrap_or(0).max(0) as u32;
        let retrying = |s: &str| {
            pending_retries
                .iter()
                .filter(|(w, st, _)| *w == wave as i32 && st == s)
                .map(|(_, _, c)| *c as u32)
                .sum::<u32>()
        };
        let (failed_retrying, timed_out_retrying) = (retrying("failed"), retrying("timed_out"));
        tallies.push(WaveTally {
            size: members.saturating_sub(skipped),
            assigned,
            in_progress: ["assigned", "notified", "downloading", "downloaded", "installing"]
                .iter()
                .map(|s| n(s))
                .sum::<u32>()
                + failed_retrying
                + timed_out_retrying,
            // A rollback campaign succeeds when devices are back on their previous firmware.
            succeeded: if campaign.rollback_of.is_some() { n("rolled_back") } else { n("succeeded") },
            failed: n("failed").saturating_sub(failed_retrying),
            timed_out: n("timed_out").saturating_sub(timed_out_retrying),
            rejected: n("rejected"),
            cancelled: n("cancelled") + if campaign.rollback_of.is_some() { 0 } else { n("rolled_back") },
        });
    }
    Ok(tallies)
}

/// Devices of a campaign in the given states: id, action, wave, retry count, state, last change.
pub async fn devices_in(
    pool: &PgPool,
    campaign: CampaignId,
    states: &[&str],
) -> Result<Vec<(String, i32, Option<i32>, i32, String, chrono::DateTime<chrono::Utc>)>, sqlx::Error> {
    let states: Vec<String> = states.iter().map(|s| s.to_string()).collect();
    sqlx::query_as(
        "SELECT device_id, action, wave, retry, state, updated_at FROM device_updates
         WHERE campaign_id = $1 AND state = ANY($2) ORDER BY device_id",
    )
    .bind(campaign.as_uuid())
    .bind(states)
    .fetch_all(pool)
    .await
}
