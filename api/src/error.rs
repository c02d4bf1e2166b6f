//! One error type for every route, rendered as `{"error": code, "message": text,
//! "request_id": id}`.
//!
//! An error keeps its cause as a source and logs nothing when it is made: the
//! `report_errors` middleware logs each failure once, with its cause chain, and
//! adds the request id to the body.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ota_domain::{Refusal, Refused};
use ota_orchestrator::StoreError;
use serde::Serialize;

/// The cause behind a 5xx, kept for the log and never shown to the client.
pub type Cause = Arc<dyn StdError + Send + Sync>;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// For 429: how long to wait.
    pub retry_after: Option<Duration>,
    pub cause: Option<Cause>,
    /// For an error about many things at once (an import's invalid rows).
    pub details: Option<serde_json::Value>,
}

/// The error body every route answers with (DDI routes included).
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"error": "campaign.invalid_transition", "message": "cannot pause a campaign that is completed", "request_id": "5f0c…"}))]
pub struct ErrorBody {
    /// A stable, machine-readable code: `invalid_request`, `invalid_field`, `unauthorized`,
    /// `forbidden`, `not_found`, `rate_limited`, `timeout`, `concurrent_update`, `unavailable`,
    /// `internal`, or a domain refusal such as `campaign.not_running`.
    pub error: String,
    /// What is wrong, for people.
    pub message: String,
    /// The `x-request-id` of the request, also stored in the metadata of the events it caused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// What exactly is wrong, when it is many things (an import: `{"failed": [{row, id, error}]}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// A cause given as text, where the failing layer has no error type of its own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Described(String);

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None, cause: None, details: None }
    }
    pub fn with_details(self, details: serde_json::Value) -> Self {
        Self { details: Some(details), ..self }
    }
    pub fn rate_limited(message: impl Into<String>, wait: Duration) -> Self {
        Self { retry_after: Some(wait), ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message) }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// A dependency failed; the cause is logged by the middleware, never shown.
    pub fn unavailable(what: &str, cause: impl StdError + Send + Sync + 'static) -> Self {
        Self {
            cause: Some(Arc::new(cause)),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("{what} is unavailable, try again"))
        }
    }
    /// A bug or broken data; the cause is logged by the middleware, never shown.
    pub fn internal(cause: impl StdError + Send + Sync + 'static) -> Self {
        Self {
            cause: Some(Arc::new(cause)),
            ..Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
        }
    }
    /// `internal` for a failure that exists only as text.
    pub fn internal_text(cause: impl Into<String>) -> Self {
        Self::internal(Described(cause.into()))
    }

    /// Maps a domain refusal with its stable code.
    pub fn refused(refusal: Refusal, code: &'static str, message: String) -> Self {
        let status = match refusal {
            Refusal::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::Conflict => StatusCode::CONFLICT,
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::Forbidden => StatusCode::FORBIDDEN,
        };
        Self::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.to_owned(),
            message: self.message.clone(),
            request_id: None,
            details: self.details.clone(),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(wait) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, retry_after(wait));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 9110 11.6.1: a 401 names the scheme that would be accepted.
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(self);
        response
    }
}

/// Whole seconds, rounded up, at least one (RFC 9110 10.2.3).
pub fn retry_after(wait: Duration) -> HeaderValue {
    HeaderValue::from((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1))
}

/// Middleware: logs each failed request once (a 5xx with its cause chain) and puts the
/// request id into the error body. It sits outside the layer that copies `x-request-id`
/// onto the response and inside the trace span (method and path), so a success costs
/// one extension lookup.
pub async fn report_errors(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let Some(error) = response.extensions_mut().remove::<ApiError>() else { return response };
    let request_id = response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    if error.status.is_server_error() {
        tracing::error!(request_id, code = error.code, cause = %chain(error.cause.as_deref()), "request failed");
    }
    let body = ErrorBody { error: error.code.to_owned(), message: error.message, request_id, details: error.details };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// `cause: source: source ...`, for the log.
fn chain(cause: Option<&(dyn StdError + Send + Sync)>) -> String {
    let Some(cause) = cause else { return "-".to_owned() };
    let mut text = cause.to_string();
    let mut next = cause.source();
    while let Some(source) = next {
        text.push_str(": ");
        text.push_str(&source.to_string());
        next = source.source();
    }
    text
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::unavailable("database", e)
    }
}

/// Maps every store outcome to HTTP: a refusal by the aggregate's own kind and code.
impl<E: Refused + std::error::Error + Send + Sync + 'static> From<StoreError<E>> for ApiError {
    fn from(error: StoreError<E>) -> Self {
        match error {
            StoreError::Rejected(e) => ApiError::refused(e.refusal(), e.code(), e.to_string()),
            StoreError::Contended { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "concurrent_update",
                "the resource kept changing concurrently; retry the request",
            ),
            StoreError::Unavailable(_) => ApiError::unavailable("event store", error),
            StoreError::Corrupt { .. } => ApiError::internal(error),
        }
    }
}
