//! A whole campaign at fleet scale: devices registered, a campaign started with
//! no rate limit, every device assigned, every device reporting success.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use hdrhistogram::Histogram;
use ota_domain::campaign::Campaign;
use ota_domain::device::{Device, DeviceCommand, DeviceProfile};
use ota_domain::device_update::{DeviceUpdate, DeviceUpdateCommand, UpdateState};
use ota_domain::{Actor, CommandMeta, DeviceId};
use ota_orchestrator::devices::StatusReport;
use ota_projections::ProjectionName;
use ota_testkit::{json_of, TestApp, TestOptions};

use crate::figures;

/// How often the bench looks at the campaign aggregate. It keeps the state and
/// reads only the events since (`Store::refresh`): a whole read decodes a
/// multi-megabyte snapshot, and polling so made the bench's own reads the
/// largest query of the run.
const CAMPAIGN_POLL: Duration = Duration::from_millis(250);

pub async fn run(devices: usize, reporters: usize) {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let store = app.server.state.store.clone();
    // Shared, not cloned per task: 1,024 copies of 100k ids were gigabytes of allocation inside the timed phase.
    let ids: Arc<[String]> = (0..devices).map(|i| format!("bench-{i:06}")).collect();
    let campaign = assigned_campaign(&app, &ids).await;
    let (mut c, mut version) = (Campaign::default(), 0);

    let succeeded = Arc::new(AtomicUsize::new(0));
    let campaign_id = uuid::Uuid::parse_str(&campaign).expect("campaign id");
    let probes =
        crate::visibility::spawn(app.db.clone(), app.js.clone(), app.names.clone(), campaign_id, succeeded.clone());
    let (report_secs, latency) = report_all(&app, ids.clone(), reporters, succeeded).await;
    let stored = devices * 4; // three reports + the inventory change on success
    figures::record(
        format!("device reports stored, {reporters} devices in flight"),
        (devices * 3) as f64 / report_secs,
        "reports/s",
    );
    println!(
        "{} device reports ({reporters} concurrent devices) durably stored in {report_secs:.1} s: {:.0} reports/s ({:.0} events/s incl. inventory)",
        devices * 3,
        (devices * 3) as f64 / report_secs,
        stored as f64 / report_secs
    );
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    figures::record("report latency p50 (sent -> committed)", ms(0.5), "ms");
    figures::record("report latency p99 (sent -> committed)", ms(0.99), "ms");
    println!(
        "report latency (sent -> committed, success includes the inventory change) ms: p50 {:.1} p90 {:.1} p99 {:.1} max {:.1}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        latency.max() as f64 / 1000.0
    );
    let last_report = Instant::now();
    loop {
        store.refresh(&campaign, &mut c, &mut version).await.expect("campaign");
        if c.status.is_terminal() {
            println!(
                "last report -> campaign {} (gate evaluated): {:.1} s",
                c.status,
                last_report.elapsed().as_secs_f64()
            );
            figures::record("last report -> campaign completed", last_report.elapsed().as_secs_f64(), "s");
            break;
        }
        tokio::time::sleep(CAMPAIGN_POLL).await;
    }

    probes.finish().await;

    // Stock single-command execution on the same machine in the same run, for the ratio.
    let sample = 3000.min(devices);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..reporters.min(16))
        .map(|_| {
            let (store, ids, next) = (store.clone(), ids.clone(), next.clone());
            tokio::spawn(async move {
                let meta = CommandMeta::new(Actor::system("bench-device"));
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= sample {
                        break;
                    }
                    let report = DeviceUpdateCommand::Report {
                        action: Some(999),
                        state: UpdateState::Downloading,
                        progress: None,
                        message: None,
                        at: Utc::now(),
                    };
                    store
                        .execute::<DeviceUpdate>(&DeviceId::parse(&ids[i]).expect("id"), report, &meta)
                        .await
                        .expect("stock report");
                }
            })
        })
        .collect();
    futures::future::join_all(tasks).await;
    let stock = sample as f64 / started.elapsed().as_secs_f64();
    figures::record("stock single-command execution, 16 clients (anchor)", stock, "reports/s");
    figures::record(
        "group commit / stock single-command execution",
        (devices * 3) as f64 / report_secs / stock,
        "ratio",
    );
    println!("stock single-command execution, 16 clients (one stale report each, stored as ReportIgnored): {stock:.0} reports/s");
    println!("ratio group commit / stock: {:.1}", (devices * 3) as f64 / report_secs / stock);
}

