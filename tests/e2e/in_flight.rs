//! Faults while work is in flight (issue 11, item 6): the answer to a COMMIT lost
//! (an ambiguous commit), a black-hole partition (nothing passes, nothing is
//! closed) to Postgres, NATS cut or black-holed in the middle of a wave with
//! devices reporting, and firmware storage
//! that fills up before or during an upload. Each ends with a clear answer to
//! whoever waits, and nothing lost, doubled or half-stored.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ota_domain::device::Device;
use ota_domain::device_update::{DeviceUpdate, UpdateState};
use ota_domain::{Actor, CommandMeta, DeviceId};
use ota_orchestrator::devices::StatusReport;
use ota_testkit::{eventually, json_of, read_models, TestApp, TestOptions};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::group_commit::assigned_2_0;
use crate::spine::{assert_spine_consistent, PROJECTIONS};

/// Campaigns (distinct aggregates) whose creation carried `name`.
async fn campaigns_named(app: &TestApp, name: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(DISTINCT aggregate_id) FROM events
         WHERE aggregate_type = 'Campaign' AND event_type = 'CampaignCreated' AND payload::text LIKE $1",
    )
    .bind(format!("%{name}%"))
    .fetch_one(&app.db)
    .await
    .expect("count campaigns")
}

/// Every read model equals its rebuild from the event store.
async fn assert_read_models_equal_a_replay(app: &TestApp) {
    assert_spine_consistent(app).await;
    let live = read_models(&app.db).await;
    for name in PROJECTIONS {
        ota_projections::rebuild(&app.db, name).await.unwrap_or_else(|e| panic!("rebuild {name}: {e}"));
    }
    let replayed = read_models(&app.db).await;
    for (name, rows) in &live {
        assert_eq!(rows, &replayed[name], "{name}: the replayed read model differs from the live one");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_whose_commit_answer_is_lost_is_answered_and_stored_once() {
    let app = TestApp::spawn_with(TestOptions { postgres_proxy: true, ..TestOptions::default() }).await;
    let firmware = app.firmware("1.0").await;
    app.register_devices(&["amb-1".to_owned()], "hw-1").await;
    let proxy = app.postgres_proxy.as_ref().expect("postgres proxy");
    let name = format!("ambiguous-{}", Uuid::new_v4().simple());
    let body = json!({"name": name, "firmware_id": firmware, "target": {"device_ids": ["amb-1"]}});
    let create = || app.post("/api/v1/campaigns").header("Idempotency-Key", &name).json(&body).send();

    proxy.lose_commit_answer_of(name.as_bytes());
    let (status, created) = json_of(create().await.expect("create")).await;
    assert_eq!(proxy.commits_lost(), 1, "the COMMIT's answer was not lost: the test proves nothing");
    // The server asked the database what became of its COMMIT instead of
    // answering 503 for a campaign that exists (and which a retry would double).
    assert_eq!(status, 201, "{created}");
    let (status, again) = json_of(create().await.expect("retry")).await;
    assert_eq!((status, &again["id"]), (201, &created["id"]), "{again}");
    assert_eq!(campaigns_named(&app, &name).await, 1);
    let (status, started) = app.campaign_action(created["id"].as_str().expect("id"), "start").await;
    assert_eq!(status, 200, "the campaign is usable: {started}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_whose_group_commit_answer_is_lost_are_answered_and_stored_once() {
    let app = TestApp::spawn_with(TestOptions { postgres_proxy: true, ..TestOptions::default() }).await;
    let store = app.server.state.store.clone();
    let meta = CommandMeta::new(Actor::system("test"));
    let devices: Vec<DeviceId> = (0..16).map(|i| DeviceId::parse(&format!("amb-{i:02}")).expect("id")).collect();
    for id in &devices {
        assigned_2_0(&store, id, &meta).await;
    }
    let events_before: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.db).await.expect("count");

    let proxy = app.postgres_proxy.as_ref().expect("postgres proxy");
    proxy.lose_commit_answer_of(devices[7].as_str().as_bytes());
    let reports = app.server.state.reports.clone();
    let succeeded = StatusReport {
        state: UpdateState::Succeeded,
        progress: None,
        message: None,
        firmware_version: None,
        action: None,
    };
    let answers = futures::future::join_all(devices.iter().map(|id| {
        let (reports, meta, report) = (reports.clone(), meta.clone(), succeeded.clone());
        async move { reports.report(id, report, &meta, Utc::now()).await }
    }))
    .await;
    assert_eq!(proxy.commits_lost(), 1, "the COMMIT's answer was not lost: the test proves nothing");
    for (id, answer) in devices.iter().zip(&answers) {
        let committed = answer.as_ref().unwrap_or_else(|e| panic!("{id}: the report was refused: {e}"));
        assert!(!committed.unchanged(), "{id}: the success was not recorded");
    }
    // One success and one inventory change per device: nothing stored twice.
    let events_after: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.db).await.expect("count");
    assert_eq!(events_after - events_before, 2 * devices.len() as i64);
    for id in &devices {
        let (update, _) = store.load::<DeviceUpdate>(id).await.expect("update");
        assert_eq!(update.current.map(|lane| lane.state), Some(UpdateState::Succeeded), "{id}");
        let (device, _) = store.load::<Device>(id).await.expect("device");
        assert_eq!(device.profile.firmware_version.as_deref(), Some("2.0"), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_hole_to_postgres_gets_clear_answers_in_seconds_and_loses_nothing() {
    let options = TestOptions { postgres_proxy: true, request_timeout_secs: Some(3), ..TestOptions::default() };
    let app = Arc::new(TestApp::spawn_with(options).await);
    let firmware = app.firmware("1.0").await;
    let (status, before) = app.create_campaign("before", &firmware, &["bh-1", "bh-2"]).await;
    assert_eq!(status, 201, "{before}");
    let proxy = app.postgres_proxy.as_ref().expect("postgres proxy");

    proxy.stall();
    let name = format!("black-hole-{}", Uuid::new_v4().simple());
    let body = json!({"name": name, "firmware_id": firmware, "target": {"device_ids": ["bh-1"]}});
    let create = || app.post("/api/v1/campaigns").header("Idempotency-Key", &name).json(&body).send();
    for (what, request) in [
        ("create", create()),
        ("list", app.get("/api/v1/campaigns").send()),
        ("health", app.get("/health/detailed").send()),
    ] {
        let started = Instant::now();
        let response = tokio::time::timeout(Duration::from_secs(20), request)
            .await
            .unwrap_or_else(|_| panic!("{what} hung for 20 s behind a black hole"))
            .expect("request");
        let elapsed = started.elapsed();
        let (status, body) = json_of(response).await;
        eprintln!("{what} answered {status} after {elapsed:?} behind a black hole: {body}");
        assert_eq!(status, 503, "{what}: {body}");
        assert!(elapsed < Duration::from_secs(6), "{what} took {elapsed:?}");
        match what {
            "health" => {
                assert_eq!(body["status"], "degraded", "{body}");
                assert_eq!(body["postgres"]["ok"], false, "{body}");
            }
            _ => assert!(body["error"].is_string() && body["message"].is_string(), "{body}"),
        }
    }

    proxy.restore();
    // The create may or may not have committed; its retry says which, exactly once.
    let retried = eventually("the create's retry to get a final answer", Duration::from_secs(60), || async {
        let (status, body) = json_of(create().await.ok()?).await;
        (status == 201).then_some(body)
    })
    .await;
    assert!(retried["id"].is_string(), "{retried}");
    assert_eq!(campaigns_named(&app, &name).await, 1);
    let (status, started) = app.campaign_action(before["id"].as_str().expect("id"), "start").await;
    assert_eq!(status, 200, "{started}");
    assert_read_models_equal_a_replay(&app).await;
}

async fn campaign_detail(app: &TestApp, id: &str) -> Value {
    json_of(app.get(&format!("/api/v1/campaigns/{id}")).send().await.expect("campaign")).await.1
}

#[derive(Debug, Clone, Copy)]
enum LinkFault {
    /// Connections closed, new ones refused.
    Cut,
    /// Nothing passes, nothing is closed.
    BlackHole,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_hole_to_nats_mid_wave_delays_the_campaign_and_loses_nothing() {
    nats_fault_mid_wave(LinkFault::BlackHole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_cut_mid_wave_delays_the_campaign_and_loses_nothing() {
    nats_fault_mid_wave(LinkFault::Cut).await;
}

/// The server loses NATS while a wave runs and devices report.
async fn nats_fault_mid_wave(fault: LinkFault) {
    let app = TestApp::spawn_with(TestOptions { nats_proxy: true, ..TestOptions::full() }).await;
    // The fleet reaches NATS directly: its reports pile up in the durable
    // stream while the server cannot reach it.
    let fleet = app.fleet().await;
    let devices: Vec<String> = (0..120).map(|i| format!("nbh-{i:03}")).collect();
    app.register_devices(&devices, "rev-a").await;
    let firmware = app.firmware("2.0").await;
    let body = json!({
        "name": "black hole", "firmware_id": firmware, "target": {"device_ids": devices},
        "rollout": {"waves": [{"percent": 10}, {"percent": 100}]},
    });
    let (status, created) = json_of(app.post("/api/v1/campaigns").json(&body).send().await.expect("create")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let (status, started) = app.campaign_action(&id, "start").await;
    assert_eq!(status, 200, "{started}");
    eventually("the first wave to finish", Duration::from_secs(60), || async {
        let detail = campaign_detail(&app, &id).await;
        (detail["waves"][0]["succeeded"] == 12).then_some(())
    })
    .await;

    let proxy = app.nats_proxy.as_ref().expect("nats proxy");
    match fault {
        LinkFault::Cut => proxy.cut(),
        LinkFault::BlackHole => proxy.stall(),
    }
    // Longer than JetStream's publish deadline: the relay's publishes time out.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let started = Instant::now();
    let (status, health) = json_of(app.get("/health/detailed").send().await.expect("health")).await;
    assert!(started.elapsed() < Duration::from_secs(6), "health took {:?}", started.elapsed());
    assert_eq!((status, &health["nats"]["ok"]), (503, &json!(false)), "{fault:?}: {health}");
    assert_eq!(health["status"], "degraded", "{health}");
    // Commands still work: they need Postgres only.
    let (status, paused) = app.campaign_action(&id, "pause").await;
    assert_eq!(status, 200, "{paused}");
    let (status, resumed) = app.campaign_action(&id, "resume").await;
    assert_eq!(status, 200, "{resumed}");
    proxy.restore();

    let done = eventually("the campaign to complete", Duration::from_secs(120), || async {
        let detail = campaign_detail(&app, &id).await;
        (detail["status"] == "completed").then_some(detail)
    })
    .await;
    app.all_caught_up().await;
    let done = if done["waves"][1]["succeeded"] == 108 { done } else { campaign_detail(&app, &id).await };
    assert_eq!((&done["waves"][0]["succeeded"], &done["waves"][1]["succeeded"]), (&json!(12), &json!(108)), "{done}");
    for device in &devices {
        assert!(fleet.updates_received(device) >= 1, "{device} never got its update");
    }
    // Exactly one success per device in the store, however often a command or report was repeated.
    let successes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'DeviceUpdate'
         AND event_type = 'ProgressReported' AND payload->'ProgressReported'->>'state' = 'succeeded'",
    )
    .fetch_one(&app.db)
    .await
    .expect("successes");
    assert_eq!(successes, devices.len() as i64);
    assert_read_models_equal_a_replay(&app).await;
}

/// A tmpfs of `bytes` at a fresh directory, unmounted on drop: a disk that fills.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> Self {
        let dir = tempfile::tempdir().expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs needs root (the test suite runs as root, see .ci/run)");
        Self { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Files under the storage's staging prefix.
    fn staged(&self) -> usize {
        std::fs::read_dir(self.path().join("staging")).map_or(0, |entries| entries.count())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.path()).status();
    }
}

fn image(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

async fn firmware_events(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'Firmware'")
        .fetch_one(&app.db)
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_storage_refuses_uploads_with_507_and_keeps_no_partial_file() {
    const MIB: usize = 1 << 20;
    let disk = SmallDisk::mount(4 * MIB as u64);
    let storage_url = Some(disk.path().display().to_string());
    let app = TestApp::spawn_with(TestOptions { storage_url, ..TestOptions::default() }).await;
    let (status, body) = app.upload_firmware("os", "1.0", "gw", image(MIB, 1)).await;
    assert_eq!(status, 201, "{body}");
    let stored = firmware_events(&app).await;

    // Larger than the room left.
    let (status, body) = app.upload_firmware("os", "2.0", "gw", image(5 * MIB, 2)).await;
    assert_eq!((status, body["error"].as_str()), (507, Some("storage_full")), "{body}");
    assert_eq!(disk.staged(), 0, "a partial upload was left behind");
    assert_eq!(firmware_events(&app).await, stored, "a refused upload was recorded");

    // The disk fills while an upload streams in (another tenant of the volume).
    let filler = disk.path().join("filler");
    let (chunks, chunks_rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(tokio_stream_of(chunks_rx));
    let form = reqwest::multipart::Form::new()
        .part(
            "metadata",
            reqwest::multipart::Part::text(json!({"name": "os", "version": "3.0", "device_model": "gw"}).to_string())
                .mime_str("application/json")
                .expect("mime"),
        )
        .part("file", reqwest::multipart::Part::stream(body).file_name("os.swu"));
    let upload = tokio::spawn({
        let request = app.post("/api/v1/firmware").multipart(form);
        async move { json_of(request.send().await.expect("upload")).await }
    });
    chunks.send(Ok(image(MIB, 3))).await.expect("first chunk");
    eventually("the upload to be staged", Duration::from_secs(10), || async { (disk.staged() == 1).then_some(()) })
        .await;
    let free = fs_free(disk.path());
    std::fs::write(&filler, vec![0u8; free as usize]).ok();
    for seed in 0..3 {
        if chunks.send(Ok(image(MIB, seed))).await.is_err() {
            break;
        }
    }
    drop(chunks);
    let (status, body) = upload.await.expect("upload task");
    assert_eq!((status, body["error"].as_str()), (507, Some("storage_full")), "{body}");
    assert_eq!(disk.staged(), 0, "a partial upload was left behind");
    assert_eq!(firmware_events(&app).await, stored, "a refused upload was recorded");

    // Room again: uploads work, and the first image still reads back whole.
    std::fs::remove_file(&filler).expect("remove filler");
    let (status, body) = app.upload_firmware("os", "3.0", "gw", image(MIB, 4)).await;
    assert_eq!(status, 201, "{body}");
    let (status, health) = json_of(app.get("/health/detailed").send().await.expect("health")).await;
    assert_eq!((status, &health["object_store"]["ok"]), (200, &json!(true)), "{health}");
}

/// Free bytes of the filesystem at `path`.
fn fs_free(path: &std::path::Path) -> u64 {
    let output = Command::new("df").args(["--output=avail", "-B1"]).arg(path).output().expect("df");
    String::from_utf8_lossy(&output.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).expect("df answer")
}

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
