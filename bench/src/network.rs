//! Device reports over the network, from a separate process, beside the same
//! reports entered in-process in the same run.
//!
//! One campaign assigns every device. A quarter of the fleet reports
//! in-process (through the group committer, as the rollout bench does); the
//! other quarters report from a child process (this binary, `--network-child`)
//! over DDI feedback, the HTTP status route and NATS `.status` request/reply.
//! Every device sends three reports, each after the answer to the previous one,
//! `in_flight` devices at a time; an answer means the report is committed.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
use ota_api::auth::Role;
use ota_projections::ProjectionName;
use ota_testkit::{TestApp, TestOptions, GATEWAY_TOKEN};
use serde::{Deserialize, Serialize};

use crate::figures;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Route {
    Ddi,
    Status,
    Nats,
}

impl Route {
    fn label(self) -> &'static str {
        match self {
            Route::Ddi => "DDI feedback",
            Route::Status => "status route (HTTP)",
            Route::Nats => "NATS .status request/reply",
        }
    }
}

/// What the child measured, printed as one JSON line on its stdout.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChildOutcome {
    pub reports: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub secs: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub async fn run(devices: usize, in_flight: usize) {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let ids: Arc<[String]> = (0..devices).map(|i| format!("bench-{i:06}")).collect();
    crate::rollout::assigned_campaign(&app, &ids).await;
    app.caught_up_within(ProjectionName::Updates, Duration::from_secs(600), Duration::from_secs(1)).await;
    let actions: HashMap<String, i32> = sqlx::query_as("SELECT device_id, action FROM device_updates")
        .fetch_all(&app.db)
        .await
        .expect("actions")
        .into_iter()
        .collect();
    let quarter = devices / 4;
    let group = |n: usize| -> Arc<[String]> { ids[n * quarter..(n + 1) * quarter].iter().cloned().collect() };

    settle(&app).await;
    let (secs, latency) = crate::rollout::report_all(&app, group(0), in_flight, Arc::new(AtomicUsize::new(0))).await;
    let in_process = (quarter * 3) as f64 / secs;
    println!(
        "in-process (group committer): {} reports in {secs:.2} s = {in_process:.0} reports/s, p50 / p99 {:.1} / {:.1} ms",
        quarter * 3,
        latency.value_at_quantile(0.5) as f64 / 1000.0,
        latency.value_at_quantile(0.99) as f64 / 1000.0
    );
    figures::record(
        format!("reports entered in-process, {in_flight} devices in flight (anchor)"),
        in_process,
        "reports/s",
    );

    for (n, route) in [(1, Route::Ddi), (2, Route::Status), (3, Route::Nats)] {
        settle(&app).await;
        let outcome = child(&app, route, &group(n), &actions, in_flight).await;
        let rate = outcome.reports as f64 / outcome.secs;
        println!(
            "{} from a separate process: {} reports in {:.2} s = {rate:.0} reports/s, p50 / p99 {:.1} / {:.1} ms, {} errors{} ({:.2} of in-process)",
            route.label(),
            outcome.reports,
            outcome.secs,
            outcome.p50_ms,
            outcome.p99_ms,
            outcome.errors,
            outcome.first_error.as_deref().map_or(String::new(), |e| format!(" (first: {e})")),
            rate / in_process
        );
        figures::record(format!("reports over {}, {in_flight} devices in flight", route.label()), rate, "reports/s");
        figures::record(format!("reports over {} p99", route.label()), outcome.p99_ms, "ms");
        figures::record(format!("reports over {} errors", route.label()), outcome.errors as f64, "reports");
    }
}

/// Waits until every projection has caught up, so that each route starts from
/// the same state rather than sharing the CPU with the previous one's backlog.
async fn settle(app: &TestApp) {
    for projection in ProjectionName::ALL {
        app.caught_up_within(projection, Duration::from_secs(600), Duration::from_millis(500)).await;
    }
}

