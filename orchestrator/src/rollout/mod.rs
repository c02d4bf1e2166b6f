//! The rollout process manager: reacts to events and the clock with the next
//! commands of every running campaign.
//!
//! It holds no rules: each step asks `ota_domain::rollout::next_steps` what to
//! do, given the campaign's state (from its stream), the wave tallies (from the
//! incrementally kept counters) and the time, and carries the decisions out.
//! Its timers are derived from events, so a restart continues where it was; the
//! assignment cursor is an event and assignments are idempotent per campaign,
//! so a device is never assigned twice.

mod step;
mod tally;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::{self};
use chrono::Utc;
use futures::StreamExt;
use ota_domain::bus::BusNames;
use ota_domain::campaign::{Campaign, CampaignError};
use ota_domain::firmware::DeliveryPolicy;
use ota_domain::{CampaignId, EventRecord};
use sqlx::PgPool;
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;

use crate::lease::{self, Leadership, Lease};
use crate::store::{Store, StoreError};

pub use step::StepError;

/// How often running campaigns are looked at even without events (timeouts, rate, windows).
const TICK: Duration = Duration::from_millis(250);

/// A campaign's state as last seen, and the version it had then.
type Remembered = (Arc<Campaign>, usize);

#[derive(Clone)]
pub struct ProcessManager {
    store: Store,
    pool: PgPool,
    holder: String,
    js: jetstream::Context,
    names: BusNames,
    dirty: Arc<Mutex<BTreeSet<CampaignId>>>,
    wake: Arc<Notify>,
    /// Campaigns as last seen, with their version; see `campaign`.
    campaigns: Arc<Mutex<HashMap<CampaignId, Remembered>>>,
    /// Checked before every assignment it makes: waves, retries, rollbacks.
    delivery: DeliveryPolicy,
}

pub struct RolloutHandle {
    tasks: Vec<JoinHandle<()>>,
}

impl RolloutHandle {
    /// Stops the process manager as a crash would.
    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for RolloutHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

impl ProcessManager {
    pub fn new(store: Store, js: jetstream::Context, names: BusNames, delivery: DeliveryPolicy) -> Self {
        let pool = store.pool().clone();
        Self {
            store,
            pool,
            holder: lease::holder_id(),
            js,
            names,
            dirty: Arc::default(),
            wake: Arc::default(),
            campaigns: Arc::default(),
            delivery,
        }
    }

    /// A campaign's current state and version. Kept between steps and brought up to
    /// date with only the events stored since: every tick used to read and decode
    /// the whole snapshot, megabytes for a campaign of 100k devices. A campaign that
    /// has ended is forgotten, since nothing steps it any more.
    async fn campaign(&self, id: CampaignId) -> Result<(Arc<Campaign>, usize), StoreError<CampaignError>> {
        let mut campaigns = self.campaigns.lock().await;
        let (state, version) = campaigns.entry(id).or_default();
        // Clones only while an earlier caller still holds the previous state.
        self.store.refresh(&id.to_string(), Arc::make_mut(state), version).await?;
        let current = (state.clone(), *version);
        if current.0.status.is_terminal() || current.1 == 0 {
            campaigns.remove(&id);
        }
        Ok(current)
    }

    pub fn spawn(self) -> RolloutHandle {
        let listener = self.clone();
        let listen = tokio::spawn(async move { listener.listen().await });
        let drive = tokio::spawn(async move { self.drive().await });
        RolloutHandle { tasks: vec![listen, drive] }
    }

