//! One whole server per test, as `ota serve` starts it.

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream;
use ota::server::{self, Components, RunningServer};
use ota::Settings;
use ota_api::auth::{Auth, Role};
use ota_domain::bus::BusNames;
use ota_projections::ProjectionName;
use sqlx::PgPool;
use uuid::Uuid;

use crate::proxy::FaultProxy;
use crate::wait::eventually_every;

pub const POSTGRES: &str = "127.0.0.1:5432";
pub const NATS: &str = "127.0.0.1:4222";
const SECRET: &str = "test-secret-test-secret-test-secret-0123";
/// The `iss` and `aud` test tokens carry.
pub const ISSUER: &str = "ota-testkit";
pub const AUDIENCE: &str = "ota-tests";
/// The DDI gateway token every test server accepts.
pub const GATEWAY_TOKEN: &str = "gateway-secret-for-tests-0123456789";
/// The ed25519 seed that signs chain heads in tests.
pub const AUDIT_KEY_HEX: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

#[derive(Debug, Clone)]
pub struct TestOptions {
    pub components: Components,
    pub max_firmware_bytes: u64,
    /// Route Postgres / NATS through a `FaultProxy` that the test can cut.
    pub postgres_proxy: bool,
    pub nats_proxy: bool,
    /// Firmware storage other than a fresh temporary directory (an object_store URL).
    pub storage_url: Option<String>,
    /// Redirect artifact downloads to pre-signed store URLs.
    pub download_redirect: bool,
    /// Trusted firmware keys (`id:hex,...`) and whether only verified firmware is accepted.
    pub firmware_keys: String,
    pub require_signed_firmware: bool,
    /// Rate limits per second (identity, device, address), loopback included; `None`: practically unlimited.
    pub rate_limits: Option<(u32, u32, u32)>,
    /// Deadline of non-transfer requests, in seconds (default: the server's).
    pub request_timeout_secs: Option<u64>,
    /// Devices the DDI cache holds at most (default: the server's).
    pub ddi_cache_devices: Option<usize>,
    /// Where the server writes signed chain checkpoints, every second.
    pub audit_checkpoint_url: Option<String>,
    /// A NATS of the test's own (and its prefix) instead of the shared one.
    pub nats: Option<(ota::nats::NatsConnection, String)>,
    /// Attempts at a webhook delivery (default: the server's).
    pub webhook_max_attempts: Option<u32>,
}

impl TestOptions {
    /// Everything `ota serve` runs, the rollout process manager included.
    pub fn full() -> Self {
        Self { components: Components::default(), ..Self::default() }
    }
}

impl Default for TestOptions {
    /// The server without the rollout process manager: spine and API tests drive
    /// campaigns by hand and must not race it. Rollout tests use `full()`.
    fn default() -> Self {
        Self {
            components: Components { rollouts: false, ..Components::default() },
            max_firmware_bytes: 64 * 1024 * 1024,
            postgres_proxy: false,
            nats_proxy: false,
            storage_url: None,
            download_redirect: false,
            firmware_keys: String::new(),
            require_signed_firmware: false,
            rate_limits: None,
            request_timeout_secs: None,
            ddi_cache_devices: None,
            audit_checkpoint_url: None,
            nats: None,
            webhook_max_attempts: None,
        }
    }
}

pub struct TestApp {
    pub server: RunningServer,
    pub addr: SocketAddr,
    pub db_name: String,
    /// A pool straight to the test database (not through any proxy).
    pub db: PgPool,
    pub names: BusNames,
    /// A JetStream context straight to NATS (not through any proxy).
    pub js: jetstream::Context,
    pub http: reqwest::Client,
    pub settings: Settings,
    pub postgres_proxy: Option<FaultProxy>,
    pub nats_proxy: Option<FaultProxy>,
    _storage: tempfile::TempDir,
}

pub(crate) fn database_url(host: &str, db: &str) -> String {
    format!("postgres://postgres@{host}/{db}")
}

/// The role every test server connects as: it may read and append events but
/// never change them, as in production (docs/operations.md). Test code that
/// tampers behind the server's back uses the superuser's `db` pool.
pub const SERVER_ROLE: &str = ota_migrations::DEFAULT_SERVER_ROLE;

