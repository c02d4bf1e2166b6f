//! `GET /metrics`: the Prometheus exposition of this instance, with the
//! fleet-wide gauges read from the store as it is scraped.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(exposition))
}

/// Prometheus metrics (text format 0.0.4): requests, commands, events, relay and
/// projection lag, campaigns by status, updates by state. With `OTA_METRICS_TOKEN`
/// set, scrapers send `Authorization: Bearer <it>`.
#[utoipa::path(get, path = "/metrics", tag = "system", responses(
    (status = 200, content_type = "text/plain", body = String, description = "The exposition."),
    (status = 401, body = ErrorBody, description = "`OTA_METRICS_TOKEN` is set and was not sent (`unauthorized`)."),
))]
async fn exposition(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(token) = &state.metrics_token {
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(sent.as_bytes().ct_eq(token.as_bytes())) {
            return Err(ApiError::unauthorized("send the metrics token: Authorization: Bearer <OTA_METRICS_TOKEN>"));
        }
    }
    // A scrape answers even while the store is slow: the gauges then keep their last values.
    let refresh = crate::metrics::refresh_gauges(&state.pool, state.names.prefix());
    let _ = tokio::time::timeout(Duration::from_secs(2), refresh).await;
    let body = crate::metrics::install().render();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response())
}
