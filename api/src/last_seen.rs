//! When each device last polled, or each API key was last used, written in
//! batches: a request never waits for a write, and thousands of them cost one
//! statement (hawkBit learned the same for polls, PR #613).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// When something was seen, and from which address.
type Seen = (DateTime<Utc>, Option<String>);

pub struct LastSeen {
    pending: Mutex<HashMap<String, Seen>>,
    /// Upserts `UNNEST($1 ids, $2 times, $3 addresses)`, keeping the later time.
    upsert: &'static str,
}

impl LastSeen {
    pub fn devices() -> Self {
        Self::new(
            "INSERT INTO device_contact (device_id, last_seen, address)
             SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[])
             ON CONFLICT (device_id) DO UPDATE SET last_seen = GREATEST(device_contact.last_seen, EXCLUDED.last_seen),
                address = COALESCE(EXCLUDED.address, device_contact.address)",
        )
    }

    pub fn api_keys() -> Self {
        Self::new(
            "INSERT INTO api_key_usage (key_id, last_used_at, address)
             SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[])
             ON CONFLICT (key_id) DO UPDATE SET last_used_at = GREATEST(api_key_usage.last_used_at, EXCLUDED.last_used_at),
                address = COALESCE(EXCLUDED.address, api_key_usage.address)",
        )
    }

    fn new(upsert: &'static str) -> Self {
        Self { pending: Mutex::default(), upsert }
    }

    pub fn touch(&self, device: &str, at: DateTime<Utc>, address: Option<String>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get_mut(device) {
            Some(entry) => *entry = (at, address),
            None => {
                pending.insert(device.to_owned(), (at, address));
            }
        }
    }

    /// Writes what gathered since the last flush; on failure it is kept for the next one.
    pub async fn flush(&self, pool: &PgPool) -> Result<usize, sqlx::Error> {
        let batch: Vec<_> =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner())).into_iter().collect();
        if batch.is_empty() {
            return Ok(0);
        }
        let written = sqlx::query(self.upsert)
            .bind(batch.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>())
            .bind(batch.iter().map(|(_, (at, _))| *at).collect::<Vec<_>>())
            .bind(batch.iter().map(|(_, (_, a))| a.clone()).collect::<Vec<_>>())
            .execute(pool)
            .await;
        match written {
            Ok(_) => Ok(batch.len()),
            Err(e) => {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                for (device, seen) in batch {
                    pending.entry(device).or_insert(seen);
                }
                Err(e)
            }
        }
    }

    /// Flushes every `every` until aborted.
    pub async fn run(self: Arc<Self>, pool: PgPool, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = self.flush(&pool).await {
                tracing::warn!(error = %e, "could not record last-seen times; will retry");
            }
        }
    }
}
