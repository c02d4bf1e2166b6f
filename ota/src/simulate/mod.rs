//! `ota simulate`: a live demo fleet. It registers devices in the inventory and
//! runs most of them on the native NATS channel (they take update commands,
//! report progress, and succeed or fail as told) and some as hawkBit DDI clients
//! that poll the server over HTTP, download their image and check its hash.
//! The tests run the same NATS fleet (`NatsFleet`).

mod ddi;
mod nats;

pub use nats::{Behavior, FleetPolicy, NatsFleet};

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::Utc;
use ota_domain::device::{Device, DeviceCommand, DeviceProfile};
use ota_domain::{Actor, CommandMeta, DeviceId};
use ota_orchestrator::Store;

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
    let names = settings.bus().map_err(ServerError::from)?;
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
    let ddi_fleet = match &settings.ddi_gateway_token {
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

    let client = connect_nats(&settings.nats()).await?;
    let policy = FleetPolicy {
        fail_percent: options.fail_percent,
        report_delay: Duration::from_millis(350),
        ignore: if ddi_fleet.is_some() { polling.into_iter().collect() } else { HashSet::new() },
    };
    let fleet = NatsFleet::start(client, &names, policy).await.map_err(|e| SimulateError::Nats(e.to_string()))?;
    fleet.run().await;
    Ok(())
}
