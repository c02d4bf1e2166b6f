//! Firmware: streamed upload, catalog queries, ranged download.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use ota_domain::firmware::{Firmware, FirmwareBinary, FirmwareCommand, FirmwareError, FirmwareSpec};
use ota_domain::{FirmwareId, Refused};
use ota_projections::firmware::{FirmwareFilter, FirmwareView};
use ota_projections::Page;
use serde::{Deserialize, Serialize};

use super::validate;
use crate::artifact::{self, ArtifactFile};
use crate::auth::Writer;
use crate::blobs::{BlobError, Staged};
use crate::error::ApiError;
use crate::extract::{optional_json, Json, Multipart, Paging, Path, Query};
use crate::state::AppState;

const METADATA_LIMIT: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadMetadata {
    name: String,
    version: String,
    device_model: String,
    #[serde(default)]
    hardware_versions: Vec<String>,
    checksum_sha256: Option<String>,
    checksum_md5: Option<String>,
    release_notes: Option<String>,
    /// Hex ed25519 signature over the image's SHA-256 digest, and the trusted key it was made with.
    signature: Option<String>,
    key_id: Option<String>,
}

/// A firmware as the write side knows it right after a command.
#[derive(Debug, Serialize)]
pub struct FirmwareBody {
    id: FirmwareId,
    name: String,
    version: String,
    device_model: String,
    hardware_versions: Vec<String>,
    release_notes: Option<String>,
    filename: String,
    size: u64,
    sha256: String,
    sha1: String,
    md5: String,
    status: &'static str,
    created_at: Option<DateTime<Utc>>,
    signature: ota_domain::signature::SignatureCheck,
}

impl FirmwareBody {
    fn from_state(firmware: Firmware) -> Result<Self, ApiError> {
        let (Some(id), Some(spec), Some(binary)) = (firmware.id, firmware.spec, firmware.binary) else {
            return Err(ApiError::internal("firmware state without upload"));
        };
        Ok(Self {
            id,
            name: spec.name,
            version: spec.version,
            device_model: spec.device_model,
            hardware_versions: spec.hardware_versions,
            release_notes: spec.release_notes,
            filename: binary.filename,
            size: binary.size,
            sha256: binary.sha256,
            sha1: binary.sha1,
            md5: binary.md5,
            status: firmware.status.as_str(),
            created_at: firmware.uploaded_at,
            signature: firmware.signature,
        })
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::TooLarge { limit } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("firmware exceeds the limit of {limit} bytes"),
            ),
            BlobError::Body(message) => ApiError::bad_request(message),
            other => ApiError::unavailable("object store", other),
        }
    }
}

impl From<axum::extract::multipart::MultipartError> for BlobError {
    fn from(e: axum::extract::multipart::MultipartError) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            BlobError::TooLarge { limit: 0 }
        } else {
            BlobError::Body(e.body_text())
        }
    }
}

fn multipart_error(e: axum::extract::multipart::MultipartError, limit: u64) -> ApiError {
    match BlobError::from(e) {
        BlobError::TooLarge { .. } => BlobError::TooLarge { limit }.into(),
        other => other.into(),
    }
}

fn spec_from(meta: UploadMetadata) -> Result<(FirmwareSpec, Option<String>, Option<String>), ApiError> {
    let hardware_versions = meta
        .hardware_versions
        .iter()
        .map(|h| validate::text("hardware_versions", h, 64))
        .collect::<Result<Vec<_>, _>>()?;
    if hardware_versions.len() > 100 {
        return Err(ApiError::invalid("invalid_field", "hardware_versions: at most 100 entries"));
    }
    let release_notes = match meta.release_notes {
        Some(notes) if notes.chars().count() > 20_000 => {
            return Err(ApiError::invalid("invalid_field", "release_notes: at most 20000 characters"))
        }
        other => other,
    };
    let spec = FirmwareSpec {
        name: validate::text("name", &meta.name, 128)?,
        version: validate::text("version", &meta.version, 128)?,
        device_model: validate::text("device_model", &meta.device_model, 128)?,
        hardware_versions,
        release_notes,
    };
    let sha256 = meta.checksum_sha256.map(|c| validate::hex_digest("checksum_sha256", &c, 64)).transpose()?;
    let md5 = meta.checksum_md5.map(|c| validate::hex_digest("checksum_md5", &c, 32)).transpose()?;
    Ok((spec, sha256, md5))
}

