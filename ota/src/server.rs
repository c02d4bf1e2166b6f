//! Wires the whole server: database, NATS, store, relay, projection workers, HTTP.
//! `ota serve` and the tests start it the same way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use ota_domain::bus::BadPrefix;
use ota_domain::firmware::DeliveryPolicy;
use ota_orchestrator::dispatch::DispatchHandle;
use ota_orchestrator::rollout::{ProcessManager, RolloutHandle};
use ota_orchestrator::{Relay, RelayHandle, Store};
use ota_projections::WorkerHandle;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::settings::Settings;
use ota_api::auth::{Auth, AuthConfigError};
use ota_api::storage::{BlobError, Blobs};
use ota_api::AppState;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Prefix(#[from] BadPrefix),
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    #[error(transparent)]
    Storage(#[from] BlobError),
    #[error(transparent)]
    Schema(#[from] ota_migrations::SchemaError),
    #[error("OTA_DOWNLOAD_URL_SECRET must be at least {} bytes", ota_api::auth::MIN_SECRET_LEN)]
    DownloadSecret,
    /// It lets its holder act as any device and register new ones.
    #[error("OTA_DDI_GATEWAY_TOKEN must be at least {} bytes", ota_api::auth::MIN_SECRET_LEN)]
    GatewayToken,
    #[error("OTA_METRICS_TOKEN must be at least {} bytes", ota_api::auth::MIN_SECRET_LEN)]
    MetricsToken,
    #[error("OTA_FIRMWARE_KEYS: {0}")]
    FirmwareKeys(#[from] ota_domain::signature::KeyListError),
    #[error("OTA_AUDIT_SIGNING_KEY must be 64 hex characters (an ed25519 seed)")]
    AuditKey,
    #[error("OTA_AUDIT_CHECKPOINT_URL needs OTA_AUDIT_SIGNING_KEY to sign the checkpoints")]
    CheckpointsUnsigned,
    #[error("OTA_AUDIT_CHECKPOINT_URL: {0}")]
    Checkpoints(#[from] crate::checkpoints::CheckpointError),
    #[error(transparent)]
    Nats(#[from] crate::nats::NatsError),
    #[error("reading or storing the shared server keys: {0}")]
    Keys(#[source] sqlx::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] crate::transport::TlsError),
    #[error(transparent)]
    TrustedProxies(#[from] ota_api::client::BadProxy),
    #[error(transparent)]
    WebhookNetworks(#[from] ota_notify::destinations::BadNetwork),
    #[error("the webhook HTTP client: {0}")]
    Webhooks(#[source] reqwest::Error),
}

/// Which background parts to run beside the HTTP API.
#[derive(Debug, Clone, Copy)]
pub struct Components {
    pub relay: bool,
    pub projections: bool,
    /// The reactions: the rollout process manager, the NATS device channel and
    /// webhook deliveries.
    pub rollouts: bool,
}

impl Default for Components {
    fn default() -> Self {
        Self { relay: true, projections: true, rollouts: true }
    }
}

pub struct RunningServer {
    pub addr: SocketAddr,
    pub state: AppState,
    pub relay: Option<RelayHandle>,
    pub workers: Vec<WorkerHandle>,
    pub rollouts: Option<RolloutHandle>,
    pub dispatch: Option<DispatchHandle>,
    pub notify: Option<ota_notify::NotifyHandle>,
    pub chainer: ota_orchestrator::chain::ChainerHandle,
    checkpoints: Option<JoinHandle<()>>,
    usage_writer: JoinHandle<()>,
    pruner: JoinHandle<()>,
    storage_gc: JoinHandle<()>,
    http: JoinHandle<()>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl RunningServer {
    /// Starts a relay with this server's connections (e.g. after the first was stopped).
    pub fn new_relay(&self) -> Relay {
        Relay::new(
            self.state.pool.clone(),
            self.state.js.clone(),
            self.state.names.clone(),
            self.state.store.commit_signal(),
        )
    }

    /// Starts a process manager with this server's connections (e.g. after the first was stopped).
    pub fn new_process_manager(&self) -> ProcessManager {
        ProcessManager::new(
            self.state.store.clone(),
            self.state.js.clone(),
            self.state.names.clone(),
            self.state.delivery(),
        )
    }

    /// Stops accepting requests, lets in-flight ones finish, then stores what waits in
    /// memory (download records, last-seen times, API-key use), so a graceful stop
    /// (SIGTERM) loses nothing. SIGKILL loses at most the last 2.5 s of those.
    pub async fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.http).await;
        self.state.ddi.flush(&self.state.pool).await;
        if let Err(e) = self.state.key_usage.flush(&self.state.pool).await {
            tracing::warn!(error = %e, "API-key use not stored at shutdown");
        }
    }

    /// Waits until the HTTP server ends.
    pub async fn wait(mut self) {
        let _ = (&mut self.http).await;
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.http.abort();
        self.usage_writer.abort();
        self.pruner.abort();
        self.storage_gc.abort();
        if let Some(checkpoints) = &self.checkpoints {
            checkpoints.abort();
        }
    }
}

/// Connects to one server, or to any of a cluster's (`nats://a:4222,nats://b:4222`),
/// with the credentials and TLS the settings give.
pub async fn connect_nats(connection: &crate::nats::NatsConnection) -> Result<async_nats::Client, ServerError> {
    Ok(connection.connect().await?)
}

/// The ed25519 key that signs exported chain heads (OTA_AUDIT_SIGNING_KEY).
fn audit_key(settings: &Settings) -> Result<Option<ed25519_dalek::SigningKey>, ServerError> {
    let Some(raw) = &settings.audit_signing_key else { return Ok(None) };
    let seed: [u8; 32] = hex::decode(raw.trim()).ok().and_then(|b| b.try_into().ok()).ok_or(ServerError::AuditKey)?;
    Ok(Some(ed25519_dalek::SigningKey::from_bytes(&seed)))
}

/// The key of signed download links: configured, else derived from the JWT secret
/// (so every instance agrees), else one drawn once and kept in the database, which
/// every instance on it shares (and which outlives restarts).
pub async fn download_signer(settings: &Settings, pool: &sqlx::PgPool) -> Result<ota_ddi::UrlSigner, ServerError> {
    use sha2::{Digest, Sha256};
    Ok(match (&settings.download_url_secret, &settings.jwt_secret) {
        (Some(secret), _) if secret.len() < ota_api::auth::MIN_SECRET_LEN => return Err(ServerError::DownloadSecret),
        (Some(secret), _) => ota_ddi::UrlSigner::new(secret.as_bytes()),
        (None, Some(jwt)) => {
            ota_ddi::UrlSigner::new(Sha256::digest(format!("download-urls\n{}", jwt.expose())).to_vec())
        }
        (None, None) => ota_ddi::UrlSigner::new(shared_key(pool, "download_links").await?),
    })
}

/// A key every instance on the database shares: the first to ask draws it.
async fn shared_key(pool: &sqlx::PgPool, name: &str) -> Result<Vec<u8>, ServerError> {
    let drawn: [u8; 32] = rand::random();
    sqlx::query("INSERT INTO server_keys (name, key) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(drawn.as_slice())
        .execute(pool)
        .await
        .map_err(ServerError::Keys)?;
    sqlx::query_scalar("SELECT key FROM server_keys WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .map_err(ServerError::Keys)
}

pub async fn start(settings: &Settings, components: Components) -> Result<RunningServer, ServerError> {
    if settings.ddi_gateway_token.as_ref().is_some_and(|t| !t.is_empty() && t.len() < ota_api::auth::MIN_SECRET_LEN) {
        return Err(ServerError::GatewayToken);
    }
    if settings.metrics_token.as_ref().is_some_and(|t| t.len() < ota_api::auth::MIN_SECRET_LEN) {
        return Err(ServerError::MetricsToken);
    }
    // Before any worker records: the relay and the process manager count from their start.
    ota_api::metrics::install();
    let names = settings.bus()?;
    let auth = Arc::new(Auth::new(&settings.token_settings())?);
    let tls = crate::transport::tls_config(
        settings.tls_cert.as_deref(),
        settings.tls_key.as_deref(),
        settings.tls_client_ca.as_deref(),
    )?;
    let limit_settings = settings.limit_settings()?;
    let blobs = Blobs::open(&settings.storage_url)?;
    let audit_key = audit_key(settings)?;
    let checkpoints = match (&settings.audit_checkpoint_url, &audit_key) {
        (Some(_), None) => return Err(ServerError::CheckpointsUnsigned),
        (Some(url), Some(key)) => Some((crate::checkpoints::CheckpointTarget::open(url)?, key.clone())),
        (None, _) => None,
    };
    let pool = ota_migrations::connect(&settings.database_url, settings.db_max_connections).await?;
    ota_migrations::migrate(&pool).await?;
    let nats = connect_nats(&settings.nats()).await?;
    let js = jetstream::ContextBuilder::new().timeout(Duration::from_secs(10)).build(nats.clone());
    let store = Store::new(pool.clone());
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|source| ServerError::Listen { addr: settings.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Listen { addr: settings.listen, source })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public_url = settings.public_url.clone().unwrap_or_else(|| format!("{scheme}://{addr}"));
    let signer = download_signer(settings, &pool).await?;
    let key_usage = Arc::new(ota_api::last_seen::LastSeen::api_keys());
    let limits = Arc::new(ota_api::limits::Limits::new(limit_settings));
    let reports = ota_orchestrator::devices::Reports::spawn(&store);
    let ddi = ota_api::ddi::Ddi::start(
        ota_api::ddi::DdiSettings {
            public_url: public_url.clone(),
            gateway_token: settings.ddi_gateway_token.as_ref().map(|t| t.expose().to_owned()),
            poll_secs: settings.ddi_poll_secs,
            poll_jitter_percent: settings.ddi_poll_jitter_percent,
            cache_devices: settings.ddi_cache_devices,
            signer: signer.clone(),
            download_ttl_secs: settings.download_url_ttl_secs,
            redirect: settings.download_redirect,
        },
        &store,
        &reports,
        &pool,
        &nats,
        &names,
    );
    let state = AppState {
        store: store.clone(),
        reports,
        pool: pool.clone(),
        nats,
        js: js.clone(),
        names: names.clone(),
        blobs,
        auth,
        max_firmware_bytes: settings.max_firmware_bytes,
        ddi: Arc::new(ddi),
        audit_key: audit_key.map(Arc::new),
        firmware_keys: Arc::new(ota_domain::signature::TrustedKeys::parse(&settings.firmware_keys)?),
        require_signed_firmware: settings.require_signed_firmware,
        release_signature_threshold: settings.release_signature_threshold,
        key_usage: key_usage.clone(),
        limits: limits.clone(),
        metrics_token: settings.metrics_token.as_ref().map(|t| Arc::from(t.expose())),
        webhooks: ota_notify::Sender::new(pool.clone(), settings.webhook_settings()?).map_err(ServerError::Webhooks)?,
    };
    // Only tidying: the rate limiters' idle keys, idempotency keys past their 24
    // hours, and storage no firmware refers to.
    let storage_gc = crate::gc::spawn(pool.clone(), state.blobs.clone(), names.prefix().to_owned());
    let pruner = tokio::spawn({
        let pool = pool.clone();
        async move {
            tokio::join!(limits.prune(), ota_api::idempotency::sweep(pool));
        }
    });
    let usage_writer = tokio::spawn(key_usage.run(pool.clone(), Duration::from_secs(2)));
    let chainer = ota_orchestrator::chain::spawn(pool.clone());
    let every = Duration::from_secs(settings.audit_checkpoint_secs);
    let checkpoints = checkpoints.map(|(target, key)| crate::checkpoints::spawn(pool.clone(), key, target, every));
    let relay =
        components.relay.then(|| Relay::new(pool.clone(), js.clone(), names.clone(), store.commit_signal()).spawn());
    let workers =
        if components.projections { ota_projections::spawn_all_workers(&pool, &js, &names) } else { Vec::new() };
    let delivery = DeliveryPolicy { require_signature: settings.require_signed_firmware, allow_downgrade: false };
    let rollouts =
        components.rollouts.then(|| ProcessManager::new(store.clone(), js.clone(), names.clone(), delivery).spawn());
    let dispatch = components.rollouts.then(|| {
        ota_orchestrator::dispatch::spawn(
            store.clone(),
            state.reports.clone(),
            state.nats.clone(),
            js.clone(),
            names.clone(),
            ota_orchestrator::dispatch::PushLinks {
                links: ota_ddi::Links::new(&public_url),
                signer,
                ttl_secs: i64::try_from(settings.download_url_ttl_secs).unwrap_or(i64::MAX / 2),
            },
        )
    });
    let notify =
        components.rollouts.then(|| ota_notify::spawn(pool.clone(), js.clone(), names.clone(), state.webhooks.clone()));

    let transport = crate::transport::Transport {
        header_timeout: Duration::from_secs(settings.header_timeout_secs.max(1)),
        max_connections: settings.max_connections,
        tls,
    };
    let (tx, rx) = oneshot::channel::<()>();
    let http = tokio::spawn(crate::transport::serve(listener, ota_api::router(state.clone()), transport, async {
        let _ = rx.await;
    }));
    tracing::info!(%addr, %scheme, prefix = names.prefix(), "ota server listening");
    Ok(RunningServer {
        addr,
        state,
        relay,
        workers,
        rollouts,
        dispatch,
        notify,
        chainer,
        checkpoints,
        usage_writer,
        pruner,
        storage_gc,
        http,
        shutdown: Some(tx),
    })
}

#[cfg(test)]
mod tests {
    use super::{start, Components, ServerError};
    use crate::Settings;

    #[tokio::test]
    async fn a_short_gateway_token_is_refused_before_anything_starts() {
        let settings = Settings::try_from_args(["ota", "--ddi-gateway-token", "short-token"]).expect("settings");
        let refused = start(&settings, Components::default()).await.err();
        assert!(matches!(refused, Some(ServerError::GatewayToken)), "{refused:?}");
    }
}
