//! Configuration, from flags or environment variables (flags win).

use std::net::SocketAddr;

use clap::Args;

use crate::secret::Secret;

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Postgres URL; the database is created if it does not exist.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/ota",
        hide_env_values = true
    )]
    pub database_url: Secret,

    /// Connections in the Postgres pool.
    #[arg(long, env = "OTA_DB_MAX_CONNECTIONS", default_value_t = 20)]
    pub db_max_connections: u32,

    /// One NATS server, or several of a cluster separated by commas.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// A NATS credentials file (a user JWT and its nkey seed: servers in operator mode).
    #[arg(long, env = "NATS_CREDS")]
    pub nats_creds: Option<std::path::PathBuf>,

    /// A NATS user (with NATS_PASSWORD), for servers with a users list.
    #[arg(long, env = "NATS_USER")]
    pub nats_user: Option<String>,

    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<Secret>,

    /// A NATS nkey seed (`SU...`), for servers that list nkey users.
    #[arg(long, env = "NATS_NKEY_SEED", hide_env_values = true)]
    pub nats_nkey_seed: Option<Secret>,

    /// The CA that signed the NATS servers' certificates: TLS is then required.
    #[arg(long, env = "NATS_CA_FILE")]
    pub nats_ca_file: Option<std::path::PathBuf>,

    /// A client certificate and key for NATS servers that verify clients (mutual TLS).
    #[arg(long, env = "NATS_TLS_CERT", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<std::path::PathBuf>,

    #[arg(long, env = "NATS_TLS_KEY", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<std::path::PathBuf>,

    /// Copies JetStream keeps of each stream: 3 in a three-server cluster.
    #[arg(long, env = "OTA_NATS_REPLICAS", default_value_t = 1)]
    pub nats_replicas: usize,

    /// Days of events the events stream keeps (the event store keeps everything).
    #[arg(long, env = "OTA_EVENTS_STREAM_MAX_AGE_DAYS", default_value_t = 7)]
    pub events_stream_max_age_days: u64,

    /// Bytes the events stream keeps at most, the oldest going first; -1: no limit
    /// (JetStream reserves the limit from its storage when the stream is made).
    #[arg(long, env = "OTA_EVENTS_STREAM_MAX_BYTES", default_value_t = -1, allow_negative_numbers = true)]
    pub events_stream_max_bytes: i64,

    /// `text` for people, `json` (one object a line) for log pipelines.
    #[arg(long, env = "OTA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Prefix of every NATS stream, consumer and subject.
    #[arg(long, env = "OTA_NATS_PREFIX", default_value = "ota")]
    pub nats_prefix: String,

    /// Where firmware binaries live: a directory, or an object_store URL.
    #[arg(long, env = "OTA_STORAGE_URL", default_value = "./data/firmware")]
    pub storage_url: String,

    #[arg(long, env = "OTA_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Seconds a client has to send a request's headers (and a TLS handshake to finish);
    /// an idle keep-alive connection is closed after as long.
    #[arg(long, env = "OTA_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,

    /// Open client connections at most; beyond it new ones wait in the listen queue.
    #[arg(long, env = "OTA_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// PEM certificate chain: serve HTTPS (needs `OTA_TLS_KEY`).
    #[arg(long, env = "OTA_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// PEM private key of that certificate (needs `OTA_TLS_CERT`).
    #[arg(long, env = "OTA_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,

    /// PEM CA certificates of device client certificates (needs OTA_TLS_CERT): a DDI
    /// client whose certificate chains to one, with the controller id as its subject's
    /// common name, needs no token.
    #[arg(long, env = "OTA_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<std::path::PathBuf>,

    /// Reverse proxies (addresses or CIDRs, comma-separated) whose `X-Forwarded-For` names the client.
    #[arg(long, env = "OTA_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,

    /// HS256 secret for operator tokens (at least 32 bytes).
    #[arg(long, env = "OTA_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// PEM public key (RSA or EC P-256) of an identity provider: accept its RS256 / ES256 tokens.
    #[arg(long, env = "OTA_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<String>,

    /// Required `iss` claim of bearer tokens.
    #[arg(long, env = "OTA_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim of bearer tokens.
    #[arg(long, env = "OTA_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock skew tolerated on token expiry, in seconds.
    #[arg(long, env = "OTA_JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,

    /// The longest a bearer token may live, in seconds (`exp` minus `iat`); `ota token --ttl` is held to it too.
    #[arg(long, env = "OTA_JWT_MAX_LIFETIME_SECS", default_value_t = ota_api::auth::DEFAULT_MAX_LIFETIME_SECS)]
    pub jwt_max_lifetime_secs: u64,

    /// Largest firmware image accepted, in bytes.
    #[arg(long, env = "OTA_MAX_FIRMWARE_BYTES", default_value_t = 2 * 1024 * 1024 * 1024)]
    pub max_firmware_bytes: u64,

    /// The URL devices reach this server at, used in DDI links and pushed download
    /// links (default: `http://<listen address>`).
    #[arg(long, env = "OTA_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// What Prometheus must send to read `/metrics` (`Authorization: Bearer`, at least 32
    /// bytes); unset, `/metrics` is open (keep it off the public network).
    #[arg(long, env = "OTA_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<Secret>,

    /// DDI gateway token: acts as any device, and registers unknown devices on first poll.
    #[arg(long, env = "OTA_DDI_GATEWAY_TOKEN", hide_env_values = true)]
    pub ddi_gateway_token: Option<Secret>,

    /// Seconds a DDI device sleeps between polls (told as `HH:MM:SS`, below one day).
    #[arg(long, env = "OTA_DDI_POLL_SECS", default_value_t = 300)]
    pub ddi_poll_secs: u64,

    /// Spread of the polling interval per device, in percent, so fleets do not poll in step.
    #[arg(long, env = "OTA_DDI_POLL_JITTER_PERCENT", default_value_t = 10)]
    pub ddi_poll_jitter_percent: u8,

    /// Devices whose DDI state is kept in memory (least recently polled go first);
    /// size it to the devices that poll within 30 s. Only authenticated devices are kept.
    #[arg(long, env = "OTA_DDI_CACHE_DEVICES", default_value_t = 100_000)]
    pub ddi_cache_devices: usize,

    /// Key for signed download links (at least 32 bytes). Without it a key is derived
    /// from the JWT secret; without either, one is drawn once and kept in the database.
    #[arg(long, env = "OTA_DOWNLOAD_URL_SECRET", hide_env_values = true)]
    pub download_url_secret: Option<Secret>,

    /// With S3 storage (`--features cloud`): answer artifact downloads with a redirect to a
    /// pre-signed store URL, so the bytes come from the store rather than through the server.
    #[arg(long, env = "OTA_DOWNLOAD_REDIRECT", default_value_t = false)]
    pub download_redirect: bool,

    /// ed25519 key (64 hex characters: the 32-byte seed) that signs exported event-chain heads.
    #[arg(long, env = "OTA_AUDIT_SIGNING_KEY", hide_env_values = true)]
    pub audit_signing_key: Option<Secret>,

    /// Where signed checkpoints of the event chain go (a directory or an object_store URL),
    /// each a new file never overwritten; needs OTA_AUDIT_SIGNING_KEY. Use write-once storage.
    #[arg(long, env = "OTA_AUDIT_CHECKPOINT_URL")]
    pub audit_checkpoint_url: Option<String>,

    /// Seconds between checkpoints (one is written only when the chain grew).
    #[arg(long, env = "OTA_AUDIT_CHECKPOINT_SECS", default_value_t = 300)]
    pub audit_checkpoint_secs: u64,

    /// Trusted firmware signing keys: `key_id:hex-public-key,...` (ed25519; `ota keygen` makes pairs).
    #[arg(long, env = "OTA_FIRMWARE_KEYS", default_value = "")]
    pub firmware_keys: String,

    /// Refuse firmware that is unsigned or badly signed (422), and campaigns or updates of unverified firmware.
    #[arg(long, env = "OTA_REQUIRE_SIGNED_FIRMWARE", default_value_t = false)]
    pub require_signed_firmware: bool,

    /// Distinct trusted keys that must sign a release manifest for it to verify.
    #[arg(long, env = "OTA_RELEASE_SIGNATURE_THRESHOLD", default_value_t = 1)]
    pub release_signature_threshold: usize,

    /// Requests per second per identity (operator, API key) on the management API; 0 = no limit.
    #[arg(long, env = "OTA_RATE_LIMIT_IDENTITY", default_value_t = 50)]
    pub rate_limit_identity: u32,

    /// Requests per second per device on DDI and status routes (artifact downloads excepted); 0 = no limit.
    #[arg(long, env = "OTA_RATE_LIMIT_DEVICE", default_value_t = 10)]
    pub rate_limit_device: u32,

    /// Requests per second per client address, before authentication; 0 = no limit.
    #[arg(long, env = "OTA_RATE_LIMIT_ADDRESS", default_value_t = 500)]
    pub rate_limit_address: u32,

    /// Loopback clients skip the address limit.
    #[arg(long, env = "OTA_RATE_LIMIT_EXEMPT_LOOPBACK", default_value_t = true, action = clap::ArgAction::Set)]
    pub rate_limit_exempt_loopback: bool,

    /// Artifact downloads one device may have running at once; 0 = no limit.
    #[arg(long, env = "OTA_DOWNLOADS_PER_DEVICE", default_value_t = 2)]
    pub downloads_per_device: u32,

    /// Event streams (`GET /api/v1/stream`) one operator, key or token subject may
    /// hold open at once; 0 = no limit.
    #[arg(long, env = "OTA_STREAMS_PER_IDENTITY", default_value_t = 16)]
    pub streams_per_identity: u32,

    /// Deadline, in seconds, of every request that is not an upload or a download.
    #[arg(long, env = "OTA_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Seconds a signed download link stays valid.
    #[arg(long, env = "OTA_DOWNLOAD_URL_TTL_SECS", default_value_t = 24 * 3600)]
    pub download_url_ttl_secs: u64,

    /// Attempts at a webhook delivery before it is given up as `failed`.
    #[arg(long, env = "OTA_WEBHOOK_MAX_ATTEMPTS", default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub webhook_max_attempts: u32,

    /// Seconds a webhook receiver has to answer one attempt.
    #[arg(long, env = "OTA_WEBHOOK_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub webhook_timeout_secs: u64,

    /// Milliseconds before the first webhook retry; each later wait doubles, up to an hour.
    #[arg(long, env = "OTA_WEBHOOK_RETRY_BASE_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub webhook_retry_base_ms: u64,

    /// Networks webhook receivers must be in (comma-separated, such as
    /// `10.20.0.0/16,::1/128`); receivers are then named by address. Empty: anywhere.
    #[arg(long, env = "OTA_WEBHOOK_ALLOWED_NETWORKS", default_value = "")]
    pub webhook_allowed_networks: String,
}

