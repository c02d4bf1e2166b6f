//! Schema evolution of stored events: the one upcaster chain every reader goes through.
//!
//! Events are stored forever, in the shape of the code that wrote them. Each row
//! carries its `event_version`; before a stored payload is decoded into today's
//! event type it is brought to the current version here, one step at a time
//! (1.0 → 1.1 → …). The postgres-es loads, the group-commit loads, the
//! projections (from NATS and from the store), membership resolution and the
//! audit all call [`upcast`], so no reader can disagree with another about what
//! an old event means.
//!
//! cqrs-es has its own `EventUpcaster`, but its `upcast` cannot fail, so a row
//! written by a newer release would be decoded as if it were current. Here an
//! unknown version is a typed error instead, and the chain is a pure function of
//! (aggregate type, event type, version, payload), usable outside cqrs-es.
//!
//! To change an event: bump its version in [`CURRENT`] and in the enum's
//! `event_version()`, add a [`Step`] from the previous version, and add a golden
//! fixture (`domain/tests/fixtures/events/`); see `docs/events.md`.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The version every event type is written at today: (aggregate type, event type, version).
///
/// Each event enum's `event_version()` says the same per variant (a test holds them
/// equal); this table is what readers check stored versions against.
pub const CURRENT: &[(&str, &str, &str)] = &[
    ("ApiKey", "ApiKeyIssued", "1.0"),
    ("ApiKey", "ApiKeyRevoked", "1.0"),
    ("Campaign", "CampaignCreated", "1.1"),
    ("Campaign", "CampaignScheduled", "1.0"),
    ("Campaign", "CampaignStarted", "1.0"),
    ("Campaign", "MembershipResolved", "1.0"),
    ("Campaign", "MembersJoined", "1.0"),
    ("Campaign", "WaveStarted", "1.0"),
    ("Campaign", "AssignmentsRecorded", "1.0"),
    ("Campaign", "ApprovalRequested", "1.0"),
    ("Campaign", "WaveApproved", "1.1"),
    ("Campaign", "CampaignPaused", "1.0"),
    ("Campaign", "CampaignResumed", "1.0"),
    ("Campaign", "CampaignCancelled", "1.0"),
    ("Campaign", "CampaignEdited", "1.0"),
    ("Campaign", "CampaignDeleted", "1.0"),
    ("Campaign", "CampaignCompleted", "1.0"),
    ("Campaign", "CampaignAborted", "1.0"),
    ("Device", "DeviceRegistered", "1.0"),
    ("Device", "DeviceProfileChanged", "1.0"),
    ("Device", "DeviceTokenIssued", "1.0"),
    ("DeviceUpdate", "UpdateAssigned", "1.1"),
    ("DeviceUpdate", "DeviceNotified", "1.0"),
    ("DeviceUpdate", "ProgressReported", "1.0"),
    ("DeviceUpdate", "ReportIgnored", "1.0"),
    ("DeviceUpdate", "UpdateCancelled", "1.0"),
    ("DeviceUpdate", "UpdateTimedOut", "1.0"),
    ("DeviceUpdate", "CancelRequested", "1.0"),
    ("DeviceUpdate", "CancelRefused", "1.0"),
    ("DeviceUpdate", "DownloadServed", "1.0"),
    ("Firmware", "FirmwareUploaded", "1.1"),
    ("Firmware", "FirmwareDeprecated", "1.0"),
];

/// One upcaster: turns a payload of `from` into one of `to`.
pub struct Step {
    pub aggregate_type: &'static str,
    pub event_type: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    /// Receives the fields inside the external tag (`{"UpdateAssigned": {..}}` → `{..}`).
    pub apply: fn(&mut Map<String, Value>) -> Result<(), Malformed>,
}

