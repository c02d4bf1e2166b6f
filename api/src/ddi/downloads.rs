//! The download log: every artifact response is counted as it streams, and what
//! one update's downloads delivered over a couple of seconds becomes one event
//! (streaming clients such as RAUC issue many small Range reads).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use ota_domain::device_update::{DeviceUpdateCommand, Download};
use ota_domain::{Actor, CommandMeta, FirmwareId};
use ota_orchestrator::devices::Reports;
use ota_orchestrator::StoreError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

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

enum Message {
    Fetch(Fetch),
    /// Record everything pending now, and answer once it is stored.
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct DownloadLog {
    tx: mpsc::UnboundedSender<Message>,
}

impl DownloadLog {
    pub fn spawn(reports: Reports) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, tokio::spawn(run(rx, reports)))
    }

    pub fn record(&self, fetch: Fetch) {
        // Only fails once the log has stopped, after the last flush.
        let _ = self.tx.send(Message::Fetch(fetch));
    }

    /// Stores every download counted so far (a graceful stop calls it).
    pub async fn flush(&self) {
        let (done, stored) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).is_ok() {
            let _ = stored.await;
        }
    }
}

struct Pending {
    since: Instant,
    download: Download,
}

async fn run(mut rx: mpsc::UnboundedReceiver<Message>, reports: Reports) {
    let mut pending: HashMap<(String, u32), Pending> = HashMap::new();
    let mut writes = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            message = rx.recv() => match message {
                Some(Message::Fetch(fetch)) => add(&mut pending, fetch),
                Some(Message::Flush(done)) => {
                    for (key, p) in pending.drain() {
                        writes.spawn(record(reports.clone(), key, p.download));
                    }
                    while writes.join_next().await.is_some() {}
                    let _ = done.send(());
                }
                None => break,
            },
            _ = tick.tick() => {
                let due: Vec<_> = pending.iter().filter(|(_, p)| p.since.elapsed() >= WINDOW).map(|(k, _)| k.clone()).collect();
                for key in due {
                    if let Some(p) = pending.remove(&key) {
                        writes.spawn(record(reports.clone(), key, p.download));
                    }
                }
                // Reap what finished, so the set holds only writes in flight.
                while writes.try_join_next().is_some() {}
            }
        }
    }
    for (key, p) in pending {
        writes.spawn(record(reports.clone(), key, p.download));
    }
    while writes.join_next().await.is_some() {}
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

/// How often a download record is tried while the store is unavailable.
const RECORD_ATTEMPTS: u32 = 6;

async fn record(reports: Reports, (device, action): (String, u32), download: Download) {
    let meta = CommandMeta::new(Actor::device(device.clone()));
    for attempt in 1..=RECORD_ATTEMPTS {
        let command = DeviceUpdateCommand::RecordDownload { action, download: download.clone(), at: Utc::now() };
        match reports.execute(&device, command, &meta).await {
            Ok(_) => return,
            // The update is gone or closed: there is nothing to record it on.
            Err(StoreError::Rejected(e)) => {
                tracing::info!(%device, action, reason = %e, "download not recorded");
                return;
            }
            Err(e) if attempt == RECORD_ATTEMPTS => {
                tracing::warn!(%device, action, error = %e, attempts = attempt, "could not record a download");
            }
            // An outage (or a hot stream): wait and try again, 0.2 s doubling to 3.2 s.
            Err(_) => tokio::time::sleep(Duration::from_millis(100 << attempt)).await,
        }
    }
}
