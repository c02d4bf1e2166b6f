//! Prometheus metrics. Every crate records through the `metrics` facade (a
//! counter is a macro call, no handle to pass around); this process's recorder
//! renders them at `GET /metrics`. What describes the fleet rather than this
//! process (lag, campaigns by status, updates by state, projection failures) is
//! read from the store at scrape time, so every instance reports the same numbers
//! and a restarted one starts from the truth, not from zero.

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use axum::http::Method;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets, in seconds: a DDI poll answered from memory (~1 ms) to a slow upload.
const SECONDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// Installs this process's recorder (once; later calls return the same handle).
pub fn install() -> PrometheusHandle {
    RECORDER
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("ota_group_commit_batch_size".into()), BATCH))
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // A second server in one process (tests) shares the first's recorder.
            if metrics::set_global_recorder(recorder).is_ok() {
                describe();
                // Histograms keep raw samples until upkeep folds them into buckets: without
                // it, memory would grow with every request between scrapes.
                let upkeep = handle.clone();
                std::thread::Builder::new()
                    .name("metrics-upkeep".into())
                    .spawn(move || loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    })
                    .ok();
            }
            handle
        })
        .clone()
}

/// What a metric is, for its `# TYPE` and `# HELP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric this server exposes: name, kind and help. The Grafana dashboard
/// in docs/ may use only these (tested).
pub const METRICS: &[(&str, Kind, &str)] = &[
    ("ota_http_requests_total", Kind::Counter, "HTTP requests answered, by method, route and status."),
    ("ota_http_request_duration_seconds", Kind::Histogram, "Time to answer an HTTP request (until its headers)."),
    ("ota_rate_limited_total", Kind::Counter, "Requests refused with 429, by the limit that refused them."),
    ("ota_ddi_polls_total", Kind::Counter, "hawkBit DDI base polls answered."),
    ("ota_download_bytes_total", Kind::Counter, "Firmware bytes served to devices, by how they were let in."),
    ("ota_commands_total", Kind::Counter, "Commands decided, by aggregate and outcome."),
    ("ota_command_conflicts_total", Kind::Counter, "Concurrent appends that made a command decide again."),
    ("ota_events_appended_total", Kind::Counter, "Events appended to the event store, by aggregate."),
    ("ota_group_commit_batch_size", Kind::Histogram, "Commands stored by one group commit, by aggregate."),
    ("ota_rollout_tick_duration_seconds", Kind::Histogram, "One pass of the rollout process manager."),
    ("ota_relay_lag_events", Kind::Gauge, "Events stored but not yet published to NATS."),
    ("ota_relay_lag_seconds", Kind::Gauge, "Age of the oldest event not yet published to NATS."),
    ("ota_projection_lag_events", Kind::Gauge, "Stored events a projection has not yet applied."),
    ("ota_projection_failures", Kind::Gauge, "Events a projection set aside in projection_failures."),
    ("ota_campaigns", Kind::Gauge, "Campaigns by status."),
    ("ota_device_updates", Kind::Gauge, "Device updates by state."),
    ("ota_metrics_read_errors_total", Kind::Counter, "Scrapes whose store gauges could not be read."),
    ("ota_webhook_attempts_total", Kind::Counter, "Webhook delivery attempts, by what came of them."),
    ("ota_webhook_deliveries_pending", Kind::Gauge, "Webhook deliveries waiting to be sent or retried."),
];

fn describe() {
    for (name, kind, help) in METRICS {
        match kind {
            Kind::Counter => metrics::describe_counter!(*name, *help),
            Kind::Gauge => metrics::describe_gauge!(*name, *help),
            Kind::Histogram => metrics::describe_histogram!(*name, *help),
        }
    }
}

/// Reads the fleet-wide gauges from the store. A failed read leaves the last
/// value and is counted, so a scrape still answers while Postgres is away.
pub async fn refresh_gauges(pool: &PgPool, relay: &str) {
    if let Err(e) = read_gauges(pool, relay).await {
        tracing::warn!(error = %e, "metrics: the store's gauges could not be read");
        metrics::counter!("ota_metrics_read_errors_total").increment(1);
    }
}

