//! The hawkBit DDI device API under `/{tenant}/controller/v1/{controllerId}`, so
//! SWUpdate, rauc-hawkbit-updater and other hawkBit clients work unchanged.
//! Every success is a 200 (rauc-hawkbit-updater accepts nothing else), ids go out
//! as strings, and client mistakes get a 4xx with a JSON body.

mod caller;

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use ota_ddi::wire::{
    Artifact, ArtifactLinks, BasePoll, CancelActionReply, Chunk, ConfigData, ConfigMode, Deployment, DeploymentBase,
    Feedback, Hashes, Href, PollConfig, PollLinks, Polling, StopId,
};
use ota_ddi::{cancel_answer, change_token, deployment_effect, download_and_update, polling_sleep};
use ota_ddi::{CancelAnswer, FeedbackEffect};
use ota_domain::device::{AttributeMode, DeviceCommand};
use ota_domain::device_update::{DeviceUpdateCommand, DeviceUpdateError, Lane, UpdateFirmware};
use ota_domain::firmware::Firmware;
use ota_domain::Refused;
use ota_domain::{Actor, CommandMeta};
use ota_orchestrator::devices::StatusReport;
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use caller::{authorize_device, Credentials};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(poll))
        .routes(routes!(deployment_base))
        .routes(routes!(deployment_feedback))
        .routes(routes!(cancel_action))
        .routes(routes!(cancel_feedback))
        .routes(routes!(config_data))
        .routes(routes!(installed_base))
        .routes(routes!(artifacts))
        .routes(routes!(artifact))
}

use crate::artifact::{self, ArtifactFile};
use crate::ddi::Fetch;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, PeerAddr, Query};
use crate::state::AppState;
use caller::{authenticate, authorize, check_tenant, parse_controller, Caller};

fn json<T: Serialize>(body: &T) -> Result<Response, ApiError> {
    let bytes = serde_json::to_vec(body).map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response())
}

fn ok() -> Response {
    StatusCode::OK.into_response()
}

fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    crate::extract::refuse_nul(body).map_err(|e| ApiError::bad_request(e.message))?;
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("body: {e}")))
}

/// The caller of a route about one action, and that action's number.
async fn action_caller(
    state: &AppState,
    tenant: &str,
    controller: &str,
    action: &str,
    credentials: &Credentials,
) -> Result<(Caller, u32), ApiError> {
    let caller = authorize(state, tenant, controller, credentials).await?;
    Ok((caller, parse_action(action)?))
}

/// Action ids are numbers; anything else names no action.
fn parse_action(raw: &str) -> Result<u32, ApiError> {
    raw.parse().map_err(|_| no_action(raw))
}

fn no_action(action: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "ddi.no_such_action", format!("no action {action} for this device"))
}

fn meta(caller: &Caller) -> CommandMeta {
    CommandMeta::new(Actor::device(caller.device.to_string()))
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> ApiError {
    ApiError::unavailable("event store", e)
}

/// The base poll: how long to sleep, and links to what the device should do next.
#[utoipa::path(get, path = "/{tenant}/controller/v1/{controller}", tag = "DDI (devices)", params(("tenant" = String, Path, description = "The tenant: `default` (any case)."), ("controller" = String, Path, description = "The device id (hawkBit controllerId).")), responses(
    (status = 200, body = BasePoll),
    (status = 404, body = ErrorBody, description = "Unknown tenant (`ddi.unknown_tenant`)."),
))]
async fn poll(
    State(state): State<AppState>,
    Path((tenant, controller)): Path<(String, String)>,
    PeerAddr(address): PeerAddr,
    credentials: Credentials,
) -> Result<Response, ApiError> {
    let caller = authorize(&state, &tenant, &controller, &credentials).await?;
    metrics::counter!("ota_ddi_polls_total").increment(1);
    let now = Utc::now();
    let ddi = &state.ddi;
    ddi.contacts.touch(caller.device.as_str(), now, address);
    let (links, id) = (&ddi.links, caller.device.as_str());
    let updates = &caller.target.updates;
    let mut poll_links = PollLinks::default();
    if let Some(lane) = updates.active() {
        if lane.cancel_requested {
            poll_links.cancel_action = Some(Href::new(links.cancel_action(&tenant, id, lane.action)));
        } else {
            let mode = delivery(&state, lane, now).await?;
            let change = change_token(lane.action, &mode);
            poll_links.deployment_base = Some(Href::new(links.deployment_base(&tenant, id, lane.action, &change)));
        }
    }
    if let Some((action, _)) = &updates.last_installed {
        poll_links.installed_base = Some(Href::new(links.installed_base(&tenant, id, *action)));
    }
    // Ask for attributes until the device has sent some (hawkBit asks new targets).
    if caller.target.device.profile.attributes.is_empty() {
        poll_links.config_data = Some(Href::new(links.config_data(&tenant, id)));
    }
    let sleep = polling_sleep(ddi.poll_secs, ddi.poll_jitter_percent, id, now);
    json(&BasePoll { config: PollConfig { polling: Polling { sleep } }, links: poll_links })
}

