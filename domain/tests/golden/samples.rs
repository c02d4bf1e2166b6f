//! One event of every variant every aggregate can emit, with fixed values, so
//! their serialised form is stable enough to compare with the golden files.
//!
//! Each `*_variant` function is an exhaustive match: a new variant does not
//! compile until it is named there, and `every_variant_has_a_sample` then fails
//! until it has a sample here too.

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::DomainEvent;
use ota_domain::api_key::ApiKeyEvent;
use ota_domain::campaign::{CampaignEvent, CampaignFirmware, Target, TargetFilter};
use ota_domain::device::{DeviceEvent, DeviceProfile};
use ota_domain::device_update::{
    DeviceUpdateEvent, Download, IgnoredReason, LaneKind, Origin, UpdateFirmware, UpdateState,
};
use ota_domain::firmware::{FirmwareBinary, FirmwareEvent, FirmwareSpec};
use ota_domain::release::{Envelope, Release, SignedRelease};
use ota_domain::rollout::{GateKind, GateReport, RolloutPlan};
use ota_domain::signature::SignatureCheck;
use ota_domain::{CampaignId, DeviceId, FirmwareId};
use serde_json::Value;
use uuid::Uuid;

/// A sample as it would be stored: event type, version, payload.
pub struct Sample {
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    /// Which variant of its enum it is (from the exhaustive `*_variant` match).
    pub variant: usize,
}

fn sample<E: DomainEvent>(variant: fn(&E) -> usize, event: E) -> Sample {
    Sample {
        event_type: event.event_type(),
        event_version: event.event_version(),
        payload: serde_json::to_value(&event).expect("events serialise"),
        variant: variant(&event),
    }
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).single().expect("a valid time")
}

fn campaign_id() -> CampaignId {
    CampaignId::from_uuid(Uuid::from_u128(0x0c0ffee0_0000_4000_8000_000000000001))
}

fn firmware_id() -> FirmwareId {
    FirmwareId::derive("gateway", "2.1.0", "gw-1")
}

fn device(n: u32) -> DeviceId {
    DeviceId::parse(&format!("device-{n:03}")).expect("a valid device id")
}

fn gate() -> Option<GateReport> {
    Some(GateReport {
        wave: 0,
        gate: GateKind::FailureThreshold,
        failed: 3,
        finished: 10,
        succeeded: 7,
        size: 10,
        threshold_percent: 20,
    })
}

fn profile() -> DeviceProfile {
    DeviceProfile {
        device_model: "gw-1".into(),
        hardware_version: Some("rev-b".into()),
        firmware_version: Some("2.0.0".into()),
        tags: ["eu".to_owned()].into(),
        attributes: [("site".to_owned(), "north".to_owned())].into(),
    }
}

fn fw(version: &str) -> UpdateFirmware {
    UpdateFirmware { id: firmware_id(), version: version.into() }
}

pub fn campaign_variant(e: &CampaignEvent) -> usize {
    match e {
        CampaignEvent::CampaignCreated { .. } => 0,
        CampaignEvent::CampaignScheduled { .. } => 1,
        CampaignEvent::CampaignStarted { .. } => 2,
        CampaignEvent::MembershipResolved { .. } => 3,
        CampaignEvent::MembersJoined { .. } => 4,
        CampaignEvent::WaveStarted { .. } => 5,
        CampaignEvent::AssignmentsRecorded { .. } => 6,
        CampaignEvent::ApprovalRequested { .. } => 7,
        CampaignEvent::WaveApproved { .. } => 8,
        CampaignEvent::CampaignPaused { .. } => 9,
        CampaignEvent::CampaignResumed { .. } => 10,
        CampaignEvent::CampaignCancelled { .. } => 11,
        CampaignEvent::CampaignCompleted { .. } => 12,
        CampaignEvent::CampaignAborted { .. } => 13,
        CampaignEvent::CampaignEdited { .. } => 14,
        CampaignEvent::CampaignDeleted { .. } => 15,
    }
}
pub const CAMPAIGN_VARIANTS: usize = 16;

