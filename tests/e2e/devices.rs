//! Devices: inventory, single-device update, status reports, history, rollback.

use ota_projections::ProjectionName;
use ota_testkit::{json_of, TestApp};
use serde_json::{json, Value};

/// A read model's answer once it shows `ready` (read models follow the store by
/// milliseconds); after the deadline the last answer is returned for the asserts.
async fn settled(app: &TestApp, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..400 {
        last = json_of(app.get(path).send().await.expect("read")).await.1;
        if ready(&last) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    last
}

async fn register(app: &TestApp, id: &str, model: &str, hw: Option<&str>, fw: Option<&str>) -> (u16, Value) {
    let body = json!({"id": id, "device_model": model, "hardware_version": hw, "firmware_version": fw, "tags": ["eu"]});
    json_of(app.post("/api/v1/devices").json(&body).send().await.expect("register")).await
}

async fn upload(app: &TestApp, version: &str, hardware: &[&str]) -> String {
    let meta = json!({"name": "os", "version": version, "device_model": "gw", "hardware_versions": hardware});
    let (status, body) = app.upload_firmware_with(meta, "os.swu", format!("os {version}").into_bytes()).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().expect("id").to_owned()
}

async fn assign(app: &TestApp, device: &str, firmware: &str) -> (u16, Value) {
    let r = app.post(&format!("/api/v1/devices/{device}/update")).json(&json!({"firmware_id": firmware})).send().await;
    json_of(r.expect("assign")).await
}

async fn report(app: &TestApp, device: &str, body: Value) -> (u16, Value) {
    json_of(app.post(&format!("/api/v1/devices/{device}/status")).json(&body).send().await.expect("report")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_is_an_upsert_and_the_inventory_can_be_filtered() {
    let app = TestApp::spawn().await;
    assert_eq!(register(&app, "dev-1", "gw", Some("a"), Some("1.0")).await.0, 201);
    assert_eq!(register(&app, "dev-1", "gw", Some("b"), Some("1.0")).await.0, 200);
    assert_eq!(register(&app, "dev-2", "cam", None, None).await.0, 201);
    let (status, body) = register(&app, "bad/id", "gw", None, None).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("invalid_field")));
    let (status, body) = register(&app, "dev-3", " ", None, None).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["message"].as_str().unwrap_or("").contains("device_model"), "{body}");
    app.caught_up(ProjectionName::Devices).await;
    let (_, page) = json_of(app.get("/api/v1/devices?device_model=gw").send().await.expect("list")).await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["hardware_version"], "b");
    let (_, page) = json_of(app.get("/api/v1/devices?tag=eu&hardware_version=b").send().await.expect("list")).await;
    assert_eq!(page["total"], 1);
    let (status, _) = json_of(app.get("/api/v1/devices/nope").send().await.expect("get")).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_is_refused_with_the_reason_when_it_does_not_fit() {
    let app = TestApp::spawn().await;
    let v2 = upload(&app, "2.0", &["a"]).await;
    register(&app, "gw-a", "gw", Some("a"), Some("2.0")).await;
    register(&app, "gw-b", "gw", Some("b"), Some("1.0")).await;
    register(&app, "cam", "cam", Some("a"), Some("1.0")).await;
    let code = |v: &Value| v["error"].as_str().unwrap_or("").to_owned();
    let (s, b) = assign(&app, "ghost", &v2).await;
    assert_eq!((s, code(&b)), (404, "device.not_found".into()));
    let (s, b) = assign(&app, "cam", &v2).await;
    assert_eq!((s, code(&b)), (422, "update.model_mismatch".into()));
    let (s, b) = assign(&app, "gw-b", &v2).await;
    assert_eq!((s, code(&b)), (422, "update.hardware_mismatch".into()));
    let (s, b) = assign(&app, "gw-a", &v2).await;
    assert_eq!((s, code(&b)), (422, "update.already_installed".into()));
    let (s, b) = assign(&app, "gw-a", "00000000-0000-0000-0000-000000000000").await;
    assert_eq!((s, code(&b)), (422, "update.unknown_firmware".into()));
    let (s, _) = assign(&app, "gw-a", "not-a-uuid").await;
    assert_eq!(s, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_updates_reports_progress_and_rolls_back_to_its_previous_firmware() {
    let app = TestApp::spawn().await;
    let v1 = upload(&app, "1.0", &[]).await;
    let v2 = upload(&app, "2.0", &[]).await;
    register(&app, "dev", "gw", Some("a"), Some("1.0")).await;
    let (s, lane) = assign(&app, "dev", &v2).await;
    assert_eq!((s, lane["state"].as_str(), lane["action"].as_u64()), (201, Some("assigned"), Some(1)), "{lane}");
    assert_eq!(lane["from_version"], "1.0", "{lane}");
    // A second assignment while one is active is refused.
    let (s, b) = assign(&app, "dev", &v2).await;
    assert_eq!((s, b["error"].as_str()), (409, Some("device_update.already_active")), "{b}");

    for (state, progress) in [("downloading", 10), ("downloading", 60), ("installing", 100)] {
        let (s, b) = report(&app, "dev", json!({"state": state, "progress": progress})).await;
        assert_eq!(s, 200, "{b}");
    }
    // Out of order: recorded, ignored.
    let (s, b) = report(&app, "dev", json!({"state": "downloading"})).await;
    assert_eq!((s, b["state"].as_str()), (200, Some("installing")));
    let (s, b) = report(&app, "dev", json!({"state": "succeeded", "message": "rebooted into 2.0"})).await;
    assert_eq!((s, b["state"].as_str()), (200, Some("succeeded")), "{b}");
    // Duplicate final word: no-op; a late failure never reopens it.
    assert_eq!(report(&app, "dev", json!({"state": "succeeded"})).await.1["state"], "succeeded");
    assert_eq!(report(&app, "dev", json!({"state": "failed"})).await.1["state"], "succeeded");
    // Bad reports.
    assert_eq!(report(&app, "dev", json!({"state": "timed_out"})).await.0, 422);
    assert_eq!(report(&app, "dev", json!({"state": "downloading", "progress": 101})).await.0, 422);
    assert_eq!(report(&app, "dev", json!({"state": "flying"})).await.0, 422);

    app.all_caught_up().await;
    let (_, device) = json_of(app.get("/api/v1/devices/dev").send().await.expect("device")).await;
    assert_eq!(device["firmware_version"], "2.0");
    let current = settled(&app, "/api/v1/devices/dev/update", |v| v["state"] == "succeeded").await;
    assert_eq!((current["state"].as_str(), current["progress"].as_i64()), (Some("succeeded"), Some(100)));

    let rollback = || async { json_of(app.post("/api/v1/devices/dev/rollback").send().await.expect("rollback")).await };
    let (s, lane) = rollback().await;
    assert_eq!(
        (s, lane["firmware_version"].as_str(), lane["kind"].as_str(), lane["rolls_back_action"].as_u64()),
        (201, Some("1.0"), Some("rollback"), Some(1)),
        "{lane}"
    );
    assert_eq!(lane["firmware_id"], v1, "{lane}");
    let (_, b) = report(&app, "dev", json!({"state": "succeeded"})).await;
    assert_eq!(b["state"], "rolled_back");
    let (s, b) = rollback().await;
    assert_eq!((s, b["error"].as_str()), (409, Some("device_update.no_rollback_target")), "{b}");

    app.all_caught_up().await;
    let history = settled(&app, "/api/v1/devices/dev/history", |v| v["items"][0]["state"] == "rolled_back").await;
    let offsets: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT projection, aggregate_type, last_sequence FROM projection_offsets WHERE aggregate_id = 'dev'",
    )
    .fetch_all(&app.db)
    .await
    .expect("dbg");
    let events: Vec<(String, i64, String, i64)> = sqlx::query_as(
        "SELECT aggregate_type, sequence, event_type, global_seq FROM events WHERE aggregate_id = 'dev' ORDER BY global_seq",
    )
    .fetch_all(&app.db)
    .await
    .expect("dbg");

    let states: Vec<_> = history["items"].as_array().expect("items").iter().map(|h| h["state"].clone()).collect();
    assert_eq!(states, [json!("rolled_back"), json!("succeeded")], "offsets {offsets:?}, events {events:?}");
    assert_eq!(history["items"][1]["assigned_by"], "user:tester");
    let (_, device) = json_of(app.get("/api/v1/devices/dev").send().await.expect("device")).await;
    assert_eq!(device["firmware_version"], "1.0");
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM rollback_log WHERE device_id = 'dev' AND state = 'rolled_back'")
            .fetch_one(&app.db)
            .await
            .expect("rollback log");
    assert_eq!(rows, 1);

    // The rollback log through the API: the device's, and the fleet's by device and campaign.
    let app = &app;
    let read = |path: &'static str| async move { json_of(app.get(path).send().await.expect("rollbacks")).await.1 };
    let log = read("/api/v1/devices/dev/rollbacks").await;
    assert_eq!(log["total"], 1, "{log}");
    let entry = &log["items"][0];
    let seen = (
        entry["of_action"].as_u64(),
        entry["from_version"].as_str(),
        entry["to_version"].as_str(),
        entry["state"].as_str(),
        entry["requested_by"].as_str(),
    );
    assert_eq!(seen, (Some(1), Some("2.0"), Some("1.0"), Some("rolled_back"), Some("user:tester")), "{log}");
    assert!(entry["finished_at"].is_string(), "{log}");
    assert_eq!(read("/api/v1/rollbacks?device_id=dev").await["items"], log["items"]);
    assert_eq!(read("/api/v1/rollbacks").await["total"], 1);
    assert_eq!(read("/api/v1/rollbacks?campaign_id=8f1c51f4-35a7-4a6b-9a2e-3c2d1f0e9b7a").await["total"], 0);
    assert_eq!(read("/api/v1/rollbacks?device_id=other").await["total"], 0);
}

/// Issue 14, item 5: an operator cancels a single update; a silent device's is forced
/// closed, after which the device takes the next update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_is_cancelled_at_once_asked_of_the_device_or_forced_and_the_next_goes_out() {
    let app = TestApp::spawn().await;
    register(&app, "quiet", "gw", Some("a"), Some("1.0")).await;
    let (v2, v3) = (upload(&app, "2.0", &[]).await, upload(&app, "3.0", &[]).await);
    let cancel = |force: Option<bool>| {
        let request = app.post("/api/v1/devices/quiet/update/cancel");
        let request = match force {
            Some(force) => request.json(&json!({"force": force})),
            None => request,
        };
        async move { json_of(request.send().await.expect("cancel")).await }
    };
    let (s, b) = cancel(None).await;
    assert_eq!((s, b["error"].as_str()), (404, Some("device_update.none")), "{b}");

    // Not fetched yet: nobody to ask, cancelled at once.
    assert_eq!(assign(&app, "quiet", &v2).await.0, 201);
    let (s, lane) = cancel(None).await;
    assert_eq!((s, lane["state"].as_str()), (200, Some("cancelled")), "{lane}");

    // Under way: the device is asked, and the update stays in flight meanwhile.
    let (s, lane) = assign(&app, "quiet", &v2).await;
    assert_eq!((s, lane["action"].as_u64()), (201, Some(2)), "{lane}");
    assert_eq!(report(&app, "quiet", json!({"state": "downloading", "progress": 10})).await.0, 200);
    let (s, lane) = cancel(Some(false)).await;
    assert_eq!((s, lane["state"].as_str(), lane["cancel_requested"].as_bool()), (200, Some("downloading"), Some(true)));
    let (s, b) = assign(&app, "quiet", &v3).await;
    assert_eq!((s, b["error"].as_str()), (409, Some("device_update.already_active")), "{b}");

    // The device never answers: forced closed, and the next update goes out.
    let (s, lane) = cancel(Some(true)).await;
    assert_eq!((s, lane["state"].as_str()), (200, Some("cancelled")), "{lane}");
    let (s, b) = cancel(Some(true)).await;
    assert_eq!((s, b["error"].as_str()), (409, Some("device_update.not_active")), "{b}");
    let (s, lane) = assign(&app, "quiet", &v3).await;
    assert_eq!((s, lane["action"].as_u64(), lane["firmware_version"].as_str()), (201, Some(3), Some("3.0")), "{lane}");
    let (s, b) = json_of(
        app.post("/api/v1/devices/quiet/update/cancel").json(&json!({"now": true})).send().await.expect("cancel"),
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (422, Some("invalid_field")), "{b}");
}