async fn delivery(state: &AppState, lane: &Lane, now: DateTime<Utc>) -> Result<ota_ddi::DeliveryMode, ApiError> {
    let plan = match lane.origin.campaign {
        Some(campaign) => state.ddi.targets.plan(campaign).await.map_err(unavailable)?,
        None => None,
    };
    Ok(download_and_update(plan.as_deref(), now))
}

async fn firmware(state: &AppState, of: &UpdateFirmware) -> Result<std::sync::Arc<Firmware>, ApiError> {
    state.ddi.targets.firmware(of.id).await.map_err(unavailable)?.ok_or_else(|| ApiError::not_found("firmware"))
}

fn artifact_of(state: &AppState, tenant: &str, device: &str, firmware: &Firmware) -> Result<Artifact, ApiError> {
    let (Some(id), Some(binary)) = (firmware.id, firmware.binary.as_ref()) else {
        return Err(ApiError::not_found("firmware"));
    };
    let links = &state.ddi.links;
    let module = id.to_string();
    let download = links.artifact(tenant, device, &module, &binary.filename);
    let md5sum = links.artifact(tenant, device, &module, &format!("{}.MD5SUM", binary.filename));
    Ok(Artifact {
        filename: binary.filename.clone(),
        hashes: Hashes { sha1: binary.sha1.clone(), md5: binary.md5.clone(), sha256: binary.sha256.clone() },
        size: binary.size,
        links: ArtifactLinks {
            download: Href::new(download.clone()),
            download_http: Href::new(download),
            md5sum: Href::new(md5sum.clone()),
            md5sum_http: Href::new(md5sum),
        },
    })
}

/// The signed release, verbatim, for devices that check it before installing.
fn release_metadata(firmware: &ota_domain::firmware::Firmware) -> Result<Vec<ota_ddi::wire::Metadata>, ApiError> {
    let Some(signed) = &firmware.release else { return Ok(Vec::new()) };
    let value = serde_json::to_string(&signed.envelope).map_err(ApiError::internal)?;
    Ok(vec![ota_ddi::wire::Metadata { key: ota_ddi::wire::RELEASE_METADATA_KEY.to_owned(), value }])
}

async fn deployment(
    state: &AppState,
    tenant: &str,
    caller: &Caller,
    action: u32,
    of: &UpdateFirmware,
    mode: ota_ddi::DeliveryMode,
) -> Result<DeploymentBase, ApiError> {
    let firmware = firmware(state, of).await?;
    let spec = firmware.spec.as_ref().ok_or_else(|| ApiError::not_found("firmware"))?;
    let artifact = artifact_of(state, tenant, caller.device.as_str(), &firmware)?;
    Ok(DeploymentBase {
        id: action.to_string(),
        deployment: Deployment {
            download: mode.download,
            update: mode.update,
            maintenance_window: mode.maintenance_window,
            chunks: vec![Chunk {
                part: "os".into(),
                version: spec.version.clone(),
                name: spec.name.clone(),
                artifacts: vec![artifact],
                metadata: release_metadata(&firmware)?,
            }],
        },
    })
}