pub fn campaign_events() -> Vec<CampaignEvent> {
    let firmware = CampaignFirmware {
        id: firmware_id(),
        name: "gateway".into(),
        version: "2.1.0".into(),
        device_model: "gw-1".into(),
    };
    let target = Target {
        device_ids: vec![device(1)],
        filter: Some(TargetFilter { device_model: Some("gw-1".into()), tags: vec!["eu".into()], ..Default::default() }),
        continuous: true,
    };
    vec![
        CampaignEvent::CampaignEdited {
            name: "spring rollout, EU".into(),
            firmware: firmware.clone(),
            target: target.clone(),
            rollout: RolloutPlan::default(),
            at: at(),
        },
        CampaignEvent::CampaignDeleted { at: at() },
        CampaignEvent::CampaignCreated {
            id: campaign_id(),
            name: "spring rollout".into(),
            firmware,
            target,
            rollout: RolloutPlan::default(),
            rollback_of: Some(CampaignId::from_uuid(Uuid::from_u128(2))),
            created_by: Some("user:alice".into()),
            at: at(),
        },
        CampaignEvent::CampaignScheduled { start_at: at(), at: at() },
        CampaignEvent::CampaignStarted { at: at() },
        CampaignEvent::MembershipResolved {
            seed: 42,
            waves: vec![vec![device(1)], vec![device(2), device(3)]],
            excluded: 1,
            at: at(),
        },
        CampaignEvent::MembersJoined { wave: 1, devices: vec![device(4)], at: at() },
        CampaignEvent::WaveStarted { wave: 1, passed: gate(), at: at() },
        CampaignEvent::AssignmentsRecorded { wave: 1, through: 2, skipped: 1, at: at() },
        CampaignEvent::ApprovalRequested { wave: 1, passed: gate(), at: at() },
        CampaignEvent::WaveApproved {
            wave: 1,
            by: Some("user:alice".into()),
            override_reason: Some("alone on call".into()),
            at: at(),
        },
        CampaignEvent::CampaignPaused { reason: Some("investigating".into()), gate: gate(), at: at() },
        CampaignEvent::CampaignResumed { at: at() },
        CampaignEvent::CampaignCancelled { reason: Some("superseded".into()), at: at() },
        CampaignEvent::CampaignCompleted { passed: gate(), at: at() },
        CampaignEvent::CampaignAborted { reason: "failure threshold crossed".into(), gate: gate(), at: at() },
    ]
}

pub fn device_update_variant(e: &DeviceUpdateEvent) -> usize {
    match e {
        DeviceUpdateEvent::UpdateAssigned { .. } => 0,
        DeviceUpdateEvent::DeviceNotified { .. } => 1,
        DeviceUpdateEvent::ProgressReported { .. } => 2,
        DeviceUpdateEvent::ReportIgnored { .. } => 3,
        DeviceUpdateEvent::UpdateCancelled { .. } => 4,
        DeviceUpdateEvent::UpdateTimedOut { .. } => 5,
        DeviceUpdateEvent::CancelRequested { .. } => 6,
        DeviceUpdateEvent::CancelRefused { .. } => 7,
        DeviceUpdateEvent::DownloadServed { .. } => 8,
    }
}
pub const DEVICE_UPDATE_VARIANTS: usize = 9;

fn device_update_events() -> Vec<DeviceUpdateEvent> {
    vec![
        DeviceUpdateEvent::UpdateAssigned {
            action: 2,
            kind: LaneKind::Rollback { of_action: 1 },
            origin: Origin { campaign: Some(campaign_id()), wave: Some(1), retry: 1, timeout_secs: None },
            firmware: fw("2.0.0"),
            from: Some(fw("2.1.0")),
            at: at(),
        },
        DeviceUpdateEvent::DeviceNotified { action: 2, at: at() },
        DeviceUpdateEvent::ProgressReported {
            action: 2,
            state: UpdateState::Downloading,
            progress: Some(40),
            message: Some("40%".into()),
            at: at(),
        },
        DeviceUpdateEvent::ReportIgnored {
            action: 2,
            state: UpdateState::Downloading,
            reason: IgnoredReason::OutOfOrder,
            at: at(),
        },
        DeviceUpdateEvent::UpdateCancelled { action: 2, at: at() },
        DeviceUpdateEvent::UpdateTimedOut { action: 2, at: at() },
        DeviceUpdateEvent::CancelRequested { action: 2, at: at() },
        DeviceUpdateEvent::CancelRefused { action: 2, message: Some("installing".into()), at: at() },
        DeviceUpdateEvent::DownloadServed {
            action: 2,
            download: Download {
                firmware: firmware_id(),
                requests: 3,
                offset: 0,
                bytes: 1_048_576,
                complete: true,
                whole: false,
                via: "signed_url".into(),
            },
            at: at(),
        },
    ]
}

