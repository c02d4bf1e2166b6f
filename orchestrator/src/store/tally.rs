//! The gates' counters, written inline: in the transaction that stores the
//! device-update events they count (`wave_tallies`, migration 0023).
//!
//! Measured before (issue 15): gates read the asynchronous `updates` read
//! model, which ran a minute and a half behind a 100k-device rollout, so a
//! failure gate saw failures that late while waves kept being assigned.

use std::collections::{BTreeMap, HashMap};

use ota_domain::device_update::{tally_delta, DeviceUpdate, TallyKey};
use ota_domain::CampaignId;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use super::rows::decode_row;

/// Counter changes of a decided batch, by aggregate id (a conflicted
/// aggregate's are left out with its rows).
pub(super) type Deltas = HashMap<String, Vec<(TallyKey, i64)>>;

/// Slots each counter is split over: concurrent transactions add to different
/// rows, so they never wait for each other's commit.
pub(super) const SLOTS: usize = 16;

/// `(campaign, wave, state, retry)`: the row key without the slot, ordered so
/// that every transaction locks its rows in the same order.
type RowKey = (Uuid, i32, &'static str, i32);

fn row_key(key: &TallyKey) -> RowKey {
    (key.campaign.as_uuid(), key.wave as i32, key.state.as_str(), key.retry as i32)
}

/// Adds `deltas` to the counters of `slot`, inside the caller's transaction.
pub(super) async fn add<'a>(
    tx: &mut PgConnection,
    slot: usize,
    deltas: impl IntoIterator<Item = &'a (TallyKey, i64)>,
) -> Result<(), sqlx::Error> {
    let mut sums: BTreeMap<RowKey, i64> = BTreeMap::new();
    for (key, by) in deltas {
        *sums.entry(row_key(key)).or_default() += by;
    }
    // A zero is written too: the row then exists, as it would after a replay.
    if sums.is_empty() {
        return Ok(());
    }
    let (mut campaigns, mut waves, mut states, mut retries, mut bys) = (vec![], vec![], vec![], vec![], vec![]);
    for ((campaign, wave, state, retry), by) in sums {
        campaigns.push(campaign);
        waves.push(wave);
        states.push(state);
        retries.push(retry);
        bys.push(by);
    }
    sqlx::query(
        "INSERT INTO wave_tallies (campaign_id, wave, state, retry, slot, count)
         SELECT c, w, s, r, $6, n FROM UNNEST($1::uuid[], $2::int[], $3::text[], $4::int[], $5::bigint[]) AS t(c, w, s, r, n)
         ON CONFLICT (campaign_id, wave, state, retry, slot) DO UPDATE SET count = wave_tallies.count + EXCLUDED.count",
    )
    .bind(campaigns)
    .bind(waves)
    .bind(states)
    .bind(retries)
    .bind(bys)
    .bind(slot as i16)
    .execute(tx)
    .await?;
    Ok(())
}

/// One wave's counter: `(wave, state, retry, count)`.
pub type TallyRow = (i32, String, i32, i64);

/// A campaign's counters, summed over slots.
pub async fn campaign_tallies(pool: &PgPool, campaign: CampaignId) -> Result<Vec<TallyRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT wave, state, retry, sum(count)::bigint FROM wave_tallies WHERE campaign_id = $1
         GROUP BY wave, state, retry ORDER BY wave, state, retry",
    )
    .bind(campaign.as_uuid())
    .fetch_all(pool)
    .await
}

/// Builds the counters from the stored events unless they were built: once, for
/// events stored before the counters existed.
pub async fn build_once(pool: &PgPool) -> Result<(), sqlx::Error> {
    let built: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM wave_tallies_built)").fetch_one(pool).await?;
    if !built {
        build(pool, false).await?;
    }
    Ok(())
}

/// Rebuilds the counters from the stored events (`ota replay tallies`).
/// Returns the events read.
pub async fn rebuild_all(pool: &PgPool) -> Result<u64, sqlx::Error> {
    build(pool, true).await
}

/// Writers wait meanwhile (they add to the table this holds locked), so nothing
/// is counted twice or missed.
async fn build(pool: &PgPool, again: bool) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("LOCK TABLE wave_tallies IN EXCLUSIVE MODE").execute(&mut *tx).await?;
    // Another leader may have built them while this one waited for the lock.
    let built: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM wave_tallies_built)").fetch_one(&mut *tx).await?;
    let mut events = 0;
    if again || !built {
        let started = std::time::Instant::now();
        events = rebuild(&mut tx).await?;
        sqlx::query(
            "INSERT INTO wave_tallies_built DEFAULT VALUES ON CONFLICT (only_row) DO UPDATE SET built_at = now()",
        )
        .execute(&mut *tx)
        .await?;
        tracing::info!(events, elapsed = ?started.elapsed(), "wave counters built from the event store");
    }
    tx.commit().await?;
    Ok(events)
}

/// Replaces the counters with a fold of every device-update event, inside the
/// caller's transaction (which holds the table locked). Returns the events read.
async fn rebuild(tx: &mut PgConnection) -> Result<u64, sqlx::Error> {
    use futures::TryStreamExt;
    sqlx::query("DELETE FROM wave_tallies").execute(&mut *tx).await?;
    let mut totals: HashMap<TallyKey, i64> = HashMap::new();
    let mut read = 0u64;
    {
        let mut rows = sqlx::query(
            "SELECT aggregate_id, sequence, event_type, event_version, payload, metadata FROM events
             WHERE aggregate_type = 'DeviceUpdate' ORDER BY aggregate_id, sequence",
        )
        .fetch(&mut *tx);
        let mut device: Option<(String, DeviceUpdate)> = None;
        while let Some(row) = rows.try_next().await? {
            read += 1;
            let id: String = row.try_get("aggregate_id")?;
            if device.as_ref().is_none_or(|(current, _)| *current != id) {
                device = Some((id.clone(), DeviceUpdate::default()));
            }
            let Some((_, state)) = device.as_mut() else { continue };
            let Ok(envelope) = decode_row::<DeviceUpdate>(&row) else {
                tracing::warn!(device = %id, "an undecodable device-update event is left out of the wave counters");
                continue;
            };
            let before = state.tally_slot();
            cqrs_es::Aggregate::apply(state, envelope.payload);
            for (key, by) in tally_delta(before, state.tally_slot()) {
                *totals.entry(key).or_default() += by;
            }
        }
    }
    let deltas: Vec<(TallyKey, i64)> = totals.into_iter().collect();
    add(tx, 0, &deltas).await?;
    Ok(read)
}
