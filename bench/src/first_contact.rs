//! First contact: N devices the server has never seen enrol through the DDI
//! gateway token (hawkBit's plug and play), each with a base poll (which
//! registers it) and a configData (its attributes), C devices at once.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use hdrhistogram::Histogram;
use ota_testkit::{TestApp, TestOptions, GATEWAY_TOKEN};

use crate::figures;

pub async fn run(devices: usize, connections: usize) {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let auth = Arc::<str>::from(format!("GatewayToken {GATEWAY_TOKEN}"));
    let started = Instant::now();
    let latencies: Vec<(u64, u64)> = futures::stream::iter(0..devices)
        .map(|i| {
            let (http, auth) = (app.http.clone(), auth.clone());
            let base = app.url(&format!("/default/controller/v1/first-{i:06}"));
            async move {
                let sent = Instant::now();
                let poll = http.get(&base).header("Authorization", &*auth).send().await.expect("base poll");
                assert_eq!(poll.status(), 200, "first poll of first-{i:06}");
                let polled = sent.elapsed().as_micros() as u64;
                let body = serde_json::json!({"mode": "merge", "data": {"hwRevision": "rev-a", "device_model": "gw"}});
                let sent = Instant::now();
                let config = http
                    .put(format!("{base}/configData"))
                    .header("Authorization", &*auth)
                    .json(&body)
                    .send()
                    .await
                    .expect("configData");
                assert_eq!(config.status(), 200, "configData of first-{i:06}");
                (polled, sent.elapsed().as_micros() as u64)
            }
        })
        .buffer_unordered(connections)
        .collect()
        .await;
    let secs = started.elapsed().as_secs_f64();
    let mut polls = Histogram::<u64>::new_with_bounds(1, crate::ddi::MAX_LATENCY_US, 3).expect("histogram");
    let mut configs = polls.clone();
    for (poll, config) in latencies {
        polls.saturating_record(poll);
        configs.saturating_record(config);
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "first contact of {devices} devices through the gateway token ({connections} at once): {secs:.1} s, {:.0} devices/s ({:.0} requests/s)",
        devices as f64 / secs,
        2.0 * devices as f64 / secs
    );
    println!(
        "first base poll (registers) p50 / p99 / max: {:.1} / {:.1} / {:.1} ms; configData p50 / p99 / max: {:.1} / {:.1} / {:.1} ms",
        ms(&polls, 0.5),
        ms(&polls, 0.99),
        polls.max() as f64 / 1000.0,
        ms(&configs, 0.5),
        ms(&configs, 0.99),
        configs.max() as f64 / 1000.0
    );
    figures::record(
        format!("first contact through the gateway token, {connections} at once"),
        devices as f64 / secs,
        "devices/s",
    );
    figures::record("first base poll (registers) p99", ms(&polls, 0.99), "ms");
    figures::record("configData p99", ms(&configs, 0.99), "ms");
}
