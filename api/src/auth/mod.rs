//! Who may call the management API: bearer JWTs (HS256 with the shared secret, or
//! RS256 / ES256 verified with a configured public key; optional issuer and
//! audience; bounded clock skew) carrying a role, and API keys an admin issued.
//!
//! Every `/api/v1` route passes `authenticate`; no header or network origin
//! bypasses it. Writes need the `Writer` extractor, key management `Admin`, the
//! audit routes `AuditReader`. Extractors read the principal the middleware left
//! in the request, so they work with any router state.

pub mod api_keys;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ota_domain::{Actor, CommandMeta};
use serde::{Deserialize, Serialize};

pub use api_keys::{ApiKeys, MintedKey, KEY_PREFIX};

use crate::error::ApiError;
use crate::extract::RequestId;
use crate::limits::Limits;

pub const MIN_SECRET_LEN: usize = 32;
/// The longest a token may live unless configured otherwise: a day.
pub const DEFAULT_MAX_LIFETIME_SECS: u64 = 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Operator,
    Viewer,
    Auditor,
    /// Reads, and approves the gated waves of campaigns others created (four eyes).
    Approver,
}

impl Role {
    pub fn can_write(&self) -> bool {
        matches!(self, Role::Admin | Role::Operator)
    }
    pub fn can_audit(&self) -> bool {
        matches!(self, Role::Admin | Role::Auditor)
    }
    /// Operators create campaigns; someone else approves their gated waves.
    pub fn can_approve(&self) -> bool {
        matches!(self, Role::Admin | Role::Approver)
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
            Role::Approver => "approver",
        }
    }
    pub const ALL: [Role; 5] = [Role::Admin, Role::Operator, Role::Viewer, Role::Auditor, Role::Approver];
    pub fn parse(raw: &str) -> Option<Role> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        Role::parse(raw)
            .ok_or_else(|| format!("unknown role {raw:?}: one of admin, operator, viewer, auditor, approver"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("set OTA_JWT_SECRET (HS256) or OTA_JWT_PUBLIC_KEY_FILE (RS256 / ES256)")]
    MissingSecret,
    #[error("OTA_JWT_SECRET must be at least {MIN_SECRET_LEN} bytes")]
    ShortSecret,
    #[error("OTA_JWT_PUBLIC_KEY_FILE {path}: {detail}")]
    PublicKey { path: String, detail: String },
    #[error("tokens can only be issued with OTA_JWT_SECRET (this server verifies public-key tokens only)")]
    CannotIssue,
    #[error("cannot sign token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
    /// An identity provider signs tokens for other services too: only one naming
    /// this service (audience) and that provider (issuer) may act here.
    #[error("OTA_JWT_PUBLIC_KEY_FILE needs OTA_JWT_ISSUER and OTA_JWT_AUDIENCE")]
    UnboundIdentityProvider,
    #[error("a token may live {max} s at most (OTA_JWT_MAX_LIFETIME_SECS), not {asked} s")]
    TooLong { max: u64, asked: u64 },
}

/// How bearer tokens are checked.
#[derive(Debug, Clone, Default)]
pub struct TokenSettings {
    pub secret: Option<String>,
    /// PEM of an RSA or EC (P-256) public key: tokens signed RS256 or ES256 with its private half.
    pub public_key_file: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// The longest a token may live (`exp` minus `iat`, or minus now without `iat`); 0: no limit.
    pub max_lifetime_secs: u64,
}

pub struct Auth {
    encoding: Option<EncodingKey>,
    decoders: Vec<(Algorithm, DecodingKey)>,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
    max_lifetime_secs: u64,
}

impl Auth {
    pub fn from_secret(secret: Option<&str>) -> Result<Self, AuthConfigError> {
        Self::new(&TokenSettings {
            secret: secret.map(str::to_owned),
            leeway_secs: 30,
            max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
            ..Default::default()
        })
    }

