//! Firmware: streamed upload, catalog queries, ranged download.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use futures::TryStreamExt;
use ota_domain::firmware::{Firmware as FirmwareState, FirmwareBinary, FirmwareCommand, FirmwareError, FirmwareSpec};
use ota_domain::release::{Envelope, SignedRelease};
use ota_domain::signature::SignatureCheck;
use ota_domain::{FirmwareId, Refused};
use ota_projections::downloads::{DownloadStats, DownloadView};
use ota_projections::firmware::{FirmwareFilter, FirmwareView};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::artifact::{self, ArtifactFile};
use crate::auth::Writer;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{optional_json, Json, Multipart, Paging, Path, Query};
use crate::resources::firmware::Firmware;
use crate::resources::Page;
use crate::state::AppState;
use crate::storage::{BlobError, Staged};
use crate::validate;

const METADATA_LIMIT: usize = 64 * 1024;

pub(super) fn routes(max_firmware_bytes: u64) -> OpenApiRouter<AppState> {
    let upload_limit = usize::try_from(max_firmware_bytes).unwrap_or(usize::MAX).saturating_add(1024 * 1024);
    OpenApiRouter::new()
        .routes(routes!(list, upload).layer(DefaultBodyLimit::max(upload_limit)))
        .routes(routes!(get_one))
        .routes(routes!(content))
        .routes(routes!(deprecate))
        .routes(routes!(downloads))
}

/// What the image is, sent as the `metadata` part (JSON) beside the `file` part.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "gw-os", "version": "2.1.0", "device_model": "gw", "hardware_versions": ["rev-a", "rev-b"],
    "checksum_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}))]
struct UploadMetadata {
    /// 1 to 128 characters (avoid ':', which the id derivation joins with).
    name: String,
    version: String,
    device_model: String,
    #[serde(default)]
    hardware_versions: Vec<String>,
    /// If given, the upload is refused unless the stored bytes hash to it (64 hex).
    checksum_sha256: Option<String>,
    /// Likewise, 32 hex.
    checksum_md5: Option<String>,
    /// At most 20,000 characters.
    release_notes: Option<String>,
    /// The signed release (`ota firmware sign`): a DSSE envelope whose payload
    /// binds name, version, device model, hardware versions, SHA-256, size and
    /// release counter. Refused (422 `firmware.release_mismatch`) unless it
    /// matches this upload exactly; delivered to devices with the image.
    release: Option<Envelope>,
    /// Deprecated: an ed25519 signature over the image digest alone. It binds no
    /// metadata, so it is recorded as invalid; sign a `release` instead.
    signature: Option<String>,
    key_id: Option<String>,
}

