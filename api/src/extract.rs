//! Extractors whose rejections speak our JSON error format.

use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::ApiError;

/// `axum::Json`, but a malformed body answers 400/422 with our error body naming the field.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

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

#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

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

/// `?page=&page_size=` with bounds.
#[derive(Debug, serde::Deserialize)]
pub struct Paging {
    #[serde(default, deserialize_with = "query_number")]
    pub page: Option<u32>,
    #[serde(default, deserialize_with = "query_number")]
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
    serde_json::from_slice(body).map(Some).map_err(|e| ApiError::invalid("invalid_field", format!("body: {e}")))
}
