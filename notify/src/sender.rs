//! Draining the outbox: each due delivery is claimed, signed, POSTed, and its
//! outcome logged; a failure is retried with exponential backoff until the
//! attempts are used up.
//!
//! A claim is a lease (`claimed_until`), not a held transaction, so no
//! connection waits on a slow receiver, senders on several instances never
//! send one delivery at once, and a delivery whose sender died mid-request is
//! sent again when the lease runs out: at least once.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, USER_AGENT};
use sqlx::PgPool;
use uuid::Uuid;

use crate::destinations::Destinations;
use crate::signature;

/// Deliveries claimed per round.
const CLAIM: i64 = 32;
/// Deliveries in flight at once per sender.
const IN_FLIGHT: usize = 8;
/// How long past the timeout a claim holds before another sender may retry.
const LEASE_MARGIN_SECS: f64 = 5.0;
/// How long a receiver's error text is kept.
const ERROR_CHARS: usize = 500;

/// How deliveries are sent and retried.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Attempts before a delivery is given up as `failed`.
    pub max_attempts: u32,
    /// Per attempt, connection to the end of the answer's headers.
    pub timeout: Duration,
    /// The wait after the first failure; it doubles after each, up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub destinations: Destinations,
}

impl Default for DeliverySettings {
    /// Fifteen attempts, from one second apart to an hour apart: about three hours in all.
    fn default() -> Self {
        Self {
            max_attempts: 15,
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(3600),
            destinations: Destinations::Anywhere,
        }
    }
}

impl DeliverySettings {
    /// The wait after `failures` failed attempts (1 or more).
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.retry_base.saturating_mul(1u32 << doublings).min(self.retry_max)
    }
}

/// Sends webhook deliveries; cheap to clone.
#[derive(Debug, Clone)]
pub struct Sender {
    pool: PgPool,
    http: reqwest::Client,
    settings: DeliverySettings,
}

/// A delivery claimed for one attempt.
struct Claimed {
    id: Uuid,
    attempt: i32,
    body: serde_json::Value,
    url: String,
    secret: String,
}

/// What one attempt came to.
struct Outcome {
    status: Option<u16>,
    error: Option<String>,
    elapsed: Duration,
}

impl Outcome {
    fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

impl Sender {
    pub fn new(pool: PgPool, settings: DeliverySettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            // A redirect would send the signed body somewhere the operator did not name.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { pool, http, settings })
    }

    /// Where subscriptions may point.
    pub fn destinations(&self) -> &Destinations {
        &self.settings.destinations
    }

