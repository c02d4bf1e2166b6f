//! The decision log: every step a campaign took, who took it, and for gate
//! decisions the numbers the gate saw.

use ota_domain::campaign::CampaignEvent;
use ota_domain::EventRecord;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::ProjectionError;

pub async fn record(
    conn: &mut PgConnection,
    campaign: Uuid,
    record: &EventRecord,
    event: &CampaignEvent,
) -> Result<(), ProjectionError> {
    let (decision, wave, gate, reason) = match event {
        CampaignEvent::CampaignScheduled { .. } => ("scheduled", None, None, None),
        CampaignEvent::CampaignStarted { .. } => ("started", None, None, None),
        CampaignEvent::WaveStarted { wave, passed, .. } => ("wave_started", Some(*wave), passed.as_ref(), None),
        CampaignEvent::ApprovalRequested { wave, passed, .. } => {
            ("approval_requested", Some(*wave), passed.as_ref(), None)
        }
        CampaignEvent::WaveApproved { wave, override_reason, .. } => (
            "wave_approved",
            Some(*wave),
            None,
            override_reason.as_ref().map(|why| format!("the creator approved its own wave (admin override): {why}")),
        ),
        CampaignEvent::MembersJoined { wave, devices, .. } => {
            ("members_joined", Some(*wave), None, Some(format!("{} device(s) came to match the filter", devices.len())))
        }
        CampaignEvent::CampaignPaused { reason, gate, .. } => {
            ("paused", gate.map(|g| g.wave), gate.as_ref(), reason.clone())
        }
        CampaignEvent::CampaignResumed { .. } => ("resumed", None, None, None),
        CampaignEvent::CampaignEdited { .. } => ("edited", None, None, None),
        CampaignEvent::CampaignCancelled { reason, .. } => ("cancelled", None, None, reason.clone()),
        CampaignEvent::CampaignCompleted { passed, .. } => ("completed", passed.map(|g| g.wave), passed.as_ref(), None),
        CampaignEvent::CampaignAborted { reason, gate, .. } => {
            ("aborted", gate.map(|g| g.wave), gate.as_ref(), Some(reason.clone()))
        }
        CampaignEvent::CampaignCreated { .. }
        | CampaignEvent::CampaignDeleted { .. }
        | CampaignEvent::MembershipResolved { .. }
        | CampaignEvent::AssignmentsRecorded { .. } => return Ok(()),
    };
    let gate = gate.map(serde_json::to_value).transpose().map_err(|e| ProjectionError::poison(record, e))?;
    sqlx::query(
        "INSERT INTO campaign_decisions (campaign_id, sequence, decision, wave, gate, reason, actor, decided_at)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
    )
    .bind(campaign)
    .bind(record.sequence)
    .bind(decision)
    .bind(wave.map(|w| w as i32))
    .bind(gate)
    .bind(reason)
    .bind(record.meta().map(|m| m.actor.to_string()))
    .bind(record.recorded_at)
    .execute(conn)
    .await?;
    Ok(())
}
