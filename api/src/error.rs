//! One error type for every route, rendered as `{"error": code, "message": text}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ota_domain::{Refusal, Refused};
use ota_orchestrator::StoreError;
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// For 429: how long to wait.
    pub retry_after: Option<std::time::Duration>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }
    pub fn rate_limited(message: impl Into<String>, wait: std::time::Duration) -> Self {
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
    /// A dependency failed; the cause is logged, never shown.
    pub fn unavailable(what: &str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(dependency = what, error = %cause, "dependency failed");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("{what} is unavailable, try again"))
    }
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }

    /// Maps a domain refusal with its stable code.
    pub fn refused(refusal: Refusal, code: &'static str, message: String) -> Self {
        let status = match refusal {
            Refusal::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::Conflict => StatusCode::CONFLICT,
            Refusal::NotFound => StatusCode::NOT_FOUND,
        };
        Self::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body { error: self.code, message: &self.message };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(wait) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, crate::limits::retry_after(wait));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 9110 11.6.1: a 401 names the scheme that would be accepted.
            response
                .headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::unavailable("database", e)
    }
}

/// Maps every store outcome to HTTP: a refusal by the aggregate's own kind and code.
impl<E: Refused + std::error::Error + 'static> From<StoreError<E>> for ApiError {
    fn from(error: StoreError<E>) -> Self {
        match error {
            StoreError::Rejected(e) => ApiError::refused(e.refusal(), e.code(), e.to_string()),
            StoreError::Contended { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "concurrent_update",
                "the resource kept changing concurrently; retry the request",
            ),
            StoreError::Unavailable(e) => ApiError::unavailable("event store", e),
            StoreError::Corrupt { .. } => ApiError::internal(error),
        }
    }
}
