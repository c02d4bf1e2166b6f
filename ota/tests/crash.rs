//! Crash-only: the real `ota` binary killed with SIGKILL at chosen points of a
//! campaign and of a replay, then started again. Nothing of the killed process
//! lives on (no task keeps a connection, no Drop runs), as on a lost host.
//!
//! After each run: the campaign completes, every device ends in a terminal
//! state, no decision was taken twice, nothing was published twice, and every
//! read model equals a fresh replay of the event store, table by table. A
//! webhook delivery in flight is sent again by the next process.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use ota_api::auth::Role;
use ota_testkit::{json_of, killed_by, read_models, Deployment};
use serde_json::json;
use tokio::sync::mpsc;

use support::{assert_nothing_lost_or_doubled, until, Operator, BIN};

const DEVICES: usize = 240;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_completes_through_kill_9_at_every_stage_and_equals_its_replay() {
    let deployment = Deployment::new(BIN).await;
    let operator = Operator::new(&deployment);
    let mut server = deployment.start().await;
    let (id, _fleet) = operator.start_campaign(&server, DEVICES).await;

    // 1. While membership is resolved and the first wave assigned.
    server.kill().await;
    server = deployment.start().await;
    // 2. Mid-wave, reports arriving.
    until("the second wave to report", async || operator.finished(&server, &id).await >= 40).await;
    server.kill().await;
    server = deployment.start().await;
    // 3. In the last wave.
    until("most devices to finish", async || operator.finished(&server, &id).await >= (DEVICES as i64) * 2 / 3).await;
    server.kill().await;
    server = deployment.start().await;

    until("the campaign to complete", async || operator.campaign(&server, &id).await["status"] == "completed").await;
    let done = operator.campaign(&server, &id).await;
    assert_eq!(done["in_flight"], 0, "{done}");
    assert_eq!(done["unassigned"], 0, "{done}");

    assert_nothing_lost_or_doubled(&deployment).await;

    let status = server.terminate().await;
    assert!(status.success(), "a graceful stop exits cleanly: {status}");
    let live = read_models(&deployment.db).await;

    // A replay killed mid-way changes nothing (it rebuilds in one transaction) ...
    let mut replay = deployment.spawn(&["replay", "all"]);
    deployment.transaction_open_by_another().await;
    replay.start_kill().expect("kill the replay");
    let status = replay.wait().await.expect("wait for the replay");
    assert_eq!(killed_by(&status), Some(9), "the replay was killed in flight: {status}");
    assert_eq!(read_models(&deployment.db).await, live, "a killed replay left a trace");
    // ... and a whole one reproduces every table.
    deployment.run(&["replay", "all"]).await;
    let replayed = read_models(&deployment.db).await;
    for (table, rows) in &live {
        assert_eq!(rows, &replayed[table], "{table}: the replayed read model differs from the live one");
    }
}

/// A device that reports while no instance runs (all killed, or between
/// deployments) has its reports stored once one starts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_sent_while_no_instance_runs_are_stored_after_restart() {
    let deployment = Deployment::new(BIN).await;
    let operator = Operator::new(&deployment);
    let server = deployment.start().await;
    operator.register(&server, "offline-1").await;
    let firmware = operator.firmware(&server).await;
    let (status, update) =
        operator.post(&server, "/api/v1/devices/offline-1/update", serde_json::json!({"firmware_id": firmware})).await;
    assert_eq!(status, 201, "{update}");
    let action = update["action"].clone();
    server.kill().await;

    let nats = async_nats::connect(&deployment.settings.nats_url).await.expect("NATS");
    let subject = deployment.names.device_report("offline-1");
    for state in ["downloading", "installing", "succeeded"] {
        let report = serde_json::json!({"state": state, "action": action});
        // Acknowledged by JetStream, with no instance running.
        nats.request(subject.clone(), report.to_string().into()).await.expect("the report is kept");
    }

    let server = deployment.start().await;
    until("the queued reports to be stored", async || {
        let url = server.url("/api/v1/devices/offline-1/update");
        let token = deployment.token(ota_api::auth::Role::Operator);
        let response = deployment.http.get(url).bearer_auth(token).send().await.expect("GET");
        ota_testkit::json_of(response).await.1["state"] == "succeeded"
    })
    .await;
    let reports: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = 'offline-1' AND event_type = 'ProgressReported'",
    )
    .fetch_one(&deployment.db)
    .await
    .expect("count");
    assert_eq!(reports, 3, "each report stored once");
}

/// At least once: a webhook delivery in flight when its server is killed is
/// sent again by the next one.
/// (Ota-Delivery, Ota-Attempt) of each request, in arrival order.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A receiver that never answers its first request and answers 204 to the rest.
async fn receiver(arrived: mpsc::UnboundedSender<()>) -> (Seen, String) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let seen = seen.clone();
            move |headers: HeaderMap| async move {
                let header =
                    |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let first = {
                    let mut seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    seen.push((header("ota-delivery"), header("ota-attempt")));
                    seen.len() == 1
                };
                let _ = arrived.send(());
                if first {
                    std::future::pending::<()>().await;
                }
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (seen, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_in_flight_when_the_server_is_killed_is_sent_again_by_the_next() {
    let deployment = Deployment::new(BIN).await;
    let operator = Operator::new(&deployment);
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel();
    let (seen, url) = receiver(arrived_tx).await;
    // A short timeout keeps the claim of the killed sender short (timeout + 5 s).
    let settings = [("OTA_WEBHOOK_TIMEOUT_SECS", "2")];
    let server = deployment.start_with(&settings, None).await;
    let admin = deployment.token(Role::Admin);
    let subscribe = deployment
        .http
        .post(server.url("/api/v1/webhooks"))
        .bearer_auth(&admin)
        .json(&json!({"url": url, "topics": ["firmware.uploaded"]}));
    let (status, webhook) = json_of(subscribe.send().await.expect("subscribe")).await;
    assert_eq!(status, 201, "{webhook}");
    let webhook = webhook["id"].as_str().expect("id").to_owned();

    operator.firmware(&server).await;
    tokio::time::timeout(Duration::from_secs(30), arrived.recv()).await.expect("the first attempt arrives");
    server.kill().await;

    let server = deployment.start_with(&settings, None).await;
    until("the delivery to be sent again", async || seen.lock().map(|s| s.len() >= 2).unwrap_or(false)).await;
    let requests = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(requests[1].0, requests[0].0, "the same delivery: {requests:?}");
    assert_eq!((requests[0].1.as_str(), requests[1].1.as_str()), ("1", "2"), "{requests:?}");

    let log_url = server.url(&format!("/api/v1/webhooks/{webhook}/deliveries"));
    let log = ota_testkit::eventually("the delivery to be logged as delivered", Duration::from_secs(30), || async {
        let log = json_of(deployment.http.get(&log_url).bearer_auth(&admin).send().await.ok()?).await.1;
        (log["items"][0]["status"] == "delivered").then_some(log)
    })
    .await;
    let delivery = &log["items"][0];
    assert_eq!((log["total"].as_i64(), delivery["attempts"].as_i64()), (Some(1), Some(2)), "{log}");
    // The killed attempt never came back to be logged; the one that went through is.
    let attempts = delivery["attempt_log"].as_array().expect("attempt log");
    assert_eq!(attempts.len(), 1, "{delivery}");
    assert_eq!((attempts[0]["attempt"].as_i64(), attempts[0]["status"].as_i64()), (Some(2), Some(204)), "{delivery}");
}
