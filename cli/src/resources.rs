//! The API's resources as the CLI reads them for its tables.
//!
//! `ota_api::resources` only serialize (they are built from aggregates and read
//! models), so these mirror the fields the tables show; the value types inside
//! (status, target, rollout plan, update state) are the domain's own. Unknown
//! fields are ignored: `--json` prints the server's answer as it came.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use ota_domain::campaign::{CampaignStatus, Target};
use ota_domain::device_update::UpdateState;
use ota_domain::firmware::FirmwareStatus;
use ota_domain::rollout::RolloutPlan;
use ota_domain::signature::SignatureCheck;
use serde::Deserialize;
use uuid::Uuid;

#[derive(Debug, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub page: u32,
    pub page_size: u32,
}

impl<T> Page<T> {
    /// "page 1 of 3, 120 in all", for the line under a table.
    pub fn footer(&self) -> String {
        let pages = (self.total.max(0) as u64).div_ceil(u64::from(self.page_size.max(1))).max(1);
        format!("page {} of {pages}, {} in all", self.page, self.total)
    }
}

#[derive(Debug, Deserialize)]
pub struct Firmware {
    pub id: Uuid,
    pub name: String,
    pub version: String,
    pub device_model: String,
    #[serde(default)]
    pub hardware_versions: Vec<String>,
    pub release_notes: Option<String>,
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    pub sha1: String,
    pub md5: String,
    pub status: FirmwareStatus,
    pub signature: SignatureCheck,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
pub struct Campaign {
    pub id: Uuid,
    pub name: String,
    pub status: CampaignStatus,
    pub firmware: FirmwareRef,
    pub target: Target,
    pub rollout: RolloutPlan,
    pub rollback_of: Option<Uuid>,
    pub device_count: i64,
    pub excluded: i64,
    pub current_wave: Option<i64>,
    pub awaiting_approval: bool,
    pub waves: Vec<Wave>,
    pub unassigned: i64,
    pub in_flight: i64,
    #[serde(default)]
    pub decisions: Vec<Decision>,
    pub last_reason: Option<String>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
pub struct FirmwareRef {
    pub id: Uuid,
    pub name: String,
    pub version: String,
    pub device_model: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Wave {
    pub wave: i64,
    pub size: i64,
    pub assigned: i64,
    pub skipped: i64,
    pub started_at: Option<DateTime<Utc>>,
    pub in_progress: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub rejected: i64,
    pub timed_out: i64,
    pub cancelled: i64,
    pub rolled_back: i64,
}

impl Wave {
    /// Devices of the wave that reached an outcome (or were never to be assigned).
    pub fn finished(&self) -> i64 {
        self.succeeded + self.failed + self.rejected + self.timed_out + self.cancelled + self.rolled_back + self.skipped
    }

    /// Failed, rejected or timed out: what the failure gate counts.
    pub fn failures(&self) -> i64 {
        self.failed + self.rejected + self.timed_out
    }
}

#[derive(Debug, Deserialize)]
pub struct Decision {
    pub sequence: i64,
    pub decision: String,
    pub wave: Option<i32>,
    pub reason: Option<String>,
    pub actor: Option<String>,
    pub decided_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
pub struct Device {
    pub id: String,
    pub device_model: String,
    pub hardware_version: Option<String>,
    pub firmware_version: Option<String>,
    #[serde(default)]
    pub tags: BTreeSet<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_seen: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
pub struct DeviceUpdate {
    pub action: i64,
    pub kind: String,
    pub rolls_back_action: Option<i64>,
    pub campaign_id: Option<Uuid>,
    pub wave: Option<i64>,
    pub retry: i64,
    pub firmware_version: String,
    pub from_version: Option<String>,
    pub state: UpdateState,
    pub progress: Option<i64>,
    pub message: Option<String>,
    pub assigned_by: Option<String>,
    pub assigned_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The answer of `POST /devices:import`.
#[derive(Debug, Deserialize)]
pub struct ImportReport {
    pub rows: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    #[serde(default)]
    pub failed: Vec<RowError>,
    #[serde(default)]
    pub target_tokens: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct RowError {
    pub row: usize,
    pub id: Option<String>,
    pub error: String,
}

/// One entry of a device's rollback log.
#[derive(Debug, Deserialize)]
pub struct Rollback {
    pub action: i64,
    pub of_action: i64,
    pub from_version: Option<String>,
    pub to_version: String,
    pub campaign_id: Option<Uuid>,
    pub requested_by: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub state: String,
    pub finished_at: Option<DateTime<Utc>>,
}
