//! An API key as the API shows it (never its secret, except once, when issued).

use chrono::{DateTime, Utc};
use ota_domain::api_key::ApiKey as ApiKeyState;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Role;
use crate::error::ApiError;

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub created_at: Option<DateTime<Utc>>,
    /// `kind:id` of the admin who issued it.
    pub created_by: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Updated in batches every few seconds.
    pub last_used_at: Option<DateTime<Utc>>,
    /// The key itself, `ota_<id>_<secret>`: only in the answer to `POST /api/v1/api-keys`,
    /// never again (only a hash of the secret is kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Who issued each key and when it was last used, by key id.
#[derive(sqlx::FromRow)]
pub struct Provenance {
    pub id: String,
    pub created_by: Option<String>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    pub fn new(key: ApiKeyState, provenance: Option<Provenance>) -> Result<Self, ApiError> {
        let id = key.id.ok_or_else(|| ApiError::internal_text("API key state without id"))?;
        let role = Role::parse(&key.role)
            .ok_or_else(|| ApiError::internal_text(format!("API key {id} has an unknown role {:?}", key.role)))?;
        let (created_by, last_used_at) = provenance.map_or((None, None), |p| (p.created_by, p.last_used_at));
        Ok(ApiKey {
            id,
            name: key.name,
            role,
            created_at: key.created_at,
            created_by,
            expires_at: key.expires_at,
            revoked_at: key.revoked_at,
            last_used_at,
            key: None,
        })
    }

    /// Issuers and last uses of the given keys, or of every key (oldest first) when `ids` is `None`.
    pub async fn provenance(pool: &PgPool, ids: Option<&[String]>) -> Result<Vec<Provenance>, ApiError> {
        Ok(sqlx::query_as(
            "SELECT e.aggregate_id AS id, e.metadata->>'actor_kind' || ':' || (e.metadata->>'actor_id') AS created_by,
                    u.last_used_at
             FROM events e LEFT JOIN api_key_usage u ON u.key_id = e.aggregate_id
             WHERE e.aggregate_type = 'ApiKey' AND e.sequence = 1 AND ($1::text[] IS NULL OR e.aggregate_id = ANY($1))
             ORDER BY e.global_seq",
        )
        .bind(ids)
        .fetch_all(pool)
        .await?)
    }
}