    /// Leads (one process manager per database and prefix), then steps campaigns forever.
    async fn drive(self) {
        loop {
            if let Err(e) = self.lead().await {
                tracing::warn!(error = &e as &dyn std::error::Error, "rollout process manager interrupted; retrying");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn lead(&self) -> Result<(), StepError> {
        let name = lease::rollout_lease(self.names.prefix());
        let leadership = Leadership::acquire(&self.pool, &name, &self.holder, lease::TTL).await?;
        let lease = leadership.lease.clone();
        leadership.lead(self.step_all(&lease)).await
    }

    async fn step_all(&self, lease: &Lease) -> Result<(), StepError> {
        tracing::info!(epoch = lease.epoch(), "rollout process manager leads");
        crate::store::build_wave_tallies(&self.pool).await?;
        loop {
            lease.progressed();
            let started = std::time::Instant::now();
            let mut campaigns: BTreeSet<CampaignId> = std::mem::take(&mut *self.dirty.lock().await);
            campaigns.extend(tally::active_campaigns(&self.pool).await?);
            for id in campaigns {
                // A deposed leader stops before its next decision. One already under
                // way is fenced by the aggregate: it was decided on a version the
                // new leader's writes have moved past, so it is decided again.
                lease.fence(&mut *self.pool.acquire().await?).await?;
                if let Err(e) = step::step(self, id, Utc::now()).await {
                    tracing::warn!(
                        campaign = %id,
                        error = &e as &dyn std::error::Error,
                        "rollout step failed; retried on the next tick"
                    );
                }
            }
            if let Err(e) = step::time_out_single_updates(self, Utc::now()).await {
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "single-update timeouts failed; retried next tick"
                );
            }
            metrics::histogram!("ota_rollout_tick_duration_seconds").record(started.elapsed().as_secs_f64());
            let _ = tokio::time::timeout(TICK, self.wake.notified()).await;
        }
    }

    /// Consumes events durably: campaign events wake their campaign, cancellations
    /// and aborts reach the devices in flight.
    async fn listen(self) {
        loop {
            if let Err(e) = self.consume().await {
                tracing::warn!(error = &e as &dyn std::error::Error, "rollout event consumer interrupted; retrying");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Follows campaign events (cancels, aborts) and device inventory events
    /// (continuous campaigns), each on its own durable consumer.
    ///
    /// Device update events are not followed: progress reaches a gate through the
    /// projected counters, which the next tick reads. Waking on each of them made
    /// the process manager reload the campaign (megabytes at 100k devices) dozens
    /// of times a second during a rollout, for decisions a tick later are as good.
    async fn consume(&self) -> Result<(), StepError> {
        self.drop_retired_consumer("rollout_updates").await;
        let campaigns = self.consume_type("Campaign", "rollout");
        let devices = self.consume_type("Device", "rollout_devices");
        tokio::try_join!(campaigns, devices).map(|_| ())
    }

    /// A durable consumer an earlier version created would otherwise keep every
    /// event it is no longer read for.
    async fn drop_retired_consumer(&self, consumer_name: &str) {
        let Ok(stream) = ota_projections::worker::ensure_events_stream(&self.js, &self.names).await else { return };
        if stream.delete_consumer(&self.names.consumer(consumer_name)).await.is_ok() {
            tracing::info!(consumer = consumer_name, "retired consumer removed");
        }
    }

    async fn consume_type(&self, aggregate_type: &str, consumer_name: &str) -> Result<(), StepError> {
        let nats = |e| StepError::Nats(Box::new(e));
        let stream =
            ota_projections::worker::ensure_events_stream(&self.js, &self.names).await.map_err(StepError::Nats)?;
        let durable = self.names.consumer(consumer_name);
        let consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(
                &durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: self.names.events_of_type(aggregate_type),
                    ack_policy: AckPolicy::Explicit,
                    deliver_policy: crate::reaction_start(),
                    // Reactions are idempotent: an unacknowledged event comes back soon.
                    ack_wait: Duration::from_secs(10),
                    ..Default::default()
                },
            )
            .await
            .map_err(nats)?;
        let messages =
            consumer.stream().max_messages_per_batch(500).messages().await.map_err(|e| StepError::Nats(Box::new(e)))?;
        let mut batches = messages.ready_chunks(500);
        while let Some(batch) = batches.next().await {
            for message in batch {
                // A missed heartbeat under load is reported in the stream, which goes on.
                let message = match message {
                    Ok(message) => message,
                    Err(e) => {
                        tracing::debug!(error = %e, "rollout consumer hiccup");
                        continue;
                    }
                };
                if let Ok(record) = serde_json::from_slice::<EventRecord>(&message.payload) {
                    self.react(&record).await?;
                }
                let _ = message.ack().await;
            }
        }
        Ok(())
    }

    async fn react(&self, record: &EventRecord) -> Result<(), StepError> {
        if record.aggregate_type == "Device" {
            return step::match_device(self, record).await;
        }
        let Ok(id) = record.aggregate_id.parse::<CampaignId>() else { return Ok(()) };
        // What a message on the bus says is only a reason to look: the campaign is then read
        // from the event store, and only a campaign that really ended has its flight cancelled
        // (a message can be a redelivery, have its payload left out, or be forged).
        match record.event_type.as_str() {
            "CampaignCancelled" => step::cancel_in_flight(self, id, record).await?,
            "CampaignAborted" => {
                step::cancel_in_flight(self, id, record).await?;
                step::start_rollback(self, id, record).await?;
            }
            _ => {}
        }
        self.dirty.lock().await.insert(id);
        self.wake.notify_one();
        Ok(())
    }
}
