//! Reading the devices' current rows and writing a folded batch back, set-based.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::fold::{Changes, Current, History};
use super::queries::CURRENT_COLUMNS;

pub async fn load_current(
    conn: &mut PgConnection,
    devices: &[String],
) -> Result<HashMap<String, Current>, sqlx::Error> {
    let rows: Vec<Current> =
        sqlx::query_as(&format!("SELECT {CURRENT_COLUMNS} FROM device_updates WHERE device_id = ANY($1)"))
            .bind(devices)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().map(|row| (row.device_id.clone(), row)).collect())
}

/// Column arrays of a set of `Current` rows, for UNNEST.
#[derive(Default)]
struct Columns {
    device: Vec<String>,
    action: Vec<i32>,
    kind: Vec<String>,
    campaign: Vec<Option<Uuid>>,
    wave: Vec<Option<i32>>,
    retry: Vec<i32>,
    firmware_id: Vec<Uuid>,
    firmware_version: Vec<String>,
    from_version: Vec<Option<String>>,
    state: Vec<String>,
    progress: Vec<Option<i16>>,
    message: Vec<Option<String>>,
    cancel_requested: Vec<bool>,
    assigned_at: Vec<DateTime<Utc>>,
    updated_at: Vec<DateTime<Utc>>,
}

impl Columns {
    fn push(&mut self, row: &Current) {
        self.device.push(row.device_id.clone());
        self.action.push(row.action);
        self.kind.push(row.kind.clone());
        self.campaign.push(row.campaign_id);
        self.wave.push(row.wave);
        self.retry.push(row.retry);
        self.firmware_id.push(row.firmware_id);
        self.firmware_version.push(row.firmware_version.clone());
        self.from_version.push(row.from_version.clone());
        self.state.push(row.state.clone());
        self.progress.push(row.progress);
        self.message.push(row.message.clone());
        self.cancel_requested.push(row.cancel_requested);
        self.assigned_at.push(row.assigned_at);
        self.updated_at.push(row.updated_at);
    }
}

pub async fn store(conn: &mut PgConnection, changes: &Changes) -> Result<(), sqlx::Error> {
    upsert_current(conn, changes).await?;
    let (new, old): (Vec<&History>, Vec<&History>) = changes.history.values().partition(|h| h.new);
    insert_history(conn, &new).await?;
    update_history(conn, &old).await?;
    bump_counters(conn, changes).await
}

async fn upsert_current(conn: &mut PgConnection, changes: &Changes) -> Result<(), sqlx::Error> {
    let mut c = Columns::default();
    // Only rows a batch touched are written; the others were read for context.
    let touched: std::collections::BTreeSet<&String> = changes.history.keys().map(|(d, _)| d).collect();
    for row in changes.current.values().filter(|r| touched.contains(&r.device_id)) {
        c.push(row);
    }
    if c.device.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO device_updates (device_id, action, kind, campaign_id, wave, retry, firmware_id, firmware_version,
            from_version, state, progress, message, assigned_at, updated_at, cancel_requested)
         SELECT * FROM UNNEST($1::text[], $2::int[], $3::text[], $4::uuid[], $5::int[], $6::int[], $7::uuid[],
            $8::text[], $9::text[], $10::text[], $11::smallint[], $12::text[], $13::timestamptz[], $14::timestamptz[],
            $15::bool[])
         ON CONFLICT (device_id) DO UPDATE SET action = EXCLUDED.action, kind = EXCLUDED.kind,
            campaign_id = EXCLUDED.campaign_id, wave = EXCLUDED.wave, retry = EXCLUDED.retry,
            firmware_id = EXCLUDED.firmware_id, firmware_version = EXCLUDED.firmware_version,
            from_version = EXCLUDED.from_version, state = EXCLUDED.state, progress = EXCLUDED.progress,
            message = EXCLUDED.message, assigned_at = EXCLUDED.assigned_at, updated_at = EXCLUDED.updated_at,
            cancel_requested = EXCLUDED.cancel_requested",
    )
    .bind(&c.device)
    .bind(&c.action)
    .bind(&c.kind)
    .bind(&c.campaign)
    .bind(&c.wave)
    .bind(&c.retry)
    .bind(&c.firmware_id)
    .bind(&c.firmware_version)
    .bind(&c.from_version)
    .bind(&c.state)
    .bind(&c.progress)
    .bind(&c.message)
    .bind(&c.assigned_at)
    .bind(&c.updated_at)
    .bind(&c.cancel_requested)
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_history(conn: &mut PgConnection, rows: &[&History]) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut c = Columns::default();
    for h in rows {
        c.push(&h.current);
    }
    let assigned_by: Vec<Option<String>> = rows.iter().map(|h| h.assigned_by.clone()).collect();
    let last_message: Vec<Option<String>> = rows.iter().map(|h| h.last_message.clone()).collect();
    let finished_at: Vec<Option<DateTime<Utc>>> = rows.iter().map(|h| h.finished_at).collect();
    sqlx::query(
        "INSERT INTO update_history (device_id, action, kind, campaign_id, wave, retry, firmware_id, firmware_version,
            from_version, state, last_message, assigned_by, assigned_at, updated_at, finished_at)
         SELECT * FROM UNNEST($1::text[], $2::int[], $3::text[], $4::uuid[], $5::int[], $6::int[], $7::uuid[],
            $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::timestamptz[], $14::timestamptz[],
            $15::timestamptz[])",
    )
    .bind(&c.device)
    .bind(&c.action)
    .bind(&c.kind)
    .bind(&c.campaign)
    .bind(&c.wave)
    .bind(&c.retry)
    .bind(&c.firmware_id)
    .bind(&c.firmware_version)
    .bind(&c.from_version)
    .bind(&c.state)
    .bind(&last_message)
    .bind(&assigned_by)
    .bind(&c.assigned_at)
    .bind(&c.updated_at)
    .bind(&finished_at)
    .execute(&mut *conn)
    .await?;
    let rollbacks: Vec<&&History> = rows.iter().filter(|h| h.rolls_back.is_some()).collect();
    if !rollbacks.is_empty() {
        sqlx::query(
            "INSERT INTO rollback_log (device_id, action, of_action, from_version, to_version, campaign_id,
                requested_by, requested_at, state, finished_at)
             SELECT * FROM UNNEST($1::text[], $2::int[], $3::int[], $4::text[], $5::text[], $6::uuid[], $7::text[],
                $8::timestamptz[], $9::text[], $10::timestamptz[])",
        )
        .bind(rollbacks.iter().map(|h| h.current.device_id.clone()).collect::<Vec<_>>())
        .bind(rollbacks.iter().map(|h| h.current.action).collect::<Vec<_>>())
        .bind(rollbacks.iter().map(|h| h.rolls_back.unwrap_or(0)).collect::<Vec<_>>())
        .bind(rollbacks.iter().map(|h| h.current.from_version.clone()).collect::<Vec<_>>())
        .bind(rollbacks.iter().map(|h| h.current.firmware_version.clone()).collect::<Vec<_>>())
        .bind(rollbacks.iter().map(|h| h.current.campaign_id).collect::<Vec<_>>())
        .bind(rollbacks.iter().map(|h| h.assigned_by.clone()).collect::<Vec<_>>())
        .bind(rollbacks.iter().map(|h| h.current.assigned_at).collect::<Vec<_>>())
        .bind(rollbacks.iter().map(|h| h.current.state.clone()).collect::<Vec<_>>())
        .bind(rollbacks.iter().map(|h| h.finished_at).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    }
    Ok(())
}

