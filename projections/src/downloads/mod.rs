//! The download log: what each device fetched of which firmware, and per-firmware totals.

use chrono::{DateTime, Utc};
use ota_domain::device_update::DeviceUpdateEvent;
use ota_domain::EventRecord;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::page::{snapshot, Page, PageRequest};
use crate::projection::{apply_as_batch, Projection, ProjectionName};

pub struct DownloadsProjection;

impl Projection for DownloadsProjection {
    const NAME: ProjectionName = ProjectionName::Downloads;
    const TABLES: &'static [&'static str] = &["firmware_downloads"];

    async fn apply(conn: &mut PgConnection, record: &EventRecord) -> Result<(), ProjectionError> {
        apply_as_batch::<Self>(conn, record).await
    }

    async fn apply_many(
        conn: &mut PgConnection,
        records: &[EventRecord],
    ) -> Result<Vec<(usize, String)>, ProjectionError> {
        let mut poison = Vec::new();
        let mut rows = Vec::new();
        for (index, record) in records.iter().enumerate() {
            match record.decode::<DeviceUpdateEvent>() {
                Ok(DeviceUpdateEvent::DownloadServed { action, download, at }) => {
                    rows.push((record, action, download, at))
                }
                Ok(_) => {}
                Err(e) => poison.push((index, e.to_string())),
            }
        }
        if rows.is_empty() {
            return Ok(poison);
        }
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        sqlx::query(
            r#"INSERT INTO firmware_downloads (device_id, sequence, action, firmware_id, requests, "offset", bytes,
                complete, whole, via, at)
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::int[], $4::uuid[], $5::int[], $6::bigint[],
                $7::bigint[], $8::bool[], $9::bool[], $10::text[], $11::timestamptz[])
             ON CONFLICT DO NOTHING"#,
        )
        .bind(rows.iter().map(|(r, ..)| r.aggregate_id.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(r, ..)| r.sequence).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, a, ..)| i32::try_from(*a).unwrap_or(i32::MAX)).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, d, _)| d.firmware.as_uuid()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, d, _)| i32::try_from(d.requests).unwrap_or(i32::MAX)).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, d, _)| clamp(d.offset)).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, d, _)| clamp(d.bytes)).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, d, _)| d.complete).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, d, _)| d.whole).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, d, _)| d.via.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(.., at)| *at).collect::<Vec<_>>())
        .execute(conn)
        .await?;
        Ok(poison)
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DownloadView {
    pub device_id: String,
    pub action: i32,
    pub firmware_id: Uuid,
    pub requests: i32,
    pub offset: i64,
    pub bytes: i64,
    pub complete: bool,
    pub whole: bool,
    pub via: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, PartialEq, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DownloadStats {
    /// Download records (requests are summed per device over a few seconds).
    pub downloads: i64,
    pub requests: i64,
    pub bytes: i64,
    pub devices: i64,
    /// Devices that fetched the whole image in one request, completely.
    pub devices_complete: i64,
    /// Records that ended before everything asked for was sent.
    pub interrupted: i64,
}

/// One firmware's totals and a page of its newest downloads, read from one snapshot so that the totals
/// count the rows the page is cut from (the page's total is the totals' download count).
pub async fn log(
    pool: &PgPool,
    firmware: Uuid,
    page: PageRequest,
) -> Result<(DownloadStats, Page<DownloadView>), sqlx::Error> {
    let mut snapshot = snapshot(pool).await?;
    let stats: DownloadStats = sqlx::query_as(
        "SELECT count(*) AS downloads, coalesce(sum(requests), 0)::bigint AS requests,
                coalesce(sum(bytes), 0)::bigint AS bytes, count(DISTINCT device_id) AS devices,
                count(DISTINCT device_id) FILTER (WHERE whole AND complete) AS devices_complete,
                count(*) FILTER (WHERE NOT complete) AS interrupted
         FROM firmware_downloads WHERE firmware_id = $1",
    )
    .bind(firmware)
    .fetch_one(&mut *snapshot)
    .await?;
    let items = sqlx::query_as(
        r#"SELECT device_id, action, firmware_id, requests, "offset", bytes, complete, whole, via, at
           FROM firmware_downloads WHERE firmware_id = $1 ORDER BY at DESC, device_id LIMIT $2 OFFSET $3"#,
    )
    .bind(firmware)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(&mut *snapshot)
    .await?;
    snapshot.commit().await?;
    let total = stats.downloads;
    Ok((stats, Page { items, total, page: page.page, page_size: page.page_size }))
}

#[cfg(test)]
mod tests {
    use cqrs_es::DomainEvent;
    use ota_domain::device_update::Download;
    use ota_domain::FirmwareId;

    use super::*;

    #[test]
    fn the_event_type_it_wants_is_the_one_downloads_are_stored_as() {
        let download = Download {
            firmware: FirmwareId::derive("fw", "1.0", "gw"),
            requests: 1,
            offset: 0,
            bytes: 1,
            complete: true,
            whole: true,
            via: "target_token".into(),
        };
        let event = DeviceUpdateEvent::DownloadServed { action: 1, download, at: Utc::now() };
        assert_eq!(Some([event.event_type().as_str()].as_slice()), ProjectionName::Downloads.event_types());
    }
}
