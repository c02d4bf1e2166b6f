//! The real `ota` binary as child processes, for tests that kill it (SIGKILL) or
//! freeze it (SIGSTOP) the way a lost host, an OOM killer or a stuck VM would:
//! nothing of the process lives on, unlike a task aborted inside a test server.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use ota::Settings;
use ota_api::auth::{Auth, Role};
use ota_domain::bus::BusNames;
use ota_projections::ProjectionName;
use sqlx::PgPool;
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::app::{caught_up, cleanup, owned_database, server_database_url, test_settings, NATS, POSTGRES};
use crate::wait::eventually;

/// One database, NATS prefix and storage directory that any number of server
/// processes share, as instances behind a load balancer do.
pub struct Deployment {
    bin: PathBuf,
    pub db_name: String,
    /// A pool straight to the deployment's database.
    pub db: PgPool,
    pub names: BusNames,
    pub settings: Settings,
    pub http: reqwest::Client,
    dir: tempfile::TempDir,
    started: std::sync::atomic::AtomicUsize,
}

impl Deployment {
    /// `bin` is the `ota` binary (`env!("CARGO_BIN_EXE_ota")` in the `ota` package's tests).
    pub async fn new(bin: impl Into<PathBuf>) -> Self {
        Self::on_nats(bin, &format!("nats://{NATS}"), 1).await
    }

    /// On another NATS (e.g. a `NatsCluster`'s URLs), with that many stream replicas.
    pub async fn on_nats(bin: impl Into<PathBuf>, nats_url: &str, replicas: usize) -> Self {
        crate::init_logs();
        let id = Uuid::new_v4().simple().to_string();
        let db_name = format!("ota_test_{id}");
        let dir = tempfile::tempdir().expect("temp dir");
        let db = owned_database(&db_name).await;
        let server_url = server_database_url(POSTGRES, &db_name);
        let mut settings = test_settings(&server_url, NATS, &format!("t{}", &id[..12]));
        settings.nats_url = nats_url.to_owned();
        settings.nats_replicas = replicas;
        let storage = dir.path().join("firmware");
        settings.storage_url = storage.display().to_string();
        Self {
            bin: bin.into(),
            names: BusNames::new(&settings.nats_prefix).expect("prefix").with_replicas(replicas),
            db_name,
            db,
            settings,
            http: reqwest::Client::new(),
            dir,
            started: Default::default(),
        }
    }

    /// The environment `ota` reads its settings from (the same values as `settings`),
    /// plus `extra` (e.g. `OTA_HEADER_TIMEOUT_SECS`).
    fn command(&self, args: &[&str], listen: SocketAddr, log: &Path, extra: &[(&str, &str)]) -> Command {
        let s = &self.settings;
        let log = std::fs::File::options().create(true).append(true).open(log).expect("log file");
        let mut command = Command::new(&self.bin);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .env("DATABASE_URL", s.database_url.expose())
            .env("OTA_DB_MAX_CONNECTIONS", s.db_max_connections.to_string())
            .env("NATS_URL", &s.nats_url)
            .env("OTA_NATS_REPLICAS", s.nats_replicas.to_string())
            .env("OTA_NATS_PREFIX", &s.nats_prefix)
            .env("OTA_STORAGE_URL", &s.storage_url)
            .env("OTA_LISTEN", listen.to_string())
            .env("OTA_JWT_SECRET", s.jwt_secret.as_deref().unwrap_or_default())
            .env("OTA_JWT_ISSUER", s.jwt_issuer.as_deref().unwrap_or_default())
            .env("OTA_JWT_AUDIENCE", s.jwt_audience.as_deref().unwrap_or_default())
            .env("OTA_DDI_GATEWAY_TOKEN", s.ddi_gateway_token.as_deref().unwrap_or_default())
            .env("OTA_AUDIT_SIGNING_KEY", s.audit_signing_key.as_deref().unwrap_or_default())
            .env("OTA_AUDIT_CHECKPOINT_SECS", s.audit_checkpoint_secs.to_string())
            .env("OTA_RATE_LIMIT_IDENTITY", s.rate_limit_identity.to_string())
            .env("OTA_RATE_LIMIT_DEVICE", s.rate_limit_device.to_string())
            .env("OTA_RATE_LIMIT_ADDRESS", s.rate_limit_address.to_string())
            .env("OTA_WEBHOOK_ALLOWED_NETWORKS", &s.webhook_allowed_networks)
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .kill_on_drop(true);
        if let Some(url) = &s.audit_checkpoint_url {
            command.env("OTA_AUDIT_CHECKPOINT_URL", url);
        }
        command
    }

    /// Starts `ota serve` on a free port and waits until it answers.
    pub async fn start(&self) -> ServerProcess {
        self.start_with(&[], None).await
    }