async fn update_history(conn: &mut PgConnection, rows: &[&History]) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let device: Vec<String> = rows.iter().map(|h| h.current.device_id.clone()).collect();
    let action: Vec<i32> = rows.iter().map(|h| h.current.action).collect();
    let state: Vec<String> = rows.iter().map(|h| h.current.state.clone()).collect();
    let message: Vec<Option<String>> = rows.iter().map(|h| h.last_message.clone()).collect();
    let updated_at: Vec<DateTime<Utc>> = rows.iter().map(|h| h.current.updated_at).collect();
    let finished_at: Vec<Option<DateTime<Utc>>> = rows.iter().map(|h| h.finished_at).collect();
    sqlx::query(
        "UPDATE update_history h SET state = u.state, last_message = COALESCE(u.message, h.last_message),
            updated_at = u.updated_at, finished_at = COALESCE(u.finished_at, h.finished_at)
         FROM UNNEST($1::text[], $2::int[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[])
            AS u(device_id, action, state, message, updated_at, finished_at)
         WHERE h.device_id = u.device_id AND h.action = u.action",
    )
    .bind(&device)
    .bind(&action)
    .bind(&state)
    .bind(&message)
    .bind(&updated_at)
    .bind(&finished_at)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE rollback_log r SET state = u.state, finished_at = COALESCE(u.finished_at, r.finished_at)
         FROM UNNEST($1::text[], $2::int[], $3::text[], $4::timestamptz[]) AS u(device_id, action, state, finished_at)
         WHERE r.device_id = u.device_id AND r.action = u.action",
    )
    .bind(&device)
    .bind(&action)
    .bind(&state)
    .bind(&finished_at)
    .execute(conn)
    .await?;
    Ok(())
}

async fn bump_counters(conn: &mut PgConnection, changes: &Changes) -> Result<(), sqlx::Error> {
    // Zero deltas are written too: a counter row exists once its state occurred,
    // however the events were batched (live and replayed models stay equal).
    let waves: Vec<(&(Uuid, i32, String), &i64)> = changes.wave_deltas.iter().collect();
    if !waves.is_empty() {
        sqlx::query(
            "INSERT INTO campaign_wave_counts (campaign_id, wave, state, count)
             SELECT * FROM UNNEST($1::uuid[], $2::int[], $3::text[], $4::bigint[])
             ON CONFLICT (campaign_id, wave, state) DO UPDATE SET count = campaign_wave_counts.count + EXCLUDED.count",
        )
        .bind(waves.iter().map(|((c, _, _), _)| *c).collect::<Vec<_>>())
        .bind(waves.iter().map(|((_, w, _), _)| *w).collect::<Vec<_>>())
        .bind(waves.iter().map(|((_, _, s), _)| s.clone()).collect::<Vec<_>>())
        .bind(waves.iter().map(|(_, d)| **d).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    let states: Vec<(&String, &i64)> = changes.state_deltas.iter().collect();
    if !states.is_empty() {
        sqlx::query(
            "INSERT INTO update_state_counts (state, count) SELECT * FROM UNNEST($1::text[], $2::bigint[])
             ON CONFLICT (state) DO UPDATE SET count = update_state_counts.count + EXCLUDED.count",
        )
        .bind(states.iter().map(|(s, _)| (*s).clone()).collect::<Vec<_>>())
        .bind(states.iter().map(|(_, d)| **d).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    }
    Ok(())
}
