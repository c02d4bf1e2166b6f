//! Liveness, and a detailed report of every dependency and of the lag.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use ota_orchestrator::lease;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::extract::Json;
use crate::state::AppState;

/// How long a health report waits for any one dependency.
const PROBE_DEADLINE: Duration = Duration::from_secs(2);

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(live)).routes(routes!(detailed))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    /// Always `ok`: the process answers.
    #[schema(example = "ok")]
    status: String,
}

/// Whether the process answers (for a load balancer's liveness probe).
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, body = Liveness)))]
async fn live() -> Json<Liveness> {
    Json(Liveness { status: "ok".to_owned() })
}

/// One dependency's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Probe {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<u64>,
    /// The NATS connection state.
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    /// Events stored but not yet published to NATS.
    #[serde(skip_serializing_if = "Option::is_none")]
    unpublished_events: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Probe {
    fn failed(error: impl ToString) -> Self {
        Probe { ok: false, latency_ms: None, state: None, unpublished_events: None, error: Some(error.to_string()) }
    }
    fn ok() -> Self {
        Probe { ok: true, latency_ms: None, state: None, unpublished_events: None, error: None }
    }
}

/// How far one read model is.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionHealth {
    name: String,
    /// Events applied.
    applied: i64,
    /// The highest global position applied.
    last_global_seq: i64,
    /// Messages its NATS consumer has not yet acknowledged (absent when NATS is down or slow to say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<u64>,
    /// Events it set aside in `projection_failures` (undecodable, or failing on their data).
    failures: i64,
}

/// A leader is stalled when its work loop has not come round for this long
/// (it renews its lease from another task, so a stuck loop keeps leading).
const STALLED_AFTER_SECS: f64 = 20.0;
/// A lease may stand expired this long while a standby polls for it.
const VACANT_AFTER_SECS: f64 = 2.0;

/// One singleton worker's leadership (relay, chain, rollout).
#[derive(Debug, Serialize, ToSchema)]
pub struct Leader {
    /// The lease: `relay:<prefix>`, `rollout:<prefix>` or `chain`.
    name: String,
    /// The holding instance: host/pid/start.
    holder: String,
    /// Increases with every change of leader; older leaders' writes are refused.
    epoch: i64,
    /// `leading`; `stalled` (holds the lease, does no work); `vacant` (expired, nobody took it).
    #[schema(example = "leading")]
    state: String,
    expires_in_secs: f64,
    /// Seconds since the leader's work loop last came round.
    progress_age_secs: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthReport {
    /// `ok` when Postgres, NATS, object storage and the relay are all fine, else `degraded` (and a 503).
    #[schema(example = "ok")]
    status: String,
    postgres: Probe,
    nats: Probe,
    object_store: Probe,
    relay: Probe,
    projections: Vec<ProjectionHealth>,
    /// Singleton workers: a stalled or vacant one makes the report `degraded`.
    leaders: Vec<Leader>,
}

/// Every dependency and the lag of every read model (for a readiness probe and for people).
#[utoipa::path(get, path = "/health/detailed", tag = "system", responses(
    (status = 200, body = HealthReport, description = "Everything is fine."),
    (status = 503, body = HealthReport, description = "A dependency is down: `status` is `degraded`."),
))]
async fn detailed(State(state): State<AppState>) -> (StatusCode, Json<HealthReport>) {
    // Every probe has a deadline and they run together: behind a black-holed
    // database (no answer, no reset) the report still comes within seconds.
    let started = Instant::now();
    let postgres = probe(sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pool), |_| Probe {
        latency_ms: Some(started.elapsed().as_millis() as u64),
        ..Probe::ok()
    });
    // A black hole (no answer, no reset) leaves the client "connected" until its
    // pings go unanswered, a minute or two: only a round trip tells.
    let nats_state = state.nats.connection_state();
    let connected = nats_state == async_nats::connection::State::Connected;
    let nats = async {
        let probed = match connected {
            false => Probe { ok: false, ..Probe::ok() },
            // Any answer will do (the account's JetStream usage, or an error saying why not).
            true => probe(state.nats.request("$JS.API.INFO", "".into()), |_| Probe::ok()).await,
        };
        Probe { state: Some(nats_state.to_string()), ..probed }
    };
    let object_store = probe(state.blobs.probe(), |()| Probe::ok());
    let relay = probe(ota_orchestrator::relay::pending_count(&state.pool, state.names.prefix()), |pending| Probe {
        unpublished_events: Some(pending),
        ..Probe::ok()
    });
    let (postgres, nats, object_store, relay, projections, leaders) =
        tokio::join!(postgres, nats, object_store, relay, projections(&state, connected), leaders(&state));
    let all_ok =
        [&postgres, &nats, &object_store, &relay].iter().all(|p| p.ok) && leaders.iter().all(|l| l.state == "leading");
    let status = if all_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let report = HealthReport {
        status: if all_ok { "ok" } else { "degraded" }.to_owned(),
        postgres,
        nats,
        object_store,
        relay,
        projections,
        leaders,
    };
    (status, Json(report))
}