async fn read_gauges(pool: &PgPool, relay: &str) -> Result<(), sqlx::Error> {
    let (head, pending, oldest): (i64, i64, Option<f64>) = sqlx::query_as(
        "WITH checkpoint AS (SELECT COALESCE((SELECT global_seq FROM relay_checkpoint WHERE name = $1), 0) AS seq)
         SELECT COALESCE((SELECT max(global_seq) FROM events), 0),
                (SELECT count(*) FROM (SELECT 1 FROM events, checkpoint WHERE global_seq > checkpoint.seq
                                       LIMIT 1000000) pending),
                (SELECT EXTRACT(EPOCH FROM now() - e.recorded_at)::float8 FROM events e, checkpoint
                  WHERE e.global_seq > checkpoint.seq ORDER BY e.global_seq LIMIT 1)",
    )
    .bind(relay)
    .fetch_one(pool)
    .await?;
    metrics::gauge!("ota_relay_lag_events").set(pending as f64);
    metrics::gauge!("ota_relay_lag_seconds").set(oldest.unwrap_or(0.0).max(0.0));

    let applied = ota_projections::status::all(pool).await?;
    let failures = ota_projections::status::failures_by_projection(pool).await?;
    for name in ota_projections::ProjectionName::ALL {
        let name = name.as_str();
        let at = applied.iter().find(|s| s.projection == name).map_or(0, |s| s.last_global_seq);
        metrics::gauge!("ota_projection_lag_events", "projection" => name).set((head - at).max(0) as f64);
        let failed = failures.iter().find(|(p, _)| p == name).map_or(0, |(_, n)| *n);
        metrics::gauge!("ota_projection_failures", "projection" => name).set(failed as f64);
    }

    let campaigns: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count FROM campaign_status_counts").fetch_all(pool).await?;
    for (status, count) in campaigns {
        metrics::gauge!("ota_campaigns", "status" => status).set(count as f64);
    }
    let updates: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count FROM update_state_counts").fetch_all(pool).await?;
    for (state, count) in updates {
        metrics::gauge!("ota_device_updates", "state" => state).set(count as f64);
    }
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'").fetch_one(pool).await?;
    metrics::gauge!("ota_webhook_deliveries_pending").set(pending as f64);
    Ok(())
}

/// One route's series for one method and status, registered once.
#[derive(Clone)]
struct RequestSeries {
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

/// Series handles by route, then (method, status): a request looks its handles up
/// under a read lock instead of building label sets and asking the registry (which
/// cost a quarter of a trivial request's time, measured in BENCHMARKS.md).
type SeriesByRoute = HashMap<String, HashMap<(&'static str, u16), RequestSeries>>;
static REQUEST_SERIES: LazyLock<RwLock<SeriesByRoute>> = LazyLock::new(Default::default);

fn request_series(route: &str, method: &'static str, status: u16) -> RequestSeries {
    let known = REQUEST_SERIES.read().unwrap_or_else(PoisonError::into_inner);
    if let Some(series) = known.get(route).and_then(|by| by.get(&(method, status))) {
        return series.clone();
    }
    drop(known);
    let series = RequestSeries {
        requests: metrics::counter!("ota_http_requests_total", "method" => method, "route" => route.to_owned(),
            "status" => status.to_string()),
        duration: metrics::histogram!("ota_http_request_duration_seconds", "method" => method, "route" => route.to_owned()),
    };
    let mut known = REQUEST_SERIES.write().unwrap_or_else(PoisonError::into_inner);
    known.entry(route.to_owned()).or_default().entry((method, status)).or_insert(series).clone()
}

/// Methods are bounded: anything but the standard ones is one series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Counts and times every request by its route's pattern (never the raw path:
/// device ids would make a series per device).
pub async fn record(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let started = std::time::Instant::now();
    let method = method_label(request.method());
    let route = request.extensions().get::<axum::extract::MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", |p| p.as_str());
    let series = request_series(route, method, response.status().as_u16());
    series.duration.record(started.elapsed().as_secs_f64());
    series.requests.increment(1);
    response
}
