//! Bulk import of devices: a JSON array, NDJSON or CSV of up to 100,000 devices
//! in one request, stored by group commit. Every row is checked before anything
//! is stored; one bad row refuses the whole file (each bad row named) unless the
//! caller asks for the good ones with `?partial=true`. Importing the same file
//! again changes nothing: a row is an upsert, like `POST /devices`.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures::StreamExt;
use ota_domain::device::{Device as DeviceState, DeviceCommand};
use ota_domain::DeviceId;
use ota_orchestrator::StoreError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::devices::RegisterDevice;
use crate::auth::Writer;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Query};
use crate::state::AppState;

/// Rows one import takes at most.
pub const MAX_ROWS: usize = 100_000;
/// 100,000 rows of a few hundred bytes each.
const BODY_LIMIT: usize = 64 * 1024 * 1024;
/// Rows stored by one group commit (one transaction).
const CHUNK: usize = 1_000;
/// Group commits of one import under way at once.
const IN_FLIGHT: usize = 4;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(import_devices).layer(DefaultBodyLimit::max(BODY_LIMIT)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Import the valid rows even if others are invalid (default: all or nothing).
    #[serde(default)]
    partial: bool,
}

/// A row that could not be imported.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RowError {
    /// From 1: the element of a JSON array, the line of NDJSON, the record after a CSV's header.
    row: usize,
    /// The row's device id, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    error: String,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ImportReport {
    rows: usize,
    created: usize,
    /// Known devices whose profile the row changed.
    updated: usize,
    /// Known devices the row describes as they are.
    unchanged: usize,
    failed: Vec<RowError>,
    /// Each new device's DDI secret (`TargetToken`), shown this once.
    target_tokens: BTreeMap<String, String>,
}

/// Import devices in bulk. `Content-Type: application/json` (an array of devices
/// as `POST /devices` takes them), `application/x-ndjson` (one a line) or
/// `text/csv` (a header row naming `id`, `device_model`, `hardware_version`,
/// `firmware_version`, `tags` (separated by `;`) and `attributes.<name>` columns).
#[utoipa::path(post, path = "/devices:import", tag = "devices", params(ImportQuery),
    request_body(content = Vec<RegisterDevice>, description = "JSON array, NDJSON or CSV (by `Content-Type`), up to 100,000 devices."),
    responses(
        (status = 200, body = ImportReport, description = "Imported; with `partial`, `failed` lists the rows left out."),
        (status = 415, body = ErrorBody, description = "Another content type (`import.unsupported_type`)."),
        (status = 422, body = ErrorBody, description = "Invalid rows, nothing imported (`import.invalid_rows`, with `details.failed`: each row's number, id and error); more than 100,000 rows (`import.too_many_rows`); an unreadable file (`import.unreadable`)."),
    ))]
async fn import_devices(
    State(state): State<AppState>,
    writer: Writer,
    Query(query): Query<ImportQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let kind = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let parsed = match media_type(kind).as_str() {
        "application/json" => json_rows(&body)?,
        "application/x-ndjson" | "application/jsonl" | "application/jsonlines" => ndjson_rows(&body)?,
        "text/csv" => csv_rows(&body)?,
        other => {
            let message = format!("Content-Type {other:?}: send application/json, application/x-ndjson or text/csv");
            return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "import.unsupported_type", message));
        }
    };
    if parsed.len() > MAX_ROWS {
        let message = format!("{} rows; one import takes at most {MAX_ROWS}", parsed.len());
        return Err(ApiError::invalid("import.too_many_rows", message));
    }
    let rows = parsed.len();
    let (commands, failed) = checked(parsed);
    if !failed.is_empty() && !query.partial {
        let message = format!(
            "{} of {rows} rows are invalid; nothing was imported (send ?partial=true to import the others)",
            failed.len()
        );
        let details = serde_json::json!({ "failed": failed });
        return Err(ApiError::invalid("import.invalid_rows", message).with_details(details));
    }
    let mut report = ImportReport { rows, failed, ..ImportReport::default() };
    store(&state, &writer, commands, &mut report).await?;
    report.failed.sort_by_key(|f| f.row);
    Ok(Json(report).into_response())
}

fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// A row as read: its number and the device, or why it could not be read.
type Parsed = (usize, Result<RegisterDevice, String>);

fn unreadable(what: impl std::fmt::Display) -> ApiError {
    ApiError::invalid("import.unreadable", what.to_string())
}

fn json_rows(body: &[u8]) -> Result<Vec<Parsed>, ApiError> {
    crate::extract::refuse_nul(body).map_err(|e| unreadable(e.message))?;
    let values: Vec<serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| unreadable(format!("not a JSON array: {e}")))?;
    Ok(values
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i + 1, serde_json::from_value(v).map_err(|e| e.to_string())))
        .collect())
}

fn ndjson_rows(body: &[u8]) -> Result<Vec<Parsed>, ApiError> {
    crate::extract::refuse_nul(body).map_err(|e| unreadable(e.message))?;
    let text = std::str::from_utf8(body).map_err(|e| unreadable(format!("not UTF-8: {e}")))?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| (i + 1, serde_json::from_str(line).map_err(|e| e.to_string())))
        .collect())
}

