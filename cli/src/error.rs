//! What can go wrong in a CLI command, each with the message an operator reads on stderr.

use std::fmt;
use std::path::PathBuf;

use ota_api::error::ErrorBody;

pub type Result<T, E = CliError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered with its JSON error body.
    #[error("{0}")]
    Api(ApiFailure),
    #[error("cannot reach the server at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// A 2xx (or an error) whose body is not what the API documents: a proxy's
    /// page, another service on that port, or a server of another version.
    #[error("unexpected answer from {url} (HTTP {status}): {reason}")]
    UnexpectedAnswer { url: String, status: u16, reason: String },
    #[error("bad server URL {url:?}: {reason}")]
    BadServer { url: String, reason: String },
    #[error("no server: give --server URL, set OTA_SERVER, or run `ota login --server URL`")]
    NoServer,
    #[error("{0}")]
    NoToken(NoToken),
    #[error("{what} {}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Flags or input files that cannot make a request.
    #[error("{0}")]
    Invalid(String),
    #[error("no config directory for `ota login` (is HOME set?)")]
    NoConfigDir,
    #[error("the stored login {} is unreadable: {reason}", path.display())]
    BadConfig { path: PathBuf, reason: String },
    /// The campaign `--watch` followed ended without completing.
    #[error("campaign {id} ended {status}{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    CampaignEnded { id: uuid::Uuid, status: String, reason: Option<String> },
}

impl CliError {
    pub fn invalid(message: impl Into<String>) -> Self {
        CliError::Invalid(message.into())
    }

    /// The process exit code: 3 for a watched campaign that was cancelled or
    /// aborted (a script can tell it from a failed command), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::CampaignEnded { .. } => 3,
            _ => 1,
        }
    }
}

/// Why no token could be used.
#[derive(Debug)]
pub struct NoToken {
    pub server: String,
    /// The server the stored login is for, when it is another one.
    pub stored_for: Option<String>,
}

impl fmt::Display for NoToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no token for {}: set OTA_TOKEN (a JWT or an API key) or run `ota login --server {}`",
            self.server, self.server
        )?;
        if let Some(other) = &self.stored_for {
            // The stored key is never sent to another server than the one it was stored for.
            write!(f, " (the stored login is for {other})")?;
        }
        Ok(())
    }
}

/// An error answer of the API: its HTTP status and `{error, message, request_id, details}`.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: u16,
    pub body: ErrorBody,
}

impl ApiFailure {
    /// The stable code, e.g. `campaign.invalid_transition`.
    pub fn code(&self) -> &str {
        &self.body.error
    }
}

/// Rows of an import's `details.failed` named in a message at most.
const ROWS_SHOWN: usize = 20;

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, HTTP {}", self.body.message, self.body.error, self.status)?;
        if let Some(id) = &self.body.request_id {
            write!(f, ", request {id}")?;
        }
        f.write_str(")")?;
        let failed = self.body.details.as_ref().and_then(|d| d.get("failed")).and_then(|f| f.as_array());
        for row in failed.into_iter().flatten().take(ROWS_SHOWN) {
            let number = row.get("row").and_then(|r| r.as_u64()).unwrap_or_default();
            let error = row.get("error").and_then(|e| e.as_str()).unwrap_or_default();
            match row.get("id").and_then(|i| i.as_str()) {
                Some(id) => write!(f, "\n  row {number} ({id}): {error}")?,
                None => write!(f, "\n  row {number}: {error}")?,
            }
        }
        let more = failed.map_or(0, |rows| rows.len().saturating_sub(ROWS_SHOWN));
        if more > 0 {
            write!(f, "\n  ... and {more} more rows (--json shows them all)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(details: Option<serde_json::Value>) -> ApiFailure {
        ApiFailure {
            status: 422,
            body: ErrorBody {
                error: "import.invalid_rows".into(),
                message: "1 of 2 rows are invalid".into(),
                request_id: Some("r-1".into()),
                details,
            },
        }
    }

    #[test]
    fn an_api_error_names_its_code_status_and_request() {
        let text = failure(None).to_string();
        assert_eq!(text, "1 of 2 rows are invalid (import.invalid_rows, HTTP 422, request r-1)");
    }

    #[test]
    fn an_import_refusal_lists_its_bad_rows() {
        let details = serde_json::json!({"failed": [{"row": 2, "id": "gw-2", "error": "device_model: empty"}]});
        let text = failure(Some(details)).to_string();
        assert!(text.ends_with("\n  row 2 (gw-2): device_model: empty"), "{text}");
    }

    #[test]
    fn a_missing_token_never_offers_another_servers_login() {
        let text = NoToken { server: "https://b".into(), stored_for: Some("https://a".into()) }.to_string();
        assert!(text.contains("ota login --server https://b") && text.contains("stored login is for https://a"));
    }
}