    /// `start` with more settings in the environment; with `tls`, a client that trusts
    /// the server's certificate, the server is asked over HTTPS.
    pub async fn start_with(&self, extra: &[(&str, &str)], tls: Option<&reqwest::Client>) -> ServerProcess {
        let n = self.started.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let listen = free_port();
        let log = self.dir.path().join(format!("serve-{n}.log"));
        let child = self.command(&["serve"], listen, &log, extra).spawn().expect("spawn ota serve");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut server = ServerProcess { child, addr: listen, log, scheme };
        let url = server.url("/health");
        let http = tls.unwrap_or(&self.http).clone();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if let Ok(Some(status)) = server.child.try_wait() {
                    return Err(status);
                }
                if http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        match ready {
            Ok(Ok(())) => server,
            Ok(Err(status)) => panic!("ota serve exited with {status}:\n{}", server.log_tail()),
            Err(_) => panic!("ota serve did not answer within 60 s:\n{}", server.log_tail()),
        }
    }

    /// Runs another subcommand (e.g. `replay all`) as a child process, not waited for.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args, free_port(), &self.log_of(args), &[]).spawn().expect("spawn ota")
    }

    /// Runs a subcommand with more settings in the environment to its end; its exit status and log.
    pub async fn exit_of(&self, args: &[&str], extra: &[(&str, &str)]) -> (ExitStatus, String) {
        let mut child = self.command(args, free_port(), &self.log_of(args), extra).spawn().expect("spawn ota");
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("ota exits within 60 s")
            .expect("wait for ota");
        (status, std::fs::read_to_string(self.log_of(args)).unwrap_or_default())
    }

    fn log_of(&self, args: &[&str]) -> PathBuf {
        self.dir.path().join(format!("{}.log", args.join("-").replace('/', "_")))
    }

    /// Runs a subcommand to its end; panics with its log unless it succeeds.
    pub async fn run(&self, args: &[&str]) {
        let status = self.spawn(args).wait().await.expect("wait for ota");
        let log = std::fs::read_to_string(self.log_of(args)).unwrap_or_default();
        assert!(status.success(), "ota {args:?} exited with {status}:\n{log}");
    }

    /// Runs a subcommand to its end; returns how it ended and what it printed.
    pub async fn run_to_end(&self, args: &[&str]) -> (ExitStatus, String) {
        let log = self.log_of(args);
        let _ = std::fs::remove_file(&log);
        let status = self.command(args, free_port(), &log, &[]).status().await.expect("run ota");
        (status, std::fs::read_to_string(&log).unwrap_or_default())
    }

    pub fn token(&self, role: Role) -> String {
        Auth::new(&self.settings.token_settings())
            .and_then(|a| a.issue("crash-tester", role, Duration::from_secs(3600)))
            .expect("token")
    }

    /// Waits until every projection has applied every stored event.
    pub async fn all_caught_up(&self) {
        for projection in ProjectionName::ALL {
            caught_up(&self.db, projection, Duration::from_secs(60), Duration::from_millis(100)).await;
        }
    }

    /// Waits until another session of this database has a transaction open.
    pub async fn transaction_open_by_another(&self) {
        eventually("another process to open a transaction", Duration::from_secs(30), || async {
            let open: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL",
            )
            .fetch_one(&self.db)
            .await
            .ok()?;
            (open > 0).then_some(())
        })
        .await
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir")).keep();
            eprintln!(
                "test failed; kept database {}, NATS prefix {} and the servers' logs in {}",
                self.db_name,
                self.names.prefix(),
                kept.display()
            );
            return;
        }
        cleanup(self.db_name.clone(), &self.names);
    }
}

/// One running `ota serve`.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    scheme: &'static str,
}

impl ServerProcess {
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    /// The process id (as lease holders name it).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("a running child")
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.pid()).expect("pid"));
        kill(pid, signal).unwrap_or_else(|e| panic!("{signal} to ota serve: {e}"));
    }

    /// SIGKILL: no handler runs, nothing is flushed.
    pub async fn kill(mut self) {
        self.signal(Signal::SIGKILL);
        let status = self.child.wait().await.expect("wait for the killed server");
        assert!(!status.success(), "the server exited on its own before the kill: {status}");
    }

    /// SIGTERM: a graceful stop; returns how it ended.
    pub async fn terminate(mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("ota serve did not stop within 30 s of SIGTERM:\n{}", self.log_tail()))
            .expect("wait for the server")
    }

    /// SIGSTOP: the process and its sockets stay, it does nothing.
    pub fn freeze(&self) {
        self.signal(Signal::SIGSTOP);
    }

    pub fn thaw(&self) {
        self.signal(Signal::SIGCONT);
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

pub fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address")
}

/// Exit by signal, as `ExitStatus` reports it.
pub fn killed_by(status: &ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(status)
}
