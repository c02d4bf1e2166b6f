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
use crate::refusal::Refusal;

/// Limits that keep one device record small.
pub const MAX_TAGS: usize = 50;
pub const MAX_ATTRIBUTES: usize = 100;
pub const MAX_ATTRIBUTE_LEN: usize = 128;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl DomainEvent for DeviceEvent {
    fn event_type(&self) -> String {
        match self {
            DeviceEvent::DeviceRegistered { .. } => "DeviceRegistered",
            DeviceEvent::DeviceProfileChanged { .. } => "DeviceProfileChanged",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("device is not registered")]
    NotRegistered,
    #[error("{field}: {problem}")]
    InvalidProfile { field: String, problem: &'static str },
}

impl DeviceError {
    pub fn refusal(&self) -> Refusal {
        match self {
            DeviceError::NotRegistered => Refusal::NotFound,
            DeviceError::InvalidProfile { .. } => Refusal::Invalid,
        }
    }
    pub fn code(&self) -> &'static str {
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

impl DeviceProfile {
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
            _ if !self.exists() => Err(DeviceError::NotRegistered),
            DeviceCommand::SetAttributes { mode, attributes, at } => {
                let mut profile = self.profile.clone();
                match mode {
                    AttributeMode::Merge => profile.attributes.extend(attributes),
                    AttributeMode::Replace => profile.attributes = attributes,
                    AttributeMode::Remove => profile.attributes.retain(|k, _| !attributes.contains_key(k)),
                }
                self.change(profile, at)
            }
            DeviceCommand::ReportFirmware { version, at } => {
                let profile = DeviceProfile { firmware_version: Some(version), ..self.profile.clone() };
                self.change(profile, at)
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
    fn profiles_with_blank_model_or_control_characters_are_refused() {
        let mut bad = profile("1");
        bad.device_model = " ".into();
        assert!(matches!(bad.validate(), Err(DeviceError::InvalidProfile { .. })));
        let mut bad = profile("1");
        bad.tags.insert("a\u{7}".into());
        assert!(matches!(bad.validate(), Err(DeviceError::InvalidProfile { .. })));
    }

    #[test]
    fn commands_other_than_register_need_a_registered_device() {
        TestFramework::<Device>::with(())
            .given_no_previous_events()
            .when(DeviceCommand::ReportFirmware { version: "2".into(), at: at() })
            .then_expect_error(DeviceError::NotRegistered);
    }
}