/// The update to install: one chunk with one artifact and its links. Marks the update `notified`.
#[utoipa::path(get, path = "/{tenant}/controller/v1/{controller}/deploymentBase/{action}", tag = "DDI (devices)", params(("tenant" = String, Path, description = "The tenant: `default` (any case)."), ("controller" = String, Path, description = "The device id (hawkBit controllerId)."), ("action" = String, Path, description = "The action id."), ("c" = Option<String>, Query, description = "The change token from the poll's link (ignored).")), responses(
    (status = 200, body = DeploymentBase),
    (status = 404, body = ErrorBody, description = "No such action for this device (`ddi.no_such_action`, `ddi.unknown_tenant`)."),
))]
async fn deployment_base(
    State(state): State<AppState>,
    Path((tenant, controller, action)): Path<(String, String, String)>,
    credentials: Credentials,
) -> Result<Response, ApiError> {
    let (caller, action) = action_caller(&state, &tenant, &controller, &action, &credentials).await?;
    // Served again and again until the device closes it: clients re-fetch after a reboot.
    let lane = caller
        .target
        .updates
        .active()
        .filter(|lane| lane.action == action && !lane.cancel_requested)
        .ok_or_else(|| no_action(action))?;
    let mode = delivery(&state, lane, Utc::now()).await?;
    let body = deployment(&state, &tenant, &caller, action, &lane.firmware, mode).await?;
    if lane.state == ota_domain::device_update::UpdateState::Assigned {
        let command = DeviceUpdateCommand::MarkNotified { at: Utc::now() };
        state.reports.execute(caller.device.as_str(), command, &meta(&caller)).await.map_err(unavailable)?;
        state.ddi.targets.invalidate(caller.device.as_str());
    }
    json(&body)
}

/// Progress and outcome of an update, as hawkBit feedback (`closed` + `success`/`failure`, `proceeding`, `download`, ...).
#[utoipa::path(post, path = "/{tenant}/controller/v1/{controller}/deploymentBase/{action}/feedback", tag = "DDI (devices)", params(("tenant" = String, Path, description = "The tenant: `default` (any case)."), ("controller" = String, Path, description = "The device id (hawkBit controllerId)."), ("action" = String, Path, description = "The action id.")),
    request_body = Feedback,
    responses(
        (status = 200, description = "Stored."),
        (status = 404, body = ErrorBody, description = "No such action (`ddi.no_such_action`)."),
        (status = 409, body = ErrorBody, description = "The report does not fit the update's state (`device_update.*`)."),
        (status = 410, body = ErrorBody, description = "The action is closed (`ddi.action_closed`)."),
))]
async fn deployment_feedback(
    State(state): State<AppState>,
    Path((tenant, controller, action)): Path<(String, String, String)>,
    credentials: Credentials,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (caller, action) = action_caller(&state, &tenant, &controller, &action, &credentials).await?;
    let feedback: Feedback = parse_body(&body)?;
    let lane =
        caller.target.updates.current.as_ref().filter(|l| l.action == action).ok_or_else(|| no_action(action))?;
    if lane.state.is_terminal() {
        return Err(ApiError::new(StatusCode::GONE, "ddi.action_closed", format!("action {action} is already closed")));
    }
    let FeedbackEffect::Report { state: reported, progress, message } = deployment_effect(lane.state, &feedback) else {
        return Ok(ok());
    };
    let report = StatusReport { state: reported, progress, message, firmware_version: None, action: Some(action) };
    let outcome = state.reports.report(&caller.device, report, &meta(&caller), Utc::now()).await;
    state.ddi.targets.invalidate(caller.device.as_str());
    outcome?;
    Ok(ok())
}

/// A cancel the server asks for.
#[utoipa::path(get, path = "/{tenant}/controller/v1/{controller}/cancelAction/{action}", tag = "DDI (devices)", params(("tenant" = String, Path, description = "The tenant: `default` (any case)."), ("controller" = String, Path, description = "The device id (hawkBit controllerId)."), ("action" = String, Path, description = "The action id.")), responses(
    (status = 200, body = CancelActionReply),
    (status = 404, body = ErrorBody, description = "No cancel is asked for this action (`ddi.no_such_action`)."),
))]
async fn cancel_action(
    State(state): State<AppState>,
    Path((tenant, controller, action)): Path<(String, String, String)>,
    credentials: Credentials,
) -> Result<Response, ApiError> {
    let (caller, action) = action_caller(&state, &tenant, &controller, &action, &credentials).await?;
    let asked = caller.target.updates.current.as_ref().is_some_and(|lane| {
        lane.action == action
            && ((lane.cancel_requested && !lane.state.is_terminal())
                || lane.state == ota_domain::device_update::UpdateState::Cancelled)
    });
    if !asked {
        return Err(no_action(action));
    }
    json(&CancelActionReply { id: action.to_string(), cancel_action: StopId { stop_id: action.to_string() } })
}