pub(crate) fn server_database_url(host: &str, db: &str) -> String {
    format!("postgres://{SERVER_ROLE}@{host}/{db}")
}

/// Creates and migrates a test database as the superuser (the schema's owner) and
/// grants the server's role on it.
pub(crate) async fn owned_database(db_name: &str) -> PgPool {
    let db = ota_migrations::connect(&database_url(POSTGRES, db_name), 5).await.expect("create test database");
    ota_migrations::migrate(&db).await.expect("migrate test database");
    ota_migrations::grant_server_role(&db, SERVER_ROLE).await.expect("grant the server role");
    db
}

/// The settings every test server runs with, in-process or as a child process.
pub(crate) fn test_settings(database_url: &str, nats_host: &str, prefix: &str) -> Settings {
    let mut settings = Settings::defaults();
    settings.database_url = database_url.into();
    settings.db_max_connections = 20;
    settings.nats_url = format!("nats://{nats_host}");
    settings.nats_prefix = prefix.to_owned();
    // Tests drive hundreds of requests a second as one identity; only the limits tests limit.
    settings.rate_limit_identity = 1_000_000;
    settings.rate_limit_device = 1_000_000;
    settings.rate_limit_address = 1_000_000;
    settings.rate_limit_exempt_loopback = true;
    settings.listen = "127.0.0.1:0".parse().expect("addr");
    settings.jwt_secret = Some(SECRET.into());
    // Every test server checks issuer and audience, so a token meant for someone else is refused.
    settings.jwt_issuer = Some(ISSUER.to_owned());
    settings.jwt_audience = Some(AUDIENCE.to_owned());
    settings.ddi_gateway_token = Some(GATEWAY_TOKEN.into());
    settings.audit_signing_key = Some(AUDIT_KEY_HEX.into());
    // Generated requests (the contract test) subscribe webhooks to any URL: none may leave the machine.
    settings.webhook_allowed_networks = "127.0.0.0/8,::1/128".to_owned();
    settings
}