/// The multipart body of an upload.
#[derive(ToSchema)]
#[allow(dead_code)] // Describes the form for the OpenAPI document; the handler streams the parts.
struct UploadForm {
    metadata: UploadMetadata,
    /// The image, streamed to storage and hashed on the way (never held in memory).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Who uploaded a firmware, as the read model recorded it.
async fn uploader(state: &AppState, id: uuid::Uuid) -> Result<Option<String>, ApiError> {
    Ok(ota_projections::firmware::get(&state.pool, id).await?.and_then(|view| view.created_by))
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
            BlobError::Full(e) => {
                tracing::error!(error = %e, "firmware storage is full");
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "storage_full",
                    "firmware storage is full: nothing was stored; an operator must free or add space",
                )
            }
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

/// Upload an image (multipart: `metadata` JSON, then `file`). Streamed, hashed while
/// streaming, checked against the given checksums and, if signed, the trusted keys.
#[utoipa::path(post, path = "/firmware", operation_id = "upload_firmware", tag = "firmware",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, body = Firmware, description = "Stored."),
        (status = 200, body = Firmware, description = "The identical image was already stored: nothing changed."),
        (status = 409, body = ErrorBody, description = "The same name, version and model with other bytes (`firmware.content_conflict`, `firmware.id_collision`)."),
        (status = 413, body = ErrorBody, description = "Larger than OTA_MAX_FIRMWARE_BYTES (`too_large`)."),
        (status = 507, body = ErrorBody, description = "The firmware storage is full (`storage_full`): nothing was stored."),
        (status = 422, body = ErrorBody, description = "A field is invalid, a checksum does not match, a signed release does not match the upload, or a required signature is missing or wrong (`invalid_field`, `checksum_mismatch`, `firmware.release_mismatch`, `firmware.signature_*`)."),
))]
async fn upload(
    State(state): State<AppState>,
    writer: Writer,
    Multipart(mut multipart): Multipart,
) -> Result<(StatusCode, Json<Firmware>), ApiError> {
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
                    crate::extract::refuse_nul(&bytes)?;
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
) -> Result<(StatusCode, Json<Firmware>), ApiError> {
    let (signature_hex, key_id) = (metadata.signature.clone(), metadata.key_id.clone());
    let envelope = metadata.release.clone();
    if envelope.is_some() && (signature_hex.is_some() || key_id.is_some()) {
        return Err(ApiError::invalid("invalid_field", "release: give a signed release or a signature, not both"));
    }
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
    let (signature, release) = match envelope {
        Some(envelope) => match envelope.verify(&state.firmware_keys, state.release_signature_threshold) {
            Ok((release, signed_by)) => {
                if let Some(why) = spec.differs_from(&release, &blob.sha256, blob.size) {
                    return Err(ApiError::invalid("firmware.release_mismatch", format!("release: {why}")));
                }
                let check = SignatureCheck::Verified {
                    key_id: signed_by.join(","),
                    release_counter: Some(release.release_counter),
                };
                (check, Some(SignedRelease { release, envelope, signed_by }))
            }
            Err(e) => {
                let key_id = envelope.signatures.first().map(|s| s.keyid.clone());
                (SignatureCheck::Invalid { key_id, reason: e.to_string() }, None)
            }
        },
        None => (state.firmware_keys.check(&blob.sha256, key_id.as_deref(), signature_hex.as_deref()), None),
    };
    if state.require_signed_firmware && !signature.is_verified() {
        let (code, why) = match &signature {
            SignatureCheck::Invalid { reason, .. } => ("firmware.signature_invalid", reason.clone()),
            _ => ("firmware.signature_required", "unsigned; this server requires signed firmware".to_owned()),
        };
        return Err(ApiError::invalid(code, format!("signature: {why}")));
    }
    let id = spec.id();
    // Answer a repeat or a conflict before touching the stored binaries.
    let (existing, _) = state.store.load::<FirmwareState>(&id).await?;
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
            let created_by = uploader(state, spec.id().as_uuid()).await?;
            return Ok((StatusCode::OK, Json(Firmware::from_state(existing, created_by)?)));
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
    let command = FirmwareCommand::Upload { spec, binary, signature, release, at: Utc::now() };
    let committed = state.store.execute::<FirmwareState>(&id, command, &writer.meta).await?;
    let (status, created_by) = match committed.unchanged() {
        true => (
            StatusCode::OK,
            uploader(state, committed.state.id.map_or_else(Default::default, |id| id.as_uuid())).await?,
        ),
        false => (StatusCode::CREATED, Some(writer.meta.actor.to_string())),
    };
    Ok((status, Json(Firmware::from_state(committed.state, created_by)?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only firmware for this device model.
    device_model: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    paging: Paging,
}

/// List firmware, newest first.
#[utoipa::path(get, path = "/firmware", operation_id = "list_firmware", tag = "firmware", params(ListQuery, Paging), responses((status = 200, body = Page<Firmware>)))]
async fn list(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Result<Json<Page<Firmware>>, ApiError> {
    let page = q.paging.request()?;
    let filter = FirmwareFilter { device_model: q.device_model };
    let views = ota_projections::firmware::list(&state.pool, &filter, page).await?;
    Ok(Json(Page::from_view(views, Firmware::from_view)?))
}

async fn find(state: &AppState, id: &str) -> Result<FirmwareView, ApiError> {
    let id = validate::uuid("id", id)?;
    ota_projections::firmware::get(&state.pool, id).await?.ok_or_else(|| ApiError::not_found("firmware"))
}

/// One firmware.
#[utoipa::path(get, path = "/firmware/{id}", operation_id = "get_firmware", tag = "firmware", params(("id" = Uuid, Path)), responses(
    (status = 200, body = Firmware),
    (status = 404, body = ErrorBody, description = "No such firmware (`not_found`)."),
))]
async fn get_one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Firmware>, ApiError> {
    Ok(Json(Firmware::from_view(find(&state, &id).await?)?))
}

/// An optional reason for a deprecation.
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeprecateBody {
    reason: Option<String>,
}

/// Deprecate a firmware: no new campaign or update may use it (rollbacks still may).
#[utoipa::path(post, path = "/firmware/{id}/deprecate", tag = "firmware", params(("id" = Uuid, Path)),
    request_body(content = Option<DeprecateBody>, description = "Optional; an empty body is fine."),
    responses(
        (status = 200, body = Firmware),
        (status = 404, body = ErrorBody, description = "No such firmware (`firmware.not_found`)."),
        (status = 409, body = ErrorBody, description = "Already deprecated (`firmware.already_deprecated`)."),
        (status = 422, body = ErrorBody, description = "The body is not `{\"reason\"}` (`invalid_field`)."),
))]
async fn deprecate(
    State(state): State<AppState>,
    writer: Writer,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Firmware>, ApiError> {
    let id = validate::uuid("id", &id)?;
    let reason = optional_json::<DeprecateBody>(&body)?.and_then(|b| b.reason);
    let command = FirmwareCommand::Deprecate { reason, at: Utc::now() };
    let committed = state.store.execute::<FirmwareState>(&FirmwareId::from_uuid(id), command, &writer.meta).await?;
    Ok(Json(Firmware::from_state(committed.state, uploader(&state, id).await?)?))
}

/// Download the image: a single `Range` (206 / 416), `If-Range` and `If-Match` are honoured.
#[utoipa::path(get, path = "/firmware/{id}/content", tag = "firmware", params(("id" = Uuid, Path)), responses(
    (status = 200, content_type = "application/octet-stream", body = Vec<u8>, description = "The whole image; `ETag` is its SHA-1."),
    (status = 206, content_type = "application/octet-stream", body = Vec<u8>, description = "The requested range."),
    (status = 304, description = "`If-None-Match` matches the image's ETag."),
    (status = 404, body = ErrorBody, description = "No such firmware (`not_found`)."),
    (status = 412, body = ErrorBody, description = "`If-Match` does not match (`precondition_failed`)."),
    (status = 416, body = ErrorBody, description = "The range is outside the image (`range_not_satisfiable`)."),
))]
async fn content(
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

/// Who downloaded an image, how much, and whether it finished: totals and a page of the newest.
#[derive(Debug, Serialize, ToSchema)]
pub struct Downloads {
    firmware_id: uuid::Uuid,
    stats: DownloadStats,
    items: Vec<DownloadView>,
    /// Download records in all.
    total: i64,
    page: u32,
    page_size: u32,
}

/// The download log of an image.
#[utoipa::path(get, path = "/firmware/{id}/downloads", tag = "firmware", params(("id" = Uuid, Path), Paging), responses(
    (status = 200, body = Downloads),
    (status = 404, body = ErrorBody, description = "No such firmware (`not_found`)."),
))]
async fn downloads(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(paging): Query<Paging>,
) -> Result<Json<Downloads>, ApiError> {
    let firmware = find(&state, &id).await?;
    let page = paging.request()?;
    let (stats, recent) = ota_projections::downloads::log(&state.pool, firmware.id, page).await?;
    Ok(Json(Downloads {
        firmware_id: firmware.id,
        stats,
        items: recent.items,
        total: recent.total,
        page: recent.page,
        page_size: recent.page_size,
    }))
}
