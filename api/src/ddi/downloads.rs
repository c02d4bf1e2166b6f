//! The download log: every artifact response is counted as it streams, and what
//! one update's downloads delivered over a couple of seconds becomes one event
//! (streaming clients such as RAUC issue many small Range reads).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use ota_domain::device_update::{DeviceUpdateCommand, Download};
use ota_domain::{Actor, CommandMeta, FirmwareId};
use ota_orchestrator::devices::Reports;
use tokio::sync::mpsc;

use crate::artifact::Served;

/// How long one update's downloads are summed before they are recorded.
const WINDOW: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct Fetch {
    pub device: String,
    pub action: u32,
    pub firmware: FirmwareId,
    pub via: &'static str,
    pub served: Served,
}

#[derive(Clone)]
pub struct DownloadLog {
    tx: mpsc::UnboundedSender<Fetch>,
}

impl DownloadLog {
    pub fn spawn(reports: Reports) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, tokio::spawn(run(rx, reports)))
    }

    pub fn record(&self, fetch: Fetch) {
        // Only fails once the server is shutting down.
        let _ = self.tx.send(fetch);
    }
}

struct Pending {
    since: Instant,
    download: Download,
}

async fn run(mut rx: mpsc::UnboundedReceiver<Fetch>, reports: Reports) {
    let mut pending: HashMap<(String, u32), Pending> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            fetch = rx.recv() => match fetch {
                Some(fetch) => add(&mut pending, fetch),
                None => break,
            },
            _ = tick.tick() => {
                let due: Vec<_> = pending.iter().filter(|(_, p)| p.since.elapsed() >= WINDOW).map(|(k, _)| k.clone()).collect();
                for key in due {
                    if let Some(p) = pending.remove(&key) {
                        let reports = reports.clone();
                        tokio::spawn(record(reports, key, p.download));
                    }
                }
            }
        }
    }
    for (key, p) in pending {
        record(reports.clone(), key, p.download).await;
    }
}

fn add(pending: &mut HashMap<(String, u32), Pending>, fetch: Fetch) {
    let complete = fetch.served.sent >= fetch.served.wanted;
    let entry = pending.entry((fetch.device, fetch.action)).or_insert_with(|| Pending {
        since: Instant::now(),
        download: Download {
            firmware: fetch.firmware,
            requests: 0,
            offset: fetch.served.offset,
            bytes: 0,
            complete: true,
            whole: false,
            via: fetch.via.to_owned(),
        },
    });
    let d = &mut entry.download;
    d.requests = d.requests.saturating_add(1);
    d.offset = d.offset.min(fetch.served.offset);
    d.bytes = d.bytes.saturating_add(fetch.served.sent);
    d.complete &= complete;
    d.whole |= fetch.served.whole;
}

async fn record(reports: Reports, (device, action): (String, u32), download: Download) {
    let meta = CommandMeta::new(Actor::device(device.clone()));
    let command = DeviceUpdateCommand::RecordDownload { action, download, at: Utc::now() };
    if let Err(e) = reports.execute(&device, command, &meta).await {
        tracing::warn!(%device, action, error = %e, "could not record a download");
    }
}
