//! Extractors whose rejections speak our JSON error format.

use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::ApiError;

/// `axum::Json`, but a malformed body answers 400/422 with our error body naming the field,
/// and text with NUL characters is refused: Postgres stores no `\u0000` in text or jsonb,
/// so it would otherwise fail deep in the store as an outage.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request",
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), "invalid_request", e.body_text()))?;
        refuse_nul(&body)?;
        let parsed = axum::Json::<T>::from_bytes(&body)?;
        Ok(Json(parsed.0))
    }
}

/// `application/json`, or another `application/*+json`, with or without parameters.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Refuses a JSON text with a NUL character in any string (raw ones are invalid JSON
/// anyway), naming where it is.
pub fn refuse_nul(body: &[u8]) -> Result<(), ApiError> {
    if !body.windows(6).any(|w| w == b"\\u0000") {
        return Ok(());
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else { return Ok(()) };
    match nul_at(&value, "") {
        Some(at) => Err(ApiError::invalid("invalid_field", format!("{at}: must not contain NUL characters"))),
        None => Ok(()),
    }
}

/// The path of the first string (or key) holding a NUL character.
fn nul_at(value: &serde_json::Value, at: &str) -> Option<String> {
    let here = || if at.is_empty() { "body".to_owned() } else { at.to_owned() };
    match value {
        serde_json::Value::String(text) => text.contains('\0').then(here),
        serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| nul_at(v, &format!("{at}[{i}]"))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(key, v)| {
            let path = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
            if key.contains('\0') {
                return Some(path);
            }
            nul_at(v, &path)
        }),
        _ => None,
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let code = if status == StatusCode::UNPROCESSABLE_ENTITY { "invalid_field" } else { "invalid_request" };
        ApiError::new(status, code, r.body_text())
    }
}

/// `axum::extract::Query`, answering in our error body; NUL characters are refused
/// (Postgres takes none in text).
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or_default();
        if raw.to_ascii_lowercase().contains("%00") {
            return Err(ApiError::bad_request("query values must not contain NUL characters (%00)"));
        }
        let axum::extract::Query(value) = axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(value))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

/// `axum::extract::Multipart`, but a body that is not multipart answers with our error body.
pub struct Multipart(pub axum::extract::Multipart);

impl<S: Send + Sync> FromRequest<S> for Multipart {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        axum::extract::Multipart::from_request(req, state).await.map(Multipart).map_err(ApiError::from)
    }
}

impl From<MultipartRejection> for ApiError {
    fn from(r: MultipartRejection) -> Self {
        ApiError::new(r.status(), "invalid_request", r.body_text())
    }
}

/// The request id set by the request-id layer, for command metadata.
#[derive(Debug, Clone)]
pub struct RequestId(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestId(parts.headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned)))
    }
}

/// The client's address (behind a trusted proxy, the one it forwarded), when the server knows it.
pub struct PeerAddr(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(parts.extensions.get::<crate::client::ClientAddr>().map(|c| c.ip.to_string())))
    }
}

/// `?page=&page_size=` with bounds.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// From 1 (default 1).
    #[serde(default, deserialize_with = "query_number")]
    #[param(minimum = 1)]
    pub page: Option<u32>,
    /// Items per page, 1 to 500 (default 50).
    #[serde(default, deserialize_with = "query_number")]
    #[param(minimum = 1, maximum = 500)]
    pub page_size: Option<u32>,
}

/// A number from a query string. Parsed from text because `#[serde(flatten)]`
/// (as in the list queries) hands every query value over as a string.
fn query_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let Some(raw) = <Option<String> as serde::Deserialize>::deserialize(d)? else {
        return Ok(None);
    };
    raw.parse()
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("page and page_size must be whole numbers, got {raw:?}")))
}

impl Paging {
    pub fn request(&self) -> Result<ota_projections::PageRequest, ApiError> {
        let page = self.page.unwrap_or(1);
        let page_size = self.page_size.unwrap_or(50);
        if page == 0 {
            return Err(ApiError::bad_request("page starts at 1"));
        }
        if page_size == 0 || page_size > ota_projections::page::MAX_PAGE_SIZE {
            return Err(ApiError::bad_request(format!(
                "page_size must be between 1 and {}",
                ota_projections::page::MAX_PAGE_SIZE
            )));
        }
        Ok(ota_projections::PageRequest { page, page_size })
    }
}

/// An optional JSON body: empty means `None`; anything else must parse.
pub fn optional_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Option<T>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    refuse_nul(body)?;
    serde_json::from_slice(body).map(Some).map_err(|e| ApiError::invalid("invalid_field", format!("body: {e}")))
}
