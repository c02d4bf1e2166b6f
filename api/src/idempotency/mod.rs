//! Idempotent commands (issue #11, item 5): a POST with an `Idempotency-Key`
//! header executes at most once per caller, method, path and key; a retry gets
//! the first outcome back, marked `Idempotent-Replayed: true`.
//!
//! The semantics follow draft-ietf-httpapi-idempotency-key-header and Stripe:
//! - the same key with another request (method, path and query, body) answers 422
//!   `idempotency_key_reused`; while the first is still running, 409
//!   `idempotency_key_in_flight` with `Retry-After`;
//! - only final outcomes are kept: 2xx and 4xx, except 408, 429 and a 409
//!   `concurrent_update`, which ask for a retry; after a 5xx the key is given back;
//! - keys live 24 hours (`RETENTION`) in Postgres, shared by every instance.
//! - the stored body is sealed with the client's key (`seal`), since an answer
//!   may hold a secret shown once.
//!
//! The handler runs in a task of its own: a client that drops the connection
//! (or a deadline that fires) cannot cancel it between the commit and the storing
//! of its outcome, which is exactly the case a retry must find answered.

pub mod fingerprint;
pub mod seal;
pub mod store;

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRef, OriginalUri, Request, State};
use axum::http::{request::Parts, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::{FutureExt, StreamExt, TryStreamExt};
use sqlx::PgPool;
use tracing::Instrument;
use uuid::Uuid;

use self::fingerprint::{IdempotencyKey, MultipartDigest};
use self::store::{Claim, Outcome, Record, Scope};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

pub const HEADER: &str = "idempotency-key";
/// Marks an answer that was stored, not executed again.
pub const REPLAYED: &str = "idempotent-replayed";
/// How long a key and its outcome are kept.
pub const RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
/// How long an in-flight claim holds without being extended; a server that dies
/// mid-request frees its keys after this.
pub const LEASE: Duration = Duration::from_secs(60);
/// How often expired keys are deleted.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10 * 60);
/// JSON commands are small; this is the bound of the buffered body (as `routes`' JSON limit).
const BUFFERED_LIMIT: usize = 1024 * 1024;
/// Answers of commands are small JSON; a larger one is returned but not stored.
const STORED_BODY_LIMIT: usize = 1024 * 1024;
/// The answer headers a replay repeats.
const KEPT_HEADERS: [HeaderName; 3] =
    [axum::http::header::CONTENT_TYPE, axum::http::header::LOCATION, axum::http::header::ETAG];

/// The one POST under `/api/v1` the middleware does not cover: device status reports,
/// which devices send with their own token (no operator principal to scope a key by)
/// and whose retries the device-update lane absorbs itself, as on the DDI feedback route.
pub const NOT_COVERED: [&str; 1] = ["/api/v1/devices/{id}/status"];

/// Whether a POST route (an OpenAPI path template) takes `Idempotency-Key`.
pub fn covers(path_template: &str) -> bool {
    path_template.starts_with("/api/v1/") && !NOT_COVERED.contains(&path_template)
}

/// What the middleware needs from the state.
#[derive(Clone)]
pub struct Idempotency {
    pub pool: PgPool,
    /// Streamed bodies (firmware uploads) are read at most this far to compare a retry.
    pub max_streamed_bytes: u64,
}

impl FromRef<AppState> for Idempotency {
    fn from_ref(state: &AppState) -> Self {
        Idempotency { pool: state.pool.clone(), max_streamed_bytes: state.max_firmware_bytes.saturating_add(1 << 20) }
    }
}

/// Deletes expired keys every `SWEEP_EVERY`; runs until aborted.
pub async fn sweep(pool: PgPool) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        match store::sweep(&pool).await {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!(deleted, "expired idempotency keys deleted"),
            Err(e) => tracing::warn!(error = %e, "sweeping idempotency keys failed; next round retries"),
        }
    }
}

/// Middleware on the authenticated management routes (inside `authenticate`, which
/// leaves the caller in the request). Other methods and requests without the header pass.
pub async fn idempotent(State(idem): State<Idempotency>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(raw) = request.headers().get(HEADER).cloned() else {
        return next.run(request).await;
    };
    match run_once(idem, &raw, request, next).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// The request's body, prepared for fingerprinting.
enum Prepared {
    /// A JSON (or empty) body, read whole: its fingerprint is known before executing.
    Buffered { fingerprint: [u8; 32], bytes: Bytes },
    /// A multipart upload, hashed while the handler streams it.
    Streamed { boundary: String, body: Body },
}

async fn run_once(idem: Idempotency, raw: &HeaderValue, request: Request, next: Next) -> Result<Response, ApiError> {
    let key = IdempotencyKey::parse(raw)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "idempotency_key_invalid", e.to_string()))?;
    let caller = request
        .extensions()
        .get::<Principal>()
        .map(|p| p.subject.clone())
        .ok_or_else(|| ApiError::unauthorized("not authenticated"))?;
    let (parts, body) = request.into_parts();
    let target = Target::of(&parts);
    let prepared = prepare(&parts, &target, body).await?;
    let id = fingerprint::scope_id(&caller, &target.method, &target.path, &key);
    let scope = Scope { id, caller: &caller, method: &target.method, path: &target.path };
    let known = match &prepared {
        Prepared::Buffered { fingerprint, .. } => Some(&fingerprint[..]),
        Prepared::Streamed { .. } => None,
    };
    match store::claim(&idem.pool, &scope, known, LEASE, RETENTION).await? {
        Claim::Claimed { token } => Ok(execute(idem, Held { id, token, key }, parts, prepared, target, next).await),
        Claim::Taken(record) => answer_taken(&idem, record, (&key, &id), &parts, prepared, &target).await,
    }
}