/// A dependency's answer as a probe: `ok` makes it of an answer, an error or no
/// answer within the deadline fails it.
async fn probe<T, E: ToString>(
    answer: impl std::future::Future<Output = Result<T, E>>,
    ok: impl FnOnce(T) -> Probe,
) -> Probe {
    match tokio::time::timeout(PROBE_DEADLINE, answer).await {
        Ok(Ok(value)) => ok(value),
        Ok(Err(e)) => Probe::failed(e),
        Err(_) => Probe::failed("no answer within 2 s"),
    }
}

/// A probe's answer, or nothing past the deadline or on an error.
async fn within_deadline<T, E>(probe: impl std::future::Future<Output = Result<T, E>>) -> Option<T> {
    tokio::time::timeout(PROBE_DEADLINE, probe).await.ok().and_then(Result::ok)
}

async fn projections(state: &AppState, nats_connected: bool) -> Vec<ProjectionHealth> {
    let (applied, failures) = tokio::join!(
        within_deadline(ota_projections::status::all(&state.pool)),
        within_deadline(ota_projections::status::failures_by_projection(&state.pool)),
    );
    let (applied, failures) = (applied.unwrap_or_default(), failures.unwrap_or_default());
    // A health report answers fast: NATS gets a short deadline, then the lag is just unknown.
    let pending = futures::future::join_all(ota_projections::ProjectionName::ALL.into_iter().map(|name| async move {
        match nats_connected {
            true => tokio::time::timeout(PROBE_DEADLINE, consumer_pending(state, name)).await.ok().flatten(),
            false => None,
        }
    }))
    .await;
    let mut out = Vec::new();
    for (name, pending) in ota_projections::ProjectionName::ALL.into_iter().zip(pending) {
        let row = applied.iter().find(|s| s.projection == name.as_str());
        out.push(ProjectionHealth {
            name: name.as_str().to_owned(),
            applied: row.map_or(0, |r| r.applied),
            last_global_seq: row.map_or(0, |r| r.last_global_seq),
            pending,
            failures: failures.iter().find(|(p, _)| p == name.as_str()).map_or(0, |(_, n)| *n),
        });
    }
    out
}

async fn leaders(state: &AppState) -> Vec<Leader> {
    let prefix = state.names.prefix();
    // Not the storage collector: it works hourly, so its progress age says nothing.
    let ours = [lease::relay_lease(prefix), lease::rollout_lease(prefix), lease::CHAIN_LEASE.to_owned()];
    let leases = within_deadline(lease::statuses(&state.pool)).await.unwrap_or_default();
    leases
        .into_iter()
        .filter(|l| ours.contains(&l.name))
        .map(|l| Leader {
            state: match () {
                _ if l.expires_in_secs < -VACANT_AFTER_SECS => "vacant",
                _ if l.progress_age_secs > STALLED_AFTER_SECS => "stalled",
                _ => "leading",
            }
            .to_owned(),
            name: l.name,
            holder: l.holder,
            epoch: l.epoch,
            expires_in_secs: l.expires_in_secs,
            progress_age_secs: l.progress_age_secs,
        })
        .collect()
}

/// Messages a projection's consumer has not yet acknowledged.
async fn consumer_pending(state: &AppState, name: ota_projections::ProjectionName) -> Option<u64> {
    let consumer = state.names.consumer(&format!("proj_{name}"));
    let stream = state.js.get_stream(state.names.events_stream()).await.ok()?;
    let mut c = stream.get_consumer::<async_nats::jetstream::consumer::pull::Config>(&consumer).await.ok()?;
    let info = c.info().await.ok()?;
    Some(info.num_pending + info.num_ack_pending as u64)
}
