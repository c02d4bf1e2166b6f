//! Issue 14, item 1: `/metrics` of the real binary after real traffic. The
//! exposition says what happened (polls, 429s, commands, events, campaigns by
//! status, lag per projection), passes `promtool check metrics`, asks for its
//! token when one is set, and holds only documented metrics, which are the only
//! ones the Grafana dashboard uses. Logs come as JSON lines when asked.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use ota_api::auth::Role;
use ota_testkit::{eventually, Deployment, ServerProcess};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

const BIN: &str = env!("CARGO_BIN_EXE_ota");
const METRICS_TOKEN: &str = "metrics-token-for-tests-0123456789";

/// The value of one series (`name{labels}` exactly as exposed), if present.
fn value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Metric names in an exposition, without the histogram suffixes.
fn names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| n.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count").to_owned())
        .collect()
}

async fn scrape(deployment: &Deployment, server: &ServerProcess) -> String {
    let response = deployment.http.get(server.url("/metrics")).bearer_auth(METRICS_TOKEN).send().await.expect("scrape");
    assert_eq!(response.status(), 200);
    let kind = response.headers()[reqwest::header::CONTENT_TYPE].to_str().expect("type").to_owned();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    response.text().await.expect("exposition")
}

async fn promtool_check(exposition: &str) {
    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/test.sh installs the prometheus package)");
    let mut stdin = promtool.stdin.take().expect("stdin");
    stdin.write_all(exposition.as_bytes()).await.expect("write");
    drop(stdin);
    let out = promtool.wait_with_output().await.expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{exposition}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_tell_what_the_server_did_pass_promtool_and_match_the_dashboard() {
    let deployment = Deployment::new(BIN).await;
    let env = [("OTA_METRICS_TOKEN", METRICS_TOKEN), ("OTA_LOG_FORMAT", "json"), ("OTA_RATE_LIMIT_DEVICE", "1")];
    let server = deployment.start_with(&env, None).await;
    let operator = deployment.token(Role::Operator);
    let http = &deployment.http;

    let unauthenticated = http.get(server.url("/metrics")).send().await.expect("scrape");
    assert_eq!(unauthenticated.status(), 401);
    let body: Value = unauthenticated.json().await.expect("a JSON error");
    assert_eq!(body["error"], "unauthorized", "{body}");

    let device = json!({"id": "metrics-1", "device_model": "gw", "firmware_version": "1.0"});
    let registered = http.post(server.url("/api/v1/devices")).bearer_auth(&operator).json(&device).send().await;
    let registered: Value = registered.expect("register").json().await.expect("JSON");
    let token = registered["target_token"].as_str().expect("target token").to_owned();
    let poll = || {
        http.get(server.url("/default/controller/v1/metrics-1"))
            .header("Authorization", format!("TargetToken {token}"))
            .send()
    };
    // One poll a second is allowed: a burst of them is refused past the first few.
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(poll().await.expect("poll").status().as_u16());
    }
    let answered = statuses.iter().filter(|s| **s == 200).count();
    assert!(answered >= 1 && statuses.contains(&429), "{statuses:?}");

    let form = reqwest::multipart::Form::new()
        .text("metadata", json!({"name": "os", "version": "2.0", "device_model": "gw"}).to_string())
        .part("file", reqwest::multipart::Part::bytes(b"image 2.0".to_vec()).file_name("os.swu"));
    let uploaded = http.post(server.url("/api/v1/firmware")).bearer_auth(&operator).multipart(form).send().await;
    let firmware: Value = uploaded.expect("upload").json().await.expect("JSON");
    let campaign = json!({"name": "metrics", "firmware_id": firmware["id"], "target": {"device_ids": ["metrics-1"]}});
    let created = http.post(server.url("/api/v1/campaigns")).bearer_auth(&operator).json(&campaign).send().await;
    assert_eq!(created.expect("create").status(), 201);
    deployment.all_caught_up().await;

    let exposition = eventually("the campaign in the gauges", Duration::from_secs(30), || async {
        let exposition = scrape(&deployment, &server).await;
        (value(&exposition, r#"ota_campaigns{status="draft"}"#) == Some(1.0)).then_some(exposition)
    })
    .await;
    let poll_route = r#"route="/{tenant}/controller/v1/{controller}""#;
    let polled = format!(r#"ota_http_requests_total{{method="GET",{poll_route},status="200"}}"#);
    assert_eq!(value(&exposition, &polled), Some(answered as f64), "{exposition}");
    assert_eq!(value(&exposition, "ota_ddi_polls_total"), Some(answered as f64), "{exposition}");
    let refused = statuses.iter().filter(|s| **s == 429).count() as f64;
    assert_eq!(value(&exposition, r#"ota_rate_limited_total{limit="device"}"#), Some(refused), "{exposition}");
    let stored = value(&exposition, r#"ota_commands_total{aggregate="Device",outcome="stored"}"#);
    assert!(stored >= Some(1.0), "{exposition}");
    assert!(value(&exposition, r#"ota_events_appended_total{aggregate="Campaign"}"#) >= Some(1.0), "{exposition}");
    assert_eq!(value(&exposition, r#"ota_projection_lag_events{projection="campaigns"}"#), Some(0.0), "{exposition}");
    assert!(value(&exposition, "ota_relay_lag_events").is_some(), "{exposition}");
    assert!(exposition.contains("ota_http_request_duration_seconds_bucket{"), "{exposition}");
    assert!(exposition.contains("ota_rollout_tick_duration_seconds_count"), "{exposition}");
    promtool_check(&exposition).await;

    // Nothing undocumented is exposed, and the dashboard asks only for what is.
    let documented: BTreeSet<String> = ota_api::metrics::METRICS.iter().map(|(name, ..)| (*name).to_owned()).collect();
    let exposed = names(&exposition);
    assert!(exposed.is_subset(&documented), "undocumented: {:?}", exposed.difference(&documented));
    let dashboard = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana/ota.json"))
        .expect("the dashboard");
    let dashboard: Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    let mut asked = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("ota_") {
                    asked.insert(word.trim_end_matches("_bucket").to_owned());
                }
            }
        }
    }
    assert!(asked.is_subset(&documented), "the dashboard asks for {:?}", asked.difference(&documented));
    assert!(asked.len() >= 15, "{asked:?}");

    // JSON logs: one object a line.
    let log = server.log_tail();
    let lines: Vec<Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(!lines.is_empty() && lines.iter().all(|l| l["level"].is_string() && l["timestamp"].is_string()), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_metrics_token_refuses_to_start() {
    let deployment = Deployment::new(BIN).await;
    let (status, log) = deployment.exit_of(&["serve"], &[("OTA_METRICS_TOKEN", "short")]).await;
    assert!(!status.success(), "{log}");
    assert!(log.contains("OTA_METRICS_TOKEN must be at least 32 bytes"), "{log}");
}
