//! Webhook subscriptions and their delivery log, in Postgres.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use ota_projections::{Page, PageRequest};
use rand::RngCore;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::destinations::Destinations;
use crate::topics::Topic;

/// Longest subscription URL.
pub const MAX_URL_CHARS: usize = 2_048;
/// Longest description.
pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// A subscription as shown; its secret is shown once, when it is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    pub topics: Vec<Topic>,
    pub description: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// A new subscription with its secret, the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// The HMAC key of the `Ota-Signature` header. Shown only here.
    pub secret: String,
}

/// One try at sending a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attempt {
    pub attempt: i32,
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status; absent when none came (refused, timed out).
    pub status: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
}

/// An attempt with the delivery it belongs to.
#[derive(sqlx::FromRow)]
struct AttemptRow {
    delivery_id: Uuid,
    #[sqlx(flatten)]
    attempt: Attempt,
}

/// One notification to one subscription, and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delivery {
    /// Also the `Ota-Delivery` header: the same on every retry, for receivers to deduplicate.
    pub id: Uuid,
    pub webhook_id: Uuid,
    /// A topic's name (`campaign.completed`, ..., `webhook.test`).
    pub topic: String,
    /// `<aggregate_type>:<aggregate_id>:<sequence>` of the event; absent for a test.
    pub event_key: Option<String>,
    /// `pending`, `delivered`, `failed` (attempts used up) or `cancelled` (subscription deleted).
    pub status: String,
    pub attempts: i32,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The body as sent, signed as it stands.
    pub body: serde_json::Value,
    pub attempt_log: Vec<Attempt>,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("url: {0}")]
    BadUrl(String),
    #[error("topics: {0}")]
    BadTopics(String),
    #[error("description: at most {MAX_DESCRIPTION_CHARS} characters")]
    BadDescription,
    #[error("webhook not found")]
    NotFound,
    #[error("database")]
    Database(#[from] sqlx::Error),
}

/// A subscription to create, checked by `validate`.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub url: String,
    pub topics: Vec<String>,
    pub description: Option<String>,
}

impl NewWebhook {
    /// The URL and the topics, checked: an absolute `http` or `https` URL with a
    /// host the destinations allow, and at least one known topic (repeats are dropped).
    pub fn validate(&self, destinations: &Destinations) -> Result<(String, Vec<Topic>), WebhookError> {
        if self.url.chars().count() > MAX_URL_CHARS {
            return Err(WebhookError::BadUrl(format!("at most {MAX_URL_CHARS} characters")));
        }
        let url = url::Url::parse(&self.url).map_err(|e| WebhookError::BadUrl(format!("{:?}: {e}", self.url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(WebhookError::BadUrl(format!("{:?}: must be an http or https URL with a host", self.url)));
        }
        if let Some(why) = destinations.refuse(&url) {
            return Err(WebhookError::BadUrl(format!("{:?}: {why}", self.url)));
        }
        if self.topics.is_empty() {
            return Err(WebhookError::BadTopics(format!("name at least one of {}", known())));
        }
        let mut topics = BTreeSet::new();
        for name in &self.topics {
            let topic = name
                .parse::<Topic>()
                .ok()
                .filter(|t| Topic::SUBSCRIBABLE.contains(t))
                .ok_or_else(|| WebhookError::BadTopics(format!("{name:?} is not one of {}", known())))?;
            topics.insert(topic);
        }
        if self.description.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS) {
            return Err(WebhookError::BadDescription);
        }
        Ok((url.to_string(), topics.into_iter().collect()))
    }
}

fn known() -> String {
    Topic::SUBSCRIBABLE.map(|t| t.as_str()).join(", ")
}

/// A fresh signing secret: 32 random bytes, hex, with a prefix that says what it is
/// (so a leaked one is recognised by secret scanners and people).
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("whsec_{}", hex::encode(bytes))
}

type WebhookRow = (Uuid, String, Vec<String>, Option<String>, String, DateTime<Utc>);

fn webhook(row: WebhookRow) -> Webhook {
    let (id, url, topics, description, created_by, created_at) = row;
    // Only validated topics are stored; one a later release dropped is not shown.
    let topics = topics.iter().filter_map(|t| t.parse().ok()).collect();
    Webhook { id, url, topics, description, created_by, created_at }
}

pub async fn create(
    pool: &PgPool,
    new: &NewWebhook,
    created_by: &str,
    destinations: &Destinations,
) -> Result<CreatedWebhook, WebhookError> {
    let (url, topics) = new.validate(destinations)?;
    let secret = new_secret();
    let names: Vec<&str> = topics.iter().map(Topic::as_str).collect();
    let row: WebhookRow = sqlx::query_as(
        "INSERT INTO webhooks (id, url, topics, description, secret, created_by) VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, url, topics, description, created_by, created_at",
    )
    .bind(Uuid::new_v4())
    .bind(&url)
    .bind(&names)
    .bind(&new.description)
    .bind(&secret)
    .bind(created_by)
    .fetch_one(pool)
    .await?;
    Ok(CreatedWebhook { webhook: webhook(row), secret })
}

