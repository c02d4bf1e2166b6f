//! Reading stored event rows back as the aggregate's events.

use cqrs_es::persist::SerializedEvent;
use cqrs_es::EventEnvelope;
use sqlx::Row;

use super::versioned::upcast_event;
use super::{StoreError, Stored};

/// One row of `events` (aggregate_id, sequence, event_type, event_version, payload, metadata) as an
/// envelope, upcast to the current version like every other read.
pub(super) fn decode_row<A: Stored>(row: &sqlx::postgres::PgRow) -> Result<EventEnvelope<A>, StoreError<A::Error>>
where
    A::Command: Clone + Send,
{
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt {
        aggregate_id: row.try_get::<String, _>("aggregate_id").unwrap_or_default(),
        detail: e.to_string(),
    };
    let serialized = SerializedEvent::new(
        row.try_get("aggregate_id").map_err(|e| corrupt(&e))?,
        usize::try_from(row.try_get::<i64, _>("sequence").map_err(|e| corrupt(&e))?).unwrap_or(0),
        A::TYPE.to_owned(),
        row.try_get("event_type").map_err(|e| corrupt(&e))?,
        row.try_get("event_version").map_err(|e| corrupt(&e))?,
        row.try_get("payload").map_err(|e| corrupt(&e))?,
        row.try_get("metadata").map_err(|e| corrupt(&e))?,
    );
    let current = upcast_event(serialized).map_err(|e| corrupt(&e))?;
    EventEnvelope::<A>::try_from(current).map_err(|e| corrupt(&e))
}
