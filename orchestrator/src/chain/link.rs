//! One link of the chain, pure: what bytes of an event are covered, and how.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The first link's predecessor.
pub const GENESIS: [u8; 32] = [0; 32];

/// An event as stored, every column that carries meaning.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub global_seq: i64,
    pub recorded_at: DateTime<Utc>,
}

/// Serialised with sorted object keys (serde_json's map is ordered), so the bytes
/// depend only on the content, never on how Postgres hands jsonb back.
#[derive(Serialize)]
struct Canonical<'a> {
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    sequence: i64,
    event_type: &'a str,
    event_version: &'a str,
    payload: &'a serde_json::Value,
    metadata: &'a serde_json::Value,
    global_seq: i64,
    recorded_at: String,
}

pub fn canonical_bytes(event: &StoredEvent) -> Vec<u8> {
    let canonical = Canonical {
        aggregate_type: &event.aggregate_type,
        aggregate_id: &event.aggregate_id,
        sequence: event.sequence,
        event_type: &event.event_type,
        event_version: &event.event_version,
        payload: &event.payload,
        metadata: &event.metadata,
        global_seq: event.global_seq,
        recorded_at: event.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true),
    };
    // Serialising plain strings, numbers and JSON values cannot fail.
    serde_json::to_vec(&canonical).unwrap_or_default()
}

pub fn link(previous: &[u8; 32], event: &StoredEvent) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(previous);
    hash.update(canonical_bytes(event));
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: serde_json::Value) -> StoredEvent {
        StoredEvent {
            aggregate_type: "Campaign".into(),
            aggregate_id: "c".into(),
            sequence: 1,
            event_type: "CampaignCreated".into(),
            event_version: "1.0".into(),
            payload,
            metadata: serde_json::json!({"actor_id": "alice"}),
            global_seq: 7,
            recorded_at: DateTime::from_timestamp(1_800_000_000, 123_456_000).unwrap_or_default(),
        }
    }

    #[test]
    fn key_order_does_not_matter_but_content_does() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":{"y":2,"x":3}}"#).unwrap_or_default();
        let b: serde_json::Value = serde_json::from_str(r#"{"a":{"x":3,"y":2},"b":1}"#).unwrap_or_default();
        assert_eq!(link(&GENESIS, &event(a.clone())), link(&GENESIS, &event(b)));
        let c: serde_json::Value = serde_json::from_str(r#"{"a":{"x":3,"y":2},"b":2}"#).unwrap_or_default();
        assert_ne!(link(&GENESIS, &event(a.clone())), link(&GENESIS, &event(c)));
        let mut later = event(a.clone());
        later.global_seq = 8;
        assert_ne!(link(&GENESIS, &event(a.clone())), link(&GENESIS, &later));
        assert_ne!(link(&GENESIS, &event(a.clone())), link(&[1; 32], &event(a)));
    }
}
