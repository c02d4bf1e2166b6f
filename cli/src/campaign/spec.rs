//! A campaign's definition from flags and/or a `--file`, as the API's create body.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ota_domain::campaign::{CampaignStatus, Target, TargetFilter};
use ota_domain::rollout::{AfterSuccess, OnFailure, RolloutPlan, WaveSpec};
use ota_domain::DeviceId;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{CliError, Result};

/// A campaign's definition: flags for the common case, `--file` for all of it.
/// A flag wins over the same field in the file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CampaignSpec {
    /// A JSON file with any of `name`, `firmware_id`, `target` and `rollout`, as the API takes them.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The campaign's name (1 to 200 characters).
    #[arg(long)]
    pub name: Option<String>,
    /// The firmware to ship (its id).
    #[arg(long, value_name = "ID")]
    pub firmware: Option<Uuid>,
    /// Devices by id, comma-separated or repeated.
    #[arg(long = "device", value_name = "ID", value_delimiter = ',')]
    pub devices: Vec<String>,
    /// Target devices of this model (a filter over the inventory).
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// ... running any of these hardware versions (comma-separated).
    #[arg(long = "hardware-versions", value_delimiter = ',')]
    pub hardware_versions: Vec<String>,
    /// ... carrying all these tags (comma-separated).
    #[arg(long = "tags", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// ... running this firmware version.
    #[arg(long, value_name = "VERSION")]
    pub from_version: Option<String>,
    /// Devices that come to match the filter later join while it runs.
    #[arg(long)]
    pub continuous: bool,
    /// Waves, e.g. `10%,50%,100%` (cumulative shares) or `5,100%` (5 devices, then the rest).
    #[arg(long, value_name = "WAVES", value_delimiter = ',', value_parser = parse_wave)]
    pub waves: Vec<WaveSpec>,
    /// Percent of a wave that must succeed before the next starts.
    #[arg(long, value_name = "PERCENT")]
    pub success_threshold: Option<u32>,
    /// Percent of finished devices that may fail before the gate trips.
    #[arg(long, value_name = "PERCENT")]
    pub failure_threshold: Option<u32>,
    /// Finished devices needed before the failure gate may trip.
    #[arg(long, value_name = "COUNT")]
    pub min_finished: Option<u32>,
    /// What a tripped failure gate does: pause or abort.
    #[arg(long, value_name = "pause|abort", value_parser = parse_on_failure)]
    pub on_failure: Option<OnFailure>,
    /// Wait for `approve` after each wave instead of going on.
    #[arg(long)]
    pub approve_waves: bool,
    /// New assignments per minute at most.
    #[arg(long, value_name = "COUNT")]
    pub max_per_minute: Option<u32>,
    /// A device silent this long times out, e.g. 90s, 30m, 1h, 2d.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub device_timeout: Option<Duration>,
    /// Automatic retries of a failed or timed-out device.
    #[arg(long, value_name = "COUNT")]
    pub max_retries: Option<u32>,
    /// Start by itself at this time (RFC 3339) once started.
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<DateTime<Utc>>,
    /// Aborting also rolls back the devices that already updated.
    #[arg(long)]
    pub rollback_on_abort: bool,
}

/// The campaign body the API takes, as read from `--file`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firmware_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutPlan>,
}

impl CampaignSpec {
    /// The create body: [`Self::merged`], with the fields creation needs.
    pub fn body(&self) -> Result<CampaignBody> {
        let body = self.merged()?;
        match (&body.name, &body.firmware_id, &body.target) {
            (None, _, _) => Err(CliError::invalid("give the campaign a --name")),
            (_, None, _) => Err(CliError::invalid("give the --firmware to ship (its id)")),
            (_, _, None) => {
                Err(CliError::invalid("give a target: --device IDs and/or a filter (--model, --tags, ...)"))
            }
            _ => Ok(body),
        }
    }

    /// The file's fields, then the flags over them, unchecked.
    pub fn merged(&self) -> Result<CampaignBody> {
        let mut body = match &self.file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| CliError::File {
                    what: "reading",
                    path: path.clone(),
                    source,
                })?;
                serde_json::from_str(&text)
                    .map_err(|e| CliError::invalid(format!("{}: not a campaign body: {e}", path.display())))?
            }
            None => CampaignBody::default(),
        };
        body.name = self.name.clone().or(body.name);
        body.firmware_id = self.firmware.map(|f| f.to_string()).or(body.firmware_id);
        self.apply_target(&mut body)?;
        self.apply_rollout(&mut body);
        Ok(body)
    }

    fn apply_target(&self, body: &mut CampaignBody) -> Result<()> {
        let filter_given = self.model.is_some()
            || !self.hardware_versions.is_empty()
            || !self.tags.is_empty()
            || self.from_version.is_some();
        if self.devices.is_empty() && !filter_given && !self.continuous {
            return Ok(());
        }
        let target = body.target.get_or_insert_with(Target::default);
        if !self.devices.is_empty() {
            target.device_ids = self
                .devices
                .iter()
                .map(|d| DeviceId::parse(d).map_err(|e| CliError::invalid(format!("--device {d:?}: {e}"))))
                .collect::<Result<_>>()?;
        }
        if filter_given {
            let filter = target.filter.get_or_insert_with(TargetFilter::default);
            filter.device_model = self.model.clone().or(filter.device_model.take());
            if !self.hardware_versions.is_empty() {
                filter.hardware_versions = self.hardware_versions.clone();
            }
            if !self.tags.is_empty() {
                filter.tags = self.tags.clone();
            }
            filter.firmware_version = self.from_version.clone().or(filter.firmware_version.take());
        }
        target.continuous |= self.continuous;
        Ok(())
    }

    fn apply_rollout(&self, body: &mut CampaignBody) {
        let given = !self.waves.is_empty()
            || self.success_threshold.is_some()
            || self.failure_threshold.is_some()
            || self.min_finished.is_some()
            || self.on_failure.is_some()
            || self.approve_waves
            || self.max_per_minute.is_some()
            || self.device_timeout.is_some()
            || self.max_retries.is_some()
            || self.start_at.is_some()
            || self.rollback_on_abort;
        if !given {
            return;
        }
        let plan = body.rollout.get_or_insert_with(RolloutPlan::default);
        if !self.waves.is_empty() {
            plan.waves = self.waves.clone();
        }
        set(&mut plan.success_threshold_percent, self.success_threshold);
        set(&mut plan.failure_threshold_percent, self.failure_threshold);
        set(&mut plan.min_finished, self.min_finished);
        set(&mut plan.on_failure, self.on_failure);
        set(&mut plan.max_retries, self.max_retries);
        if self.approve_waves {
            plan.after_success = AfterSuccess::Pause;
        }
        plan.max_per_minute = self.max_per_minute.or(plan.max_per_minute);
        plan.device_timeout_secs = self.device_timeout.map(|d| d.as_secs()).or(plan.device_timeout_secs);
        plan.start_at = self.start_at.or(plan.start_at);
        plan.rollback_on_abort |= self.rollback_on_abort;
    }
}