/// The device's answer to a cancel: `closed`+`success` (or `canceled`) accepts it; `rejected` or `closed`+`failure` refuses it and the update goes on.
#[utoipa::path(post, path = "/{tenant}/controller/v1/{controller}/cancelAction/{action}/feedback", tag = "DDI (devices)", params(("tenant" = String, Path, description = "The tenant: `default` (any case)."), ("controller" = String, Path, description = "The device id (hawkBit controllerId)."), ("action" = String, Path, description = "The action id.")),
    request_body = Feedback,
    responses(
        (status = 200, description = "Stored."),
        (status = 404, body = ErrorBody, description = "No such action (`ddi.no_such_action`)."),
        (status = 405, body = ErrorBody, description = "The answer does not fit the action (`device_update.*`)."),
        (status = 410, body = ErrorBody, description = "The action is closed (`ddi.action_closed`)."),
))]
async fn cancel_feedback(
    State(state): State<AppState>,
    Path((tenant, controller, action)): Path<(String, String, String)>,
    credentials: Credentials,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (caller, action) = action_caller(&state, &tenant, &controller, &action, &credentials).await?;
    let feedback: Feedback = parse_body(&body)?;
    let accepted = match cancel_answer(&feedback) {
        CancelAnswer::Pending => return Ok(ok()),
        CancelAnswer::Accepted => true,
        CancelAnswer::Refused => false,
    };
    let message = feedback.status.message();
    let command = DeviceUpdateCommand::AnswerCancel { action, accepted, message, at: Utc::now() };
    let outcome = state.reports.execute(caller.device.as_str(), command, &meta(&caller)).await;
    state.ddi.targets.invalidate(caller.device.as_str());
    match outcome {
        Ok(_) => Ok(ok()),
        Err(ota_orchestrator::StoreError::Rejected(e)) => Err(match e {
            DeviceUpdateError::UnknownAction { .. } | DeviceUpdateError::NoUpdate => no_action(action),
            DeviceUpdateError::NotActive { .. } => {
                ApiError::new(StatusCode::GONE, "ddi.action_closed", format!("action {action} is already closed"))
            }
            other => ApiError::new(StatusCode::METHOD_NOT_ALLOWED, other.code(), other.to_string()),
        }),
        Err(e) => Err(ApiError::from(e)),
    }
}

/// The device's attributes (`merge`, `replace`, `remove`); well-known keys also set model, hardware and firmware.
#[utoipa::path(put, path = "/{tenant}/controller/v1/{controller}/configData", tag = "DDI (devices)", params(("tenant" = String, Path, description = "The tenant: `default` (any case)."), ("controller" = String, Path, description = "The device id (hawkBit controllerId).")),
    request_body = ConfigData,
    responses((status = 200, description = "Stored.")))]
async fn config_data(
    State(state): State<AppState>,
    Path((tenant, controller)): Path<(String, String)>,
    credentials: Credentials,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authorize(&state, &tenant, &controller, &credentials).await?;
    let config: ConfigData = parse_body(&body)?;
    if config.data.is_empty() {
        return Err(ApiError::bad_request("configData: data must not be empty"));
    }
    let mode = match config.mode {
        None | Some(ConfigMode::Merge) => AttributeMode::Merge,
        Some(ConfigMode::Replace) => AttributeMode::Replace,
        Some(ConfigMode::Remove) => AttributeMode::Remove,
    };
    let command = DeviceCommand::SetAttributes { mode, attributes: config.attributes(), at: Utc::now() };
    let outcome = state.reports.execute_device(&caller.device, command, &meta(&caller)).await;
    state.ddi.targets.invalidate(caller.device.as_str());
    outcome.map_err(|e| match e {
        ota_orchestrator::StoreError::Rejected(e) => ApiError::bad_request(format!("configData: {e}")),
        other => ApiError::from(other),
    })?;
    Ok(ok())
}

