//! How fast each stage after the store can go, on one backlog, in one run.
//!
//! A rollout's events (registrations, assignments, three reports and an
//! inventory change per device, the campaign's own) are stored and published
//! while every projection is stopped. Then, on that backlog: the NATS pull
//! ceiling (decode and ack, nothing written), the batched INSERT ceiling,
//! each projection alone catching up from its durable consumer, and each read
//! model rebuilt from the event store (`ota replay`).

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, Message};
use ota_domain::EventRecord;
use ota_projections::ProjectionName;
use ota_testkit::{TestApp, TestOptions};

use crate::figures;
use tokio_stream::StreamExt;

/// Outstanding pull requests of a stopped worker keep taking messages (which then
/// wait out their ack_wait) until they expire; async-nats asks with a 30 s expiry.
const PULL_EXPIRY: Duration = Duration::from_secs(31);

pub async fn run(devices: usize, reporters: usize) {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let ids: Arc<[String]> = (0..devices).map(|i| format!("bench-{i:06}")).collect();
    let campaign = crate::rollout::assigned_campaign(&app, &ids).await;
    app.all_caught_up().await;
    for worker in &app.server.workers {
        worker.stop();
    }
    tokio::time::sleep(PULL_EXPIRY).await;

    let (report_secs, _) = crate::rollout::report_all(&app, ids, reporters, Arc::new(AtomicUsize::new(0))).await;
    let stored = (devices * 3) as f64 / report_secs;
    println!("{} reports stored with projections stopped: {stored:.0} reports/s", devices * 3);
    figures::record("reports stored with the projections stopped", stored, "reports/s");
    let mut c = ota_domain::campaign::Campaign::default();
    let mut version = 0;
    loop {
        app.server.state.store.refresh(&campaign, &mut c, &mut version).await.expect("campaign");
        if c.status.is_terminal() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let events = published_backlog(&app).await;
    println!("backlog: {events} events in the store and on the stream");
    figures::record("backlog", events as f64, "events");

    let pull = pull_ceiling(&app.js, &app.names, events).await;
    println!("NATS pull ceiling (batches of up to 500, decode + ack each): {pull:.0} msgs/s");
    figures::record("NATS pull ceiling, decode + ack each (anchor)", pull, "msgs/s");
    let insert = insert_ceiling(&app.db, events).await;
    println!("batched INSERT ceiling (200 rows per transaction, one client): {insert:.0} rows/s");
    figures::record("batched INSERT ceiling, 200 rows per transaction (anchor)", insert, "rows/s");

    for name in ProjectionName::ALL {
        let (messages, secs) = catch_up_alone(&app, name).await;
        println!(
            "projection {name:<9} alone from its consumer: {messages:>8} messages in {secs:>6.2} s = {:>7.0} msgs/s ({:.2} of the pull ceiling)",
            messages as f64 / secs,
            messages as f64 / secs / pull
        );
        if messages > 0 {
            figures::record(format!("projection {name} alone from its consumer"), messages as f64 / secs, "msgs/s");
        }
    }

    for name in ProjectionName::ALL {
        let started = Instant::now();
        let applied = ota_projections::rebuild(&app.db, name).await.expect("rebuild");
        let secs = started.elapsed().as_secs_f64();
        println!(
            "replay {name:<9} alone: {applied:>8} events applied in {secs:>6.2} s = {:>7.0} events/s",
            applied as f64 / secs
        );
        if applied > 0 {
            figures::record(format!("replay {name} alone"), applied as f64 / secs, "events/s");
        }
    }
    let started = Instant::now();
    ota::replay::rebuild(&app.db, &ProjectionName::ALL, true).await.expect("replay all");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replay all (as `ota replay all`): {events} stored events in {secs:.2} s = {:.0} events/s",
        events as f64 / secs
    );
    figures::record("ota replay all", events as f64 / secs, "stored events/s");
}

/// Waits until the relay has published every stored event; returns their number.
async fn published_backlog(app: &TestApp) -> u64 {
    loop {
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.db).await.expect("count");
        let mut stream = app.js.get_stream(app.names.events_stream()).await.expect("events stream");
        let published = stream.info().await.map(|i| i.state.messages).unwrap_or(0);
        if published >= stored as u64 {
            return published;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A fresh consumer over every event, pulled as the workers pull: decoded and acked
/// one by one, nothing written.
async fn pull_ceiling(js: &jetstream::Context, names: &ota_domain::bus::BusNames, events: u64) -> f64 {
    let stream = js.get_stream(names.events_stream()).await.expect("events stream");
    let durable = names.consumer("bench_pull");
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject: names.all_events(),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::All,
                max_ack_pending: 10_000,
                ..Default::default()
            },
        )
        .await
        .expect("consumer");
    let started = Instant::now();
    let messages = consumer.stream().max_messages_per_batch(2000).messages().await.expect("messages");
    let mut batches = std::pin::pin!(messages.chunks_timeout(500, Duration::from_millis(10)));
    let mut seen = 0u64;
    while seen < events {
        let Some(batch) = batches.next().await else { break };
        for message in batch.into_iter().flatten() {
            decode_and_ack(&message).await;
            seen += 1;
        }
    }
    seen as f64 / started.elapsed().as_secs_f64()
}

async fn decode_and_ack(message: &Message) {
    let record: Result<EventRecord, _> = serde_json::from_slice(&message.payload);
    assert!(record.is_ok(), "every message on the stream is an event record");
    let _ = message.ack().await;
}

/// Rows of an event's size (ids, sequence, a JSON body) in multi-row INSERTs.
async fn insert_ceiling(db: &sqlx::PgPool, rows: u64) -> f64 {
    sqlx::query(
        "CREATE TABLE bench_rows (aggregate_id text, sequence bigint, body jsonb, PRIMARY KEY (aggregate_id, sequence))",
    )
    .execute(db)
    .await
    .expect("bench table");
    let body =
        serde_json::json!({"UpdateReported": {"action": 1, "state": "downloading", "at": "2026-12-02T00:00:00Z"}});
    let started = Instant::now();
    let mut written = 0u64;
    while written < rows {
        let n = 200.min(rows - written);
        let ids: Vec<String> = (written..written + n).map(|i| format!("bench-{i:08}")).collect();
        let bodies = vec![body.clone(); n as usize];
        let mut tx = db.begin().await.expect("begin");
        sqlx::query("INSERT INTO bench_rows SELECT i, 1, b FROM UNNEST($1::text[], $2::jsonb[]) AS u(i, b)")
            .bind(&ids)
            .bind(&bodies)
            .execute(&mut *tx)
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
        written += n;
    }
    written as f64 / started.elapsed().as_secs_f64()
}

/// Starts one projection's worker on its consumer's backlog and times it to empty.
async fn catch_up_alone(app: &TestApp, name: ProjectionName) -> (u64, f64) {
    let stream = app.js.get_stream(app.names.events_stream()).await.expect("events stream");
    let durable = app.names.consumer(&format!("proj_{}", name.as_str()));
    let outstanding = || async {
        let mut consumer =
            stream.get_consumer::<pull::Config>(&durable).await.expect("the stopped worker's durable consumer");
        let info = consumer.info().await.expect("consumer info");
        info.num_pending + info.num_ack_pending as u64
    };
    let backlog = outstanding().await;
    let started = Instant::now();
    let worker = ota_projections::spawn_named(name, &app.db, &app.js, &app.names);
    // Consumer info is not free for the server (it counts what is pending per
    // subject); asked every 20 ms, it took a share of the CPU being measured.
    while outstanding().await > 0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    worker.stop();
    (backlog, secs)
}