impl Settings {
    /// How webhook deliveries are sent and retried.
    pub fn webhook_settings(&self) -> Result<ota_notify::DeliverySettings, ota_notify::destinations::BadNetwork> {
        Ok(ota_notify::DeliverySettings {
            max_attempts: self.webhook_max_attempts,
            timeout: std::time::Duration::from_secs(self.webhook_timeout_secs),
            retry_base: std::time::Duration::from_millis(self.webhook_retry_base_ms),
            retry_max: std::time::Duration::from_secs(3600),
            destinations: self.webhook_allowed_networks.parse()?,
        })
    }

    /// Bursts allow four seconds' worth of requests at once.
    pub fn limit_settings(&self) -> Result<ota_api::limits::LimitSettings, ota_api::client::BadProxy> {
        let rate = |per_second: u32| ota_api::limits::Rate { per_second, burst: per_second.saturating_mul(4) };
        Ok(ota_api::limits::LimitSettings {
            identity: rate(self.rate_limit_identity),
            device: rate(self.rate_limit_device),
            address: rate(self.rate_limit_address),
            exempt_loopback: self.rate_limit_exempt_loopback,
            request_timeout: std::time::Duration::from_secs(self.request_timeout_secs.max(1)),
            downloads_per_device: self.downloads_per_device,
            streams_per_identity: self.streams_per_identity,
            trusted_proxies: self.trusted_proxies.parse()?,
        })
    }

