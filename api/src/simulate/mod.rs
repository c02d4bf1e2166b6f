//! `ota simulate`: a live demo fleet. It registers devices in the inventory and
//! runs most of them on the native NATS channel (they take update commands,
//! report progress, and succeed or fail as told) and some as hawkBit DDI clients
//! that poll the server over HTTP, download their image and check its hash.

mod ddi;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use ota_domain::bus::{decode_subject_token, BusNames};
use ota_domain::device::{Device, DeviceCommand, DeviceProfile};
use ota_domain::{Actor, CommandMeta, DeviceId};
use ota_orchestrator::Store;
use serde_json::{json, Value};

use crate::server::{connect_nats, ServerError};
use crate::settings::Settings;

#[derive(Debug, Clone, clap::Args)]
pub struct FleetOptions {
    /// Devices in the demo fleet.
    #[arg(long, default_value_t = 50)]
    pub devices: usize,
    /// Share of updates that fail, in percent.
    #[arg(long, default_value_t = 0)]
    pub fail_percent: u8,
    /// Device model of the fleet.
    #[arg(long, default_value = "demo-gw")]
    pub model: String,
    /// Firmware version the fleet runs at first.
    #[arg(long, default_value = "1.0.0")]
    pub firmware_version: String,
    /// Of those devices, how many poll over hawkBit DDI instead (needs OTA_DDI_GATEWAY_TOKEN).
    #[arg(long, default_value_t = 10)]
    pub ddi_devices: usize,
    /// Where the DDI devices reach the server (default: OTA_PUBLIC_URL, else http://OTA_LISTEN).
    #[arg(long)]
    pub server_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("registering the fleet: {0}")]
    Register(String),
    #[error("NATS: {0}")]
    Nats(String),
    #[error("HTTP client: {0}")]
    Http(String),
}

/// Registers the fleet, then answers update commands until interrupted.
pub async fn run(settings: &Settings, options: &FleetOptions) -> Result<(), SimulateError> {
    let names = BusNames::new(&settings.nats_prefix).map_err(ServerError::from)?;
    let pool = ota_migrations::connect(&settings.database_url, 4).await.map_err(ServerError::from)?;
    ota_migrations::migrate(&pool).await.map_err(ServerError::from)?;
    let store = Store::new(pool);
    let meta = CommandMeta::new(Actor::system("simulator"));
    let ids: Vec<String> = (1..=options.devices).map(|i| format!("{}-{i:04}", options.model)).collect();
    let items = ids
        .iter()
        .enumerate()
        .filter_map(|(i, id)| {
            let device = DeviceId::parse(id).ok()?;
            let profile = DeviceProfile {
                device_model: options.model.clone(),
                hardware_version: Some(if i % 3 == 0 { "rev-b" } else { "rev-a" }.to_owned()),
                firmware_version: Some(options.firmware_version.clone()),
                tags: ["demo".to_owned()].into(),
                attributes: BTreeMap::new(),
            };
            Some((id.clone(), DeviceCommand::Register { id: device, profile, at: Utc::now() }, meta.clone()))
        })
        .collect();
    for result in store.execute_many::<Device>(items).await {
        result.map_err(|e| SimulateError::Register(e.to_string()))?;
    }
    tracing::info!(devices = ids.len(), model = options.model, "demo fleet registered; waiting for updates");
    let polling: Vec<String> = ids.iter().rev().take(options.ddi_devices).cloned().collect();
    let _ddi = match &settings.ddi_gateway_token {
        Some(token) if !polling.is_empty() => {
            let url = options
                .server_url
                .clone()
                .or_else(|| settings.public_url.clone())
                .unwrap_or_else(|| format!("http://{}", settings.listen));
            Some(ddi::spawn(&url, token, polling.clone(), options.fail_percent)?)
        }
        _ => {
            if !polling.is_empty() {
                tracing::warn!("no OTA_DDI_GATEWAY_TOKEN: every demo device uses NATS");
            }
            None
        }
    };

    let client = connect_nats(&settings.nats_url).await?;
    let mut commands = client
        .subscribe(format!("{}.devices.*.commands", names.prefix()))
        .await
        .map_err(|e| SimulateError::Nats(e.to_string()))?;
    let mut seen = 0u64;
    while let Some(message) = commands.next().await {
        let token = message.subject.split('.').nth(2).unwrap_or_default();
        let (Some(device), Ok(command)) =
            (decode_subject_token(token), serde_json::from_slice::<Value>(&message.payload))
        else {
            continue;
        };
        if command["type"] != "update" || (_ddi.is_some() && polling.contains(&device)) {
            continue;
        }
        seen += 1;
        // Deterministic failures: every n-th update fails, n from the configured share.
        let every = (100 / u64::from(options.fail_percent.clamp(1, 100))).max(1);
        let fails = options.fail_percent > 0 && seen.is_multiple_of(every);
        let (client, subject) = (client.clone(), names.device_status(&device));
        tokio::spawn(async move {
            let action = command["action"].clone();
            let last = if fails { "failed" } else { "succeeded" };
            for (delay, report) in [
                (200, json!({"state": "downloading", "progress": 0, "action": action})),
                (400, json!({"state": "downloading", "progress": 100, "action": action})),
                (300, json!({"state": "installing", "action": action})),
                (500, json!({"state": last, "message": "simulated device", "action": action})),
            ] {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                if let Err(e) = client.request(subject.clone(), report.to_string().into()).await {
                    tracing::warn!(device, error = %e, "report not acknowledged");
                    return;
                }
            }
        });
    }
    Ok(())
}
