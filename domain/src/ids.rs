//! Identifiers. Each is a newtype so a device id can never be passed as a campaign id.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace for deterministic firmware ids (UUID v5). Never change it: ids are stored.
const FIRMWARE_NAMESPACE: Uuid = Uuid::from_u128(0x6f74_615f_6669_726d_7761_7265_5f6e_7331);

/// Longest accepted device id; hawkBit allows 256 characters for a controllerId.
pub const MAX_DEVICE_ID_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} id is not a valid UUID: {value:?}")]
    NotUuid { kind: &'static str, value: String },
    #[error("device id must be 1 to {MAX_DEVICE_ID_LEN} characters without control characters or '/'")]
    BadDeviceId,
}

/// A firmware id: UUID v5 of (name, version, device_model), so the same upload maps to the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FirmwareId(Uuid);

impl FirmwareId {
    pub fn derive(name: &str, version: &str, device_model: &str) -> Self {
        // Length-prefixed parts: "os:1" + "2" and "os" + "1:2" must not share an id.
        let key = format!("{}:{name}{}:{version}{}:{device_model}", name.len(), version.len(), device_model.len());
        Self(Uuid::new_v5(&FIRMWARE_NAMESPACE, key.as_bytes()))
    }
    /// An id as given (in a path or a stored row); whether it names a firmware is the store's answer.
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

/// A campaign id: a random UUID chosen when the campaign is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CampaignId(Uuid);

impl CampaignId {
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

macro_rules! uuid_id_traits {
    ($ty:ident, $kind:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
        impl FromStr for $ty {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| IdError::NotUuid { kind: $kind, value: s.chars().take(64).collect() })
            }
        }
    };
}
uuid_id_traits!(FirmwareId, "firmware");
uuid_id_traits!(CampaignId, "campaign");

/// A device id as the device (or operator) names it; hawkBit calls it controllerId.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceId(String);

impl DeviceId {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        let ok = !value.is_empty()
            && value.chars().count() <= MAX_DEVICE_ID_LEN
            && !value.chars().any(|c| c.is_control() || c == '/')
            && value != "."
            && value != "..";
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(IdError::BadDeviceId)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for DeviceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for DeviceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firmware_id_is_deterministic_and_sensitive_to_each_part() {
        let a = FirmwareId::derive("os", "1.0", "gw");
        assert_eq!(a, FirmwareId::derive("os", "1.0", "gw"));
        assert_ne!(a, FirmwareId::derive("os", "1.1", "gw"));
        assert_ne!(a, FirmwareId::derive("os", "1.0", "gw2"));
        assert_ne!(FirmwareId::derive("os:1", "2", "gw"), FirmwareId::derive("os", "1:2", "gw"));
        assert_eq!(a.to_string().parse::<FirmwareId>(), Ok(a));
    }

    #[test]
    fn device_ids_refuse_control_characters_slashes_and_excess_length() {
        assert!(DeviceId::parse("dev-1.eu").is_ok());
        assert!(DeviceId::parse("").is_err());
        assert!(DeviceId::parse("a/b").is_err());
        assert!(DeviceId::parse("a\nb").is_err());
        assert!(DeviceId::parse(&"x".repeat(257)).is_err());
        assert!(serde_json::from_str::<DeviceId>("\"a\\u0000\"").is_err());
    }
}
