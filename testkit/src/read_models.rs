//! Read models as comparable values: what a replay must reproduce exactly.

use std::collections::BTreeMap;

use ota_projections::Projection;
use serde_json::Value;
use sqlx::PgPool;

/// Every table of every projection as sorted JSON rows (activity without its
/// `applied_order`, which depends on delivery timing), plus each projection's
/// offsets and totals. (A replay marks the projections it rebuilt, so one with
/// no event yet has a status row, of zeros, that the live side has not written.)
pub async fn read_models(db: &PgPool) -> BTreeMap<String, Vec<String>> {
    use ota_projections::{activity, campaigns, devices, firmware, updates};
    let tables = [
        firmware::FirmwareProjection::TABLES,
        campaigns::CampaignsProjection::TABLES,
        activity::ActivityProjection::TABLES,
        devices::DevicesProjection::TABLES,
        updates::UpdatesProjection::TABLES,
    ]
    .concat();
    let mut queries: Vec<(String, String)> =
        tables.iter().map(|t| (t.to_string(), format!("SELECT to_jsonb(t) - 'applied_order' FROM {t} t"))).collect();
    queries.push(("projection_offsets".into(), "SELECT to_jsonb(o) FROM projection_offsets o".into()));
    queries.push((
        "projection_status".into(),
        "SELECT jsonb_build_object('projection', projection, 'applied', applied, 'last_global_seq', last_global_seq)
         FROM projection_status WHERE applied > 0"
            .into(),
    ));
    let mut out = BTreeMap::new();
    for (name, sql) in queries {
        let rows: Vec<Value> =
            sqlx::query_scalar(&sql).fetch_all(db).await.unwrap_or_else(|e| panic!("snapshot {name}: {e}"));
        let mut rows: Vec<String> = rows.iter().map(Value::to_string).collect();
        rows.sort();
        out.insert(name, rows);
    }
    out
}
