//! The route table. Every route is registered through `OpenApiRouter::routes`, which
//! takes it from the handler's `#[utoipa::path]`: a route cannot exist without its
//! OpenAPI description (the contract test checks both ways).

mod activity;
mod api_keys;
mod audit;
mod campaigns;
mod ddi;
mod devices;
mod drafts;
mod firmware;
mod health;
mod import;
mod me;
mod metrics;
mod preview;
mod rollbacks;
mod stream;
mod webhooks;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::{HeaderName, StatusCode};
use axum::response::IntoResponse;
use axum::routing::any;
use axum::{middleware, Router};
use tower::util::MapRequestLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::{authenticate, Authenticator};
use crate::error::{report_errors, ApiError};
use crate::idempotency::{idempotent, Idempotency};
use crate::limits::Limits;
use crate::state::AppState;

/// JSON bodies are small; firmware uploads get their own, larger limit.
const JSON_BODY_LIMIT: usize = 1024 * 1024;

/// Where the OpenAPI document is served; `/docs` shows it.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// The management API under `/api/v1`: every route behind bearer authentication,
/// and every POST idempotent under an `Idempotency-Key` (which needs the caller the
/// authentication found, so it is the inner layer).
fn management(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(firmware::routes(state.max_firmware_bytes))
        .merge(campaigns::routes())
        .merge(drafts::routes())
        .merge(preview::routes())
        .merge(devices::routes())
        .merge(import::routes())
        .merge(rollbacks::routes())
        .merge(activity::routes())
        .merge(api_keys::routes())
        .merge(webhooks::routes())
        .merge(stream::routes())
        .merge(me::routes())
        .merge(audit::routes())
        .route_layer(middleware::from_fn_with_state(Idempotency::from_ref(state), idempotent))
        .route_layer(middleware::from_fn_with_state(Authenticator::from_ref(state), authenticate))
}

/// Every route with its OpenAPI description.
pub fn documented(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, doc) = OpenApiRouter::with_openapi(crate::openapi::base())
        .merge(health::routes())
        .merge(metrics::routes())
        // Devices report with their own token, operators with theirs: the status route
        // checks either itself, so it is added after the bearer layer.
        .nest("/api/v1", management(state).merge(devices::status_routes()))
        .merge(ddi::routes())
        .split_for_parts();
    (router, crate::openapi::finish(doc))
}

pub fn router(state: AppState) -> Router {
    let (routes, doc) = documented(&state);
    let request_id = HeaderName::from_static("x-request-id");
    let proxies = state.limits.trusted_proxies.clone();
    routes
        .route("/api/v1/{*rest}", any(api_not_found))
        .merge(SwaggerUi::new("/docs").url(OPENAPI_PATH, doc))
        .merge(crate::console::router())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::<Limits>::from_ref(&state), crate::limits::guard))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(CatchPanicLayer::custom(|_| ApiError::internal_text("handler panicked").into_response()))
        .layer(middleware::from_fn(crate::metrics::record))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(middleware::from_fn(report_errors))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        // Outermost: the span and the limits see who the client is.
        .layer(MapRequestLayer::new(move |request: axum::extract::Request| crate::client::resolve(&proxies, request)))
        .with_state(state)
}

async fn api_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API route")
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// The span of a request: method, path and client address, never the query, which
/// holds the signature of a download link (a bearer secret until it expires).
fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let client = request.extensions().get::<crate::client::ClientAddr>().map(|c| c.ip);
    tracing::debug_span!("request", method = %request.method(), path = %request.uri().path(),
        version = ?request.version(), client = client.map(tracing::field::display))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    /// Everything the subscriber wrote.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_request_span_names_the_path_but_never_the_query() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let request = axum::http::Request::get(
            "/default/controller/v1/dev-1/softwaremodules/m/artifacts/os.swu?expires=1&signature=c2VjcmV0",
        )
        .body(())
        .expect("request");
        tracing::subscriber::with_default(subscriber, || {
            let span = super::request_span(&request);
            let _entered = span.enter();
            tracing::debug!("served");
        });
        let logged = String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
        assert!(logged.contains("path=/default/controller/v1/dev-1/softwaremodules/m/artifacts/os.swu"), "{logged}");
        assert!(!logged.contains("signature") && !logged.contains("c2VjcmV0"), "{logged}");
    }
}
