//! While devices report: how long a committed success takes to be seen by the
//! gate (the inline counters) and by the updates read model (what gates read
//! before), and how far behind each projection runs, in seconds.
//!
//! A probe notes how many successes were committed, then polls until its
//! reader counts that many; the wait is one sample. A projection's lag is the
//! age of the oldest stored event after its last applied one while its
//! consumer has work pending (0 when it has none).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use hdrhistogram::Histogram;
use ota_domain::bus::BusNames;
use ota_projections::ProjectionName;
use sqlx::PgPool;
use tokio::task::JoinHandle;

use crate::figures;

/// Longest a probe waits for one target before it gives the sample up as "not seen".
const GIVE_UP: Duration = Duration::from_secs(300);

pub struct Probes {
    stop: Arc<AtomicBool>,
    gate: JoinHandle<Histogram<u64>>,
    read_model: JoinHandle<Histogram<u64>>,
    lag: JoinHandle<BTreeMap<&'static str, Histogram<u64>>>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000, 3).expect("histogram bounds")
}

/// Starts the probes; `succeeded` counts successes whose report call returned (committed).
pub fn spawn(
    pool: PgPool,
    js: jetstream::Context,
    names: BusNames,
    campaign: uuid::Uuid,
    succeeded: Arc<AtomicUsize>,
) -> Probes {
    let stop = Arc::new(AtomicBool::new(false));
    let gate = tokio::spawn(probe(
        pool.clone(),
        "SELECT COALESCE(sum(count), 0)::bigint FROM wave_tallies WHERE campaign_id = $1 AND state = 'succeeded'",
        campaign,
        succeeded.clone(),
        stop.clone(),
    ));
    let read_model = tokio::spawn(probe(
        pool.clone(),
        "SELECT COALESCE(sum(count), 0)::bigint FROM campaign_wave_counts WHERE campaign_id = $1 AND state = 'succeeded'",
        campaign,
        succeeded,
        stop.clone(),
    ));
    let lag = tokio::spawn(projection_lag(pool, js, names, stop.clone()));
    Probes { stop, gate, read_model, lag }
}

async fn probe(
    pool: PgPool,
    sql: &'static str,
    campaign: uuid::Uuid,
    succeeded: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Histogram<u64> {
    let mut waits = histogram();
    while !stop.load(Ordering::Relaxed) {
        let target = succeeded.load(Ordering::Relaxed) as i64;
        if target == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let noted = Instant::now();
        while noted.elapsed() < GIVE_UP {
            let seen: i64 = sqlx::query_scalar(sql).bind(campaign).fetch_one(&pool).await.unwrap_or(0);
            if seen >= target {
                waits.saturating_record(noted.elapsed().as_millis().max(1) as u64);
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    waits
}

async fn projection_lag(
    pool: PgPool,
    js: jetstream::Context,
    names: BusNames,
    stop: Arc<AtomicBool>,
) -> BTreeMap<&'static str, Histogram<u64>> {
    let mut lags: BTreeMap<&'static str, Histogram<u64>> =
        ProjectionName::ALL.iter().map(|p| (p.as_str(), histogram())).collect();
    let Ok(stream) = js.get_stream(names.events_stream()).await else { return lags };
    while !stop.load(Ordering::Relaxed) {
        for projection in ProjectionName::ALL {
            let durable = names.consumer(&format!("proj_{}", projection.as_str()));
            let pending = match stream.get_consumer::<jetstream::consumer::pull::Config>(&durable).await {
                Ok(mut consumer) => {
                    consumer.info().await.map(|i| i.num_pending + i.num_ack_pending as u64 > 0).unwrap_or(false)
                }
                Err(_) => false,
            };
            let lag_ms = match pending {
                false => 1,
                true => sqlx::query_scalar::<_, f64>(
                    "SELECT COALESCE((SELECT EXTRACT(EPOCH FROM clock_timestamp() - e.recorded_at)::float8 * 1000
                       FROM events e WHERE e.global_seq > COALESCE(
                         (SELECT last_global_seq FROM projection_status WHERE projection = $1), 0)
                      ORDER BY e.global_seq LIMIT 1), 1)",
                )
                .bind(projection.as_str())
                .fetch_one(&pool)
                .await
                .unwrap_or(1.0)
                .max(1.0) as u64,
            };
            if let Some(h) = lags.get_mut(projection.as_str()) {
                h.saturating_record(lag_ms);
            }
        }
        // Consumer info makes the server count what is pending: asked often, it
        // takes CPU from what is measured (the ceilings bench saw 1.7x on activity).
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    lags
}

impl Probes {
    /// Stops sampling (a probe waiting for its target still finishes it) and prints.
    pub async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let line = |h: &Histogram<u64>| {
            format!(
                "p50 {} / p99 {} / max {} ms ({} samples)",
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.max(),
                h.len()
            )
        };
        if let Ok(gate) = self.gate.await {
            println!("success committed -> counted by its gate (inline counters): {}", line(&gate));
            figures::record("success committed -> counted by its gate, p99", gate.value_at_quantile(0.99) as f64, "ms");
        }
        if let Ok(lags) = self.lag.await {
            for (projection, lag) in &lags {
                println!("projection {projection} lag while reports arrive: {}", line(lag));
                let p99 = lag.value_at_quantile(0.99) as f64;
                figures::record(format!("projection {projection} lag while reports arrive, p99"), p99, "ms");
            }
        }
        if let Ok(read_model) = self.read_model.await {
            println!("success committed -> counted by the updates read model: {}", line(&read_model));
            let p99 = read_model.value_at_quantile(0.99) as f64;
            figures::record("success committed -> counted by the updates read model, p99", p99, "ms");
        }
    }
}