/// What a request is addressed to, as the client sent it.
struct Target {
    method: String,
    /// Part of a key's scope.
    path: String,
    /// Part of the fingerprint: the same path with another query is another request.
    path_and_query: String,
}

impl Target {
    fn of(parts: &Parts) -> Self {
        // Inside `nest` the URI lost its `/api/v1` prefix; the original one has it.
        let uri = parts.extensions.get::<OriginalUri>().map_or(&parts.uri, |original| &original.0);
        let path_and_query = uri.path_and_query().map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
        Self { method: parts.method.as_str().to_owned(), path: uri.path().to_owned(), path_and_query }
    }

    fn fingerprint(&self, body_digest: &[u8; 32]) -> [u8; 32] {
        fingerprint::fingerprint(&self.method, &self.path_and_query, body_digest)
    }
}

async fn prepare(parts: &Parts, target: &Target, body: Body) -> Result<Prepared, ApiError> {
    if let Some(boundary) = fingerprint::multipart_boundary(&parts.headers) {
        return Ok(Prepared::Streamed { boundary, body });
    }
    let bytes = axum::body::to_bytes(body, BUFFERED_LIMIT).await.map_err(|e| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", format!("cannot read the body: {e}"))
    })?;
    let fingerprint = target.fingerprint(&fingerprint::body_digest(&bytes));
    Ok(Prepared::Buffered { fingerprint, bytes })
}

/// A claimed key: its row, the proof of the claim, and the key that seals the answer.
struct Held {
    id: [u8; 32],
    token: Uuid,
    key: IdempotencyKey,
}

/// Answers a request whose key is taken: replay, or say why not.
async fn answer_taken(
    idem: &Idempotency,
    record: Record,
    (key, id): (&IdempotencyKey, &[u8; 32]),
    parts: &Parts,
    prepared: Prepared,
    target: &Target,
) -> Result<Response, ApiError> {
    let Some(outcome) = record.outcome else {
        let differs = match (&prepared, &record.fingerprint) {
            (Prepared::Buffered { fingerprint, .. }, Some(stored)) => stored[..] != fingerprint[..],
            _ => false,
        };
        return Err(if differs { reused() } else { in_flight() });
    };
    let ours = match prepared {
        Prepared::Buffered { fingerprint, .. } => Some(fingerprint),
        Prepared::Streamed { boundary, body } => {
            drain_digest(body, &boundary, idem.max_streamed_bytes).await?.map(|digest| target.fingerprint(&digest))
        }
    };
    match (ours, record.fingerprint) {
        (Some(ours), Some(stored)) if stored[..] == ours[..] => {
            let body = seal::open(key, id, &outcome.body).map_err(ApiError::internal)?;
            Ok(replay(Outcome { body, ..outcome }, parts))
        }
        _ => Err(reused()),
    }
}

fn reused() -> ApiError {
    ApiError::invalid(
        "idempotency_key_reused",
        "this Idempotency-Key was used with another request (method, path or body); use a new key for a new request",
    )
}

fn in_flight() -> ApiError {
    ApiError {
        retry_after: Some(Duration::from_secs(1)),
        ..ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_in_flight",
            "a request with this Idempotency-Key is still being processed; retry after it finishes",
        )
    }
}

/// Reads a streamed body to its closing delimiter (or the limit) for its digest.
async fn drain_digest(body: Body, boundary: &str, limit: u64) -> Result<Option<[u8; 32]>, ApiError> {
    let mut digest = MultipartDigest::new(boundary);
    let mut read: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
        read = read.saturating_add(chunk.len() as u64);
        digest.update(&chunk);
        // Past the limit the first request could not have succeeded with this body.
        if digest.is_closed() || read > limit {
            break;
        }
    }
    Ok(digest.finish())
}

/// The stored answer (opened), with the current request id in an error body.
fn replay(outcome: Outcome, parts: &Parts) -> Response {
    let status = StatusCode::from_u16(outcome.status).unwrap_or(StatusCode::OK);
    let mut body = outcome.body;
    if status.is_client_error() {
        body = with_request_id(body, parts.headers.get("x-request-id"));
    }
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    for (name, value) in outcome.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            response.headers_mut().insert(name, value);
        }
    }
    response.headers_mut().insert(REPLAYED, HeaderValue::from_static("true"));
    response
}