/// Every upcaster there is, in no particular order: the chain follows `from` → `to`.
pub const STEPS: &[Step] = &[
    Step {
        aggregate_type: "DeviceUpdate",
        event_type: "UpdateAssigned",
        from: "1.0",
        to: "1.1",
        apply: update_assigned_1_0_to_1_1,
    },
    // 1.1 records who created the campaign (four eyes): before, nobody knows.
    Step {
        aggregate_type: "Campaign",
        event_type: "CampaignCreated",
        from: "1.0",
        to: "1.1",
        apply: new_optional_fields_absent,
    },
    // 1.1 may carry the signed release metadata; 1.0 uploads had none.
    Step {
        aggregate_type: "Firmware",
        event_type: "FirmwareUploaded",
        from: "1.0",
        to: "1.1",
        apply: new_optional_fields_absent,
    },
    // 1.1 records the approver and an admin's override reason.
    Step {
        aggregate_type: "Campaign",
        event_type: "WaveApproved",
        from: "1.0",
        to: "1.1",
        apply: new_optional_fields_absent,
    },
];

/// The new fields are optional and absent means "not recorded", which is the
/// truth about a 1.0 event; the version still moves so an older release refuses
/// 1.1 events instead of silently dropping what they add.
fn new_optional_fields_absent(_: &mut Map<String, Value>) -> Result<(), Malformed> {
    Ok(())
}

/// A stored event that cannot be brought to the current shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpcastError {
    #[error("{aggregate_type} has no event type {event_type:?}")]
    UnknownEventType { aggregate_type: String, event_type: String },
    /// Most likely written by a newer release than this one (or an older one whose step was lost).
    #[error("{aggregate_type}.{event_type} version {version:?} is unknown (this build writes {current})")]
    UnknownVersion { aggregate_type: String, event_type: String, version: String, current: &'static str },
    #[error("{aggregate_type}.{event_type} {version} payload cannot be upcast: {problem}")]
    Malformed { aggregate_type: String, event_type: String, version: String, problem: Malformed },
}

/// What a step found wrong with the payload it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("it is not an object tagged with its event type")]
    NotTagged,
    #[error("field {0:?} is not an object")]
    NotAnObject(&'static str),
}

/// The version events of this type are written at today, if the type exists.
pub fn current_version(aggregate_type: &str, event_type: &str) -> Option<&'static str> {
    CURRENT.iter().find(|(a, e, _)| *a == aggregate_type && *e == event_type).map(|(_, _, v)| *v)
}

/// Brings a stored payload to the current version of its event type.
/// A payload already current is returned unchanged.
pub fn upcast(aggregate_type: &str, event_type: &str, version: &str, payload: Value) -> Result<Value, UpcastError> {
    let current = current_version(aggregate_type, event_type).ok_or_else(|| UpcastError::UnknownEventType {
        aggregate_type: aggregate_type.to_owned(),
        event_type: event_type.to_owned(),
    })?;
    let mut payload = payload;
    let mut version: &str = version;
    while version != current {
        let step = STEPS
            .iter()
            .find(|s| s.aggregate_type == aggregate_type && s.event_type == event_type && s.from == version)
            .ok_or_else(|| UpcastError::UnknownVersion {
                aggregate_type: aggregate_type.to_owned(),
                event_type: event_type.to_owned(),
                version: version.chars().take(32).collect(),
                current,
            })?;
        let malformed = |problem| UpcastError::Malformed {
            aggregate_type: aggregate_type.to_owned(),
            event_type: event_type.to_owned(),
            version: step.from.to_owned(),
            problem,
        };
        let fields = payload
            .get_mut(event_type)
            .and_then(Value::as_object_mut)
            .ok_or_else(|| malformed(Malformed::NotTagged))?;
        (step.apply)(fields).map_err(malformed)?;
        version = step.to;
    }
    Ok(payload)
}

/// A stored event that does not decode into today's type.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Upcast(#[from] UpcastError),
    #[error("{event_type} (upcast to {version}) does not decode: {source}")]
    Payload { event_type: String, version: &'static str, source: serde_json::Error },
}

