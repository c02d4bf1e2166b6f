//! The native device channel on NATS.
//!
//! Out: every assignment and cancellation is published to
//! `<prefix>.devices.<id>.commands` (a durable consumer of DeviceUpdate events
//! drives it, so a restart re-sends rather than forgets). In: devices report on
//! `<prefix>.devices.<id>.status` with the same body as the HTTP status route
//! (request/reply, answered with the outcome; instances share the subscription
//! as a queue group), or durably on `.report` (`crate::inbox`).

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::{self, stream};
use chrono::Utc;
use futures::StreamExt;
use ota_domain::bus::BusNames;
use ota_domain::device_update::{DeviceUpdate, DeviceUpdateEvent, LaneKind, UpdateState};
use ota_domain::firmware::Firmware;
use ota_domain::{EventRecord, FirmwareId};
use serde::Serialize;
use tokio::task::JoinHandle;

/// Events taken per pull, and status reports taken at once.
const BATCH: usize = 500;
/// How long a batch that is not yet full waits for more: a stream yields at
/// most 128 items a turn (tokio's cooperative budget).
const GATHER: Duration = Duration::from_millis(2);
/// A device offline longer than this finds no pending command (its update has
/// long timed out, if the campaign has a device timeout).
const COMMANDS_KEPT_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

use crate::devices::{BusReportError, Reports};
use crate::store::{Store, StoreError};

/// What a device receives on its commands subject.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeviceMessage {
    Update {
        action: u32,
        kind: &'static str,
        campaign_id: Option<String>,
        firmware: FirmwareOffer,
        /// A signed link: fetchable without a token until `download_expires_at`, Range supported.
        download_url: String,
        download_expires_at: chrono::DateTime<Utc>,
    },
    /// Asks the device to stop; it answers with a `cancelled` status report, or goes on.
    Cancel { action: u32 },
}

