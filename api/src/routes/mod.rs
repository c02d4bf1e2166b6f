//! The route table.

mod activity;
mod audit;
mod campaigns;
mod devices;
mod firmware;
mod health;
pub(crate) mod validate;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{middleware, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth::authenticate;
use crate::error::ApiError;
use crate::state::AppState;

/// JSON bodies are small; firmware uploads get their own, larger limit.
const JSON_BODY_LIMIT: usize = 1024 * 1024;

pub fn router(state: AppState) -> Router {
    let upload_limit = usize::try_from(state.max_firmware_bytes).unwrap_or(usize::MAX).saturating_add(1024 * 1024);
    let api = Router::new()
        .route("/firmware", get(firmware::list).post(firmware::upload).layer(DefaultBodyLimit::max(upload_limit)))
        .route("/firmware/{id}", get(firmware::get_one))
        .route("/firmware/{id}/content", get(firmware::content))
        .route("/firmware/{id}/history", get(|s, p, q| activity::history("Firmware", s, p, q)))
        .route("/firmware/{id}/deprecate", post(firmware::deprecate))
        .route("/campaigns", get(campaigns::list).post(campaigns::create))
        .route("/campaigns/{id}", get(campaigns::get_one))
        .route("/campaigns/{id}/history", get(|s, p, q| activity::history("Campaign", s, p, q)))
        .route("/campaigns/{id}/start", post(campaigns::start))
        .route("/campaigns/{id}/pause", post(campaigns::pause))
        .route("/campaigns/{id}/resume", post(campaigns::resume))
        .route("/campaigns/{id}/cancel", post(campaigns::cancel))
        .route("/campaigns/{id}/approve", post(campaigns::approve))
        .route("/campaigns/{id}/abort", post(campaigns::abort))
        .route("/campaigns/{id}/devices", get(campaigns::devices))
        .route("/devices", get(devices::list).post(devices::register))
        .route("/devices/{id}", get(devices::get_one))
        .route("/devices/{id}/update", get(devices::current_update).post(devices::update))
        .route("/devices/{id}/history", get(devices::history))
        .route("/devices/{id}/rollback", post(devices::rollback))
        .route("/devices/{id}/token", post(devices::rotate_token))
        .route("/firmware/{id}/downloads", get(firmware::downloads))
        .route("/stats", get(campaigns::stats))
        .route("/api-keys", get(crate::api_keys::list).post(crate::api_keys::issue))
        .route("/api-keys/{id}", delete(crate::api_keys::revoke))
        .route("/audit/verify", get(audit::verify))
        .route("/audit/head", get(audit::head))
        .route("/audit/campaigns/{id}", get(audit::campaign_at))
        .route("/audit/devices/{id}", get(audit::device_at))
        .route("/audit/fleet", get(audit::fleet_at))
        .fallback(api_not_found)
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));

    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .route("/health", get(health::live))
        .route("/health/detailed", get(health::detailed))
        // Devices report with their own token, operators with theirs: this route checks either.
        .route("/api/v1/devices/{id}/status", post(devices::status))
        .nest("/api/v1", api)
        .merge(crate::ddi::router())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), crate::limits::guard))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(CatchPanicLayer::custom(|_| ApiError::internal("handler panicked").into_response()))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

async fn api_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API route")
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}
