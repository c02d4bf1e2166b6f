//! What DDI needs to know about a device, cached in memory and kept fresh by the
//! events themselves: a base poll is a map read, not a database query.
//!
//! Nothing is kept before authentication: a device is cached only once a caller
//! proved it (its token matched, or a gateway token or a signed link vouched
//! for it), never for an id that does not exist, and the cache is a bounded LRU.
//! A flood of random controller ids with bad tokens costs one device read each
//! and no memory.
//!
//! An entry is loaded from the event store (never from a read model that may
//! trail) and dropped whenever an event of that device goes by on NATS. A load
//! that raced with such an event is not kept, so the cache never holds a state
//! older than an event it has seen. Entries also expire, in case NATS dropped
//! something while disconnected.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hashlink::LruCache;
use ota_domain::bus::{decode_subject_token, BusNames};
use ota_domain::device::{Device, DeviceError};
use ota_domain::device_update::{DeviceUpdate, DeviceUpdateError};
use ota_domain::firmware::{Firmware, FirmwareError};
use ota_domain::rollout::RolloutPlan;
use ota_domain::{CampaignId, DeviceId, FirmwareId};
use ota_orchestrator::{Store, StoreError};
use sqlx::PgPool;

/// Invalidation counters, shared by the devices that hash alike: a fixed size
/// however many devices exist or are asked about.
const STRIPES: usize = 4096;

/// A device as DDI sees it.
#[derive(Debug)]
pub struct Target {
    pub device: Device,
    pub updates: DeviceUpdate,
    loaded_at: Instant,
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
    cached: Mutex<LruCache<String, Arc<Target>>>,
    /// Bumped (under `cached`'s lock) when an event of a device of the stripe goes
    /// by; a load that saw its stripe move may predate the event and is not kept.
    stripes: Box<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
    firmware: RwLock<HashMap<FirmwareId, Arc<Firmware>>>,
    plans: RwLock<HashMap<CampaignId, Arc<RolloutPlan>>>,
    ttl: Duration,
}

impl Targets {
    /// A cache of at most `capacity` devices.
    pub fn new(store: Store, pool: PgPool, capacity: usize) -> Self {
        Self {
            store,
            pool,
            cached: Mutex::new(LruCache::new(capacity.max(1))),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: Default::default(),
            firmware: RwLock::default(),
            plans: RwLock::default(),
            ttl: Duration::from_secs(30),
        }
    }

    fn stripe(&self, id: &str) -> &AtomicU64 {
        &self.stripes[self.hasher.hash_one(id) as usize % STRIPES]
    }

    /// Devices held now.
    pub fn len(&self) -> usize {
        self.cached.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn fresh(&self, id: &str) -> Option<Arc<Target>> {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        let target = cached.get(id)?.clone();
        if target.loaded_at.elapsed() < self.ttl {
            return Some(target);
        }
        cached.remove(id);
        None
    }

    /// The device's state if `accept` takes its stored record (its token
    /// matches, say); only then are its updates read and the device kept.
    pub async fn authenticated(
        &self,
        device: &DeviceId,
        accept: impl Fn(&Device) -> bool,
    ) -> Result<Option<Arc<Target>>, LoadError> {
        let id = device.as_str();
        if let Some(target) = self.fresh(id) {
            return Ok(accept(&target.device).then_some(target));
        }
        let seen = self.stripe(id).load(Ordering::Acquire);
        let (record, _) = self.store.load::<Device>(device).await?;
        if !record.exists() || !accept(&record) {
            return Ok(None);
        }
        let (updates, _) = self.store.load::<DeviceUpdate>(device).await?;
        let target = Arc::new(Target { device: record, updates, loaded_at: Instant::now() });
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        // An event went by while loading: what was read may predate it, so do not keep it.
        if self.stripe(id).load(Ordering::Acquire) == seen {
            cached.insert(id.to_owned(), target.clone());
        }
        Ok(Some(target))
    }

    /// A registered device's state, for a caller already authenticated another
    /// way (a gateway token, a signed link); `None` if it does not exist.
    pub async fn get(&self, device: &DeviceId) -> Result<Option<Arc<Target>>, LoadError> {
        self.authenticated(device, |_| true).await
    }

    /// Forgets the device's state; the next request reloads it.
    pub fn invalidate(&self, id: &str) {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        self.stripe(id).fetch_add(1, Ordering::AcqRel);
        cached.remove(id);
    }

    /// Forgets every device (and every load in flight).
    fn invalidate_all(&self) {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        for stripe in self.stripes.iter() {
            stripe.fetch_add(1, Ordering::AcqRel);
        }
        cached.clear();
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
                    self.invalidate_all();
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