/// The last update that worked, shaped like `deploymentBase`.
#[utoipa::path(get, path = "/{tenant}/controller/v1/{controller}/installedBase/{action}", tag = "DDI (devices)", params(("tenant" = String, Path, description = "The tenant: `default` (any case)."), ("controller" = String, Path, description = "The device id (hawkBit controllerId)."), ("action" = String, Path, description = "The action id.")), responses(
    (status = 200, body = DeploymentBase),
    (status = 404, body = ErrorBody, description = "No such installed action (`ddi.no_such_action`)."),
))]
async fn installed_base(
    State(state): State<AppState>,
    Path((tenant, controller, action)): Path<(String, String, String)>,
    credentials: Credentials,
) -> Result<Response, ApiError> {
    let (caller, action) = action_caller(&state, &tenant, &controller, &action, &credentials).await?;
    let (_, installed) =
        caller.target.updates.last_installed.as_ref().filter(|(a, _)| *a == action).ok_or_else(|| no_action(action))?;
    let mode = ota_ddi::DeliveryMode { download: "forced", update: "forced", maintenance_window: None };
    json(&deployment(&state, &tenant, &caller, action, installed, mode).await?)
}

/// The action a module may be fetched for: the current update's or the installed one's.
fn module_action(caller: &Caller, module: &str) -> Option<(u32, UpdateFirmware)> {
    let updates = &caller.target.updates;
    let current = updates.current.as_ref().map(|l| (l.action, l.firmware.clone()));
    current.into_iter().chain(updates.last_installed.clone()).find(|(_, f)| f.id.to_string() == module)
}

/// The artifacts of a software module (one per firmware).
#[utoipa::path(get, path = "/{tenant}/controller/v1/{controller}/softwaremodules/{module}/artifacts", tag = "DDI (devices)", params(("tenant" = String, Path, description = "The tenant: `default` (any case)."), ("controller" = String, Path, description = "The device id (hawkBit controllerId)."), ("module" = String, Path, description = "The software module id (the action id).")), responses(
    (status = 200, body = Vec<Artifact>),
    (status = 404, body = ErrorBody, description = "No such software module (`not_found`)."),
))]
async fn artifacts(
    State(state): State<AppState>,
    Path((tenant, controller, module)): Path<(String, String, String)>,
    credentials: Credentials,
) -> Result<Response, ApiError> {
    let caller = authorize(&state, &tenant, &controller, &credentials).await?;
    let (_, of) = module_action(&caller, &module).ok_or_else(|| ApiError::not_found("software module"))?;
    let firmware = firmware(&state, &of).await?;
    json(&vec![artifact_of(&state, &tenant, caller.device.as_str(), &firmware)?])
}

