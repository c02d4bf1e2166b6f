//! Serving a stored image over HTTP: one `Range` (206 / 416), `If-Range`,
//! `If-Match` against the SHA-1 ETag (412), HEAD, streamed with bounded memory.
//! The operator download and the DDI artifact route share it.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;

use crate::error::ApiError;
use crate::storage::Blobs;

/// What is served.
#[derive(Debug, Clone)]
pub struct ArtifactFile {
    pub storage_path: String,
    pub filename: String,
    pub size: u64,
    pub sha1: String,
    pub modified: Option<DateTime<Utc>>,
}

/// What a response set out to send; `sent` is filled in as the body streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub offset: u64,
    pub wanted: u64,
    pub sent: u64,
    pub whole: bool,
}

/// Told once, when the body has been sent or dropped half-way.
pub type OnDone = Box<dyn FnOnce(Served) + Send + 'static>;

/// Answers a GET or HEAD for `file` given the request headers.
pub async fn serve(
    blobs: &Blobs,
    file: &ArtifactFile,
    head: bool,
    headers: &HeaderMap,
    on_done: Option<OnDone>,
) -> Result<Response, ApiError> {
    let size = file.size;
    let etag = format!("\"{}\"", file.sha1);
    let header_str = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let matches = |value: &str| value.split(',').any(|t| t.trim() == etag || t.trim() == "*");
    if header_str(header::IF_MATCH).is_some_and(|v| !matches(v)) {
        return Err(ApiError::new(StatusCode::PRECONDITION_FAILED, "precondition_failed", "If-Match does not match"));
    }
    if header_str(header::IF_NONE_MATCH).is_some_and(matches) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let range_applies = header_str(header::IF_RANGE).is_none_or(|v| v.trim() == etag);
    let range = match header_str(header::RANGE).filter(|_| range_applies) {
        None => None,
        Some(raw) => match http_range_header::parse_range_header(raw).map(|r| r.validate(size)) {
            // Another range unit must be ignored, a malformed range may be (RFC 9110 14.2).
            Err(_) => None,
            Ok(Ok(ranges)) if ranges.len() == 1 && size > 0 => ranges.first().map(|r| *r.start()..*r.end() + 1),
            // Several ranges: RFC 9110 lets us answer with the whole representation.
            Ok(Ok(ranges)) if ranges.len() > 1 => None,
            // A suffix longer than the image selects all of it (RFC 9110 14.1.3).
            Ok(Err(http_range_header::RangeUnsatisfiableError::FileSuffixOutOfBounds)) if size > 0 => Some(0..size),
            // Past the end, reversed, overlapping, or any range of an empty image.
            Ok(_) => {
                let message = format!("range {raw:?} does not fit {size} bytes");
                let refused = ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable", message);
                return Ok(([(header::CONTENT_RANGE, format!("bytes */{size}"))], refused).into_response());
            }
        },
    };
    let served = Served {
        offset: range.as_ref().map_or(0, |r| r.start),
        wanted: range.as_ref().map_or(size, |r| r.end - r.start),
        sent: 0,
        whole: range.is_none(),
    };
    let body = if head || served.wanted == 0 {
        Body::empty()
    } else {
        let stream = blobs.read(&file.storage_path, range.clone()).await?;
        Body::from_stream(Counted { inner: stream, served, on_done })
    };
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Some(modified) = file.modified {
        let modified = httpdate::fmt_http_date(std::time::SystemTime::from(modified));
        if let Ok(v) = HeaderValue::from_str(&modified) {
            h.insert(header::LAST_MODIFIED, v);
        }
    }
    let disposition = format!("attachment; filename=\"{}\"", file.filename.replace(['"', '\\'], "_"));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(served.wanted));
    if let Some(r) = range {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", r.start, r.end - 1)) {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

/// Counts what actually left, and reports it when the stream ends or is dropped.
struct Counted<S> {
    inner: S,
    served: Served,
    on_done: Option<OnDone>,
}

impl<S> Drop for Counted<S> {
    fn drop(&mut self) {
        if let Some(done) = self.on_done.take() {
            done(self.served);
        }
    }
}

impl<S, E> Stream for Counted<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            self.served.sent += chunk.len() as u64;
        }
        polled
    }
}
