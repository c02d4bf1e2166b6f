//! Which stored events a subscriber hears about, under which public topic.
//!
//! Topics are a contract, like the public NATS subjects: a name is never
//! renamed or given another meaning; new topics may be added. One event may
//! carry two topics: a pause decided by a gate is `campaign.paused` and
//! `gate.decided`.

use std::fmt;
use std::str::FromStr;

use ota_domain::campaign::CampaignEvent;
use ota_domain::device_update::{DeviceUpdateEvent, UpdateState};
use ota_domain::firmware::FirmwareEvent;
use ota_domain::EventRecord;
use serde::{Deserialize, Serialize};

/// A kind of news a webhook may subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Topic {
    #[serde(rename = "campaign.started")]
    CampaignStarted,
    #[serde(rename = "campaign.paused")]
    CampaignPaused,
    #[serde(rename = "campaign.cancelled")]
    CampaignCancelled,
    #[serde(rename = "campaign.aborted")]
    CampaignAborted,
    #[serde(rename = "campaign.completed")]
    CampaignCompleted,
    /// A wave's gate passed, asked for approval, paused or aborted the campaign;
    /// the event carries the numbers it saw.
    #[serde(rename = "gate.decided")]
    GateDecided,
    /// A device's update failed, was rejected by the device, or timed out.
    #[serde(rename = "device.failed")]
    DeviceFailed,
    #[serde(rename = "firmware.uploaded")]
    FirmwareUploaded,
    /// Sent only by the test endpoint, whatever the subscription's topics.
    #[serde(rename = "webhook.test")]
    WebhookTest,
}

impl Topic {
    /// Every topic a subscription may name (the test topic is implied).
    pub const SUBSCRIBABLE: [Topic; 8] = [
        Topic::CampaignStarted,
        Topic::CampaignPaused,
        Topic::CampaignCancelled,
        Topic::CampaignAborted,
        Topic::CampaignCompleted,
        Topic::GateDecided,
        Topic::DeviceFailed,
        Topic::FirmwareUploaded,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Topic::CampaignStarted => "campaign.started",
            Topic::CampaignPaused => "campaign.paused",
            Topic::CampaignCancelled => "campaign.cancelled",
            Topic::CampaignAborted => "campaign.aborted",
            Topic::CampaignCompleted => "campaign.completed",
            Topic::GateDecided => "gate.decided",
            Topic::DeviceFailed => "device.failed",
            Topic::FirmwareUploaded => "firmware.uploaded",
            Topic::WebhookTest => "webhook.test",
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown topic {0:?}")]
pub struct UnknownTopic(pub String);

impl FromStr for Topic {
    type Err = UnknownTopic;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topic::SUBSCRIBABLE
            .into_iter()
            .chain([Topic::WebhookTest])
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTopic(s.to_owned()))
    }
}

