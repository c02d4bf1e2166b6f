//! What DDI needs to know about a device, cached in memory and kept fresh by the
//! events themselves: a base poll is a hash-map read, not a database query.
//!
//! An entry is loaded from the event store (never from a read model that may
//! trail) and dropped whenever an event of that device goes by on NATS. A load
//! that raced with such an event is not kept, so the cache never holds a state
//! older than an event it has seen. Entries also expire, in case NATS dropped
//! something while disconnected.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use ota_domain::bus::{decode_subject_token, BusNames};
use ota_domain::device::{Device, DeviceError};
use ota_domain::device_update::{DeviceUpdate, DeviceUpdateError};
use ota_domain::firmware::{Firmware, FirmwareError};
use ota_domain::rollout::RolloutPlan;
use ota_domain::{CampaignId, DeviceId, FirmwareId};
use ota_orchestrator::{Store, StoreError};
use sqlx::PgPool;

/// A device as DDI sees it.
#[derive(Debug)]
pub struct Target {
    pub device: Device,
    pub updates: DeviceUpdate,
    loaded_at: Instant,
}

enum Slot {
    Ready { target: Arc<Target>, generation: u64 },
    Invalidated { generation: u64 },
}

impl Slot {
    fn generation(&self) -> u64 {
        match self {
            Slot::Ready { generation, .. } | Slot::Invalidated { generation } => *generation,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Device(#[from] StoreError<DeviceError>),
    #[error(transparent)]
    Update(#[from] StoreError<DeviceUpdateError>),
    #[error(transparent)]
    Firmware(#[from] StoreError<FirmwareError>),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub struct Targets {
    store: Store,
    pool: PgPool,
    slots: RwLock<HashMap<String, Slot>>,
    firmware: RwLock<HashMap<FirmwareId, Arc<Firmware>>>,
    plans: RwLock<HashMap<CampaignId, Arc<RolloutPlan>>>,
    ttl: Duration,
}

impl Targets {
    pub fn new(store: Store, pool: PgPool) -> Self {
        Self {
            store,
            pool,
            slots: RwLock::default(),
            firmware: RwLock::default(),
            plans: RwLock::default(),
            ttl: Duration::from_secs(30),
        }
    }

    /// The device's current state, from memory when fresh.
    pub async fn get(&self, device: &DeviceId) -> Result<Arc<Target>, LoadError> {
        let id = device.as_str();
        let generation = {
            let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
            match slots.get(id) {
                Some(Slot::Ready { target, .. }) if target.loaded_at.elapsed() < self.ttl => return Ok(target.clone()),
                Some(slot) => slot.generation(),
                None => 0,
            }
        };
        let (updates, _) = self.store.load::<DeviceUpdate>(device).await?;
        let (device, _) = self.store.load::<Device>(device).await?;
        let target = Arc::new(Target { device, updates, loaded_at: Instant::now() });
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let current = slots.get(id).map_or(0, Slot::generation);
        // An event went by while loading: what was read may predate it, so do not keep it.
        if current == generation {
            slots.insert(id.to_owned(), Slot::Ready { target: target.clone(), generation });
        }
        Ok(target)
    }

    /// Forgets the device's state; the next request reloads it.
    pub fn invalidate(&self, id: &str) {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let generation = slots.get(id).map_or(0, Slot::generation) + 1;
        slots.insert(id.to_owned(), Slot::Invalidated { generation });
    }

    /// Firmware never changes its bytes once uploaded, so it is kept for good.
    pub async fn firmware(&self, id: FirmwareId) -> Result<Option<Arc<Firmware>>, LoadError> {
        if let Some(found) = self.firmware.read().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return Ok(Some(found.clone()));
        }
        let (firmware, _) = self.store.load::<Firmware>(&id).await?;
        if !firmware.exists() {
            return Ok(None);
        }
        let firmware = Arc::new(firmware);
        self.firmware.write().unwrap_or_else(|e| e.into_inner()).insert(id, firmware.clone());
        Ok(Some(firmware))
    }

    /// A campaign's rollout plan (fixed at creation), from its read model.
    pub async fn plan(&self, id: CampaignId) -> Result<Option<Arc<RolloutPlan>>, LoadError> {
        if let Some(found) = self.plans.read().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return Ok(Some(found.clone()));
        }
        let row: Option<serde_json::Value> = sqlx::query_scalar("SELECT rollout FROM campaigns WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?;
        let Some(plan) = row.and_then(|v| serde_json::from_value::<RolloutPlan>(v).ok()) else { return Ok(None) };
        let plan = Arc::new(plan);
        self.plans.write().unwrap_or_else(|e| e.into_inner()).insert(id, plan.clone());
        Ok(Some(plan))
    }

    /// Drops entries as their devices' events go by, until the task is aborted.
    pub async fn follow(self: Arc<Self>, client: async_nats::Client, names: BusNames) {
        loop {
            let subscribe = async {
                let devices = client.subscribe(names.events_of_type("Device")).await?;
                let updates = client.subscribe(names.events_of_type("DeviceUpdate")).await?;
                Ok::<_, async_nats::SubscribeError>(futures::stream::select(devices, updates))
            };
            match subscribe.await {
                Ok(mut messages) => {
                    // Whatever happened while unsubscribed is unknown: start afresh.
                    self.slots.write().unwrap_or_else(|e| e.into_inner()).clear();
                    while let Some(message) = messages.next().await {
                        let token = message.subject.rsplit('.').next().unwrap_or_default();
                        if let Some(device) = decode_subject_token(token) {
                            self.invalidate(&device);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "DDI cache cannot follow device events; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
