//! Operator authentication: HS256 bearer tokens with a role claim.
//!
//! Every `/api/v1` route passes `authenticate`; no header or network origin
//! bypasses it. Writes additionally need the `Writer` extractor.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ota_domain::{Actor, CommandMeta};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::RequestId;
use crate::state::AppState;

pub const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Operator,
    Viewer,
}

impl Role {
    pub fn can_write(&self) -> bool {
        matches!(self, Role::Admin | Role::Operator)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("OTA_JWT_SECRET is not set")]
    MissingSecret,
    #[error("OTA_JWT_SECRET must be at least {MIN_SECRET_LEN} bytes")]
    ShortSecret,
    #[error("cannot sign token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Auth {
    pub fn from_secret(secret: Option<&str>) -> Result<Self, AuthConfigError> {
        let secret = secret.ok_or(AuthConfigError::MissingSecret)?;
        if secret.len() < MIN_SECRET_LEN {
            return Err(AuthConfigError::ShortSecret);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 30;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        })
    }

    pub fn issue(&self, subject: &str, role: Role, ttl: Duration) -> Result<String, AuthConfigError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = Claims { sub: subject.to_owned(), role, iat: now, exp: now + ttl.as_secs() };
        Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| ApiError::unauthorized(format!("invalid token: {e}")))
    }
}

/// The authenticated caller of an `/api/v1` request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: String,
    pub role: Role,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor::user(self.subject.clone())
    }
}

/// Middleware: rejects requests without a valid bearer token, otherwise records the principal.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let principal = bearer(&state, request.headers())?;
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

/// The operator behind a `Bearer` token.
pub fn bearer(state: &AppState, headers: &axum::http::HeaderMap) -> Result<Principal, ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization header"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("Authorization must be 'Bearer <token>'"))?;
    let claims = state.auth.verify(token.trim())?;
    Ok(Principal { subject: claims.sub, role: claims.role })
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| ApiError::unauthorized("not authenticated"))
    }
}

/// A principal allowed to change things, with the metadata its commands carry.
#[derive(Debug, Clone)]
pub struct Writer {
    pub principal: Principal,
    pub meta: CommandMeta,
}

impl<S: Send + Sync> FromRequestParts<S> for Writer {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        if !principal.role.can_write() {
            return Err(ApiError::forbidden(format!("role {:?} may only read", principal.role).to_lowercase()));
        }
        let RequestId(request_id) = match RequestId::from_request_parts(parts, state).await {
            Ok(id) => id,
            Err(never) => match never {},
        };
        let mut meta = CommandMeta::new(principal.actor());
        meta.request_id = request_id;
        Ok(Writer { principal, meta })
    }
}