/// Issue 14, item 5: a single update with a timeout times out when its device goes
/// silent (the process manager sees to it), and the next update then goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_update_with_a_timeout_times_out_when_the_device_goes_silent() {
    let app = TestApp::spawn_with(ota_testkit::TestOptions::full()).await;
    register(&app, "mute", "gw", Some("a"), Some("1.0")).await;
    register(&app, "chatty", "gw", Some("a"), Some("1.0")).await;
    let (v2, v3) = (upload(&app, "2.0", &[]).await, upload(&app, "3.0", &[]).await);
    let with_timeout = |device: &str, firmware: &str, timeout: Value| {
        let body = json!({"firmware_id": firmware, "timeout_secs": timeout});
        app.post(&format!("/api/v1/devices/{device}/update")).json(&body).send()
    };
    for bad in [json!(0), json!(2_592_001), json!("soon")] {
        let (status, body) = json_of(with_timeout("mute", &v2, bad.clone()).await.expect("assign")).await;
        assert_eq!((status, body["error"].as_str()), (422, Some("invalid_field")), "{bad}: {body}");
    }
    let (status, lane) = json_of(with_timeout("mute", &v2, json!(1)).await.expect("assign")).await;
    assert_eq!(status, 201, "{lane}");
    // Without a timeout an update waits for its device, however long.
    assert_eq!(assign(&app, "chatty", &v2).await.0, 201);
    assert_eq!(report(&app, "mute", json!({"state": "downloading", "progress": 5})).await.0, 200);

    let timed_out = settled(&app, "/api/v1/devices/mute/update", |v| v["state"] == "timed_out").await;
    assert_eq!(timed_out["state"], "timed_out", "{timed_out}");
    let (_, chatty) = json_of(app.get("/api/v1/devices/chatty/update").send().await.expect("read")).await;
    assert_eq!(chatty["state"], "assigned", "{chatty}");
    let (status, next) = assign(&app, "mute", &v3).await;
    assert_eq!((status, next["action"].as_u64()), (201, Some(2)), "{next}");
}
