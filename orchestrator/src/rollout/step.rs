//! One step of one campaign: ask the domain what to do now, then do it.

use chrono::{DateTime, Utc};
use ota_domain::campaign::{Campaign, CampaignCommand, CampaignError, CampaignStatus, Membership};
use ota_domain::device_update::{DeviceUpdate, DeviceUpdateCommand, DeviceUpdateError, Origin, UpdateState};
use ota_domain::rollout::{
    next_steps, should_retry, timed_out, AfterSuccess, Decision, GateKind, GateReport, RolloutView, WaveTally,
};
use ota_domain::{Actor, CampaignId, CommandMeta, DeviceId, EventRecord, FirmwareId};

use super::{tally, ProcessManager};
use std::collections::HashMap;

use ota_domain::device::DeviceEvent;
use ota_domain::device_update::UpdateFirmware;
use ota_domain::firmware::{Firmware, Undeliverable};

use crate::devices::assign_update;
use crate::fit::FitCheck;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("campaign: {0}")]
    Campaign(#[from] StoreError<CampaignError>),
    #[error("device update: {0}")]
    Update(#[from] StoreError<DeviceUpdateError>),
    #[error("resolving the membership")]
    Membership(#[from] crate::membership::MembershipError),
    #[error("assignment")]
    Assign(#[from] crate::devices::AssignError),
    /// Reading the firmware or the devices to assign failed.
    #[error("reading what to assign")]
    Read(#[source] crate::store::Cause),
    #[error("NATS")]
    Nats(#[source] async_nats::Error),
    #[error(transparent)]
    Lease(#[from] crate::lease::LeaseError),
}

fn read<E: std::error::Error + Send + Sync + 'static>(e: StoreError<E>) -> StepError {
    StepError::Read(std::sync::Arc::new(e))
}

fn meta(campaign: CampaignId, cause: &str) -> CommandMeta {
    CommandMeta::new(Actor::system("rollout")).caused_by(format!("Campaign:{campaign}:{cause}"))
}

pub async fn step(pm: &ProcessManager, id: CampaignId, now: DateTime<Utc>) -> Result<(), StepError> {
    let (campaign, version) = pm.campaign(id).await?;
    let meta = meta(id, &version.to_string());
    match campaign.status {
        CampaignStatus::Scheduled if campaign.scheduled_for.is_some_and(|t| t <= now) => {
            // The image was fine when the campaign was scheduled; it may not be now.
            if let Some(refused) = undeliverable(pm, campaign.firmware.as_ref().map(|f| f.id)).await? {
                let reason = Some(format!("not started: {refused}"));
                pm.store.execute::<Campaign>(&id, CampaignCommand::Cancel { reason, at: now }, &meta).await?;
                return Ok(());
            }
            let seed = u64::from_le_bytes(id.as_uuid().as_bytes()[..8].try_into().unwrap_or_default());
            let membership = crate::membership::resolve(&pm.pool, &campaign, seed).await?;
            let command = CampaignCommand::Start { membership: Some(membership), at: now };
            pm.store.execute::<Campaign>(&id, command, &meta).await?;
            Ok(())
        }
        CampaignStatus::Running => run(pm, id, &campaign, &meta, now).await,
        _ => Ok(()),
    }
}

async fn run(
    pm: &ProcessManager,
    id: CampaignId,
    campaign: &Campaign,
    meta: &CommandMeta,
    now: DateTime<Utc>,
) -> Result<(), StepError> {
    if time_out_and_retry(pm, id, campaign, meta, now).await? == Retries::Paused {
        return Ok(());
    }
    let waves = tally::wave_tallies(&pm.pool, campaign).await?;
    let mut plan = campaign.rollout.clone();
    if campaign.approved_wave.is_some() && campaign.approved_wave == campaign.current_wave {
        plan.after_success = AfterSuccess::Next;
    }
    let view = RolloutView {
        status: campaign.status,
        plan,
        current_wave: campaign.current_wave,
        unassigned_in_current_wave: campaign.current_wave.map_or(0, |w| campaign.unassigned(w)),
        waves: waves.clone(),
        awaiting_approval: campaign.awaiting_approval,
        assigned_this_minute: campaign.assigned_in_minute(now),
        successes: waves.iter().map(|w| u64::from(w.succeeded)).sum(),
        started_at: campaign.started_at,
    };
    // A continuous campaign keeps taking devices until it is stopped or its end time.
    let open_ended = campaign.target.continuous && campaign.rollout.end_at.is_none_or(|end| end > now);
    for decision in next_steps(&view, now) {
        if open_ended && decision == Decision::Complete {
            continue;
        }
        carry_out(pm, id, campaign, &waves, decision, meta, now).await?;
    }
    Ok(())
}

fn passed(campaign: &Campaign, waves: &[WaveTally], wave: Option<usize>) -> Option<GateReport> {
    let wave = wave?;
    waves.get(wave).map(|t| GateReport::new(wave, GateKind::SuccessThreshold, t, &campaign.rollout))
}

async fn carry_out(
    pm: &ProcessManager,
    id: CampaignId,
    campaign: &Campaign,
    waves: &[WaveTally],
    decision: Decision,
    meta: &CommandMeta,
    now: DateTime<Utc>,
) -> Result<(), StepError> {
    let command = match decision {
        Decision::Start | Decision::WakeAt(_) => return Ok(()),
        Decision::StartWave(wave) => {
            let previous = wave.checked_sub(1);
            CampaignCommand::StartWave { wave, passed: passed(campaign, waves, previous), at: now }
        }
        Decision::Assign { wave, count } => return assign(pm, id, campaign, wave, count, meta, now).await,
        Decision::AwaitApproval { wave } => {
            CampaignCommand::AwaitApproval { wave, passed: passed(campaign, waves, Some(wave)), at: now }
        }
        Decision::Pause { reason } => {
            CampaignCommand::Pause { reason: Some(describe(&reason)), gate: Some(reason), at: now }
        }
        Decision::Abort { reason } => CampaignCommand::Abort { reason: describe(&reason), gate: Some(reason), at: now },
        Decision::Complete => {
            CampaignCommand::Complete { passed: passed(campaign, waves, campaign.current_wave), at: now }
        }
    };
    pm.store.execute::<Campaign>(&id, command, meta).await?;
    Ok(())
}

/// Why the campaign's image may not be delivered now (deprecated since, or a
/// signature the server requires is missing), if it may not.
async fn undeliverable(pm: &ProcessManager, firmware: Option<FirmwareId>) -> Result<Option<Undeliverable>, StepError> {
    let Some(id) = firmware else { return Ok(None) };
    let (firmware, _) = pm.store.load::<Firmware>(&id).await.map_err(read)?;
    Ok(pm.delivery.admit(id, &firmware).err())
}

fn describe(gate: &GateReport) -> String {
    match gate.gate {
        GateKind::FailureThreshold => format!(
            "wave {}: {} of {} finished devices failed, over the {}% failure threshold",
            gate.wave, gate.failed, gate.finished, gate.threshold_percent
        ),
        GateKind::SuccessThreshold => format!(
            "wave {}: {} of {} devices succeeded, under the {}% success threshold",
            gate.wave, gate.succeeded, gate.size, gate.threshold_percent
        ),
    }
}

/// Assignments per group commit (and per recorded cursor step). Each cursor step is
/// a campaign command, which reads the campaign: megabytes at 100k devices. With
/// 1,000 a step, 100k assignments took 24.4 s; with 2,000, 17.3 s (same machine).
const ASSIGN_CHUNK: usize = 2000;

/// Assigns the next `count` members of `wave` in group commits, recording the
/// cursor after each; a crash between the two only repeats assignments, which
/// the device streams recognise as repeats.
async fn assign(
    pm: &ProcessManager,
    id: CampaignId,
    campaign: &Campaign,
    wave: usize,
    count: u32,
    meta: &CommandMeta,
    now: DateTime<Utc>,
) -> Result<(), StepError> {
    let Some(target) = campaign.firmware.as_ref() else { return Ok(()) };
    if campaign.rollback_of.is_some() {
        return assign_rollbacks(pm, id, campaign, wave, count, meta, now).await;
    }
    let (firmware, _) = pm.store.load::<Firmware>(&target.id).await.map_err(read)?;
    // Deprecated (or unverified) since the campaign started: no device gets it
    // any more; the campaign pauses and says why.
    if let Err(refused) = pm.delivery.admit(target.id, &firmware) {
        let reason = Some(format!("{refused}: no further device is assigned"));
        pm.store.execute::<Campaign>(&id, CampaignCommand::Pause { reason, gate: None, at: now }, meta).await?;
        return Ok(());
    }
    let Some(spec) = firmware.spec.clone() else { return Ok(()) };
    let origin = Origin { campaign: Some(id), wave: Some(wave as u32), retry: 0, timeout_secs: None };
    let mut cursor = campaign.assigned.get(wave).copied().unwrap_or(0) as usize;
    let end = (cursor + count as usize).min(campaign.wave_members(wave).len());
    let policy = pm.delivery.allowing_downgrade(campaign.rollout.allow_downgrade);
    let mut fit = FitCheck::new(&pm.store, target.id, &firmware, policy);
    while cursor < end {
        let chunk = &campaign.wave_members(wave)[cursor..end.min(cursor + ASSIGN_CHUNK)];
        let mut skipped = 0u32;
        let mut items = Vec::with_capacity(chunk.len());
        for (device_id, verdict) in chunk.iter().zip(fit.check(chunk).await?) {
            let from = match verdict {
                Ok(from) => from,
                Err(reason) => {
                    tracing::info!(campaign = %id, device = %device_id, %reason, "device skipped");
                    skipped += 1;
                    continue;
                }
            };
            let firmware = UpdateFirmware { id: target.id, version: spec.version.clone() };
            let command = DeviceUpdateCommand::Assign { origin, firmware, from, at: now };
            items.push((device_id.to_string(), command, meta.clone()));
        }
        for result in pm.store.execute_many::<DeviceUpdate>(items).await {
            match result {
                Ok(_) => {}
                // Busy with another update: recorded as skipped, never assigned twice.
                Err(StoreError::Rejected(_)) => skipped += 1,
                Err(e) => return Err(e.into()),
            }
        }
        cursor += chunk.len();
        let command = CampaignCommand::RecordAssignments { wave, through: cursor as u32, skipped, at: now };
        pm.store.execute::<Campaign>(&id, command, meta).await?;
    }
    Ok(())
}

/// A rollback campaign's assignments: each device goes back to what it ran
/// before, as its stream knows; an image delivery does not allow (deprecated,
/// unverified) is skipped for that device, never shipped.
async fn assign_rollbacks(
    pm: &ProcessManager,
    id: CampaignId,
    campaign: &Campaign,
    wave: usize,
    count: u32,
    meta: &CommandMeta,
    now: DateTime<Utc>,
) -> Result<(), StepError> {
    let origin = Origin { campaign: Some(id), wave: Some(wave as u32), retry: 0, timeout_secs: None };
    let mut cursor = campaign.assigned.get(wave).copied().unwrap_or(0) as usize;
    let end = (cursor + count as usize).min(campaign.wave_members(wave).len());
    let mut verdicts: HashMap<FirmwareId, Option<Undeliverable>> = HashMap::new();
    while cursor < end {
        let chunk = &campaign.wave_members(wave)[cursor..end.min(cursor + ASSIGN_CHUNK)];
        let ids: Vec<String> = chunk.iter().map(|d| d.to_string()).collect();
        let lanes = pm.store.load_many::<DeviceUpdate>(&ids).await?;
        let mut skipped = 0u32;
        let mut items = Vec::with_capacity(chunk.len());
        for device_id in chunk {
            let target = lanes.get(device_id.as_str()).and_then(|(l, _)| l.rollback_target().map(|t| t.id));
            if let Some(target) = target {
                let refused = match verdicts.get(&target) {
                    Some(known) => known.clone(),
                    None => {
                        let found = undeliverable(pm, Some(target)).await?;
                        verdicts.insert(target, found.clone());
                        found
                    }
                };
                if let Some(reason) = refused {
                    tracing::warn!(campaign = %id, device = %device_id, %reason, "rollback skipped");
                    skipped += 1;
                    continue;
                }
            }
            items.push((device_id.to_string(), DeviceUpdateCommand::RollBack { origin, at: now }, meta.clone()));
        }
        for result in pm.store.execute_many::<DeviceUpdate>(items).await {
            match result {
                Ok(_) => {}
                Err(StoreError::Rejected(_)) => skipped += 1,
                Err(e) => return Err(e.into()),
            }
        }
        cursor += chunk.len();
        let command = CampaignCommand::RecordAssignments { wave, through: cursor as u32, skipped, at: now };
        pm.store.execute::<Campaign>(&id, command, meta).await?;
    }
    Ok(())
}

/// Single updates (outside campaigns) whose timeout passed without a report time out,
/// so a silent device does not hold its update, and block the next one, forever.
pub async fn time_out_single_updates(pm: &ProcessManager, now: DateTime<Utc>) -> Result<(), StepError> {
    let meta = CommandMeta::new(Actor::system("rollout"));
    for (device, action) in tally::overdue_single_updates(&pm.pool).await? {
        let Ok(device) = DeviceId::parse(&device) else { continue };
        let command = DeviceUpdateCommand::TimeOut { action: Some(action as u32), at: now };
        match pm.store.execute::<DeviceUpdate>(&device, command, &meta).await {
            Ok(_) | Err(StoreError::Rejected(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Retries {
    Done,
    /// The campaign paused: its image may not be delivered any more.
    Paused,
}

/// Times out devices in flight too long and re-assigns failed ones that have retries left.
async fn time_out_and_retry(
    pm: &ProcessManager,
    id: CampaignId,
    campaign: &Campaign,
    meta: &CommandMeta,
    now: DateTime<Utc>,
) -> Result<Retries, StepError> {
    let plan = &campaign.rollout;
    if plan.device_timeout_secs.is_some() {
        for (device, action, _, _, _, since) in tally::devices_in(&pm.pool, id, &UpdateState::IN_FLIGHT).await? {
            if timed_out(since, plan.device_timeout_secs, now) {
                // Ids in the read model were parsed when the device registered.
                let Ok(device) = DeviceId::parse(&device) else { continue };
                let command = DeviceUpdateCommand::TimeOut { action: Some(action as u32), at: now };
                match pm.store.execute::<DeviceUpdate>(&device, command, meta).await {
                    Ok(_) | Err(StoreError::Rejected(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    if plan.max_retries == 0 || campaign.rollback_of.is_some() {
        return Ok(Retries::Done);
    }
    let Some(firmware) = campaign.firmware.as_ref() else { return Ok(Retries::Done) };
    let due: Vec<_> = tally::devices_in(&pm.pool, id, &[UpdateState::Failed, UpdateState::TimedOut])
        .await?
        .into_iter()
        .filter(|(_, _, wave, retry, state, _)| {
            wave.is_some() && should_retry(*state, *retry as u32 + 1, plan.max_retries)
        })
        .collect();
    if due.is_empty() {
        return Ok(Retries::Done);
    }
    // Failed devices waiting for a retry that may not come would hold the wave
    // open for ever: the campaign pauses and says why.
    if let Some(refused) = undeliverable(pm, Some(firmware.id)).await? {
        let reason = Some(format!("{refused}: no failed device is retried"));
        pm.store.execute::<Campaign>(&id, CampaignCommand::Pause { reason, gate: None, at: now }, meta).await?;
        return Ok(Retries::Paused);
    }
    for (device, _, wave, retry, _, _) in due {
        let Some(wave) = wave else { continue };
        let Ok(device_id) = ota_domain::DeviceId::parse(&device) else { continue };
        let origin =
            Origin { campaign: Some(id), wave: Some(wave as u32), retry: retry as u32 + 1, timeout_secs: None };
        let policy = pm.delivery.allowing_downgrade(plan.allow_downgrade);
        match assign_update(&pm.store, &device_id, firmware.id, origin, policy, meta, now).await {
            Ok(_) => {}
            Err(e) if e.is_unavailable() => return Err(e.into()),
            Err(e) => tracing::info!(campaign = %id, device, reason = %e, "retry not possible"),
        }
    }
    Ok(Retries::Done)
}

/// A cancelled or aborted campaign's devices in flight get a cancel. The
/// membership cursor, not a read model, says who was assigned, so a lagging
/// reader cannot hide one; the cancel is guarded by campaign.
pub async fn cancel_in_flight(pm: &ProcessManager, id: CampaignId, cause: &EventRecord) -> Result<(), StepError> {
    let meta = CommandMeta::new(Actor::system("rollout")).caused_by(cause.event_id());
    let (campaign, _) = pm.campaign(id).await?;
    if !matches!(campaign.status, CampaignStatus::Cancelled | CampaignStatus::Aborted) {
        tracing::warn!(campaign = %id, cause = cause.event_id(), status = %campaign.status, "cancel asked for a campaign that has not ended; ignored");
        return Ok(());
    }
    let now = Utc::now();
    for wave in 0..campaign.wave_count() {
        let assigned = campaign.assigned.get(wave).copied().unwrap_or(0) as usize;
        for device in campaign.wave_members(wave).iter().take(assigned) {
            let command = DeviceUpdateCommand::Cancel { campaign: Some(id), force: false, at: now };
            match pm.store.execute::<DeviceUpdate>(device, command, &meta).await {
                Ok(_) | Err(StoreError::Rejected(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// A device's inventory changed: continuous campaigns whose filter it now matches take it in.
pub async fn match_device(pm: &ProcessManager, record: &EventRecord) -> Result<(), StepError> {
    let Ok(event) = record.decode::<DeviceEvent>() else { return Ok(()) };
    if event.profile().is_none() {
        return Ok(());
    }
    let Ok(device) = ota_domain::DeviceId::parse(&record.aggregate_id) else { return Ok(()) };
    // The message is only a reason to look: the profile is the stored one, so a
    // forged event, or an old one published again, joins nothing it should not.
    let (stored, _) = pm.store.load::<ota_domain::device::Device>(&device).await.map_err(read)?;
    if stored.id.is_none() {
        return Ok(());
    }
    let profile = &stored.profile;
    let now = Utc::now();
    for id in tally::continuous_campaigns(&pm.pool).await? {
        let (campaign, _) = pm.campaign(id).await?;
        let (Some(filter), Some(firmware)) = (&campaign.target.filter, &campaign.firmware) else { continue };
        let still_open = campaign.rollout.end_at.is_none_or(|end| end > now);
        if !still_open || !filter.matches(&firmware.device_model, profile) || campaign.is_member(&device) {
            continue;
        }
        let meta = CommandMeta::new(Actor::system("rollout")).caused_by(record.event_id());
        let command = CampaignCommand::AddMembers { devices: vec![device.clone()], at: now };
        match pm.store.execute::<Campaign>(&id, command, &meta).await {
            Ok(_) | Err(StoreError::Rejected(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// An aborted campaign whose plan asks for it gets a linked rollback campaign over
/// the devices that had already updated. Idempotent: the rollback campaign's id is
/// derived from the aborted one's.
pub async fn start_rollback(pm: &ProcessManager, id: CampaignId, cause: &EventRecord) -> Result<(), StepError> {
    let (campaign, _) = pm.campaign(id).await?;
    let Some(firmware) = campaign.firmware.clone() else { return Ok(()) };
    let aborted = campaign.status == CampaignStatus::Aborted;
    if !aborted || !campaign.rollout.rollback_on_abort || campaign.rollback_of.is_some() {
        return Ok(());
    }
    let mut updated = Vec::new();
    for wave in 0..campaign.wave_count() {
        let assigned = campaign.assigned.get(wave).copied().unwrap_or(0) as usize;
        let ids: Vec<String> = campaign.wave_members(wave).iter().take(assigned).map(|d| d.to_string()).collect();
        let lanes = pm.store.load_many::<DeviceUpdate>(&ids).await?;
        for device in campaign.wave_members(wave).iter().take(assigned) {
            let succeeded = lanes
                .get(device.as_str())
                .and_then(|(u, _)| u.current.as_ref())
                .is_some_and(|lane| lane.origin.campaign == Some(id) && lane.state == UpdateState::Succeeded);
            if succeeded {
                updated.push(device.clone());
            }
        }
    }
    if updated.is_empty() {
        return Ok(());
    }
    let rollback = CampaignId::from_uuid(uuid::Uuid::new_v5(&id.as_uuid(), b"rollback"));
    let meta = CommandMeta::new(Actor::system("rollout")).caused_by(cause.event_id());
    let now = Utc::now();
    let name = format!("rollback of {}", campaign.name).chars().take(200).collect();
    let create =
        CampaignCommand::CreateRollback { id: rollback, of: id, name, firmware, devices: updated.clone(), at: now };
    pm.store.execute::<Campaign>(&rollback, create, &meta).await?;
    let membership = Membership { seed: 0, waves: vec![updated], excluded: 0 };
    let start = CampaignCommand::Start { membership: Some(membership), at: now };
    match pm.store.execute::<Campaign>(&rollback, start, &meta).await {
        Ok(_) | Err(StoreError::Rejected(CampaignError::InvalidTransition { .. })) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
