//! The operator console in a real browser: `ui/tests/console.mjs` drives
//! Debian's chromium (playwright-core) against this server and a live fleet.
//! Screenshots land in `target/console-screenshots/`.

use std::path::Path;
use std::process::Command;

use ota_api::auth::Role;
use ota_testkit::{json_of, Behavior, TestApp, TestOptions};
use serde_json::json;

async fn register(app: &TestApp, id: &str, tag: &str) {
    let body =
        json!({"id": id, "device_model": "gw", "hardware_version": "rev-a", "firmware_version": "1.0", "tags": [tag]});
    let (status, body) = json_of(app.post("/api/v1/devices").json(&body).send().await.expect("register")).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_does_its_work_in_the_console_and_sees_only_what_it_may() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let fleet = app.fleet().await;
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui");
    assert!(ui.join("dist/index.html").exists(), "the console is not built: run scripts/ui.sh");

    // Ten steady devices for the campaign the browser creates; four that fail, for
    // a campaign whose gate pauses it.
    for i in 0..10 {
        register(&app, &format!("ui-{i:02}"), "steady").await;
    }
    let fragile: Vec<String> = (0..4).map(|i| format!("ui-fragile-{i}")).collect();
    for id in &fragile {
        register(&app, id, "fragile").await;
        fleet.set(id, Behavior::Fail);
    }
    // The image the fleet runs is in the catalogue, so a device can be rolled back to it.
    let (status, _) = app.upload_firmware("console-os", "1.0", "gw", b"console image 1.0".to_vec()).await;
    assert_eq!(status, 201);
    let (status, other) = app.upload_firmware("console-os", "2.9", "gw", b"console image 2.9".to_vec()).await;
    assert_eq!(status, 201, "{other}");
    let body = json!({"name": "fragile rollout", "firmware_id": other["id"], "target": {"device_ids": fragile},
        "rollout": {"failure_threshold_percent": 20, "min_finished": 2}});
    let (status, created) = json_of(app.post("/api/v1/campaigns").json(&body).send().await.expect("create")).await;
    assert_eq!(status, 201, "{created}");
    let draft = json!({"name": "never to be", "firmware_id": other["id"], "target": {"device_ids": ["ui-09"]}});
    let (status, created) = json_of(app.post("/api/v1/campaigns").json(&draft).send().await.expect("create")).await;
    assert_eq!(status, 201, "{created}");
    app.all_caught_up().await;

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    let run = Command::new("node")
        .arg(ui.join("tests/console.mjs"))
        .current_dir(&ui)
        .env("OTA_URL", app.url(""))
        .env("OTA_OPERATOR_TOKEN", app.token(Role::Operator))
        .env("OTA_APPROVER_TOKEN", app.token_for("approver", Role::Approver))
        .env("OTA_AUDITOR_TOKEN", app.token_for("auditor", Role::Auditor))
        .env("OTA_ADMIN_TOKEN", app.token_for("root", Role::Admin))
        .env("OTA_SCREENSHOTS", &shots)
        .output()
        .expect("run node (scripts/test.sh installs Node's packages and chromium)");
    let said = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "the browser test failed:\n{said}");
    for page in [
        "overview",
        "firmware",
        "campaign-new-preview",
        "campaign-awaiting-approval",
        "campaign-completed",
        "campaign-paused-by-gate",
        "campaigns",
        "device",
        "audit",
        "admin",
        "firmware-detail",
        "sign-in-refused",
    ] {
        assert!(shots.join(format!("{page}.png")).exists(), "no screenshot of {page}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_runs_live_in_the_console_in_firefox_too() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let _fleet = app.fleet().await;
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui");
    let devices: Vec<String> = (0..6).map(|i| format!("ff-{i}")).collect();
    app.register_devices(&devices, "rev-a").await;
    let firmware = app.firmware("2.0").await;
    let body = json!({"name": "in firefox", "firmware_id": firmware, "target": {"device_ids": devices},
        "rollout": {"waves": [{"percent": 50}, {"percent": 100}]}});
    let (status, created) = json_of(app.post("/api/v1/campaigns").json(&body).send().await.expect("create")).await;
    assert_eq!(status, 201, "{created}");
    app.all_caught_up().await;

    let run = Command::new("node")
        .arg(ui.join("tests/firefox.mjs"))
        .current_dir(&ui)
        .env("OTA_URL", app.url(""))
        .env("OTA_CAMPAIGN", created["id"].as_str().expect("id"))
        .env("OTA_OPERATOR_TOKEN", app.token(Role::Operator))
        .env("OTA_SCREENSHOTS", Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots"))
        .output()
        .expect("run node (scripts/test.sh installs Node's packages and firefox-esr)");
    let said = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "the Firefox test failed:\n{said}");
}