pub async fn list(pool: &PgPool, page: PageRequest) -> Result<Page<Webhook>, WebhookError> {
    let mut tx = ota_projections::page::snapshot(pool).await?;
    let rows: Vec<WebhookRow> = sqlx::query_as(
        "SELECT id, url, topics, description, created_by, created_at FROM webhooks WHERE deleted_at IS NULL
         ORDER BY created_at DESC, id LIMIT $1 OFFSET $2",
    )
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(&mut *tx)
    .await?;
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhooks WHERE deleted_at IS NULL").fetch_one(&mut *tx).await?;
    Ok(Page { items: rows.into_iter().map(webhook).collect(), total, page: page.page, page_size: page.page_size })
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Webhook, WebhookError> {
    let row: Option<WebhookRow> = sqlx::query_as(
        "SELECT id, url, topics, description, created_by, created_at FROM webhooks WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(webhook).ok_or(WebhookError::NotFound)
}

/// Where a subscription's deliveries go and the secret they are signed with.
pub(crate) async fn target(pool: &PgPool, id: Uuid) -> Result<(String, String), WebhookError> {
    let target: Option<(String, String)> =
        sqlx::query_as("SELECT url, secret FROM webhooks WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    target.ok_or(WebhookError::NotFound)
}

/// Deletes a subscription: nothing more is queued for it and what is pending is
/// cancelled. Its delivery log stays readable by id.
pub async fn delete(pool: &PgPool, id: Uuid) -> Result<(), WebhookError> {
    let mut tx = pool.begin().await?;
    let deleted = sqlx::query("UPDATE webhooks SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(WebhookError::NotFound);
    }
    sqlx::query("UPDATE webhook_deliveries SET status = 'cancelled' WHERE webhook_id = $1 AND status = 'pending'")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

type DeliveryRow = (
    Uuid,
    Uuid,
    String,
    Option<String>,
    String,
    i32,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    serde_json::Value,
);

const DELIVERY_COLUMNS: &str =
    "id, webhook_id, topic, event_key, status, attempts, next_attempt_at, created_at, delivered_at, body";

/// A subscription's deliveries, newest first, optionally only those in `status`.
pub async fn deliveries(
    pool: &PgPool,
    webhook_id: Uuid,
    status: Option<&str>,
    page: PageRequest,
) -> Result<Page<Delivery>, WebhookError> {
    let mut tx = ota_projections::page::snapshot(pool).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM webhooks WHERE id = $1)")
        .bind(webhook_id)
        .fetch_one(&mut *tx)
        .await?;
    if !exists {
        return Err(WebhookError::NotFound);
    }
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 AND ($2::text IS NULL OR status = $2)
         ORDER BY created_at DESC, id LIMIT $3 OFFSET $4"
    );
    let rows: Vec<DeliveryRow> = sqlx::query_as(&sql)
        .bind(webhook_id)
        .bind(status)
        .bind(page.limit())
        .bind(page.offset())
        .fetch_all(&mut *tx)
        .await?;
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1 AND ($2::text IS NULL OR status = $2)",
    )
    .bind(webhook_id)
    .bind(status)
    .fetch_one(&mut *tx)
    .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let attempts: Vec<AttemptRow> = sqlx::query_as(
        "SELECT delivery_id, attempt, at, status, error, duration_ms FROM webhook_attempts
         WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let items = rows
        .into_iter()
        .map(|row| {
            let log = attempts.iter().filter(|a| a.delivery_id == row.0).map(|a| a.attempt.clone()).collect();
            delivery(row, log)
        })
        .collect();
    Ok(Page { items, total, page: page.page, page_size: page.page_size })
}

/// One delivery with its attempts.
pub async fn delivery_by_id(pool: &PgPool, id: Uuid) -> Result<Delivery, WebhookError> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1");
    let row: DeliveryRow = sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?.ok_or(WebhookError::NotFound)?;
    let log: Vec<Attempt> = sqlx::query_as(
        "SELECT attempt, at, status, error, duration_ms FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    Ok(delivery(row, log))
}

fn delivery(row: DeliveryRow, attempt_log: Vec<Attempt>) -> Delivery {
    let (id, webhook_id, topic, event_key, status, attempts, next_attempt_at, created_at, delivered_at, body) = row;
    let pending = status == "pending";
    Delivery {
        id,
        webhook_id,
        topic,
        event_key,
        status,
        attempts,
        next_attempt_at: pending.then_some(next_attempt_at),
        created_at,
        delivered_at,
        body,
        attempt_log,
    }
}