/// How pushed commands point devices at their download.
#[derive(Debug, Clone)]
pub struct PushLinks {
    pub links: ota_ddi::Links,
    pub signer: ota_ddi::UrlSigner,
    /// Seconds a pushed download link stays valid.
    pub ttl_secs: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FirmwareOffer {
    pub id: FirmwareId,
    pub name: String,
    pub version: String,
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    pub sha1: String,
    pub md5: String,
    /// The signed release (a DSSE envelope), for devices that check it before installing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<ota_domain::release::Envelope>,
}

pub struct DispatchHandle {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for DispatchHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub fn spawn(
    store: Store,
    reports: Reports,
    client: async_nats::Client,
    js: jetstream::Context,
    names: BusNames,
    links: PushLinks,
) -> DispatchHandle {
    let out = {
        let (store, js, names) = (store.clone(), js.clone(), names.clone());
        tokio::spawn(async move {
            loop {
                if let Err(e) = send_commands(&store, &js, &names, &links).await {
                    tracing::warn!(error = %e, "device command dispatch interrupted; retrying");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let queued = {
        let (reports, js, names) = (reports.clone(), js.clone(), names.clone());
        tokio::spawn(async move {
            loop {
                if let Err(e) = crate::inbox::receive_reports(&reports, &js, &names).await {
                    tracing::warn!(error = %e, "durable device reports interrupted; retrying");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let inbound = tokio::spawn(async move {
        loop {
            if let Err(e) = receive_status(&reports, &client, &names).await {
                tracing::warn!(error = %e, "device status subscription interrupted; retrying");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    DispatchHandle { tasks: vec![out, queued, inbound] }
}

/// Each device's last command, kept for devices that were offline when it went
/// out: they read it when they connect (a direct get of the last message on
/// their subject). Connected devices receive it on their subscription as before.
pub async fn ensure_commands_stream(
    js: &jetstream::Context,
    names: &BusNames,
) -> Result<stream::Stream, async_nats::Error> {
    Ok(js
        .get_or_create_stream(stream::Config {
            name: names.commands_stream(),
            subjects: vec![names.all_device_commands()],
            max_messages_per_subject: 1,
            max_age: COMMANDS_KEPT_FOR,
            storage: stream::StorageType::File,
            num_replicas: names.replicas(),
            allow_direct: true,
            ..Default::default()
        })
        .await?)
}

async fn send_commands(
    store: &Store,
    js: &jetstream::Context,
    names: &BusNames,
    links: &PushLinks,
) -> Result<(), async_nats::Error> {
    ensure_commands_stream(js, names).await?;
    let stream = ota_projections::worker::ensure_events_stream(js, names).await?;
    let durable = names.consumer("dispatch");
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject: names.events_of_type("DeviceUpdate"),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: crate::reaction_start(),
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await?;
    let mut offers: HashMap<FirmwareId, FirmwareOffer> = HashMap::new();
    let messages = consumer.stream().max_messages_per_batch(BATCH).messages().await?;
    let mut batches = messages.ready_chunks(BATCH);
    while let Some(batch) = batches.next().await {
        let batch = batch.into_iter().collect::<Result<Vec<_>, _>>()?;
        let records: Vec<Option<EventRecord>> =
            batch.iter().map(|m| serde_json::from_slice::<EventRecord>(&m.payload).ok()).collect();
        // What the store says now, not what the message says: a message replayed
        // long after (past JetStream's duplicate window) or forged on the bus
        // must not push an update the device's lane no longer (or never) asks for.
        // Only events that ask for a command (reports, the bulk, ask for none).
        let ids: Vec<String> = records
            .iter()
            .flatten()
            .filter(|r| matches!(r.event_type.as_str(), "UpdateAssigned" | "CancelRequested" | "UpdateCancelled"))
            .map(|r| r.aggregate_id.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let lanes = match store.load_many::<DeviceUpdate>(&ids).await {
            Ok(lanes) => lanes,
            Err(e) => {
                tracing::warn!(error = %e, "device commands deferred: the store cannot be read");
                for message in batch {
                    message.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await?;
                }
                continue;
            }
        };
        let mut sent = Vec::new();
        let mut done = Vec::new();
        for (message, record) in batch.into_iter().zip(records) {
            let Some(record) = record else {
                done.push(message);
                continue;
            };
            let stored = lanes.get(&record.aggregate_id).map(|(state, _)| state);
            match command_for(store, &record, stored, &mut offers, links).await {
                // A publish is not a receipt: the update becomes `notified` only when the
                // device fetches it (DDI) or reports on it.
                Ok(Some(out)) => {
                    let subject = names.device_commands(&record.aggregate_id);
                    sent.push(js.publish(subject, serde_json::to_vec(&out)?.into()).await?);
                    done.push(message);
                }
                Ok(None) => done.push(message),
                // The firmware could not be read now: the command waits for the store.
                Err(e) if e.is_transient() => {
                    tracing::warn!(device = record.aggregate_id, error = %e, "device command deferred");
                    message.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await?;
                }
                Err(e) => {
                    tracing::error!(device = record.aggregate_id, error = %e, "device command cannot be built");
                    done.push(message);
                }
            }
        }
        // Kept by JetStream before the events that caused them are acknowledged.
        for ack in sent {
            ack.await?;
        }
        for message in done {
            message.ack().await?;
        }
    }
    Ok(())
}

/// The command an event asks for, if the device's stored lane still asks for it
/// (the same action, still in flight, or cancelled); built from the stored lane.
/// An error when the firmware it offers cannot be read now.
async fn command_for(
    store: &Store,
    record: &EventRecord,
    stored: Option<&DeviceUpdate>,
    offers: &mut HashMap<FirmwareId, FirmwareOffer>,
    links: &PushLinks,
) -> Result<Option<DeviceMessage>, OfferError> {
    let Ok(event) = record.decode::<DeviceUpdateEvent>() else { return Ok(None) };
    let Some(lane) = stored.and_then(|s| s.current.as_ref()) else { return Ok(None) };
    Ok(match event {
        DeviceUpdateEvent::UpdateAssigned { action, .. }
            if lane.action == action && lane.state.is_in_flight() && !lane.cancel_requested =>
        {
            let offer = match offers.get(&lane.firmware.id) {
                Some(offer) => offer.clone(),
                None => {
                    let offer = load_offer(store, lane.firmware.id).await?;
                    offers.insert(lane.firmware.id, offer.clone());
                    offer
                }
            };
            let kind = match lane.kind {
                LaneKind::Update => "update",
                LaneKind::Rollback { .. } => "rollback",
            };
            let expires = Utc::now() + chrono::Duration::seconds(links.ttl_secs);
            let module = offer.id.to_string();
            let download_url = links.links.signed_artifact(
                &links.signer,
                ota_ddi::DEFAULT_TENANT,
                &record.aggregate_id,
                &module,
                &offer.filename,
                expires.timestamp(),
            );
            Some(DeviceMessage::Update {
                action,
                kind,
                campaign_id: lane.origin.campaign.map(|c| c.to_string()),
                firmware: offer,
                download_url,
                download_expires_at: expires,
            })
        }
        DeviceUpdateEvent::CancelRequested { action, .. } | DeviceUpdateEvent::UpdateCancelled { action, .. }
            if lane.action == action && (lane.cancel_requested || lane.state == UpdateState::Cancelled) =>
        {
            Some(DeviceMessage::Cancel { action })
        }
        _ => None,
    })
}

#[derive(Debug, thiserror::Error)]
enum OfferError {
    #[error("reading the firmware: {0}")]
    Store(#[from] StoreError<ota_domain::firmware::FirmwareError>),
    /// An assignment is only ever made for firmware with a stored image.
    #[error("firmware {0} has no image")]
    Incomplete(FirmwareId),
}

impl OfferError {
    fn is_transient(&self) -> bool {
        matches!(self, OfferError::Store(StoreError::Unavailable(_)))
    }
}

async fn load_offer(store: &Store, id: FirmwareId) -> Result<FirmwareOffer, OfferError> {
    let (stored, _) = store.load::<Firmware>(&id).await?;
    let release = stored.release.map(|signed| signed.envelope);
    let (Some(spec), Some(binary)) = (stored.spec, stored.binary) else { return Err(OfferError::Incomplete(id)) };
    Ok(FirmwareOffer {
        id,
        name: spec.name,
        version: spec.version,
        filename: binary.filename,
        size: binary.size,
        sha256: binary.sha256,
        sha1: binary.sha1,
        md5: binary.md5,
        release,
    })
}

async fn receive_status(
    reports: &Reports,
    client: &async_nats::Client,
    names: &BusNames,
) -> Result<(), async_nats::Error> {
    let subscription = client
        .queue_subscribe(format!("{}.devices.*.status", names.prefix()), format!("{}_status", names.prefix()))
        .await?;
    let mut batches = std::pin::pin!(tokio_stream::StreamExt::chunks_timeout(subscription, BATCH, GATHER));
    while let Some(batch) = batches.next().await {
        // One device's reports in the order they came; devices at once, so that the
        // group committer stores them together. One at a time, this path stored
        // no more than one commit's worth of reports per commit.
        let mut by_device: HashMap<String, Vec<async_nats::Message>> = HashMap::new();
        for message in batch {
            by_device.entry(message.subject.to_string()).or_default().push(message);
        }
        let answered = futures::future::join_all(by_device.into_values().map(|queue| async move {
            for message in queue {
                let reply = match reports.report_from_bus(&message.subject, &message.payload).await {
                    Ok(c) => serde_json::json!({"ok": true, "state": c.state.current.map(|l| l.state)}),
                    Err(BusReportError::NoDevice) => continue,
                    Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}),
                };
                if let Some(inbox) = message.reply {
                    client.publish(inbox, reply.to_string().into()).await?;
                }
            }
            Ok::<_, async_nats::Error>(())
        }))
        .await;
        answered.into_iter().collect::<Result<Vec<()>, _>>()?;
    }
    Ok(())
}