/// The topics of a stored event; empty for the many events no one subscribes to.
/// The event event is decoded through the upcaster chain, so old versions map too.
pub fn topics_of(record: &EventRecord) -> Vec<Topic> {
    // Most events (reports, assignments, downloads) have no topic: decide by
    // name before paying for a decode.
    let candidate = matches!(
        (record.aggregate_type.as_str(), record.event_type.as_str()),
        (
            "Campaign",
            "CampaignStarted"
                | "CampaignPaused"
                | "CampaignCancelled"
                | "CampaignAborted"
                | "CampaignCompleted"
                | "WaveStarted"
                | "ApprovalRequested"
        ) | ("DeviceUpdate", "ProgressReported" | "UpdateTimedOut")
            | ("Firmware", "FirmwareUploaded")
    );
    if !candidate {
        return Vec::new();
    }
    match record.aggregate_type.as_str() {
        "Campaign" => record.decode::<CampaignEvent>().map(|e| campaign_topics(&e)).unwrap_or_default(),
        "DeviceUpdate" => match record.decode::<DeviceUpdateEvent>() {
            Ok(DeviceUpdateEvent::ProgressReported { state: UpdateState::Failed | UpdateState::Rejected, .. })
            | Ok(DeviceUpdateEvent::UpdateTimedOut { .. }) => vec![Topic::DeviceFailed],
            _ => Vec::new(),
        },
        "Firmware" => match record.decode::<FirmwareEvent>() {
            Ok(FirmwareEvent::FirmwareUploaded { .. }) => vec![Topic::FirmwareUploaded],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn campaign_topics(event: &CampaignEvent) -> Vec<Topic> {
    match event {
        CampaignEvent::CampaignStarted { .. } => vec![Topic::CampaignStarted],
        CampaignEvent::CampaignPaused { gate, .. } => with_gate(Topic::CampaignPaused, gate.is_some()),
        CampaignEvent::CampaignCancelled { .. } => vec![Topic::CampaignCancelled],
        CampaignEvent::CampaignAborted { gate, .. } => with_gate(Topic::CampaignAborted, gate.is_some()),
        CampaignEvent::CampaignCompleted { passed, .. } => with_gate(Topic::CampaignCompleted, passed.is_some()),
        CampaignEvent::WaveStarted { passed: Some(_), .. }
        | CampaignEvent::ApprovalRequested { passed: Some(_), .. } => {
            vec![Topic::GateDecided]
        }
        _ => Vec::new(),
    }
}

fn with_gate(topic: Topic, gated: bool) -> Vec<Topic> {
    if gated {
        vec![topic, Topic::GateDecided]
    } else {
        vec![topic]
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use ota_domain::rollout::{GateKind, GateReport};

    use super::*;

    fn record(aggregate_type: &str, event_type: &str, payload: serde_json::Value) -> EventRecord {
        EventRecord {
            aggregate_type: aggregate_type.into(),
            aggregate_id: "x".into(),
            sequence: 3,
            global_seq: 9,
            event_type: event_type.into(),
            event_version: ota_domain::upcast::current_version(aggregate_type, event_type).unwrap_or("1.0").to_owned(),
            payload,
            payload_omitted: false,
            metadata: Default::default(),
            recorded_at: at(),
        }
    }

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z").expect("valid").with_timezone(&Utc)
    }

    fn campaign(event: CampaignEvent) -> EventRecord {
        let payload = serde_json::to_value(&event).expect("serialises");
        let name = payload.as_object().and_then(|o| o.keys().next().cloned()).expect("tagged");
        record("Campaign", &name, payload)
    }

    fn gate() -> GateReport {
        GateReport {
            wave: 0,
            gate: GateKind::FailureThreshold,
            failed: 3,
            finished: 10,
            succeeded: 7,
            size: 10,
            threshold_percent: 20,
        }
    }

    #[test]
    fn a_gate_pause_is_a_pause_and_a_gate_decision_and_an_operator_pause_only_a_pause() {
        let by_gate = campaign(CampaignEvent::CampaignPaused { reason: None, gate: Some(gate()), at: at() });
        assert_eq!(topics_of(&by_gate), [Topic::CampaignPaused, Topic::GateDecided]);
        let by_hand = campaign(CampaignEvent::CampaignPaused { reason: Some("lunch".into()), gate: None, at: at() });
        assert_eq!(topics_of(&by_hand), [Topic::CampaignPaused]);
    }

    #[test]
    fn a_passed_wave_is_a_gate_decision_and_the_first_wave_is_not() {
        let passed = campaign(CampaignEvent::WaveStarted { wave: 1, passed: Some(gate()), at: at() });
        assert_eq!(topics_of(&passed), [Topic::GateDecided]);
        let first = campaign(CampaignEvent::WaveStarted { wave: 0, passed: None, at: at() });
        assert!(topics_of(&first).is_empty());
    }

    #[test]
    fn failures_rejections_and_timeouts_are_device_failures_and_progress_is_not() {
        let report = |state: &str| {
            record(
                "DeviceUpdate",
                "ProgressReported",
                serde_json::json!({"ProgressReported": {"action": 1, "state": state, "progress": null, "message": null, "at": at()}}),
            )
        };
        assert_eq!(topics_of(&report("failed")), [Topic::DeviceFailed]);
        assert_eq!(topics_of(&report("rejected")), [Topic::DeviceFailed]);
        assert!(topics_of(&report("downloading")).is_empty());
        let timed_out =
            record("DeviceUpdate", "UpdateTimedOut", serde_json::json!({"UpdateTimedOut": {"action": 1, "at": at()}}));
        assert_eq!(topics_of(&timed_out), [Topic::DeviceFailed]);
    }

    #[test]
    fn undecodable_or_unrelated_events_have_no_topic() {
        assert!(topics_of(&record("Campaign", "CampaignStarted", serde_json::json!({"nonsense": 1}))).is_empty());
        assert!(topics_of(&record("Device", "DeviceRegistered", serde_json::json!({}))).is_empty());
    }

    #[test]
    fn topic_names_round_trip_and_the_test_topic_is_not_subscribable() {
        for topic in Topic::SUBSCRIBABLE {
            assert_eq!(topic.as_str().parse::<Topic>(), Ok(topic));
            assert_eq!(serde_json::to_value(topic).expect("json"), topic.as_str());
        }
        assert!(!Topic::SUBSCRIBABLE.contains(&Topic::WebhookTest));
        assert_eq!("campaign.exploded".parse::<Topic>(), Err(UnknownTopic("campaign.exploded".into())));
    }
}