/// Runs the child on one group of devices and reads what it measured.
async fn child(
    app: &TestApp,
    route: Route,
    devices: &[String],
    actions: &HashMap<String, i32>,
    in_flight: usize,
) -> ChildOutcome {
    let mut list = tempfile::NamedTempFile::new().expect("device list");
    for id in devices {
        writeln!(list, "{id} {}", actions.get(id).copied().unwrap_or(0)).expect("device list");
    }
    let exe = std::env::current_exe().expect("this binary");
    let route_arg = match route {
        Route::Ddi => "ddi",
        Route::Status => "status",
        Route::Nats => "nats",
    };
    let output = tokio::process::Command::new(exe)
        .args(["--network-child", route_arg, "--child-addr", &app.addr.to_string(), "--child-nats-prefix"])
        .arg(app.names.prefix())
        .arg("--child-devices")
        .arg(list.path())
        .args(["--child-in-flight", &in_flight.to_string(), "--child-token", &app.token(Role::Operator)])
        .output()
        .await
        .expect("the child process runs");
    assert!(output.status.success(), "child failed: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().expect("the child prints its outcome");
    serde_json::from_str(line).expect("the child's outcome")
}

/// The separate process: reports for each listed device over one route.
pub async fn run_child(
    route: Route,
    addr: &str,
    prefix: &str,
    devices: &std::path::Path,
    in_flight: usize,
    token: &str,
) {
    let list = std::fs::read_to_string(devices).expect("device list");
    let devices: Vec<(String, i32)> = list
        .lines()
        .filter_map(|l| {
            let (id, action) = l.split_once(' ')?;
            Some((id.to_owned(), action.parse().ok()?))
        })
        .collect();
    let http = reqwest::Client::builder().pool_max_idle_per_host(in_flight).build().expect("http client");
    let nats = match route {
        Route::Nats => Some(async_nats::connect(ota_testkit::NATS).await.expect("NATS")),
        _ => None,
    };
    let names = ota_domain::bus::BusNames::new(prefix).expect("prefix");
    let started = Instant::now();
    let outcomes: Vec<(Histogram<u64>, u64, Option<String>)> = futures::stream::iter(devices)
        .map(|(id, action)| {
            let (http, nats, names) = (http.clone(), nats.clone(), names.clone());
            async move {
                let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram");
                let (mut errors, mut first_error) = (0u64, None);
                for step in 0..3 {
                    let sent = Instant::now();
                    let outcome = match route {
                        Route::Ddi => ddi_feedback(&http, addr, &id, action, step).await,
                        Route::Status => status_route(&http, addr, &id, token, step).await,
                        Route::Nats => nats_status(nats.as_ref(), &names, &id, step).await,
                    };
                    latency.saturating_record(sent.elapsed().as_micros() as u64);
                    if let Err(e) = outcome {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
                (latency, errors, first_error)
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let secs = started.elapsed().as_secs_f64();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram");
    let (mut errors, mut first_error) = (0, None);
    for (h, e, first) in outcomes {
        latency.add(h).expect("same bounds");
        errors += e;
        if first_error.is_none() {
            first_error = first;
        }
    }
    let outcome = ChildOutcome {
        reports: latency.len(),
        errors,
        first_error,
        secs,
        p50_ms: latency.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: latency.value_at_quantile(0.99) as f64 / 1000.0,
    };
    println!("{}", serde_json::to_string(&outcome).expect("outcome as JSON"));
}

const STATES: [&str; 3] = ["downloading", "installing", "succeeded"];

async fn ddi_feedback(http: &reqwest::Client, addr: &str, id: &str, action: i32, step: usize) -> Result<(), String> {
    let (execution, finished) = [("download", "none"), ("downloaded", "none"), ("closed", "success")][step];
    let body = serde_json::json!({"id": action.to_string(),
        "status": {"execution": execution, "result": {"finished": finished}}});
    let url = format!("http://{addr}/default/controller/v1/{id}/deploymentBase/{action}/feedback");
    let response = http
        .post(url)
        .header("Authorization", format!("GatewayToken {GATEWAY_TOKEN}"))
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    match response.status().is_success() {
        true => Ok(()),
        false => Err(format!("{} {}", response.status(), response.text().await.unwrap_or_default())),
    }
}

async fn status_route(http: &reqwest::Client, addr: &str, id: &str, token: &str, step: usize) -> Result<(), String> {
    let url = format!("http://{addr}/api/v1/devices/{id}/status");
    let response = http
        .post(url)
        .bearer_auth(token)
        .json(&serde_json::json!({"state": STATES[step]}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    match response.status().is_success() {
        true => Ok(()),
        false => Err(format!("{} {}", response.status(), response.text().await.unwrap_or_default())),
    }
}

async fn nats_status(
    nats: Option<&async_nats::Client>,
    names: &ota_domain::bus::BusNames,
    id: &str,
    step: usize,
) -> Result<(), String> {
    let nats = nats.ok_or("no NATS connection")?;
    let body = serde_json::json!({"state": STATES[step]}).to_string();
    let reply = nats.request(names.device_status(id), body.into()).await.map_err(|e| e.to_string())?;
    let answer: serde_json::Value = serde_json::from_slice(&reply.payload).map_err(|e| e.to_string())?;
    match answer["ok"].as_bool() {
        Some(true) => Ok(()),
        _ => Err(answer.to_string()),
    }
}
