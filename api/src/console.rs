//! The operator console (`ui/`, built to `ui/dist`): static files embedded in
//! the binary and served at `/ui`, a client of the documented API like any
//! other. Every path under `/ui` that is not a file is the single page, which
//! routes in the browser. Nothing here is behind authentication: the files
//! hold no data; the API the page calls is.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;

#[derive(rust_embed::RustEmbed)]
#[folder = "../ui/dist"]
#[allow_missing = true]
struct Assets;

/// The page may load only itself and talk only to its own origin, and no
/// other site may frame it.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/ui", get(page)).route("/ui/", get(page)).route("/ui/{*path}", get(file))
}

async fn page() -> Response {
    serve("index.html")
}

async fn file(Path(path): Path<String>) -> Response {
    if Assets::get(&path).is_some() {
        serve(&path)
    } else {
        serve("index.html")
    }
}

fn serve(path: &str) -> Response {
    let Some(file) = Assets::get(path) else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "console_not_built",
            "the console was not built into this binary: run scripts/ui.sh, then build again",
        )
        .into_response();
    };
    let mut response = file.data.into_owned().into_response();
    let headers = response.headers_mut();
    if let Ok(kind) = HeaderValue::from_str(file.metadata.mimetype()) {
        headers.insert(header::CONTENT_TYPE, kind);
    }
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // The page is small and names its script by a fixed path: always ask again.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
