//! Connecting to NATS as the server: which servers, with which credentials,
//! over TLS when a CA is given. A NATS that devices can also reach must not
//! let anyone in as the server, so every credential kind NATS offers is
//! supported: a `.creds` file (operator mode), a user and password, an nkey.

use std::path::PathBuf;

use crate::secret::Secret;

#[derive(Debug, Clone, Default)]
pub struct NatsConnection {
    /// One server, or several of a cluster separated by commas.
    pub urls: String,
    pub creds: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub nkey_seed: Option<Secret>,
    /// The CA of the servers' certificates; TLS is required when set.
    pub ca_file: Option<PathBuf>,
    /// Certificate and key for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("NATS_USER and NATS_PASSWORD go together")]
    HalfAPassword,
    #[error("give one NATS credential: NATS_CREDS, NATS_USER with NATS_PASSWORD, or NATS_NKEY_SEED")]
    SeveralCredentials,
    #[error("NATS_CREDS {path}: {source}")]
    Creds { path: String, source: std::io::Error },
    #[error("{path} does not exist")]
    MissingFile { path: String },
    #[error("connecting to NATS: {0}")]
    Connect(String),
}

/// async-nats builds its TLS config from the process's default provider, which
/// rustls cannot pick when object_store's cloud features bring aws-lc-rs beside
/// ring: name ring, as the HTTP side does. A second install is refused harmlessly.
pub fn use_ring_for_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl NatsConnection {
    /// Just the servers, without credentials (a development NATS).
    pub fn open(urls: &str) -> Self {
        Self { urls: urls.to_owned(), ..Self::default() }
    }

    async fn options(&self) -> Result<async_nats::ConnectOptions, NatsError> {
        let password = match (&self.user, &self.password) {
            (Some(user), Some(password)) => Some((user.clone(), password.expose().to_owned())),
            (None, None) => None,
            _ => return Err(NatsError::HalfAPassword),
        };
        let given = [self.creds.is_some(), password.is_some(), self.nkey_seed.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(NatsError::SeveralCredentials);
        }
        let mut options = async_nats::ConnectOptions::new();
        if let Some(path) = &self.creds {
            options = options
                .credentials_file(path)
                .await
                .map_err(|source| NatsError::Creds { path: path.display().to_string(), source })?;
        }
        if let Some((user, password)) = password {
            options = options.user_and_password(user, password);
        }
        if let Some(seed) = &self.nkey_seed {
            options = options.nkey(seed.expose().to_owned());
        }
        // A missing file would otherwise surface as endless reconnect attempts.
        let files = self.ca_file.iter().chain(self.client_cert.iter().flat_map(|(cert, key)| [cert, key]));
        if let Some(missing) = files.into_iter().find(|f| !f.is_file()) {
            return Err(NatsError::MissingFile { path: missing.display().to_string() });
        }
        if let Some(ca) = &self.ca_file {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &self.client_cert {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        Ok(options)
    }

    /// Connects, retrying while the servers are away (a restart must not need NATS first).
    pub async fn connect(&self) -> Result<async_nats::Client, NatsError> {
        use_ring_for_tls();
        let servers: Vec<&str> = self.urls.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
        self.options()
            .await?
            .name("ota")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connect(servers)
            .await
            .map_err(|e| NatsError::Connect(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn credentials_are_one_kind_and_complete() {
        let half = NatsConnection { user: Some("ota".into()), ..NatsConnection::open("nats://127.0.0.1:1") };
        assert!(matches!(half.connect().await, Err(NatsError::HalfAPassword)));
        let two = NatsConnection {
            user: Some("ota".into()),
            password: Some("secret".into()),
            nkey_seed: Some("SUAM".into()),
            ..NatsConnection::open("nats://127.0.0.1:1")
        };
        assert!(matches!(two.connect().await, Err(NatsError::SeveralCredentials)));
        let no_ca = NatsConnection { ca_file: Some("/nonexistent/ca.pem".into()), ..NatsConnection::open("x") };
        assert!(matches!(no_ca.connect().await, Err(NatsError::MissingFile { .. })));
    }
}
