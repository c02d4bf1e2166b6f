//! The operator console in a real browser: `ui/tests/console.mjs` drives
//! Debian's chromium (playwright-core) against this server and a live fleet.
//! Screenshots land in `target/console-screenshots/`.

use std::path::Path;
use std::process::Command;

use ota_api::auth::Role;
use ota_testkit::{json_of, TestApp, TestOptions};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_runs_a_gated_campaign_from_the_console_and_a_viewer_only_looks() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let _fleet = app.fleet().await;
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui");
    assert!(ui.join("dist/index.html").exists(), "the console is not built: run scripts/ui.sh");

    let devices: Vec<String> = (0..20).map(|i| format!("ui-{i:02}")).collect();
    app.register_devices(&devices, "rev-a").await;
    let firmware = app.firmware("2.0").await;
    let body = json!({"name": "console demo", "firmware_id": firmware, "target": {"device_ids": devices},
        "rollout": {"waves": [{"percent": 50}, {"percent": 100}], "after_success": "pause"}});
    let (status, created) = json_of(app.post("/api/v1/campaigns").json(&body).send().await.expect("create")).await;
    assert_eq!(status, 201, "{created}");
    app.all_caught_up().await;

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    let run = Command::new("node")
        .arg(ui.join("tests/console.mjs"))
        .current_dir(&ui)
        .env("OTA_URL", app.url(""))
        .env("OTA_CAMPAIGN", created["id"].as_str().expect("id"))
        .env("OTA_OPERATOR_TOKEN", app.token(Role::Operator))
        .env("OTA_APPROVER_TOKEN", app.token_for("approver", Role::Approver))
        .env("OTA_VIEWER_TOKEN", app.token_for("viewer", Role::Viewer))
        .env("OTA_SCREENSHOTS", &shots)
        .output()
        .expect("run node (scripts/test.sh installs Node's packages and chromium)");
    let said = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "the browser test failed:\n{said}");
    for page in ["overview", "campaigns", "campaign-awaiting-approval", "campaign-completed", "sign-in-refused"] {
        assert!(shots.join(format!("{page}.png")).exists(), "no screenshot of {page}");
    }
}
