//! DDI JSON as hawkBit writes it (out: exact, ids as strings) and as real clients
//! send it (in: lenient, unknown fields ignored, numbers or strings for ids).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Href {
    pub href: String,
}

impl Href {
    pub fn new(href: impl Into<String>) -> Self {
        Self { href: href.into() }
    }
}

/// The base poll's answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BasePoll {
    pub config: PollConfig,
    #[serde(rename = "_links", skip_serializing_if = "PollLinks::is_empty")]
    pub links: PollLinks,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PollConfig {
    pub polling: Polling,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Polling {
    /// `HH:MM:SS`, always below one day.
    pub sleep: String,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PollLinks {
    #[serde(rename = "deploymentBase", skip_serializing_if = "Option::is_none")]
    pub deployment_base: Option<Href>,
    #[serde(rename = "cancelAction", skip_serializing_if = "Option::is_none")]
    pub cancel_action: Option<Href>,
    #[serde(rename = "installedBase", skip_serializing_if = "Option::is_none")]
    pub installed_base: Option<Href>,
    #[serde(rename = "configData", skip_serializing_if = "Option::is_none")]
    pub config_data: Option<Href>,
}

impl PollLinks {
    pub fn is_empty(&self) -> bool {
        self.deployment_base.is_none()
            && self.cancel_action.is_none()
            && self.installed_base.is_none()
            && self.config_data.is_none()
    }
}

/// `deploymentBase/{id}` and `installedBase/{id}`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentBase {
    pub id: String,
    pub deployment: Deployment,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deployment {
    pub download: &'static str,
    pub update: &'static str,
    #[serde(rename = "maintenanceWindow", skip_serializing_if = "Option::is_none")]
    pub maintenance_window: Option<&'static str>,
    pub chunks: Vec<Chunk>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Chunk {
    pub part: String,
    pub version: String,
    pub name: String,
    pub artifacts: Vec<Artifact>,
    /// hawkBit's target-visible module metadata. Here: the signed release
    /// ([`RELEASE_METADATA_KEY`]), so a device can check it before it installs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<Metadata>,
}

/// The metadata key whose value is the release's DSSE envelope (JSON).
pub const RELEASE_METADATA_KEY: &str = "ota.release";

#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Metadata {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Artifact {
    pub filename: String,
    pub hashes: Hashes,
    pub size: u64,
    #[serde(rename = "_links")]
    pub links: ArtifactLinks,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Hashes {
    pub sha1: String,
    pub md5: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArtifactLinks {
    pub download: Href,
    #[serde(rename = "download-http")]
    pub download_http: Href,
    pub md5sum: Href,
    #[serde(rename = "md5sum-http")]
    pub md5sum_http: Href,
}

/// `cancelAction/{id}`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CancelActionReply {
    pub id: String,
    #[serde(rename = "cancelAction")]
    pub cancel_action: StopId,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StopId {
    #[serde(rename = "stopId")]
    pub stop_id: String,
}

// ---------------------------------------------------------------- in

/// A feedback body. Clients add `id` (number or string), `time`, `timestamp`;
/// only `status.execution` and `status.result.finished` are required.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Feedback {
    pub status: FeedbackStatus,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedbackStatus {
    pub execution: Execution,
    pub result: FeedbackResult,
    #[serde(default)]
    pub code: Option<serde_json::Value>,
    #[serde(default)]
    pub details: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedbackResult {
    pub finished: Finished,
    /// `{cnt, of}`, `{"percentage": n}`, `{}` or anything else: only read, never required.
    #[serde(default)]
    pub progress: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Execution {
    Closed,
    Proceeding,
    #[serde(alias = "cancelled")]
    Canceled,
    Scheduled,
    Rejected,
    Resumed,
    Downloaded,
    Download,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Finished {
    Success,
    Failure,
    None,
}

impl FeedbackStatus {
    /// `details` (strings, or anything else written as JSON) and `code`, as one message.
    pub fn message(&self) -> Option<String> {
        let mut parts: Vec<String> = Vec::new();
        if let Some(code) = self.code.as_ref().filter(|c| !c.is_null()) {
            parts.push(format!("code {}", plain(code)));
        }
        match &self.details {
            Some(serde_json::Value::Array(items)) => parts.extend(items.iter().map(plain)),
            Some(serde_json::Value::Null) | None => {}
            Some(other) => parts.push(plain(other)),
        }
        let text = parts.join("; ");
        (!text.is_empty()).then(|| truncate(&text, MAX_MESSAGE_CHARS))
    }
}

/// Feedback messages are logs; keep what fits a history row.
pub const MAX_MESSAGE_CHARS: usize = 2000;

fn plain(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn truncate(text: &str, max: usize) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    match clean.char_indices().nth(max) {
        Some((cut, _)) => clean[..cut].to_owned(),
        None => clean,
    }
}

/// `PUT configData`: `mode` may be absent or `null` (merge); stray fields are ignored.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigData {
    #[serde(default)]
    pub mode: Option<ConfigMode>,
    pub data: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ConfigMode {
    Merge,
    Replace,
    Remove,
}

impl ConfigData {
    /// Attribute values as strings (clients send numbers and booleans too).
    pub fn attributes(&self) -> BTreeMap<String, String> {
        self.data.iter().map(|(k, v)| (k.clone(), plain(v))).collect()
    }
}
