//! Webhook subscriptions (admin only: a subscription sends fleet events to a
//! URL of its choosing), their delivery log, and a test send.

use axum::extract::State;
use axum::http::StatusCode;
use ota_notify::subscriptions::{self, NewWebhook};
use ota_notify::{CreatedWebhook, Delivery, Webhook, WebhookError};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Admin;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Paging, Path, Query};
use crate::resources::Page;
use crate::state::AppState;
use crate::validate;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, delete))
        .routes(routes!(deliveries))
        .routes(routes!(test))
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::BadUrl(_) | WebhookError::BadTopics(_) | WebhookError::BadDescription => {
                ApiError::invalid("invalid_field", e.to_string())
            }
            WebhookError::NotFound => ApiError::not_found("webhook"),
            WebhookError::Database(e) => ApiError::unavailable("database", e),
        }
    }
}

/// A subscription to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://hooks.example.com/ota", "topics": ["campaign.paused", "campaign.aborted", "gate.decided"], "description": "on-call channel"}))]
pub struct CreateWebhook {
    /// An absolute `http` or `https` URL, at most 2,048 characters. Redirects are not followed.
    url: String,
    /// One or more of `campaign.started`, `campaign.paused`, `campaign.cancelled`,
    /// `campaign.aborted`, `campaign.completed`, `gate.decided`, `device.failed`,
    /// `firmware.uploaded`.
    topics: Vec<String>,
    /// At most 500 characters.
    description: Option<String>,
}

/// Subscribe a URL to topics. The answer carries the signing secret, shown only this once.
#[utoipa::path(post, path = "/webhooks", operation_id = "create_webhook", tag = "webhooks", request_body = CreateWebhook, responses(
    (status = 201, body = CreatedWebhook, description = "Subscribed; `secret` is shown this once."),
    (status = 422, body = ErrorBody, description = "A bad URL or one outside `OTA_WEBHOOK_ALLOWED_NETWORKS`, an unknown or missing topic, or too long a description (`invalid_field`)."),
))]
async fn create(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Json(body): Json<CreateWebhook>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    let new = NewWebhook { url: body.url, topics: body.topics, description: body.description };
    let created =
        subscriptions::create(&state.pool, &new, &admin.meta.actor.to_string(), state.webhooks.destinations()).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// The subscriptions, newest first.
#[utoipa::path(get, path = "/webhooks", operation_id = "list_webhooks", tag = "webhooks", params(Paging), responses(
    (status = 200, body = Page<Webhook>),
))]
async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    Query(paging): Query<Paging>,
) -> Result<Json<Page<Webhook>>, ApiError> {
    let page = subscriptions::list(&state.pool, paging.request()?).await?;
    Ok(Json(Page::from_view(page, Ok::<_, ApiError>)?))
}

/// One subscription.
#[utoipa::path(get, path = "/webhooks/{id}", operation_id = "get_webhook", tag = "webhooks", params(("id" = Uuid, Path)), responses(
    (status = 200, body = Webhook),
    (status = 404, body = ErrorBody, description = "No such subscription (`not_found`)."),
))]
async fn get_one(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Webhook>, ApiError> {
    Ok(Json(subscriptions::get(&state.pool, validate::uuid("id", &id)?).await?))
}

/// Unsubscribe: nothing more is sent, and what was waiting is cancelled. The
/// delivery log stays readable.
#[utoipa::path(delete, path = "/webhooks/{id}", operation_id = "delete_webhook", tag = "webhooks", params(("id" = Uuid, Path)), responses(
    (status = 204, description = "Deleted."),
    (status = 404, body = ErrorBody, description = "No such subscription (`not_found`)."),
))]
async fn delete(State(state): State<AppState>, _admin: Admin, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    subscriptions::delete(&state.pool, validate::uuid("id", &id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Only deliveries in this state: `pending`, `delivered`, `failed` or `cancelled`.
    status: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    paging: Paging,
}

/// The delivery log: every delivery to the subscription, newest first, with each attempt.
#[utoipa::path(get, path = "/webhooks/{id}/deliveries", operation_id = "list_webhook_deliveries", tag = "webhooks", params(("id" = Uuid, Path), DeliveriesQuery, Paging), responses(
    (status = 200, body = Page<Delivery>),
    (status = 404, body = ErrorBody, description = "No such subscription, deleted ones included (`not_found`)."),
    (status = 422, body = ErrorBody, description = "An unknown status (`invalid_field`)."),
))]
async fn deliveries(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Json<Page<Delivery>>, ApiError> {
    let id = validate::uuid("id", &id)?;
    if let Some(status) = q.status.as_deref() {
        if !["pending", "delivered", "failed", "cancelled"].contains(&status) {
            let message = format!("status: {status:?} is not one of pending, delivered, failed, cancelled");
            return Err(ApiError::invalid("invalid_field", message));
        }
    }
    let page = subscriptions::deliveries(&state.pool, id, q.status.as_deref(), q.paging.request()?).await?;
    Ok(Json(Page::from_view(page, Ok::<_, ApiError>)?))
}

/// Send a `webhook.test` delivery now, once, and answer what the receiver said.
/// It is signed like any other and kept in the log.
#[utoipa::path(post, path = "/webhooks/{id}/test", operation_id = "test_webhook", tag = "webhooks", params(("id" = Uuid, Path)), responses(
    (status = 200, body = Delivery, description = "Sent: `status` is `delivered` or `failed`, `attempt_log` says what the receiver answered."),
    (status = 404, body = ErrorBody, description = "No such subscription (`not_found`)."),
))]
async fn test(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Delivery>, ApiError> {
    let id = validate::uuid("id", &id)?;
    let delivery = state.webhooks.send_test(id).await?;
    Ok(Json(subscriptions::delivery_by_id(&state.pool, delivery).await?))
}