/// Upcasts a stored payload and decodes it into the aggregate's event type: what
/// every reader of stored events calls.
pub fn decode<E: DeserializeOwned>(
    aggregate_type: &str,
    event_type: &str,
    version: &str,
    payload: Value,
) -> Result<E, DecodeError> {
    let payload = upcast(aggregate_type, event_type, version, payload)?;
    serde_json::from_value(payload).map_err(|source| DecodeError::Payload {
        event_type: event_type.to_owned(),
        // `upcast` succeeded, so the type is known.
        version: current_version(aggregate_type, event_type).unwrap_or("?"),
        source,
    })
}

/// 1.1 writes every field explicitly. 1.0 rows come from releases before `kind`
/// (rollbacks), `origin.wave` and `origin.retry` existed, when every assignment
/// was a first try of an update; the step states that instead of leaving it to
/// serde defaults that a later change could quietly alter.
fn update_assigned_1_0_to_1_1(fields: &mut Map<String, Value>) -> Result<(), Malformed> {
    fields.entry("kind").or_insert_with(|| serde_json::json!({ "kind": "update" }));
    let origin = fields
        .entry("origin")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or(Malformed::NotAnObject("origin"))?;
    origin.entry("campaign").or_insert(Value::Null);
    origin.entry("wave").or_insert(Value::Null);
    origin.entry("retry").or_insert(Value::from(0));
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_current_payload_is_returned_unchanged() {
        let payload = json!({"DeviceNotified": {"action": 1, "at": "2026-01-01T00:00:00Z"}});
        assert_eq!(upcast("DeviceUpdate", "DeviceNotified", "1.0", payload.clone()), Ok(payload));
    }

    #[test]
    fn update_assigned_1_0_gets_its_later_fields_filled() {
        let old = json!({"UpdateAssigned": {"action": 2, "origin": {"campaign": null}, "firmware": {}, "from": null}});
        let new = upcast("DeviceUpdate", "UpdateAssigned", "1.0", old).expect("upcasts");
        assert_eq!(new["UpdateAssigned"]["kind"], json!({"kind": "update"}));
        assert_eq!(new["UpdateAssigned"]["origin"], json!({"campaign": null, "wave": null, "retry": 0}));
    }

    #[test]
    fn update_assigned_1_0_keeps_fields_a_later_1_0_writer_set() {
        let old = json!({"UpdateAssigned": {
            "kind": {"kind": "rollback", "of_action": 1}, "origin": {"campaign": null, "wave": 3, "retry": 2}}});
        let new = upcast("DeviceUpdate", "UpdateAssigned", "1.0", old.clone()).expect("upcasts");
        assert_eq!(new, old);
    }

    #[test]
    fn a_future_version_is_refused_by_name() {
        let err =
            upcast("DeviceUpdate", "UpdateAssigned", "2.0", json!({"UpdateAssigned": {}})).expect_err("is refused");
        assert!(matches!(err, UpcastError::UnknownVersion { current: "1.1", .. }), "{err}");
    }

    #[test]
    fn an_unknown_event_type_is_refused() {
        let err = upcast("Campaign", "UpdateAssigned", "1.0", json!({})).expect_err("is refused");
        assert!(matches!(err, UpcastError::UnknownEventType { .. }), "{err}");
    }

    #[test]
    fn an_untagged_old_payload_is_malformed() {
        let err = upcast("DeviceUpdate", "UpdateAssigned", "1.0", json!({"action": 1})).expect_err("is refused");
        assert!(matches!(err, UpcastError::Malformed { problem: Malformed::NotTagged, .. }), "{err}");
    }

    #[test]
    fn every_step_leads_from_a_known_version_towards_a_current_one() {
        for step in STEPS {
            let current = current_version(step.aggregate_type, step.event_type);
            assert!(current.is_some(), "{}.{} is not a current event type", step.aggregate_type, step.event_type);
            assert_ne!(step.from, step.to);
        }
    }
}
