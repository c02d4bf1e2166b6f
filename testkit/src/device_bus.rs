//! A nats-server of a test's own with the accounts `ota bus config` makes: the
//! server's, the devices' (one nkey each) and the observers', over TLS, on a free
//! loopback port. The shared NATS on 4222 has no accounts, so the attacks on
//! the device bus are tried here.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ota::bus_accounts::{device_inbox_prefix, new_user_key, BusAccounts, Member};
use ota::nats::NatsConnection;
use ota_domain::bus::BusNames;
use tokio::process::Child;

use crate::process::free_port;
use crate::secured_nats::{spawn_nats_server, tls_files, until_it_listens};

pub struct DeviceBus {
    pub url: String,
    pub ca_file: PathBuf,
    pub names: BusNames,
    accounts: BusAccounts,
    server_seed: String,
    seeds: Vec<(String, String)>,
    config: PathBuf,
    server: Child,
    _dir: tempfile::TempDir,
}

/// A client of the bus that keeps what the nats-server told it went wrong.
pub struct BusClient {
    pub client: async_nats::Client,
    errors: Arc<Mutex<Vec<String>>>,
}

impl BusClient {
    /// Waits up to 5 s for the nats-server to report a permissions violation naming `subject`.
    pub async fn refused(&self, subject: &str) -> bool {
        for _ in 0..100 {
            if self.errors().iter().any(|e| e.contains("Permissions Violation") && e.contains(subject)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl DeviceBus {
    /// The bus for prefix `ota` with these devices and one observer, `observer`.
    pub async fn start(devices: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca_file, cert, key) = tls_files(dir.path());
        let (server_seed, server_key) = new_user_key();
        let mut seeds = Vec::new();
        let mut member = |name: &str| {
            let (seed, public_key) = new_user_key();
            seeds.push((name.to_owned(), seed));
            Member { name: name.to_owned(), public_key }
        };
        let devices = devices.iter().map(|id| member(id)).collect();
        let observers = vec![member("observer")];
        let addr = free_port();
        let accounts = BusAccounts {
            names: BusNames::new("ota").expect("prefix"),
            listen: addr.to_string(),
            jetstream_dir: dir.path().join("js"),
            tls: Some((cert, key)),
            servers: vec![Member { name: "ota".into(), public_key: server_key }],
            devices,
            observers,
        };
        let config = dir.path().join("nats.conf");
        std::fs::write(&config, accounts.render()).expect("config");
        let server = spawn_nats_server(&config, &dir.path().join("nats.log"));
        let url = format!("nats://{addr}");
        until_it_listens(&url).await;
        Self { url, ca_file, names: accounts.names.clone(), accounts, server_seed, seeds, config, server, _dir: dir }
    }

    /// How the orchestrator connects: its nkey, over TLS.
    pub fn server_connection(&self) -> NatsConnection {
        NatsConnection {
            nkey_seed: Some(self.server_seed.as_str().into()),
            ca_file: Some(self.ca_file.clone()),
            ..NatsConnection::open(&self.url)
        }
    }

    /// Enrols a device: a new line in the configuration and a reload, no restart.
    pub async fn enrol(&mut self, id: &str) {
        let (seed, public_key) = new_user_key();
        self.seeds.push((id.to_owned(), seed));
        self.accounts.devices.push(Member { name: id.to_owned(), public_key });
        std::fs::write(&self.config, self.accounts.render()).expect("config");
        let pid = self.server.id().expect("nats-server runs") as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP).expect("reload");
        // The reload is asynchronous; it is done when the new key gets in.
        for _ in 0..100 {
            if self.try_connect(id, &device_inbox_prefix(id)).await.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("device {id} cannot connect after the reload");
    }

    /// A device, as its own nkey, with the inbox prefix only it may subscribe to.
    pub async fn device(&self, id: &str) -> BusClient {
        self.try_connect(id, &device_inbox_prefix(id)).await.unwrap_or_else(|| panic!("device {id} connects"))
    }

    /// A read-only subscriber of the public subjects.
    pub async fn observer(&self) -> BusClient {
        self.try_connect("observer", "_INBOX").await.expect("the observer connects")
    }

    /// A client with a key the configuration does not know.
    pub async fn stranger(&self) -> Option<BusClient> {
        let (seed, _) = new_user_key();
        self.connect_with(seed, "_INBOX").await
    }

    async fn try_connect(&self, name: &str, inbox: &str) -> Option<BusClient> {
        let seed = self.seeds.iter().rev().find(|(n, _)| n == name).map(|(_, s)| s.clone())?;
        self.connect_with(seed, inbox).await
    }

    async fn connect_with(&self, seed: String, inbox: &str) -> Option<BusClient> {
        BusClient::connect(&self.url, &self.ca_file, seed, inbox).await
    }
}

impl BusClient {
    /// Connects as the nkey `seed` over TLS (servers signed by `ca_file`); `None` if refused.
    pub async fn connect(url: &str, ca_file: &std::path::Path, seed: String, inbox: &str) -> Option<Self> {
        ota::nats::use_ring_for_tls();
        let errors = Arc::new(Mutex::new(Vec::new()));
        let seen = errors.clone();
        let options = async_nats::ConnectOptions::with_nkey(seed)
            .add_root_certificates(ca_file.to_owned())
            .require_tls(true)
            .custom_inbox_prefix(inbox)
            .event_callback(move |event| {
                let seen = seen.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = event {
                        seen.lock().unwrap_or_else(PoisonError::into_inner).push(e.to_string());
                    }
                }
            });
        let client = tokio::time::timeout(Duration::from_secs(5), options.connect(url)).await.ok()?.ok()?;
        Some(BusClient { client, errors })
    }
}