/// A safe file name for the artifact: the upload's own name without any path.
fn artifact_filename(given: Option<&str>, spec: &FirmwareSpec) -> String {
    let base = given.and_then(|g| g.rsplit(['/', '\\']).next()).map(str::trim).unwrap_or("");
    let clean = !base.is_empty()
        && base.len() <= 255
        && base != "."
        && base != ".."
        && !base.chars().any(|c| c.is_control() || c == '"');
    if clean {
        base.to_owned()
    } else {
        format!("{}-{}.bin", spec.name, spec.version).replace(['/', '\\', '"', ' '], "_")
    }
}

pub async fn upload(
    State(state): State<AppState>,
    writer: Writer,
    Multipart(mut multipart): Multipart,
) -> Result<(StatusCode, Json<FirmwareBody>), ApiError> {
    let limit = state.max_firmware_bytes;
    let mut metadata = None;
    let mut staged: Option<(Staged, Option<String>)> = None;
    let outcome = async {
        while let Some(mut field) = multipart.next_field().await.map_err(|e| multipart_error(e, limit))? {
            match field.name() {
                Some("metadata") => {
                    // Read up to the limit only: the part may be as large as the whole upload.
                    let mut bytes = Vec::new();
                    while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
                        if bytes.len() + chunk.len() > METADATA_LIMIT {
                            return Err(ApiError::invalid("invalid_field", "metadata: larger than 64 KiB"));
                        }
                        bytes.extend_from_slice(&chunk);
                    }
                    let parsed: UploadMetadata = serde_json::from_slice(&bytes)
                        .map_err(|e| ApiError::invalid("invalid_field", format!("metadata: {e}")))?;
                    metadata = Some(parsed);
                }
                Some("file") if staged.is_some() => return Err(ApiError::bad_request("more than one file part")),
                Some("file") => {
                    let filename = field.file_name().map(str::to_owned);
                    let chunks = field.map_err(BlobError::from);
                    staged = Some((state.blobs.stage(chunks, limit).await?, filename));
                }
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unexpected multipart part {:?}; expected 'metadata' and 'file'",
                        other.unwrap_or("")
                    )))
                }
            }
        }
        let metadata = metadata.ok_or_else(|| ApiError::bad_request("missing multipart part 'metadata'"))?;
        let Some((blob, filename)) = &staged else {
            return Err(ApiError::bad_request("missing multipart part 'file'"));
        };
        store_upload(&state, &writer, metadata, blob, filename.as_deref()).await
    }
    .await;
    if let Some((blob, _)) = &staged {
        if outcome.is_err() {
            state.blobs.discard(blob).await;
        }
    }
    outcome
}