pub fn firmware_variant(e: &FirmwareEvent) -> usize {
    match e {
        FirmwareEvent::FirmwareUploaded { .. } => 0,
        FirmwareEvent::FirmwareDeprecated { .. } => 1,
    }
}
pub const FIRMWARE_VARIANTS: usize = 2;

/// Deterministic: ed25519 signatures are, and the key is fixed.
fn signed_release() -> SignedRelease {
    let release = Release {
        name: "gateway".into(),
        version: "2.1.0".into(),
        device_model: "gw-1".into(),
        hardware_versions: vec!["rev-b".into()],
        sha256: "a".repeat(64),
        size: 4096,
        release_counter: 12,
    };
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let envelope = Envelope::sign(&release, "release-2026", &key);
    SignedRelease { release, envelope, signed_by: vec!["release-2026".into()] }
}

fn firmware_events() -> Vec<FirmwareEvent> {
    vec![
        FirmwareEvent::FirmwareUploaded {
            id: firmware_id(),
            spec: FirmwareSpec {
                name: "gateway".into(),
                version: "2.1.0".into(),
                device_model: "gw-1".into(),
                hardware_versions: vec!["rev-b".into()],
                release_notes: Some("fixes".into()),
            },
            binary: FirmwareBinary {
                filename: "gateway-2.1.0.swu".into(),
                size: 4096,
                sha256: "a".repeat(64),
                sha1: "b".repeat(40),
                md5: "c".repeat(32),
                storage_path: "firmware/gateway-2.1.0.swu".into(),
            },
            signature: SignatureCheck::Verified { key_id: "release-2026".into(), release_counter: Some(12) },
            release: Some(signed_release()),
            at: at(),
        },
        FirmwareEvent::FirmwareDeprecated { reason: Some("bricks rev-a".into()), at: at() },
    ]
}

pub fn device_variant(e: &DeviceEvent) -> usize {
    match e {
        DeviceEvent::DeviceRegistered { .. } => 0,
        DeviceEvent::DeviceProfileChanged { .. } => 1,
        DeviceEvent::DeviceTokenIssued { .. } => 2,
    }
}
pub const DEVICE_VARIANTS: usize = 3;

fn device_events() -> Vec<DeviceEvent> {
    vec![
        DeviceEvent::DeviceRegistered { id: device(1), profile: profile(), at: at() },
        DeviceEvent::DeviceProfileChanged { profile: profile(), at: at() },
        DeviceEvent::DeviceTokenIssued { token_sha256: "d".repeat(64), at: at() },
    ]
}

pub fn api_key_variant(e: &ApiKeyEvent) -> usize {
    match e {
        ApiKeyEvent::ApiKeyIssued { .. } => 0,
        ApiKeyEvent::ApiKeyRevoked { .. } => 1,
    }
}
pub const API_KEY_VARIANTS: usize = 2;

fn api_key_events() -> Vec<ApiKeyEvent> {
    vec![
        ApiKeyEvent::ApiKeyIssued {
            id: Uuid::from_u128(3),
            name: "ci".into(),
            role: "operator".into(),
            secret_sha256: "e".repeat(64),
            expires_at: Some(at()),
            at: at(),
        },
        ApiKeyEvent::ApiKeyRevoked { at: at() },
    ]
}

/// Every sample, per aggregate type, with how many variants its enum has.
pub fn all() -> Vec<(&'static str, usize, Vec<Sample>)> {
    vec![
        ("ApiKey", API_KEY_VARIANTS, api_key_events().into_iter().map(|e| sample(api_key_variant, e)).collect()),
        ("Campaign", CAMPAIGN_VARIANTS, campaign_events().into_iter().map(|e| sample(campaign_variant, e)).collect()),
        ("Device", DEVICE_VARIANTS, device_events().into_iter().map(|e| sample(device_variant, e)).collect()),
        (
            "DeviceUpdate",
            DEVICE_UPDATE_VARIANTS,
            device_update_events().into_iter().map(|e| sample(device_update_variant, e)).collect(),
        ),
        ("Firmware", FIRMWARE_VARIANTS, firmware_events().into_iter().map(|e| sample(firmware_variant, e)).collect()),
    ]
}