/// Error bodies are stored as the handler made them, before `report_errors` names the request.
fn with_request_id(body: Vec<u8>, request_id: Option<&HeaderValue>) -> Vec<u8> {
    let Some(id) = request_id.and_then(|v| v.to_str().ok()) else { return body };
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(mut fields)) => {
            fields.insert("request_id".to_owned(), serde_json::Value::String(id.to_owned()));
            serde_json::to_vec(&fields).unwrap_or(body)
        }
        _ => body,
    }
}

/// Runs the handler under a claimed key, in its own task, and settles the key.
async fn execute(
    idem: Idempotency,
    held: Held,
    parts: Parts,
    prepared: Prepared,
    target: Target,
    next: Next,
) -> Response {
    let (body, known, digest) = match prepared {
        Prepared::Buffered { fingerprint, bytes } => (Body::from(bytes), Some(fingerprint), None),
        Prepared::Streamed { boundary, body } => {
            let digest = Arc::new(Mutex::new(MultipartDigest::new(&boundary)));
            let seen = digest.clone();
            let hashed = body.into_data_stream().inspect_ok(move |chunk| {
                if let Ok(mut digest) = seen.lock() {
                    digest.update(chunk);
                }
            });
            (Body::from_stream(hashed), None, Some(digest))
        }
    };
    let request = Request::from_parts(parts, body);
    let task = async move {
        let response = leased(&idem.pool, &held.id, held.token, next.run(request)).await;
        let fingerprint = known.or_else(|| {
            let digest = digest?.lock().ok()?.finish()?;
            Some(target.fingerprint(&digest))
        });
        settle(&idem.pool, &held, fingerprint, response).await
    };
    // The task keeps the request's span (method, path, request id) for the handler's logs.
    let task = tokio::spawn(task.instrument(tracing::Span::current()));
    match task.await {
        Ok(response) => response,
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// Runs the handler, extending the key's lease while it runs; a panic becomes a 500.
async fn leased(
    pool: &PgPool,
    id: &[u8; 32],
    token: Uuid,
    handler: impl std::future::Future<Output = Response>,
) -> Response {
    let handler = AssertUnwindSafe(handler).catch_unwind();
    tokio::pin!(handler);
    let mut tick = tokio::time::interval(LEASE / 3);
    tick.tick().await;
    loop {
        tokio::select! {
            outcome = &mut handler => {
                return outcome.unwrap_or_else(|_| ApiError::internal_text("handler panicked").into_response());
            }
            _ = tick.tick() => {
                if let Err(e) = store::extend(pool, id, token, LEASE).await {
                    tracing::warn!(error = %e, "cannot extend an idempotency key's lease");
                }
            }
        }
    }
}

/// Whether an answer is the request's final outcome, to replay, or one that asks for a retry.
fn is_final(response: &Response) -> bool {
    let status = response.status();
    let retry = matches!(status, StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS)
        || response.extensions().get::<ApiError>().is_some_and(|e| e.code == "concurrent_update");
    (status.is_success() || status.is_client_error()) && !retry
}

/// Stores a final answer under the key, or gives the key back.
async fn settle(pool: &PgPool, held: &Held, fingerprint: Option<[u8; 32]>, response: Response) -> Response {
    let (id, token) = (&held.id, held.token);
    // A streamed body the handler did not read to its end has no fingerprint: keep nothing.
    let Some(fingerprint) = fingerprint.filter(|_| is_final(&response)) else {
        if let Err(e) = store::release(pool, id, token).await {
            tracing::warn!(error = %e, "cannot release an idempotency key; it frees itself when its lease ends");
        }
        return response;
    };
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, STORED_BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = store::release(pool, id, token).await;
            return ApiError::internal_text(format!("cannot read the answer to store it: {e}")).into_response();
        }
    };
    let headers = KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            let value = parts.headers.get(name)?.to_str().ok()?;
            Some((name.as_str().to_owned(), value.to_owned()))
        })
        .collect();
    let sealed = match seal::seal(&held.key, id, &bytes) {
        Ok(sealed) => sealed,
        Err(e) => {
            tracing::error!(error = %e, "cannot seal an idempotent outcome; not stored");
            let _ = store::release(pool, id, token).await;
            return Response::from_parts(parts, Body::from(bytes));
        }
    };
    let outcome = Outcome { status: parts.status.as_u16(), headers, body: sealed };
    if let Err(e) = store::complete(pool, id, token, &fingerprint, &outcome).await {
        // The command ran; the client still gets its answer. Only a retry after a lost
        // answer and a lapsed lease could run it again.
        tracing::error!(error = %e, "cannot store an idempotent outcome");
    }
    Response::from_parts(parts, Body::from(bytes))
}
