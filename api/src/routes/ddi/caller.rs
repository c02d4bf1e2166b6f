//! Who is calling a DDI route: a device with its own `TargetToken` or its own
//! client certificate, a gateway with the `GatewayToken` (acting as any device,
//! registering unknown ones), or the holder of a signed download link.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use chrono::Utc;
use ota_ddi::DEFAULT_TENANT as TENANT;
use ota_domain::device::{Device, DeviceCommand, DeviceProfile};
use ota_domain::{Actor, CommandMeta, DeviceId};
use subtle::ConstantTimeEq;

use crate::client::ClientCertificate;
use crate::ddi::{hash_token, Target};
use crate::error::ApiError;
use crate::state::AppState;

/// An authenticated DDI caller.
pub struct Caller {
    pub device: DeviceId,
    pub target: Arc<Target>,
    /// How it proved itself: `target_token`, `client_certificate`, `gateway_token` or `signed_url`.
    pub via: &'static str,
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::unauthorized(message.to_owned())
}

pub fn check_tenant(tenant: &str) -> Result<(), ApiError> {
    match tenant.eq_ignore_ascii_case(TENANT) {
        true => Ok(()),
        false => Err(ApiError::new(StatusCode::NOT_FOUND, "ddi.unknown_tenant", format!("no tenant {tenant:?}"))),
    }
}

pub fn parse_controller(raw: &str) -> Result<DeviceId, ApiError> {
    DeviceId::parse(raw).map_err(|e| ApiError::bad_request(format!("controller id: {e}")))
}

/// What a DDI request proves itself with: its headers (`Authorization`), and the
/// client certificate its TLS connection presented, if any. Extracted in place of
/// a `HeaderMap`, at the same cost.
pub struct Credentials {
    pub headers: HeaderMap,
    pub certificate: Option<ClientCertificate>,
}

impl<S: Send + Sync> FromRequestParts<S> for Credentials {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self { headers: parts.headers.clone(), certificate: parts.extensions.get::<ClientCertificate>().cloned() })
    }
}

/// Checks the credentials, then the device's request rate.
pub async fn authorize(
    state: &AppState,
    tenant: &str,
    controller: &str,
    credentials: &Credentials,
) -> Result<Caller, ApiError> {
    let caller = authenticate(state, tenant, controller, credentials).await?;
    state.limits.check_device(caller.device.as_str())?;
    Ok(caller)
}

/// Checks the `Authorization` header against the device (or the gateway secret), or
/// without one the client certificate; no rate limit (artifact downloads: streaming
/// clients read by many ranges).
pub async fn authenticate(
    state: &AppState,
    tenant: &str,
    controller: &str,
    credentials: &Credentials,
) -> Result<Caller, ApiError> {
    check_tenant(tenant)?;
    let device = parse_controller(controller)?;
    let header = credentials.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let header = match (header, &credentials.certificate) {
        (Some(header), _) => header,
        (None, Some(certificate)) => return by_certificate(state, device, certificate).await,
        (None, None) => {
            return Err(unauthorized("missing Authorization header (TargetToken or GatewayToken)"));
        }
    };
    let (scheme, secret) = header.trim().split_once(' ').unwrap_or((header, ""));
    let secret = secret.trim();
    let ddi = &state.ddi;
    match scheme {
        "TargetToken" if !secret.is_empty() => {
            let given = hash_token(secret);
            let owns = |record: &Device| {
                record.token_sha256.as_deref().is_some_and(|known| bool::from(known.as_bytes().ct_eq(given.as_bytes())))
            };
            let target = ddi
                .targets
                .authenticated(&device, owns)
                .await
                .map_err(|e| ApiError::unavailable("event store", e))?
                .ok_or_else(|| unauthorized("the target token does not belong to this device"))?;
            Ok(Caller { device, target, via: "target_token" })
        }
        "GatewayToken" if !secret.is_empty() => {
            let matches = ddi.is_gateway_token(secret).ok_or_else(|| unauthorized("gateway tokens are not enabled"))?;
            if !matches {
                return Err(unauthorized("wrong gateway token"));
            }
            let target = match ddi.targets.get(&device).await.map_err(|e| ApiError::unavailable("event store", e))? {
                Some(target) => target,
                None => register(state, &device).await?,
            };
            Ok(Caller { device, target, via: "gateway_token" })
        }
        _ => Err(unauthorized("Authorization must be 'TargetToken <token>' or 'GatewayToken <token>'")),
    }
}

/// A device whose verified client certificate names it: it must be registered (a
/// certificate vouches for an identity, it does not enrol one).
async fn by_certificate(
    state: &AppState,
    device: DeviceId,
    certificate: &ClientCertificate,
) -> Result<Caller, ApiError> {
    if certificate.0 != device.as_str() {
        return Err(unauthorized(&format!("the client certificate is {:?}'s, not this device's", certificate.0)));
    }
    let target = state
        .ddi
        .targets
        .authenticated(&device, |_| true)
        .await
        .map_err(|e| ApiError::unavailable("event store", e))?
        .ok_or_else(|| unauthorized("no device is registered under the client certificate's name"))?;
    Ok(Caller { device, target, via: "client_certificate" })
}

/// A device acting as itself outside DDI (the native status route): its own token
/// or its own certificate only.
pub async fn authorize_device(state: &AppState, device: &str, credentials: &Credentials) -> Result<DeviceId, ApiError> {
    let caller = authorize(state, TENANT, device, credentials).await?;
    match caller.via {
        "target_token" | "client_certificate" => Ok(caller.device),
        _ => Err(ApiError::forbidden("only the device's own target token or certificate may report as the device")),
    }
}

/// A device first seen through the gateway: registered with an unknown model until
/// its configData says more (hawkBit's plug and play).
async fn register(state: &AppState, device: &DeviceId) -> Result<Arc<Target>, ApiError> {
    let profile = DeviceProfile { device_model: "unknown".into(), ..Default::default() };
    let command = DeviceCommand::Register { id: device.clone(), profile, at: Utc::now() };
    let meta = CommandMeta::new(Actor::device(device.to_string()));
    state.reports.execute_device(device, command, &meta).await?;
    state.ddi.targets.invalidate(device.as_str());
    state.ddi.targets.get(device).await.map_err(|e| ApiError::unavailable("event store", e))?.ok_or_else(|| {
        ApiError::unavailable(
            "event store",
            ota_orchestrator::StoreFault("a device just registered cannot be read back"),
        )
    })
}
