//! Bulk import against one registration per request, in the same run: devices
//! per second for `POST /devices:import` (NDJSON, one request) and for
//! `POST /devices` from 16 concurrent clients, then the same import again
//! (every row unchanged).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ota_testkit::{json_of, TestApp};

use crate::figures;

pub async fn run(devices: usize) {
    let app = TestApp::spawn().await;
    println!(
        "machine: {} cores; bulk import of {devices} devices",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let body: Vec<String> = (0..devices)
        .map(|i| format!(r#"{{"id":"bulk-{i:06}","device_model":"gw","hardware_version":"rev-a","firmware_version":"1.0","tags":["plant-7"]}}"#))
        .collect();
    let body = body.join("\n");
    let mut rates = Vec::new();
    for pass in ["first import", "same import again"] {
        let started = Instant::now();
        let request =
            app.post("/api/v1/devices:import").header("content-type", "application/x-ndjson").body(body.clone());
        let (status, report) = json_of(request.send().await.expect("import")).await;
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(status, 200, "{}", report["error"]);
        let rate = devices as f64 / secs;
        println!(
            "{pass}: {secs:.2} s, {rate:.0} devices/s (created {}, unchanged {})",
            report["created"], report["unchanged"]
        );
        figures::record(format!("bulk import of {devices} devices, {pass}"), rate, "devices/s");
        rates.push(rate);
    }

    let singles = (devices / 10).max(1);
    let next = Arc::new(AtomicUsize::new(0));
    let app = Arc::new(app);
    let started = Instant::now();
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (app, next) = (app.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= singles {
                        break;
                    }
                    let device = serde_json::json!({"id": format!("one-{i:06}"), "device_model": "gw", "firmware_version": "1.0"});
                    let response = app.post("/api/v1/devices").json(&device).send().await.expect("register");
                    assert_eq!(response.status(), 201);
                }
            })
        })
        .collect();
    futures::future::join_all(clients).await;
    let one_by_one = singles as f64 / started.elapsed().as_secs_f64();
    println!("POST /devices one at a time, 16 clients, {singles} devices: {one_by_one:.0} devices/s");
    println!("ratio import/one-at-a-time: {:.1}", rates[0] / one_by_one);
    figures::record("POST /devices one at a time, 16 clients (anchor)", one_by_one, "devices/s");
    figures::record("bulk import / one at a time", rates[0] / one_by_one, "ratio");
}