/// Registers the fleet, starts one campaign over all of it with no rate limit and
/// waits until every device is durably assigned; returns the campaign's id.
pub async fn assigned_campaign(app: &TestApp, ids: &[String]) -> String {
    let store = app.server.state.store.clone();
    let meta = CommandMeta::new(Actor::system("bench"));
    let devices = ids.len();
    let started = Instant::now();
    for chunk in ids.chunks(1000) {
        let items = chunk
            .iter()
            .map(|id| {
                let profile = DeviceProfile {
                    device_model: "gw".into(),
                    hardware_version: Some(if id.ends_with('7') { "rev-b" } else { "rev-a" }.into()),
                    firmware_version: Some("1.0".into()),
                    tags: Default::default(),
                    attributes: BTreeMap::new(),
                };
                let id_parsed = DeviceId::parse(id).expect("id");
                (id.clone(), DeviceCommand::Register { id: id_parsed, profile, at: Utc::now() }, meta.clone())
            })
            .collect();
        for r in store.execute_many::<Device>(items).await {
            r.expect("register");
        }
    }
    println!("registered {devices} devices (group commits of 1000) in {:.1} s", started.elapsed().as_secs_f64());
    figures::record(
        format!("{devices} devices registered (group commits of 1000)"),
        started.elapsed().as_secs_f64(),
        "s",
    );
    let started = Instant::now();
    app.caught_up_within(ProjectionName::Devices, Duration::from_secs(600), Duration::from_secs(1)).await;
    println!("devices read model caught up {:.1} s later", started.elapsed().as_secs_f64());

    let firmware = app.firmware("2.0").await;
    let body = serde_json::json!({"name": "fleet", "firmware_id": firmware,
        "target": {"filter": {"device_model": "gw"}}, "rollout": {"waves": [{"percent": 100}]}});
    let (status, created) = json_of(app.post("/api/v1/campaigns").json(&body).send().await.expect("create")).await;
    assert_eq!(status, 201, "{created}");
    let campaign = created["id"].as_str().expect("id").to_owned();

    let started = Instant::now();
    let (status, body) = app.campaign_action(&campaign, "start").await;
    assert_eq!(status, 200, "{body}");
    let (mut c, mut version) = (Campaign::default(), 0);
    loop {
        store.refresh(&campaign, &mut c, &mut version).await.expect("campaign");
        if c.assigned.iter().sum::<u32>() as usize >= devices {
            break;
        }
        tokio::time::sleep(CAMPAIGN_POLL).await;
    }
    let assign_secs = started.elapsed().as_secs_f64();
    figures::record(format!("start -> all {devices} devices assigned"), assign_secs, "s");
    println!(
        "start -> all {devices} devices assigned (durably, rate limit off): {assign_secs:.1} s ({:.0} devices/s)",
        devices as f64 / assign_secs
    );
    campaign
}

/// Every device reports downloading, installing and success, `reporters` at a time,
/// through the group committer the HTTP and NATS routes use; `succeeded` counts
/// committed successes. Returns the seconds taken and the report latencies (µs).
pub async fn report_all(
    app: &TestApp,
    ids: Arc<[String]>,
    reporters: usize,
    succeeded: Arc<AtomicUsize>,
) -> (f64, Histogram<u64>) {
    let reports = app.server.state.reports.clone();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..reporters)
        .map(|_| {
            let (reports, ids, next, succeeded) = (reports.clone(), ids.clone(), next.clone(), succeeded.clone());
            tokio::spawn(async move {
                let meta = CommandMeta::new(Actor::system("bench-device"));
                let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram");
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(id) = ids.get(i) else { break };
                    let device = DeviceId::parse(id).expect("id");
                    for state in [UpdateState::Downloading, UpdateState::Installing, UpdateState::Succeeded] {
                        let report =
                            StatusReport { state, progress: None, message: None, firmware_version: None, action: None };
                        let sent = Instant::now();
                        reports.report(&device, report, &meta, Utc::now()).await.expect("report");
                        latency.saturating_record(sent.elapsed().as_micros() as u64);
                        if state == UpdateState::Succeeded {
                            succeeded.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latency
            })
        })
        .collect();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram");
    for task in futures::future::join_all(tasks).await {
        latency.add(task.expect("reporter")).expect("same histogram bounds");
    }
    (started.elapsed().as_secs_f64(), latency)
}