    /// Names and layout of this deployment's streams.
    pub fn bus(&self) -> Result<ota_domain::bus::BusNames, ota_domain::bus::BadPrefix> {
        let retention = ota_domain::bus::Retention {
            max_age: std::time::Duration::from_secs(self.events_stream_max_age_days.saturating_mul(24 * 3600)),
            max_bytes: self.events_stream_max_bytes,
        };
        Ok(ota_domain::bus::BusNames::new(&self.nats_prefix)?
            .with_replicas(self.nats_replicas)
            .with_events_retention(retention))
    }

    pub fn token_settings(&self) -> ota_api::auth::TokenSettings {
        ota_api::auth::TokenSettings {
            secret: self.jwt_secret.as_ref().map(|s| s.expose().to_owned()),
            public_key_file: self.jwt_public_key_file.clone(),
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            leeway_secs: self.jwt_leeway_secs,
            max_lifetime_secs: self.jwt_max_lifetime_secs,
        }
    }

    /// Defaults for everything, as if no flag and no variable were given.
    /// How to reach NATS: the servers, credentials and TLS.
    /// Connects to this NATS, with these credentials, from now on.
    pub fn use_nats(&mut self, nats: &crate::nats::NatsConnection) {
        self.nats_url = nats.urls.clone();
        self.nats_creds = nats.creds.clone();
        self.nats_user = nats.user.clone();
        self.nats_password = nats.password.clone();
        self.nats_nkey_seed = nats.nkey_seed.clone();
        self.nats_ca_file = nats.ca_file.clone();
        (self.nats_tls_cert, self.nats_tls_key) = nats.client_cert.clone().unzip();
    }

