//! The `ApiKey` aggregate: a long-lived credential an admin issues to a machine
//! (a CI pipeline, a dashboard). Only the SHA-256 of its secret is ever stored.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::decide::Decide;
use crate::refusal::{Refusal, Refused};

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub enum ApiKeyCommand {
    Issue {
        id: Uuid,
        name: String,
        role: String,
        secret_sha256: String,
        expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    Revoke {
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ApiKeyEvent {
    ApiKeyIssued {
        id: Uuid,
        name: String,
        role: String,
        secret_sha256: String,
        expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    ApiKeyRevoked {
        at: DateTime<Utc>,
    },
}

impl DomainEvent for ApiKeyEvent {
    fn event_type(&self) -> String {
        match self {
            ApiKeyEvent::ApiKeyIssued { .. } => "ApiKeyIssued",
            ApiKeyEvent::ApiKeyRevoked { .. } => "ApiKeyRevoked",
        }
        .to_owned()
    }
    /// Bumped with an upcaster in `crate::upcast` whenever a shape changes.
    fn event_version(&self) -> String {
        match self {
            ApiKeyEvent::ApiKeyIssued { .. } | ApiKeyEvent::ApiKeyRevoked { .. } => "1.0",
        }
        .to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("an API key with this id exists")]
    Exists,
    #[error("no such API key")]
    NotFound,
    #[error("the API key is already revoked")]
    AlreadyRevoked,
    #[error("name must be 1 to 128 characters without control characters")]
    BadName,
    #[error("expires_at is in the past")]
    AlreadyExpired,
}

impl Refused for ApiKeyError {
    fn refusal(&self) -> Refusal {
        match self {
            ApiKeyError::Exists | ApiKeyError::AlreadyRevoked => Refusal::Conflict,
            ApiKeyError::NotFound => Refusal::NotFound,
            ApiKeyError::BadName | ApiKeyError::AlreadyExpired => Refusal::Invalid,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            ApiKeyError::Exists => "api_key.exists",
            ApiKeyError::NotFound => "api_key.not_found",
            ApiKeyError::AlreadyRevoked => "api_key.revoked",
            ApiKeyError::BadName => "invalid_field",
            ApiKeyError::AlreadyExpired => "invalid_field",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: Option<Uuid>,
    pub name: String,
    pub role: String,
    pub secret_sha256: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Whether the key may authenticate at `now`.
    pub fn is_valid_at(&self, now: DateTime<Utc>) -> bool {
        self.id.is_some() && self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

impl Decide for ApiKey {
    fn decide(&self, command: ApiKeyCommand) -> Result<Vec<ApiKeyEvent>, ApiKeyError> {
        match command {
            ApiKeyCommand::Issue { .. } if self.id.is_some() => Err(ApiKeyError::Exists),
            ApiKeyCommand::Issue { id, name, role, secret_sha256, expires_at, at } => {
                let name = name.trim().to_owned();
                if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
                    return Err(ApiKeyError::BadName);
                }
                if expires_at.is_some_and(|e| e <= at) {
                    return Err(ApiKeyError::AlreadyExpired);
                }
                Ok(vec![ApiKeyEvent::ApiKeyIssued { id, name, role, secret_sha256, expires_at, at }])
            }
            ApiKeyCommand::Revoke { .. } if self.id.is_none() => Err(ApiKeyError::NotFound),
            ApiKeyCommand::Revoke { .. } if self.revoked_at.is_some() => Err(ApiKeyError::AlreadyRevoked),
            ApiKeyCommand::Revoke { at } => Ok(vec![ApiKeyEvent::ApiKeyRevoked { at }]),
        }
    }
}

impl Aggregate for ApiKey {
    const TYPE: &'static str = "ApiKey";
    type Command = ApiKeyCommand;
    type Event = ApiKeyEvent;
    type Error = ApiKeyError;
    type Services = ();

    async fn handle(&mut self, command: ApiKeyCommand, _: &(), sink: &EventSink<Self>) -> Result<(), ApiKeyError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: ApiKeyEvent) {
        match event {
            ApiKeyEvent::ApiKeyIssued { id, name, role, secret_sha256, expires_at, at } => {
                *self = ApiKey {
                    id: Some(id),
                    name,
                    role,
                    secret_sha256,
                    expires_at,
                    created_at: Some(at),
                    revoked_at: None,
                };
            }
            ApiKeyEvent::ApiKeyRevoked { at } => self.revoked_at = Some(at),
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn issued() -> ApiKeyEvent {
        ApiKeyEvent::ApiKeyIssued {
            id: Uuid::nil(),
            name: "ci".into(),
            role: "operator".into(),
            secret_sha256: "00".into(),
            expires_at: None,
            at: at(),
        }
    }

    #[test]
    fn a_key_is_issued_once_revoked_once_and_then_no_longer_valid() {
        let issue = ApiKeyCommand::Issue {
            id: Uuid::nil(),
            name: " ci ".into(),
            role: "operator".into(),
            secret_sha256: "00".into(),
            expires_at: None,
            at: at(),
        };
        TestFramework::<ApiKey>::with(())
            .given_no_previous_events()
            .when(issue.clone())
            .then_expect_events(vec![issued()]);
        TestFramework::<ApiKey>::with(()).given(vec![issued()]).when(issue).then_expect_error(ApiKeyError::Exists);
        let revoked = ApiKeyEvent::ApiKeyRevoked { at: at() };
        TestFramework::<ApiKey>::with(())
            .given(vec![issued(), revoked])
            .when(ApiKeyCommand::Revoke { at: at() })
            .then_expect_error(ApiKeyError::AlreadyRevoked);
        let mut key = ApiKey::default();
        key.apply(issued());
        assert!(key.is_valid_at(at()));
        key.apply(ApiKeyEvent::ApiKeyRevoked { at: at() });
        assert!(!key.is_valid_at(at()));
    }

    #[test]
    fn expiry_ends_validity() {
        let mut key = ApiKey::default();
        key.apply(ApiKeyEvent::ApiKeyIssued {
            id: Uuid::nil(),
            name: "ci".into(),
            role: "viewer".into(),
            secret_sha256: "00".into(),
            expires_at: Some(at()),
            at: at() - chrono::Duration::days(1),
        });
        assert!(key.is_valid_at(at() - chrono::Duration::seconds(1)));
        assert!(!key.is_valid_at(at()));
    }
}