fn set<T>(field: &mut T, flag: Option<T>) {
    if let Some(value) = flag {
        *field = value;
    }
}

pub(super) fn parse_status(raw: &str) -> std::result::Result<CampaignStatus, String> {
    raw.parse().map_err(|e: ota_domain::campaign::UnknownCampaignStatus| e.to_string())
}

/// `10%` is a cumulative share, `10` a count of devices.
pub fn parse_wave(raw: &str) -> std::result::Result<WaveSpec, String> {
    let raw = raw.trim();
    match raw.strip_suffix('%') {
        Some(percent) => percent.trim().parse().map(WaveSpec::Percent).map_err(|_| format!("bad wave share {raw:?}")),
        None => raw.parse().map(WaveSpec::Count).map_err(|_| format!("bad wave {raw:?}: write 10% or a device count")),
    }
}

fn parse_on_failure(raw: &str) -> std::result::Result<OnFailure, String> {
    match raw {
        "pause" => Ok(OnFailure::Pause),
        "abort" => Ok(OnFailure::Abort),
        _ => Err(format!("{raw:?}: pause or abort")),
    }
}

/// `90`, `90s`, `30m`, `1h`, `2d`.
pub fn parse_duration(raw: &str) -> std::result::Result<Duration, String> {
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("bad duration {raw:?}"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("bad duration unit in {raw:?}; use s, m, h or d")),
    };
    n.checked_mul(scale).map(Duration::from_secs).ok_or_else(|| format!("duration {raw:?} is too long"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec() -> CampaignSpec {
        CampaignSpec {
            name: Some("spring".into()),
            firmware: Some(Uuid::nil()),
            devices: vec!["gw-1".into(), "gw-2".into()],
            ..CampaignSpec::default()
        }
    }

    #[test]
    fn waves_are_shares_or_counts() {
        assert_eq!(parse_wave("10%"), Ok(WaveSpec::Percent(10)));
        assert_eq!(parse_wave("5"), Ok(WaveSpec::Count(5)));
        assert!(parse_wave("ten").is_err());
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("2w").is_err());
        assert!(parse_duration(&format!("{}d", u64::MAX)).is_err());
    }

    #[test]
    fn flags_make_the_body_the_api_takes() {
        let spec = CampaignSpec {
            waves: vec![WaveSpec::Count(1), WaveSpec::Percent(100)],
            failure_threshold: Some(5),
            device_timeout: Some(Duration::from_secs(60)),
            ..spec()
        };
        let body = serde_json::to_value(spec.body().expect("body")).expect("json");
        assert_eq!(body["target"]["device_ids"], json!(["gw-1", "gw-2"]));
        assert_eq!(body["rollout"]["waves"], json!([{"count": 1}, {"percent": 100}]));
        assert_eq!(body["rollout"]["failure_threshold_percent"], 5);
        assert_eq!(body["rollout"]["device_timeout_secs"], 60);
    }

    #[test]
    fn without_rollout_flags_the_server_defaults_apply() {
        let body = serde_json::to_value(spec().body().expect("body")).expect("json");
        assert!(body.get("rollout").is_none(), "{body}");
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("body.json");
        let file = json!({"name": "from file", "target": {"filter": {"device_model": "gw"}},
            "rollout": {"waves": [{"percent": 50}, {"percent": 100}], "max_retries": 2}});
        std::fs::write(&path, file.to_string()).expect("written");
        let spec = CampaignSpec { file: Some(path), max_retries: Some(3), devices: vec![], ..spec() };
        let body = serde_json::to_value(spec.body().expect("body")).expect("json");
        assert_eq!(body["name"], "spring");
        assert_eq!(body["target"]["filter"]["device_model"], "gw");
        assert_eq!(body["rollout"]["waves"], json!([{"percent": 50}, {"percent": 100}]));
        assert_eq!(body["rollout"]["max_retries"], 3);
    }

    #[test]
    fn a_body_without_target_is_refused_before_sending() {
        let spec = CampaignSpec { devices: vec![], ..spec() };
        assert!(matches!(spec.body(), Err(CliError::Invalid(m)) if m.contains("target")));
        let bad = CampaignSpec { devices: vec!["a/b".into()], ..spec };
        assert!(matches!(bad.body(), Err(CliError::Invalid(m)) if m.contains("a/b")));
    }
}
