//! The plan preview against reality: what the preview says a start would do is
//! what starting the same plan with the preview's seed then does.

use std::collections::BTreeMap;

use ota_testkit::{json_of, Behavior, TestApp, TestOptions};
use serde_json::{json, Value};

use crate::rollouts::{ids, members, wait_status};

async fn register(app: &TestApp, id: &str, model: &str, hardware: &str, running: &str) {
    let body = json!({"id": id, "device_model": model, "hardware_version": hardware, "firmware_version": running});
    let (status, body) = json_of(app.post("/api/v1/devices").json(&body).send().await.expect("register")).await;
    assert!(status == 201 || status == 200, "register {id}: {status} {body}");
}

async fn upload(app: &TestApp, version: &str, hardware: &[&str]) -> String {
    let meta = json!({"name": "os", "version": version, "device_model": "gw", "hardware_versions": hardware});
    let (status, body) = app.upload_firmware_with(meta, "image.swu", format!("image {version}").into_bytes()).await;
    assert!(status == 201 || status == 200, "upload: {status} {body}");
    body["id"].as_str().expect("firmware id").to_owned()
}

async fn preview(app: &TestApp, body: &Value) -> Value {
    let (status, answer) =
        json_of(app.post("/api/v1/campaigns/preview").json(body).send().await.expect("preview")).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// Creates the previewed plan as a campaign and starts it with the preview's seed.
async fn create_and_start(app: &TestApp, body: &Value, seed: &Value) -> String {
    let (status, created) = json_of(app.post("/api/v1/campaigns").json(body).send().await.expect("create")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let start = app.post(&format!("/api/v1/campaigns/{id}/start")).json(&json!({"seed": seed}));
    let (status, started) = json_of(start.send().await.expect("start")).await;
    assert_eq!(status, 200, "{started}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preview_names_every_exclusion_and_a_start_with_its_seed_does_exactly_that() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let fleet = app.fleet().await;
    let fine = ids("pv", 40);
    for (i, id) in fine.iter().enumerate() {
        register(&app, id, "gw", if i % 2 == 0 { "rev-a" } else { "rev-b" }, "1.0").await;
    }
    register(&app, "pv-current", "gw", "rev-a", "2.0").await;
    register(&app, "pv-old-board", "gw", "rev-z", "1.0").await;
    register(&app, "pv-camera", "cam", "rev-a", "1.0").await;
    register(&app, "pv-busy", "gw", "rev-a", "1.0").await;
    // Busy with a single update it never finishes.
    fleet.set("pv-busy", Behavior::Silent);
    let other = upload(&app, "1.5", &[]).await;
    let assign = app.post("/api/v1/devices/pv-busy/update").json(&json!({"firmware_id": other}));
    let (status, body) = json_of(assign.send().await.expect("assign")).await;
    assert_eq!(status, 201, "{body}");

    let firmware = upload(&app, "2.0", &["rev-a", "rev-b"]).await;
    let mut target: Vec<String> = fine.clone();
    target.extend(["pv-current", "pv-old-board", "pv-camera", "pv-busy", "pv-ghost"].map(String::from));
    let body = json!({
        "name": "previewed", "firmware_id": firmware, "target": {"device_ids": target},
        "rollout": {"waves": [{"percent": 10}, {"percent": 50}, {"percent": 100}]},
        "assume": {"failure_percent": 0, "update_secs": 300},
    });
    let seen = preview(&app, &body).await;

    let reasons: BTreeMap<String, Value> = seen["excluded"]
        .as_array()
        .expect("excluded")
        .iter()
        .map(|e| (e["device_id"].as_str().expect("id").to_owned(), e.clone()))
        .collect();
    for (device, reason, member) in [
        ("pv-ghost", "device.not_found", false),
        ("pv-camera", "update.model_mismatch", false),
        ("pv-current", "update.already_installed", true),
        ("pv-old-board", "update.hardware_mismatch", true),
        ("pv-busy", "device_update.already_active", true),
    ] {
        let exclusion = &reasons[device];
        assert_eq!(exclusion["reason"], reason, "{exclusion}");
        assert_eq!(exclusion["wave"].is_u64(), member, "{exclusion}");
        assert!(exclusion["message"].as_str().is_some_and(|m| !m.is_empty()), "{exclusion}");
    }
    assert_eq!(reasons.len(), 5, "{seen}");
    assert_eq!(
        (seen["updating"].as_u64(), seen["members"].as_u64(), seen["not_members"].as_u64()),
        (Some(40), Some(43), Some(2))
    );
    assert_eq!(seen["excluded_by_reason"]["device.not_found"], 1, "{seen}");
    // 40 updating devices, 300 s each, three waves: it completes.
    assert_eq!(seen["forecast"]["outcome"]["kind"], "completed", "{seen}");
    let starts: Vec<&str> =
        seen["waves"].as_array().expect("waves").iter().filter_map(|w| w["starts_at"].as_str()).collect();
    assert_eq!(starts.len(), 3, "every wave is reached: {seen}");
    assert!(seen["forecast"]["duration_secs"].as_i64().is_some_and(|d| d >= 900), "three waves of 300 s: {seen}");

    // The same plan, started with the preview's seed.
    let id = create_and_start(&app, &body_without_assume(&body), &seen["seed"]).await;
    let previewed: Vec<Vec<String>> = seen["waves"]
        .as_array()
        .expect("waves")
        .iter()
        .map(|w| w["members"].as_array().expect("members").iter().map(|d| d.as_str().expect("id").to_owned()).collect())
        .collect();
    assert_eq!(members(&app, &id).await, previewed, "the start drew the previewed waves");
    let done = wait_status(&app, &id, "completed").await;
    assert_eq!(done["excluded"], seen["not_members"], "{done}");
    for (wave, expected) in seen["waves"].as_array().expect("waves").iter().enumerate() {
        let real = &done["waves"][wave];
        let members = expected["members"].as_array().map_or(0, Vec::len);
        assert_eq!(real["size"], members, "wave {wave}: {real}");
        assert_eq!(real["skipped"], expected["skipped"], "wave {wave}: {real} vs {expected}");
        assert_eq!(real["succeeded"], expected["succeeded"], "wave {wave}");
    }
    assert_eq!(fleet.updates_received("pv-current"), 0);
    assert_eq!(fleet.updates_received("pv-old-board"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forecast_gate_decision_matches_a_failing_fleet() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let fleet = app.fleet().await;
    let devices = ids("pf", 20);
    for id in &devices {
        register(&app, id, "gw", "rev-a", "1.0").await;
        fleet.set(id, Behavior::Fail);
    }
    let firmware = upload(&app, "2.0", &[]).await;
    let body = json!({
        "name": "doomed", "firmware_id": firmware, "target": {"device_ids": devices},
        "rollout": {"waves": [{"percent": 25}, {"percent": 100}], "failure_threshold_percent": 20, "min_finished": 5},
        "assume": {"failure_percent": 100, "update_secs": 60},
    });
    let seen = preview(&app, &body).await;
    let outcome = &seen["forecast"]["outcome"];
    assert_eq!((outcome["kind"].as_str(), outcome["reason"]["wave"].as_u64()), (Some("paused"), Some(0)), "{seen}");
    assert_eq!(outcome["reason"]["gate"], "failure_threshold", "{seen}");
    assert!(seen["waves"][1]["starts_at"].is_null(), "the second wave is never reached: {seen}");

    let id = create_and_start(&app, &body_without_assume(&body), &seen["seed"]).await;
    let paused = wait_status(&app, &id, "paused").await;
    let gate = paused["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .find_map(|d| d["gate"]["gate"].as_str().map(|g| (g.to_owned(), d["gate"]["wave"].clone())));
    assert_eq!(gate, Some(("failure_threshold".to_owned(), json!(0))), "{paused}");
    assert_eq!(paused["waves"][1]["assigned"], 0, "{paused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_preview_requests_are_refused_and_write_nothing() {
    let app = TestApp::spawn().await;
    let firmware = app.firmware("2.0").await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.db).await.expect("count");
    let ok_target = json!({"device_ids": ["dev-1"]});
    for (body, code, needle) in [
        (json!({"firmware_id": firmware, "target": {}}), "campaign.empty_target", "target"),
        (json!({"firmware_id": firmware, "target": ok_target, "rollout": {"waves": []}}), "rollout.no_waves", "waves"),
        (
            json!({"firmware_id": firmware, "target": ok_target, "assume": {"failure_percent": 101}}),
            "invalid_field",
            "failure_percent",
        ),
        (
            json!({"firmware_id": firmware, "target": ok_target, "assume": {"update_secs": 0}}),
            "invalid_field",
            "update_secs",
        ),
        (json!({"firmware_id": firmware, "target": ok_target, "seed": "-1"}), "invalid_field", "seed"),
        (json!({"firmware_id": uuid::Uuid::new_v4(), "target": ok_target}), "campaign.unknown_firmware", "firmware"),
    ] {
        let (status, answer) =
            json_of(app.post("/api/v1/campaigns/preview").json(&body).send().await.expect("preview")).await;
        assert_eq!((status, answer["error"].as_str()), (422, Some(code)), "{body}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| m.contains(needle)), "{body}: {answer}");
    }
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.db).await.expect("count");
    assert_eq!(after, events, "a preview writes nothing");

    // A seed is only for an immediate start.
    let body = json!({"name": "later", "firmware_id": firmware, "target": ok_target,
        "rollout": {"start_at": "2099-01-01T00:00:00Z"}});
    let (status, created) = json_of(app.post("/api/v1/campaigns").json(&body).send().await.expect("create")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id");
    let start = app.post(&format!("/api/v1/campaigns/{id}/start")).json(&json!({"seed": "42"}));
    let (status, answer) = json_of(start.send().await.expect("start")).await;
    assert_eq!((status, answer["error"].as_str()), (422, Some("invalid_field")), "{answer}");
}

/// A create body: the preview's own fields removed.
fn body_without_assume(body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(map) = body.as_object_mut() {
        map.remove("assume");
    }
    body
}