/// The download: with the device's token, or with a signed link and no token at all.
/// The download (GET or HEAD), with the device's token or a signed link (`expires`, `signature`) and no token;
/// one `Range` gives 206, `If-Range` and `If-Match` are honoured. `<filename>.MD5SUM` gives `<md5>  <filename>`.
#[utoipa::path(get, path = "/{tenant}/controller/v1/{controller}/softwaremodules/{module}/artifacts/{filename}", tag = "DDI (devices)",
    params(("tenant" = String, Path, description = "The tenant: `default` (any case)."), ("controller" = String, Path, description = "The device id (hawkBit controllerId)."), ("module" = String, Path, description = "The software module id."), ("filename" = String, Path),
        ("expires" = Option<i64>, Query, description = "Signed links: expiry, Unix seconds."),
        ("signature" = Option<String>, Query, description = "Signed links: HMAC-SHA256, hex.")),
    security(("target_token" = []), ("gateway_token" = []), ()),
    responses(
        (status = 200, content_type = "application/octet-stream", body = Vec<u8>, description = "The image (or its `.MD5SUM` line)."),
        (status = 206, content_type = "application/octet-stream", body = Vec<u8>, description = "The requested range."),
        (status = 302, description = "With OTA_DOWNLOAD_REDIRECT: a pre-signed object-store URL in `Location`."),
        (status = 304, description = "`If-None-Match` matches."),
        (status = 404, body = ErrorBody, description = "No such module or artifact (`not_found`)."),
        (status = 412, body = ErrorBody, description = "`If-Match` does not match (`precondition_failed`)."),
        (status = 416, body = ErrorBody, description = "The range is outside the artifact (`range_not_satisfiable`)."),
        (status = 429, body = ErrorBody, description = "The device already has `OTA_DOWNLOADS_PER_DEVICE` downloads running (`rate_limited`, with `Retry-After`)."),
))]
async fn artifact(
    State(state): State<AppState>,
    method: Method,
    Path((tenant, controller, module, filename)): Path<(String, String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    credentials: Credentials,
) -> Result<Response, ApiError> {
    crate::validate::file_name("filename", &filename)?;
    let caller = match (query.get("signature"), credentials.headers.contains_key(header::AUTHORIZATION)) {
        (Some(signature), false) => {
            signed_caller(&state, &tenant, &controller, &module, &filename, &query, signature).await?
        }
        _ => authenticate(&state, &tenant, &controller, &credentials).await?,
    };
    let (action, of) = module_action(&caller, &module).ok_or_else(|| ApiError::not_found("software module"))?;
    let firmware = firmware(&state, &of).await?;
    let binary = firmware.binary.as_ref().ok_or_else(|| ApiError::not_found("artifact"))?;
    if filename.strip_suffix(".MD5SUM") == Some(binary.filename.as_str()) {
        let body = format!("{}  {}\n", binary.md5, binary.filename);
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response());
    }
    if filename != binary.filename {
        return Err(ApiError::not_found("artifact"));
    }
    let file = ArtifactFile {
        storage_path: binary.storage_path.clone(),
        filename: binary.filename.clone(),
        size: binary.size,
        sha1: binary.sha1.clone(),
        modified: firmware.uploaded_at,
    };
    let head = method == Method::HEAD;
    if state.ddi.redirect && !head {
        // The store serves the bytes; the log records the hand-off (no bytes pass through here).
        let ttl = std::time::Duration::from_secs(state.ddi.download_ttl_secs.clamp(60, 3600) as u64);
        if let Some(url) = state.blobs.presigned(&file.storage_path, ttl).await? {
            let served = artifact::Served { offset: 0, wanted: 0, sent: 0, whole: true };
            let fetch =
                Fetch { device: caller.device.to_string(), action, firmware: of.id, via: "store_redirect", served };
            state.ddi.downloads.record(fetch);
            return Ok((StatusCode::FOUND, [(header::LOCATION, url.to_string())]).into_response());
        }
    }
    // The slot travels with the body: it is freed when the last byte left or the client went away.
    let slot = if head { None } else { state.limits.download_slot(caller.device.as_str())? };
    let on_done: Option<artifact::OnDone> = (!head).then(|| {
        let (log, device, firmware_id, via) =
            (state.ddi.downloads.clone(), caller.device.to_string(), of.id, caller.via);
        Box::new(move |served: artifact::Served| {
            drop(slot);
            metrics::counter!("ota_download_bytes_total", "via" => via).increment(served.sent);
            log.record(Fetch { device, action, firmware: firmware_id, via, served })
        }) as artifact::OnDone
    });
    artifact::serve(&state.blobs, &file, head, &credentials.headers, on_done).await
}

async fn signed_caller(
    state: &AppState,
    tenant: &str,
    controller: &str,
    module: &str,
    filename: &str,
    query: &HashMap<String, String>,
    signature: &str,
) -> Result<Caller, ApiError> {
    check_tenant(tenant)?;
    let device = parse_controller(controller)?;
    let expires: i64 = query.get("expires").and_then(|e| e.parse().ok()).unwrap_or(0);
    let signed = ota_ddi::links::signed_form(tenant, controller, module, filename);
    state
        .ddi
        .signer
        .verify(&signed, expires, signature, Utc::now().timestamp())
        .map_err(|e| ApiError::forbidden(e.to_string()))?;
    let target = state
        .ddi
        .targets
        .get(&device)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ApiError::forbidden(format!("no device {device}")))?;
    Ok(Caller { device, target, via: "signed_url" })
}