async fn store_upload(
    state: &AppState,
    writer: &Writer,
    metadata: UploadMetadata,
    blob: &Staged,
    filename: Option<&str>,
) -> Result<(StatusCode, Json<FirmwareBody>), ApiError> {
    let (signature_hex, key_id) = (metadata.signature.clone(), metadata.key_id.clone());
    let (spec, want_sha256, want_md5) = spec_from(metadata)?;
    if want_sha256.as_ref().is_some_and(|want| *want != blob.sha256) {
        return Err(ApiError::invalid(
            "checksum_mismatch",
            format!("checksum_sha256 does not match the uploaded file (computed {})", blob.sha256),
        ));
    }
    if want_md5.as_ref().is_some_and(|want| *want != blob.md5) {
        return Err(ApiError::invalid(
            "checksum_mismatch",
            format!("checksum_md5 does not match the uploaded file (computed {})", blob.md5),
        ));
    }
    let signature = state.firmware_keys.check(&blob.sha256, key_id.as_deref(), signature_hex.as_deref());
    if state.require_signed_firmware && !signature.is_verified() {
        let (code, why) = match &signature {
            ota_domain::signature::SignatureCheck::Invalid { reason, .. } => {
                ("firmware.signature_invalid", reason.clone())
            }
            _ => ("firmware.signature_required", "unsigned; this server requires signed firmware".to_owned()),
        };
        return Err(ApiError::invalid(code, format!("signature: {why}")));
    }
    let id = spec.id().to_string();
    // Answer a repeat or a conflict before touching the stored binaries.
    let (existing, _) = state.store.load::<Firmware>(&id).await.map_err(ApiError::from)?;
    // The id hashes `name:version:device_model`, so ("a:b", "c") and ("a", "b:c") share it:
    // never answer for, or conflict with, a firmware that is not the one uploaded.
    if let Some(taken) = existing
        .spec
        .as_ref()
        .filter(|s| (&s.name, &s.version, &s.device_model) != (&spec.name, &spec.version, &spec.device_model))
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "firmware.id_collision",
            format!(
                "firmware id {id} already belongs to {:?} version {:?} for {:?}; avoid ':' in name and device_model",
                taken.name, taken.version, taken.device_model
            ),
        ));
    }
    if let Some(stored) = existing.binary.as_ref() {
        if stored.sha256 == blob.sha256 {
            state.blobs.discard(blob).await;
            return Ok((StatusCode::OK, Json(FirmwareBody::from_state(existing)?)));
        }
        let conflict = FirmwareError::DifferentContent {
            id: spec.id(),
            stored_sha256: stored.sha256.clone(),
            uploaded_sha256: blob.sha256.clone(),
        };
        return Err(ApiError::refused(conflict.refusal(), conflict.code(), conflict.to_string()));
    }
    let storage_path = state.blobs.promote(blob).await?;
    let binary = FirmwareBinary {
        filename: artifact_filename(filename, &spec),
        size: blob.size,
        sha256: blob.sha256.clone(),
        sha1: blob.sha1.clone(),
        md5: blob.md5.clone(),
        storage_path,
    };
    let command = FirmwareCommand::Upload { spec, binary, signature, at: Utc::now() };
    let committed = state.store.execute::<Firmware>(&id, command, &writer.meta).await.map_err(ApiError::from)?;
    let status = if committed.unchanged() { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(FirmwareBody::from_state(committed.state)?)))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    device_model: Option<String>,
    #[serde(flatten)]
    paging: Paging,
}

pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page<FirmwareView>>, ApiError> {
    let page = q.paging.request()?;
    let filter = FirmwareFilter { device_model: q.device_model };
    Ok(Json(ota_projections::firmware::list(&state.pool, &filter, page).await?))
}

async fn find(state: &AppState, id: &str) -> Result<FirmwareView, ApiError> {
    let id = validate::uuid("id", id)?;
    ota_projections::firmware::get(&state.pool, id).await?.ok_or_else(|| ApiError::not_found("firmware"))
}

pub async fn get_one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<FirmwareView>, ApiError> {
    Ok(Json(find(&state, &id).await?))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeprecateBody {
    reason: Option<String>,
}

pub async fn deprecate(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<FirmwareBody>, ApiError> {
    let id = validate::uuid("id", &id)?;
    let reason = optional_json::<DeprecateBody>(&body)?.and_then(|b| b.reason);
    let command = FirmwareCommand::Deprecate { reason, at: Utc::now() };
    let committed =
        state.store.execute::<Firmware>(&id.to_string(), command, &writer.meta).await.map_err(ApiError::from)?;
    Ok(Json(FirmwareBody::from_state(committed.state)?))
}

/// Streams the binary, honouring a single `Range` (206 / 416), `If-Range` and `If-Match`.
pub async fn content(
    State(state): State<AppState>,
    method: axum::http::Method,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let firmware = find(&state, &id).await?;
    let file = ArtifactFile {
        storage_path: firmware.storage_path,
        filename: firmware.filename,
        size: u64::try_from(firmware.size).unwrap_or(0),
        sha1: firmware.sha1,
        modified: Some(firmware.created_at),
    };
    artifact::serve(&state.blobs, &file, method == axum::http::Method::HEAD, &headers, None).await
}

#[derive(Debug, Serialize)]
pub struct DownloadsBody {
    firmware_id: uuid::Uuid,
    stats: ota_projections::downloads::DownloadStats,
    #[serde(flatten)]
    recent: Page<ota_projections::downloads::DownloadView>,
}

/// Who downloaded the image, how much, and whether it finished.
pub async fn downloads(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(paging): Query<Paging>,
) -> Result<Json<DownloadsBody>, ApiError> {
    let firmware = find(&state, &id).await?;
    let page = paging.request()?;
    let (stats, recent) = ota_projections::downloads::log(&state.pool, firmware.id, page).await?;
    Ok(Json(DownloadsBody { firmware_id: firmware.id, stats, recent }))
}