/// Drops a test's database and streams. Drop cannot await, so this runs
/// on a thread with its own runtime (the test's runtime is blocked in the drop).
pub(crate) fn cleanup(db_name: String, names: &BusNames) {
    let streams = [names.events_stream(), names.reports_stream()];
    let cleanup = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        rt.block_on(async move {
            if let Ok(nats) = async_nats::connect(NATS).await {
                let js = jetstream::new(nats);
                for stream in streams {
                    let _ = js.delete_stream(&stream).await;
                }
            }
            if let Ok(admin) = PgPool::connect(&database_url(POSTGRES, "postgres")).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")).execute(&admin).await;
            }
        });
    });
    let _ = cleanup.join();
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(TestOptions::default()).await
    }

    pub async fn spawn_with(options: TestOptions) -> Self {
        crate::init_logs();
        let id = Uuid::new_v4().simple().to_string();
        let db_name = format!("ota_test_{id}");
        let prefix = options.nats.as_ref().map_or_else(|| format!("t{}", &id[..12]), |(_, prefix)| prefix.clone());
        let storage = tempfile::tempdir().expect("temp dir");
        // Create and migrate directly, so a proxied server starts on a ready schema.
        let db = owned_database(&db_name).await;

        let postgres_proxy = if options.postgres_proxy { Some(FaultProxy::start(parse(POSTGRES)).await) } else { None };
        let nats_proxy = if options.nats_proxy { Some(FaultProxy::start(parse(NATS)).await) } else { None };
        let pg_host = postgres_proxy.as_ref().map_or(POSTGRES.to_owned(), |p| p.addr.to_string());
        let nats_host = nats_proxy.as_ref().map_or(NATS.to_owned(), |p| p.addr.to_string());

        // In clear through the proxy, which must read the protocol to lose a COMMIT's answer.
        let server_database_url = match postgres_proxy {
            Some(_) => format!("{}?sslmode=disable", server_database_url(&pg_host, &db_name)),
            None => server_database_url(&pg_host, &db_name),
        };
        let mut settings = test_settings(&server_database_url, &nats_host, &prefix);
        settings.storage_url = options.storage_url.clone().unwrap_or_else(|| storage.path().display().to_string());
        settings.download_redirect = options.download_redirect;
        settings.firmware_keys = options.firmware_keys.clone();
        settings.require_signed_firmware = options.require_signed_firmware;
        if let Some((identity, device, address)) = options.rate_limits {
            settings.rate_limit_identity = identity;
            settings.rate_limit_device = device;
            settings.rate_limit_address = address;
            settings.rate_limit_exempt_loopback = false;
        }
        if let Some(secs) = options.request_timeout_secs {
            settings.request_timeout_secs = secs;
        }
        if let Some(devices) = options.ddi_cache_devices {
            settings.ddi_cache_devices = devices;
        }
        settings.max_firmware_bytes = options.max_firmware_bytes;
        if let Some(url) = &options.audit_checkpoint_url {
            settings.audit_checkpoint_url = Some(url.clone());
            settings.audit_checkpoint_secs = 1;
        }

        if let Some(attempts) = options.webhook_max_attempts {
            settings.webhook_max_attempts = attempts;
        }
        if let Some((bus, _)) = &options.nats {
            settings.use_nats(bus);
        }
        let server = server::start(&settings, options.components).await.expect("start server");
        let nats = match &options.nats {
            Some((bus, _)) => bus.connect().await.expect("connect to the test's NATS"),
            None => async_nats::connect(NATS).await.expect("connect NATS"),
        };
        Self {
            addr: server.addr,
            server,
            db_name,
            db,
            names: BusNames::new(&prefix).expect("prefix"),
            js: jetstream::new(nats),
            http: reqwest::Client::new(),
            settings,
            postgres_proxy,
            nats_proxy,
            _storage: storage,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn token(&self, role: Role) -> String {
        self.token_for("tester", role)
    }

    /// A token for another subject, as the test server's identity settings make them.
    pub fn token_for(&self, subject: &str, role: Role) -> String {
        Auth::new(&self.settings.token_settings())
            .and_then(|a| a.issue(subject, role, Duration::from_secs(600)))
            .expect("token")
    }

    /// The secret the server verifies tokens with, for tests that forge them.
    pub fn jwt_secret(&self) -> &'static str {
        SECRET
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(self.token(Role::Operator))
    }

    pub fn get_as(&self, path: &str, role: Role) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(self.token(role))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(self.token(Role::Operator))
    }

    /// Uploads `bytes` as firmware `name:version:model`; returns status and JSON body.
    pub async fn upload_firmware(
        &self,
        name: &str,
        version: &str,
        model: &str,
        bytes: Vec<u8>,
    ) -> (u16, serde_json::Value) {
        let metadata = serde_json::json!({"name": name, "version": version, "device_model": model});
        self.upload_firmware_with(metadata, "image.swu", bytes).await
    }

    pub async fn upload_firmware_with(
        &self,
        metadata: serde_json::Value,
        filename: &str,
        bytes: Vec<u8>,
    ) -> (u16, serde_json::Value) {
        let form = reqwest::multipart::Form::new()
            .part(
                "metadata",
                reqwest::multipart::Part::text(metadata.to_string()).mime_str("application/json").expect("mime"),
            )
            .part("file", reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned()));
        let response = self.post("/api/v1/firmware").multipart(form).send().await.expect("upload request");
        json_of(response).await
    }

    /// Uploads a small firmware and returns its id.
    pub async fn firmware(&self, version: &str) -> String {
        let (status, body) = self.upload_firmware("os", version, "gw", format!("image {version}").into_bytes()).await;
        assert!(status == 201 || status == 200, "upload failed: {status} {body}");
        body["id"].as_str().expect("firmware id").to_owned()
    }

    /// Creates a campaign; the valid target ids are registered first (model `gw`),
    /// as a fleet would be, so the campaign can start.
    pub async fn create_campaign(&self, name: &str, firmware_id: &str, devices: &[&str]) -> (u16, serde_json::Value) {
        for id in devices.iter().filter(|d| ota_domain::DeviceId::parse(d).is_ok()) {
            let body = serde_json::json!({"id": id, "device_model": "gw", "firmware_version": "1.0"});
            let _ = self.post("/api/v1/devices").json(&body).send().await;
        }
        let body = serde_json::json!({"name": name, "firmware_id": firmware_id, "target": {"device_ids": devices}});
        json_of(self.post("/api/v1/campaigns").json(&body).send().await.expect("create campaign")).await
    }

    /// Posts a lifecycle action (`start`, `pause`, ...) for a campaign.
    pub async fn campaign_action(&self, id: &str, action: &str) -> (u16, serde_json::Value) {
        json_of(self.post(&format!("/api/v1/campaigns/{id}/{action}")).send().await.expect("campaign action")).await
    }

    /// Approves a campaign's waiting wave as an approver who did not create it (four eyes).
    pub async fn approve(&self, id: &str) -> (u16, serde_json::Value) {
        let request = self
            .http
            .post(self.url(&format!("/api/v1/campaigns/{id}/approve")))
            .bearer_auth(self.token_for("approver", Role::Approver));
        json_of(request.send().await.expect("approve")).await
    }

    /// Registers devices of model `gw` with the given hardware version and firmware `1.0`.
    pub async fn register_devices(&self, ids: &[String], hardware: &str) {
        for id in ids {
            let body = serde_json::json!({"id": id, "device_model": "gw", "hardware_version": hardware, "firmware_version": "1.0"});
            let (status, body) =
                json_of(self.post("/api/v1/devices").json(&body).send().await.expect("register")).await;
            assert!(status == 201 || status == 200, "register {id}: {status} {body}");
        }
    }

    /// Registers one device (model `gw`, hardware `hw`) and returns its DDI target token.
    pub async fn enrol(&self, id: &str, hardware: &str) -> String {
        let body = serde_json::json!({"id": id, "device_model": "gw", "hardware_version": hardware, "firmware_version": "1.0"});
        let (status, body) = json_of(self.post("/api/v1/devices").json(&body).send().await.expect("enrol")).await;
        assert_eq!(status, 201, "enrol {id}: {body}");
        body["target_token"].as_str().expect("a new device gets a target token").to_owned()
    }

    /// A simulated fleet listening on this server's NATS prefix.
    pub async fn fleet(&self) -> crate::Fleet {
        let client = async_nats::connect(NATS).await.expect("fleet connects to NATS");
        crate::Fleet::start(client, &self.names, ota::simulate::FleetPolicy::default()).await.expect("fleet subscribes")
    }

    /// Waits until a projection has applied every stored event it reads.
    pub async fn caught_up(&self, projection: ProjectionName) {
        self.caught_up_within(projection, Duration::from_secs(30), Duration::from_millis(25)).await
    }

    /// `caught_up` with a chosen deadline and polling interval (the check scans the event table).
    pub async fn caught_up_within(&self, projection: ProjectionName, timeout: Duration, poll: Duration) {
        caught_up(&self.db, projection, timeout, poll).await
    }

    pub async fn all_caught_up(&self) {
        for p in ProjectionName::ALL {
            self.caught_up(p).await;
        }
    }
}