    pub fn new(settings: &TokenSettings) -> Result<Self, AuthConfigError> {
        let mut decoders = Vec::new();
        let mut encoding = None;
        if let Some(secret) = &settings.secret {
            if secret.len() < MIN_SECRET_LEN {
                return Err(AuthConfigError::ShortSecret);
            }
            encoding = Some(EncodingKey::from_secret(secret.as_bytes()));
            decoders.push((Algorithm::HS256, DecodingKey::from_secret(secret.as_bytes())));
        }
        if let Some(path) = &settings.public_key_file {
            if settings.issuer.is_none() || settings.audience.is_none() {
                return Err(AuthConfigError::UnboundIdentityProvider);
            }
            let bad = |detail: String| AuthConfigError::PublicKey { path: path.clone(), detail };
            let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            let key = match DecodingKey::from_rsa_pem(&pem) {
                Ok(key) => (Algorithm::RS256, key),
                Err(_) => (Algorithm::ES256, DecodingKey::from_ec_pem(&pem).map_err(|e| bad(e.to_string()))?),
            };
            decoders.push(key);
        }
        if decoders.is_empty() {
            return Err(AuthConfigError::MissingSecret);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = decoders.iter().map(|(a, _)| *a).collect();
        validation.leeway = settings.leeway_secs;
        validation.validate_nbf = true;
        // A configured issuer or audience must be present, not merely right when present.
        let mut required = vec!["exp", "sub"];
        required.extend(settings.issuer.as_ref().map(|_| "iss"));
        required.extend(settings.audience.as_ref().map(|_| "aud"));
        validation.set_required_spec_claims(&required);
        match &settings.issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        match &settings.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        Ok(Self {
            encoding,
            decoders,
            validation,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            max_lifetime_secs: settings.max_lifetime_secs,
        })
    }

    pub fn issue(&self, subject: &str, role: Role, ttl: Duration) -> Result<String, AuthConfigError> {
        let encoding = self.encoding.as_ref().ok_or(AuthConfigError::CannotIssue)?;
        if self.max_lifetime_secs > 0 && ttl.as_secs() > self.max_lifetime_secs {
            return Err(AuthConfigError::TooLong { max: self.max_lifetime_secs, asked: ttl.as_secs() });
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = Claims {
            sub: subject.to_owned(),
            role,
            iat: now,
            exp: now + ttl.as_secs(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, encoding)?)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let invalid = |e: jsonwebtoken::errors::Error| ApiError::unauthorized(format!("invalid token: {e}"));
        let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
        let (algorithm, key) =
            self.decoders.iter().find(|(algorithm, _)| *algorithm == header.alg).ok_or_else(|| {
                ApiError::unauthorized(format!("invalid token: algorithm {:?} is not accepted", header.alg))
            })?;
        // Each key verifies only its own algorithm (no confusing an RSA key for an HMAC secret).
        let mut validation = self.validation.clone();
        validation.algorithms = vec![*algorithm];
        let claims =
            jsonwebtoken::decode::<Claims>(token, key, &validation).map(|data| data.claims).map_err(invalid)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let lifetime = claims.exp.saturating_sub(if claims.iat > 0 { claims.iat } else { now });
        if self.max_lifetime_secs > 0 && lifetime > self.max_lifetime_secs {
            return Err(ApiError::unauthorized(format!(
                "invalid token: it lives {lifetime} s, longer than the {} s this server accepts",
                self.max_lifetime_secs
            )));
        }
        Ok(claims)
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

/// What the `authenticate` middleware needs: token keys, API keys and the identity limit.
#[derive(Clone)]
pub struct Authenticator {
    pub tokens: Arc<Auth>,
    pub keys: ApiKeys,
    pub limits: Arc<Limits>,
}

impl Authenticator {
    /// The caller behind `Authorization: Bearer <JWT or API key>`.
    pub async fn bearer(&self, headers: &axum::http::HeaderMap) -> Result<Principal, ApiError> {
        let header = headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization header"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized("Authorization must be 'Bearer <token>'"))?
            .trim();
        if token.starts_with(KEY_PREFIX) {
            return self.keys.authenticate(token).await;
        }
        let claims = self.tokens.verify(token)?;
        Ok(Principal { subject: claims.sub, role: claims.role })
    }
}

/// Middleware: rejects requests without a valid bearer token, otherwise records the principal.
pub async fn authenticate(
    State(auth): State<Authenticator>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let principal = auth.bearer(request.headers()).await?;
    auth.limits.check_identity(&principal.subject)?;
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| ApiError::unauthorized("not authenticated"))
    }
}

/// An admin (key management), with the metadata its commands carry.
#[derive(Debug, Clone)]
pub struct Admin(pub Writer);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let writer = Writer::from_request_parts(parts, state).await?;
        match writer.principal.role {
            Role::Admin => Ok(Admin(writer)),
            other => Err(ApiError::forbidden(format!("only admin may manage API keys, not {}", other.as_str()))),
        }
    }
}

/// A principal allowed to read the audit trail (admin, auditor).
#[derive(Debug, Clone)]
pub struct AuditReader(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for AuditReader {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        match principal.role.can_audit() {
            true => Ok(AuditReader(principal)),
            false => Err(ApiError::forbidden(format!("role {} may not read the audit trail", principal.role.as_str()))),
        }
    }
}

/// A principal allowed to change things, with the metadata its commands carry.
#[derive(Debug, Clone)]
pub struct Writer {
    pub principal: Principal,
    pub meta: CommandMeta,
}

impl Writer {
    /// The principal with the metadata its commands carry, whatever its role.
    async fn of<S: Send + Sync>(parts: &mut Parts, state: &S, principal: Principal) -> Writer {
        let RequestId(request_id) = match RequestId::from_request_parts(parts, state).await {
            Ok(id) => id,
            Err(never) => match never {},
        };
        let mut meta = CommandMeta::new(principal.actor());
        meta.request_id = request_id;
        Writer { principal, meta }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Writer {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        if !principal.role.can_write() {
            return Err(ApiError::forbidden(format!("role {} may only read", principal.role.as_str())));
        }
        Ok(Writer::of(parts, state, principal).await)
    }
}

/// A principal allowed to approve gated waves (approver, admin), with the
/// metadata its command carries. Whether it created the campaign is the
/// campaign's to decide.
#[derive(Debug, Clone)]
pub struct Approver(pub Writer);

impl<S: Send + Sync> FromRequestParts<S> for Approver {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        if !principal.role.can_approve() {
            return Err(ApiError::forbidden(format!(
                "role {} may not approve waves: the approver or admin role may",
                principal.role.as_str()
            )));
        }
        Ok(Approver(Writer::of(parts, state, principal).await))
    }
}
