//! Liveness, and a detailed report of every dependency and of the lag.

use std::time::{Duration, Instant};

/// How long a health report waits for any one dependency.
const PROBE_DEADLINE: Duration = Duration::from_secs(2);

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{json, Value};

use crate::state::AppState;

pub async fn live() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

pub async fn detailed(State(state): State<AppState>) -> impl IntoResponse {
    let started = Instant::now();
    let postgres = match sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pool).await {
        Ok(_) => json!({"ok": true, "latency_ms": started.elapsed().as_millis()}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    let nats_state = state.nats.connection_state();
    let nats_ok = nats_state == async_nats::connection::State::Connected;
    let nats = json!({"ok": nats_ok, "state": nats_state.to_string()});
    let object_store = match tokio::time::timeout(PROBE_DEADLINE, state.blobs.probe()).await {
        Ok(Ok(())) => json!({"ok": true}),
        Ok(Err(e)) => json!({"ok": false, "error": e.to_string()}),
        Err(_) => json!({"ok": false, "error": "no answer within 2 s"}),
    };
    let relay = match ota_orchestrator::relay::pending_count(&state.pool, state.names.prefix()).await {
        Ok(pending) => json!({"ok": true, "unpublished_events": pending}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    let projections = projections(&state, nats_ok).await;
    let all_ok = [&postgres, &nats, &object_store, &relay].iter().all(|v| v["ok"] == json!(true));
    let status = if all_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if all_ok { "ok" } else { "degraded" },
        "postgres": postgres,
        "nats": nats,
        "object_store": object_store,
        "relay": relay,
        "projections": projections,
    });
    (status, axum::Json(body))
}

async fn projections(state: &AppState, nats_ok: bool) -> Value {
    let applied = ota_projections::status::all(&state.pool).await.unwrap_or_default();
    let mut out = Vec::new();
    for name in ota_projections::ProjectionName::ALL {
        let row = applied.iter().find(|s| s.projection == name.as_str());
        let mut entry = json!({
            "name": name.as_str(),
            "applied": row.map_or(0, |r| r.applied),
            "last_global_seq": row.map_or(0, |r| r.last_global_seq),
        });
        if nats_ok {
            // A health report answers fast: NATS gets a short deadline, then the lag is just unknown.
            if let Ok(Some(pending)) = tokio::time::timeout(PROBE_DEADLINE, consumer_pending(state, name)).await {
                entry["pending"] = json!(pending);
            }
        }
        out.push(entry);
    }
    Value::Array(out)
}

/// Messages a projection's consumer has not yet acknowledged.
async fn consumer_pending(state: &AppState, name: ota_projections::ProjectionName) -> Option<u64> {
    let consumer = state.names.consumer(&format!("proj_{name}"));
    let stream = state.js.get_stream(state.names.events_stream()).await.ok()?;
    let mut c = stream.get_consumer::<async_nats::jetstream::consumer::pull::Config>(&consumer).await.ok()?;
    let info = c.info().await.ok()?;
    Some(info.num_pending + info.num_ack_pending as u64)
}