    pub fn nats(&self) -> crate::nats::NatsConnection {
        crate::nats::NatsConnection {
            urls: self.nats_url.clone(),
            creds: self.nats_creds.clone(),
            user: self.nats_user.clone(),
            password: self.nats_password.clone(),
            nkey_seed: self.nats_nkey_seed.clone(),
            ca_file: self.nats_ca_file.clone(),
            client_cert: self.nats_tls_cert.clone().zip(self.nats_tls_key.clone()),
        }
    }

    pub fn defaults() -> Self {
        // Defaults always parse; a failure here is a bug in the attributes above.
        Self::try_from_args(["ota"]).unwrap_or_else(|e| panic!("settings defaults: {e}"))
    }

    /// The settings a command line (program name first) and the environment give.
    pub fn try_from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::FromArgMatches;
        let cmd = <Self as Args>::augment_args(clap::Command::new("ota"));
        Self::from_arg_matches(&cmd.try_get_matches_from(args)?)
    }
}

/// How `ota` writes its logs (to standard error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::Settings;

    #[test]
    fn debug_output_holds_no_secret() {
        let secrets = [
            "postgres://ota:db-password-1@db/ota",
            "jwt-secret-jwt-secret-jwt-secret-jwt",
            "gateway-token-gateway-token-gateway",
            "download-secret-download-secret-down",
            "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100",
        ];
        let settings = Settings::try_from_args([
            "ota",
            "--database-url",
            secrets[0],
            "--jwt-secret",
            secrets[1],
            "--ddi-gateway-token",
            secrets[2],
            "--download-url-secret",
            secrets[3],
            "--audit-signing-key",
            secrets[4],
        ])
        .expect("settings");
        let shown = format!("{settings:?}");
        for secret in secrets {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
        assert!(shown.contains("[redacted]"), "{shown}");
        assert_eq!(settings.jwt_secret.as_deref(), Some(secrets[1]), "still usable");
    }
}