    /// Sends due deliveries for ever, waking twice a second when idle.
    pub async fn run(self) {
        loop {
            match self.drain_once().await {
                Ok(0) => tokio::time::sleep(Duration::from_millis(500)).await,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "webhook deliveries interrupted; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Claims and sends one round of due deliveries; returns how many.
    pub async fn drain_once(&self) -> Result<usize, sqlx::Error> {
        // The attempt ends within the timeout; recording it takes milliseconds.
        let lease = self.settings.timeout.as_secs_f64() + LEASE_MARGIN_SECS;
        let claimed: Vec<(Uuid, i32, serde_json::Value, String, String)> = sqlx::query_as(
            "UPDATE webhook_deliveries d SET claimed_until = now() + make_interval(secs => $2), attempts = d.attempts + 1
             FROM webhooks w
             WHERE w.id = d.webhook_id AND d.id IN (
                 SELECT id FROM webhook_deliveries
                 WHERE status = 'pending' AND next_attempt_at <= now() AND (claimed_until IS NULL OR claimed_until < now())
                 ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING d.id, d.attempts, d.body, w.url, w.secret",
        )
        .bind(CLAIM)
        .bind(lease)
        .fetch_all(&self.pool)
        .await?;
        let count = claimed.len();
        let results: Vec<Result<(), sqlx::Error>> = futures::stream::iter(claimed)
            .map(|(id, attempt, body, url, secret)| async move {
                let claimed = Claimed { id, attempt, body, url, secret };
                let outcome = self.post(&claimed).await;
                self.record(&claimed, &outcome, self.settings.max_attempts).await
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(count)
    }

    /// Queues a `webhook.test` delivery to the subscription and sends it once, now.
    pub async fn send_test(&self, webhook_id: Uuid) -> Result<Uuid, crate::WebhookError> {
        let (url, secret) = crate::subscriptions::target(&self.pool, webhook_id).await?;
        let id = Uuid::new_v4();
        let body = crate::body(id, webhook_id, crate::Topic::WebhookTest, None);
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, webhook_id, topic, body, attempts, claimed_until)
             VALUES ($1, $2, $3, $4, 1, now() + interval '1 hour')",
        )
        .bind(id)
        .bind(webhook_id)
        .bind(crate::Topic::WebhookTest.as_str())
        .bind(&body)
        .execute(&self.pool)
        .await?;
        let claimed = Claimed { id, attempt: 1, body, url, secret };
        let outcome = self.post(&claimed).await;
        // A test is tried once: its answer is what the caller wants to see.
        self.record(&claimed, &outcome, 1).await?;
        Ok(id)
    }

    async fn post(&self, delivery: &Claimed) -> Outcome {
        let started = Instant::now();
        // The allowed networks may have narrowed since the subscription was made.
        let refused = match url::Url::parse(&delivery.url) {
            Ok(url) => self.settings.destinations.refuse(&url),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = refused {
            return Outcome { status: None, error: Some(format!("not sent: {why}")), elapsed: started.elapsed() };
        }
        let bytes = match serde_json::to_vec(&delivery.body) {
            Ok(bytes) => bytes,
            Err(e) => return Outcome { status: None, error: Some(e.to_string()), elapsed: started.elapsed() },
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static(concat!("ota-webhooks/", env!("CARGO_PKG_VERSION"))));
        let signed = signature::sign(&delivery.secret, Utc::now().timestamp(), &bytes);
        for (name, value) in [
            (signature::HEADER, signed),
            ("Ota-Delivery", delivery.id.to_string()),
            ("Ota-Attempt", delivery.attempt.to_string()),
            ("Ota-Topic", delivery.body["topic"].as_str().unwrap_or_default().to_owned()),
        ] {
            // Hex, digits, UUIDs and topic names: always valid header values.
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        let sent = self.http.post(&delivery.url).headers(headers).body(bytes).send().await;
        let elapsed = started.elapsed();
        match sent {
            Ok(response) => {
                let status = response.status();
                let error = (!status.is_success()).then(|| format!("the receiver answered {status}"));
                Outcome { status: Some(status.as_u16()), error, elapsed }
            }
            Err(e) => {
                let mut text = format!("{e}");
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    text.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                Outcome { status: None, error: Some(text), elapsed }
            }
        }
    }

    async fn record(&self, delivery: &Claimed, outcome: &Outcome, max_attempts: u32) -> Result<(), sqlx::Error> {
        let status = outcome.status.map(i32::from);
        let error: Option<String> = outcome.error.as_ref().map(|e| e.chars().take(ERROR_CHARS).collect());
        let duration_ms = i32::try_from(outcome.elapsed.as_millis()).unwrap_or(i32::MAX);
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_id, attempt, at, status, error, duration_ms)
             VALUES ($1, $2, now(), $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(delivery.id)
        .bind(delivery.attempt)
        .bind(status)
        .bind(&error)
        .bind(duration_ms)
        .execute(&mut *tx)
        .await?;
        let attempts = u32::try_from(delivery.attempt).unwrap_or(u32::MAX);
        let (next_status, wait) = if outcome.delivered() {
            ("delivered", Duration::ZERO)
        } else if attempts >= max_attempts {
            ("failed", Duration::ZERO)
        } else {
            ("pending", self.settings.backoff(attempts))
        };
        // A delivery cancelled (its subscription deleted) while in flight stays cancelled.
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $2, claimed_until = NULL, last_status = $3, last_error = $4,
                 next_attempt_at = now() + make_interval(secs => $5),
                 delivered_at = CASE WHEN $2 = 'delivered' THEN now() END
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(delivery.id)
        .bind(next_status)
        .bind(status)
        .bind(&error)
        .bind(wait.as_secs_f64())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let outcome = match next_status {
            "pending" => "retry",
            other => other,
        };
        metrics::counter!("ota_webhook_attempts_total", "outcome" => outcome).increment(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_the_base_and_stops_at_the_cap() {
        let settings = DeliverySettings::default();
        let waits: Vec<u64> = (1..=14).map(|n| settings.backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600]);
        assert_eq!(settings.backoff(u32::MAX), Duration::from_secs(3600));
    }
}
