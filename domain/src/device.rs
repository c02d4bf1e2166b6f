//! The `Device` aggregate: a device's inventory record (model, hardware and
//! firmware versions, tags, free attributes). Each change is an event, which is
//! what lets continuous campaigns match a device the moment it changes.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::decide::Decide;
use crate::ids::DeviceId;
use crate::refusal::{Refusal, Refused};

/// Limits that keep one device record small.
pub const MAX_TAGS: usize = 50;
pub const MAX_ATTRIBUTES: usize = 100;
pub const MAX_ATTRIBUTE_LEN: usize = 128;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceProfile {
    pub device_model: String,
    #[serde(default)]
    pub hardware_version: Option<String>,
    #[serde(default)]
    pub firmware_version: Option<String>,
    #[serde(default)]
    pub tags: BTreeSet<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// How new attributes combine with the stored ones (hawkBit's configData modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AttributeMode {
    #[default]
    Merge,
    Replace,
    Remove,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub enum DeviceCommand {
    /// Creates the device or replaces its profile (an upsert).
    Register {
        id: DeviceId,
        profile: DeviceProfile,
        at: DateTime<Utc>,
    },
    SetAttributes {
        mode: AttributeMode,
        attributes: BTreeMap<String, String>,
        at: DateTime<Utc>,
    },
    ReportFirmware {
        version: String,
        at: DateTime<Utc>,
    },
    /// Registers like `Register` and, for a new device only, issues its first DDI token.
    Enrol {
        id: DeviceId,
        profile: DeviceProfile,
        token_sha256: String,
        at: DateTime<Utc>,
    },
    /// Replaces the device's DDI token (only its SHA-256 is ever stored).
    RotateToken {
        token_sha256: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DeviceEvent {
    DeviceRegistered {
        id: DeviceId,
        profile: DeviceProfile,
        at: DateTime<Utc>,
    },
    /// The whole new profile, so readers never need the previous one.
    DeviceProfileChanged {
        profile: DeviceProfile,
        at: DateTime<Utc>,
    },
    /// A new DDI target token; the SHA-256 of a 128-bit random secret, never the secret.
    DeviceTokenIssued {
        token_sha256: String,
        at: DateTime<Utc>,
    },
}

impl DeviceEvent {
    /// The profile the event leaves the device with, if it changes it.
    pub fn profile(&self) -> Option<&DeviceProfile> {
        match self {
            DeviceEvent::DeviceRegistered { profile, .. } | DeviceEvent::DeviceProfileChanged { profile, .. } => {
                Some(profile)
            }
            DeviceEvent::DeviceTokenIssued { .. } => None,
        }
    }
}

impl DomainEvent for DeviceEvent {
    fn event_type(&self) -> String {
        match self {
            DeviceEvent::DeviceRegistered { .. } => "DeviceRegistered",
            DeviceEvent::DeviceProfileChanged { .. } => "DeviceProfileChanged",
            DeviceEvent::DeviceTokenIssued { .. } => "DeviceTokenIssued",
        }
        .to_owned()
    }
    /// Bumped with an upcaster in `crate::upcast` whenever a shape changes.
    fn event_version(&self) -> String {
        match self {
            DeviceEvent::DeviceRegistered { .. }
            | DeviceEvent::DeviceProfileChanged { .. }
            | DeviceEvent::DeviceTokenIssued { .. } => "1.0",
        }
        .to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("device is not registered")]
    NotRegistered,
    #[error("{field}: {problem}")]
    InvalidProfile { field: String, problem: &'static str },
}

impl Refused for DeviceError {
    fn refusal(&self) -> Refusal {
        match self {
            DeviceError::NotRegistered => Refusal::NotFound,
            DeviceError::InvalidProfile { .. } => Refusal::Invalid,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            DeviceError::NotRegistered => "device.not_found",
            DeviceError::InvalidProfile { .. } => "invalid_field",
        }
    }
}

fn check_text(field: &str, value: &str) -> Result<(), DeviceError> {
    let bad = |problem| Err(DeviceError::InvalidProfile { field: field.to_owned(), problem });
    if value.trim().is_empty() {
        return bad("must not be empty");
    }
    if value.chars().count() > MAX_ATTRIBUTE_LEN {
        return bad("longer than 128 characters");
    }
    if value.chars().any(char::is_control) {
        return bad("contains control characters");
    }
    Ok(())
}

/// Attribute keys a device may use to report its model, hardware and firmware
/// (hawkBit clients send free attributes; these are the spellings seen in the field).
pub const MODEL_KEYS: &[&str] = &["device_model", "model"];
pub const HARDWARE_KEYS: &[&str] = &["hardware_version", "hwRevision", "hw_revision", "hardware_revision"];
pub const FIRMWARE_KEYS: &[&str] = &["firmware_version", "fw_version", "swVersion", "sw_version"];

impl DeviceProfile {
    /// Takes model, hardware and firmware versions from the attributes that name them.
    pub fn adopt_well_known_attributes(&mut self) {
        let find =
            |keys: &[&str]| keys.iter().find_map(|k| self.attributes.get(*k)).filter(|v| !v.trim().is_empty()).cloned();
        if let Some(model) = find(MODEL_KEYS) {
            self.device_model = model;
        }
        if let Some(hardware) = find(HARDWARE_KEYS) {
            self.hardware_version = Some(hardware);
        }
        if let Some(firmware) = find(FIRMWARE_KEYS) {
            self.firmware_version = Some(firmware);
        }
    }

    pub fn validate(&self) -> Result<(), DeviceError> {
        check_text("device_model", &self.device_model)?;
        if let Some(h) = &self.hardware_version {
            check_text("hardware_version", h)?;
        }
        if let Some(f) = &self.firmware_version {
            check_text("firmware_version", f)?;
        }
        if self.tags.len() > MAX_TAGS {
            return Err(DeviceError::InvalidProfile { field: "tags".into(), problem: "more than 50 tags" });
        }
        for tag in &self.tags {
            check_text("tags", tag)?;
        }
        if self.attributes.len() > MAX_ATTRIBUTES {
            return Err(DeviceError::InvalidProfile {
                field: "attributes".into(),
                problem: "more than 100 attributes",
            });
        }
        for (key, value) in &self.attributes {
            check_text("attributes", key)?;
            if value.chars().count() > MAX_ATTRIBUTE_LEN || value.chars().any(char::is_control) {
                return Err(DeviceError::InvalidProfile {
                    field: format!("attributes.{key}"),
                    problem: "longer than 128 characters or contains control characters",
                });
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub id: Option<DeviceId>,
    pub profile: DeviceProfile,
    pub registered_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub token_sha256: Option<String>,
}

impl Device {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    fn change(&self, profile: DeviceProfile, at: DateTime<Utc>) -> Result<Vec<DeviceEvent>, DeviceError> {
        profile.validate()?;
        if profile == self.profile {
            return Ok(vec![]);
        }
        Ok(vec![DeviceEvent::DeviceProfileChanged { profile, at }])
    }
}

impl Decide for Device {
    fn decide(&self, command: DeviceCommand) -> Result<Vec<DeviceEvent>, DeviceError> {
        match command {
            DeviceCommand::Register { id, profile, at } if !self.exists() => {
                profile.validate()?;
                Ok(vec![DeviceEvent::DeviceRegistered { id, profile, at }])
            }
            DeviceCommand::Register { profile, at, .. } => self.change(profile, at),
            DeviceCommand::Enrol { id, profile, token_sha256, at } if !self.exists() => {
                profile.validate()?;
                Ok(vec![
                    DeviceEvent::DeviceRegistered { id, profile, at },
                    DeviceEvent::DeviceTokenIssued { token_sha256, at },
                ])
            }
            DeviceCommand::Enrol { profile, at, .. } => self.change(profile, at),
            _ if !self.exists() => Err(DeviceError::NotRegistered),
            DeviceCommand::SetAttributes { mode, attributes, at } => {
                let mut profile = self.profile.clone();
                match mode {
                    AttributeMode::Merge => profile.attributes.extend(attributes),
                    AttributeMode::Replace => profile.attributes = attributes,
                    AttributeMode::Remove => profile.attributes.retain(|k, _| !attributes.contains_key(k)),
                }
                profile.adopt_well_known_attributes();
                self.change(profile, at)
            }
            DeviceCommand::ReportFirmware { version, at } => {
                let profile = DeviceProfile { firmware_version: Some(version), ..self.profile.clone() };
                self.change(profile, at)
            }
            DeviceCommand::RotateToken { token_sha256, at } => {
                Ok(vec![DeviceEvent::DeviceTokenIssued { token_sha256, at }])
            }
        }
    }
}

impl Aggregate for Device {
    const TYPE: &'static str = "Device";
    type Command = DeviceCommand;
    type Event = DeviceEvent;
    type Error = DeviceError;
    type Services = ();

    async fn handle(&mut self, command: DeviceCommand, _: &(), sink: &EventSink<Self>) -> Result<(), DeviceError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: DeviceEvent) {
        match event {
            DeviceEvent::DeviceRegistered { id, profile, at } => {
                self.id = Some(id);
                self.profile = profile;
                self.registered_at = Some(at);
                self.updated_at = Some(at);
            }
            DeviceEvent::DeviceProfileChanged { profile, at } => {
                self.profile = profile;
                self.updated_at = Some(at);
            }
            DeviceEvent::DeviceTokenIssued { token_sha256, .. } => self.token_sha256 = Some(token_sha256),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    use super::*;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 2, 2, 2, 2, 2).single().unwrap_or_default()
    }
    fn id() -> DeviceId {
        DeviceId::parse("dev-1").unwrap_or_else(|e| panic!("{e}"))
    }
    fn profile(fw: &str) -> DeviceProfile {
        DeviceProfile { device_model: "gw".into(), firmware_version: Some(fw.into()), ..Default::default() }
    }

    #[test]
    fn registering_twice_with_the_same_profile_is_a_no_op() {
        TestFramework::<Device>::with(())
            .given(vec![DeviceEvent::DeviceRegistered { id: id(), profile: profile("1"), at: at() }])
            .when(DeviceCommand::Register { id: id(), profile: profile("1"), at: at() })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_changed_profile_is_recorded_whole() {
        TestFramework::<Device>::with(())
            .given(vec![DeviceEvent::DeviceRegistered { id: id(), profile: profile("1"), at: at() }])
            .when(DeviceCommand::ReportFirmware { version: "2".into(), at: at() })
            .then_expect_events(vec![DeviceEvent::DeviceProfileChanged { profile: profile("2"), at: at() }]);
    }

    #[test]
    fn attribute_modes_merge_replace_and_remove() {
        let mut device = Device::default();
        let mut base = profile("1");
        base.attributes = BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())]);
        device.apply(DeviceEvent::DeviceRegistered { id: id(), profile: base, at: at() });
        let set = |mode, pairs: &[(&str, &str)]| DeviceCommand::SetAttributes {
            mode,
            attributes: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            at: at(),
        };
        let attrs = |events: Vec<DeviceEvent>| match events.first() {
            Some(DeviceEvent::DeviceProfileChanged { profile, .. }) => {
                profile.attributes.keys().cloned().collect::<Vec<_>>()
            }
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(attrs(device.decide(set(AttributeMode::Merge, &[("c", "3")])).unwrap_or_default()), ["a", "b", "c"]);
        assert_eq!(attrs(device.decide(set(AttributeMode::Replace, &[("c", "3")])).unwrap_or_default()), ["c"]);
        assert_eq!(attrs(device.decide(set(AttributeMode::Remove, &[("a", "")])).unwrap_or_default()), ["b"]);
    }

    #[test]
    fn well_known_attributes_fill_the_profile() {
        let mut device = Device::default();
        device.apply(DeviceEvent::DeviceRegistered { id: id(), profile: profile("1"), at: at() });
        let attributes = [("hwRevision", "rev-b"), ("model", "cam"), ("swVersion", "7"), ("x", "y")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let events = device.decide(DeviceCommand::SetAttributes { mode: AttributeMode::Merge, attributes, at: at() });
        match events.as_deref() {
            Ok([DeviceEvent::DeviceProfileChanged { profile, .. }]) => {
                assert_eq!(profile.device_model, "cam");
                assert_eq!(profile.hardware_version.as_deref(), Some("rev-b"));
                assert_eq!(profile.firmware_version.as_deref(), Some("7"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn profiles_with_blank_model_or_control_characters_are_refused() {
        let mut bad = profile("1");
        bad.device_model = " ".into();
        assert!(matches!(bad.validate(), Err(DeviceError::InvalidProfile { .. })));
        let mut bad = profile("1");
        bad.tags.insert("a\u{7}".into());
        assert!(matches!(bad.validate(), Err(DeviceError::InvalidProfile { .. })));
    }

    #[test]
    fn enrolling_issues_a_token_only_to_a_new_device() {
        let token = || "ab".repeat(32);
        TestFramework::<Device>::with(())
            .given_no_previous_events()
            .when(DeviceCommand::Enrol { id: id(), profile: profile("1"), token_sha256: token(), at: at() })
            .then_expect_events(vec![
                DeviceEvent::DeviceRegistered { id: id(), profile: profile("1"), at: at() },
                DeviceEvent::DeviceTokenIssued { token_sha256: token(), at: at() },
            ]);
        TestFramework::<Device>::with(())
            .given(vec![DeviceEvent::DeviceRegistered { id: id(), profile: profile("1"), at: at() }])
            .when(DeviceCommand::Enrol { id: id(), profile: profile("2"), token_sha256: token(), at: at() })
            .then_expect_events(vec![DeviceEvent::DeviceProfileChanged { profile: profile("2"), at: at() }]);
    }

    #[test]
    fn commands_other_than_register_need_a_registered_device() {
        TestFramework::<Device>::with(())
            .given_no_previous_events()
            .when(DeviceCommand::ReportFirmware { version: "2".into(), at: at() })
            .then_expect_error(DeviceError::NotRegistered);
    }
}
