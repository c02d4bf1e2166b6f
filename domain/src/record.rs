//! The wire form of a stored event, as the relay publishes it and projections read it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::meta::CommandMeta;
use crate::upcast::{self, DecodeError};

/// One event as stored: identity, global position, payload and metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub global_seq: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    /// Set when the payload was too large to publish; read it from the event store.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub payload_omitted: bool,
    pub metadata: HashMap<String, String>,
    pub recorded_at: DateTime<Utc>,
}

impl EventRecord {
    /// The id used for deduplication and causation: `<type>:<id>:<sequence>`.
    pub fn event_id(&self) -> String {
        format!("{}:{}:{}", self.aggregate_type, self.aggregate_id, self.sequence)
    }

    pub fn meta(&self) -> Option<CommandMeta> {
        CommandMeta::from_map(&self.metadata)
    }

    /// Decodes the payload into an aggregate's event type, through the upcaster
    /// chain: a record carries the version it was stored at, not today's.
    pub fn decode<E: DeserializeOwned>(&self) -> Result<E, DecodeError> {
        upcast::decode(&self.aggregate_type, &self.event_type, &self.event_version, self.payload.clone())
    }
}