fn csv_rows(body: &[u8]) -> Result<Vec<Parsed>, ApiError> {
    crate::extract::refuse_nul(body).map_err(|e| unreadable(e.message))?;
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(false).from_reader(body);
    let headers = reader.headers().map_err(|e| unreadable(format!("CSV header: {e}")))?.clone();
    let known = ["id", "device_model", "hardware_version", "firmware_version", "tags"];
    if let Some(unknown) = headers.iter().find(|h| !known.contains(h) && !h.starts_with("attributes.")) {
        return Err(unreadable(format!("CSV column {unknown:?}: use {} or attributes.<name>", known.join(", "))));
    }
    let rows = reader.records().enumerate();
    Ok(rows.map(|(i, record)| (i + 1, record.map_err(|e| e.to_string()).and_then(|r| csv_row(&headers, &r)))).collect())
}

fn csv_row(headers: &csv::StringRecord, record: &csv::StringRecord) -> Result<RegisterDevice, String> {
    let cell =
        |name: &str| headers.iter().position(|h| h == name).and_then(|i| record.get(i)).filter(|v| !v.is_empty());
    Ok(RegisterDevice {
        id: cell("id").ok_or("no id")?.to_owned(),
        device_model: cell("device_model").ok_or("no device_model")?.to_owned(),
        hardware_version: cell("hardware_version").map(str::to_owned),
        firmware_version: cell("firmware_version").map(str::to_owned),
        tags: cell("tags").map_or_else(BTreeSet::new, |t| {
            t.split(';').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect()
        }),
        attributes: headers
            .iter()
            .zip(record.iter())
            .filter_map(|(h, v)| Some((h.strip_prefix("attributes.")?.to_owned(), v.to_owned())))
            .filter(|(_, v)| !v.is_empty())
            .collect(),
    })
}

/// A valid row, ready to store: its number, device, token and command.
struct Checked {
    row: usize,
    id: DeviceId,
    token: String,
    command: DeviceCommand,
}

/// Checks every row as the aggregate would (id, profile) and that no id comes twice.
fn checked(rows: Vec<Parsed>) -> (Vec<Checked>, Vec<RowError>) {
    let mut valid = Vec::with_capacity(rows.len());
    let mut failed = Vec::new();
    let mut seen = HashSet::with_capacity(rows.len());
    let at = Utc::now();
    for (row, parsed) in rows {
        let device = match parsed {
            Ok(device) => device,
            Err(error) => {
                failed.push(RowError { row, id: None, error });
                continue;
            }
        };
        let (raw_id, profile) = device.into_parts();
        let fail = |error: String| RowError { row, id: Some(raw_id.clone()), error };
        let id = match DeviceId::parse(&raw_id) {
            Ok(id) => id,
            Err(e) => {
                failed.push(fail(format!("id: {e}")));
                continue;
            }
        };
        if let Err(e) = profile.validate() {
            failed.push(fail(e.to_string()));
            continue;
        }
        if !seen.insert(id.clone()) {
            failed.push(fail("this id is in the import twice".into()));
            continue;
        }
        let token = crate::ddi::new_token();
        let token_sha256 = crate::ddi::hash_token(&token);
        let command = DeviceCommand::Enrol { id: id.clone(), profile, token_sha256, at };
        valid.push(Checked { row, id, token, command });
    }
    (valid, failed)
}

/// Stores the rows a thousand at a time, each thousand one transaction, a few
/// transactions at once (their ids are distinct, so they never conflict, and
/// Postgres works on one while the next is decided). A store that fails part-way
/// keeps what it stored; importing the file again completes it (rows already
/// stored change nothing).
async fn store(
    state: &AppState,
    writer: &Writer,
    rows: Vec<Checked>,
    report: &mut ImportReport,
) -> Result<(), ApiError> {
    let mut rows = rows.into_iter().peekable();
    let mut chunks = Vec::new();
    while rows.peek().is_some() {
        chunks.push(rows.by_ref().take(CHUNK).collect::<Vec<Checked>>());
    }
    let stored = futures::stream::iter(chunks)
        .map(|chunk| async move {
            let items = chunk.iter().map(|c| (c.id.to_string(), c.command.clone(), writer.meta.clone())).collect();
            let outcomes = state.store.execute_many::<DeviceState>(items).await;
            (chunk, outcomes)
        })
        .buffered(IN_FLIGHT);
    futures::pin_mut!(stored);
    while let Some((chunk, outcomes)) = stored.next().await {
        for (row, outcome) in chunk.into_iter().zip(outcomes) {
            state.ddi.targets.invalidate(row.id.as_str());
            match outcome {
                Ok(committed) if committed.events.iter().any(|e| e.sequence == 1) => {
                    report.created += 1;
                    report.target_tokens.insert(row.id.to_string(), row.token);
                }
                Ok(committed) if committed.events.is_empty() => report.unchanged += 1,
                Ok(_) => report.updated += 1,
                Err(StoreError::Rejected(e)) => {
                    report.failed.push(RowError { row: row.row, id: Some(row.id.to_string()), error: e.to_string() })
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}
