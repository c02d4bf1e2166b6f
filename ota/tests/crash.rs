//! Crash-only: the real `ota` binary killed with SIGKILL at chosen points of a
//! campaign and of a replay, then started again. Nothing of the killed process
//! lives on (no task keeps a connection, no Drop runs), as on a lost host.
//!
//! After each run: the campaign completes, every device ends in a terminal
//! state, no decision was taken twice, nothing was published twice, and every
//! read model equals a fresh replay of the event store, table by table.

mod support;

use ota_testkit::{killed_by, read_models, Deployment};

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