/// Waits until a projection has applied every stored event it reads.
pub(crate) async fn caught_up(db: &PgPool, projection: ProjectionName, timeout: Duration, poll: Duration) {
    let types = projection.aggregate_types();
    let types: Option<Vec<String>> = types.map(|t| t.iter().map(|s| s.to_string()).collect());
    let event_types: Option<Vec<String>> = projection.event_types().map(|t| t.iter().map(|s| s.to_string()).collect());
    eventually_every(&format!("projection {projection} to catch up"), timeout, poll, || {
        let db = db.clone();
        let types = types.clone();
        let event_types = event_types.clone();
        async move {
            let behind: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM events e WHERE ($1::text[] IS NULL OR e.aggregate_type = ANY($1))
                 AND ($2::text[] IS NULL OR e.event_type = ANY($2))
                 AND e.sequence > COALESCE({}, 0)",
                projection.last_applied_sql("e.aggregate_type", "e.aggregate_id")
            ))
            .bind(types)
            .bind(event_types)
            .fetch_one(&db)
            .await
            .ok()?;
            (behind == 0).then_some(())
        }
    })
    .await
}

/// Status and JSON body (or `null` when the body is not JSON).
pub async fn json_of(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap_or_default();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

fn parse(addr: &str) -> SocketAddr {
    addr.parse().expect("socket address")
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let db_name = self.db_name.clone();
        if std::thread::panicking() {
            eprintln!("test failed; kept database {db_name} and NATS prefix {}", self.names.prefix());
            return;
        }
        cleanup(db_name, &self.names);
    }
}
