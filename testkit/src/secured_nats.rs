//! A `nats-server` of its own for a test, on a free loopback port, that takes
//! only TLS clients (a CA the test makes) with a user and password: what a
//! NATS shared with devices must ask of the server.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::process::free_port;

pub struct SecuredNats {
    pub url: String,
    pub ca_file: PathBuf,
    pub user: String,
    pub password: String,
    _server: Child,
    _dir: tempfile::TempDir,
}

impl SecuredNats {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca_file, cert, key) = tls_files(dir.path());

        let port = free_port();
        let password = uuid::Uuid::new_v4().simple().to_string();
        let config = format!(
            "listen: \"{port}\"\njetstream {{ store_dir: \"{store}\" }}\n\
             tls {{ cert_file: \"{cert}\", key_file: \"{key}\", timeout: 2 }}\n\
             authorization {{ users: [ {{ user: ota, password: \"{password}\" }} ] }}\n",
            store = dir.path().join("js").display(),
            cert = cert.display(),
            key = key.display(),
        );
        let path = dir.path().join("nats.conf");
        std::fs::write(&path, config).expect("config");
        let server = spawn_nats_server(&path, &dir.path().join("nats.log"));
        let url = format!("nats://{port}");
        let nats = Self { url, ca_file, user: "ota".into(), password, _server: server, _dir: dir };
        nats.until_it_answers().await;
        nats
    }

    async fn until_it_answers(&self) {
        until_it_listens(&self.url).await;
    }
}

/// A CA and a server certificate for `localhost` / `127.0.0.1` signed by it:
/// (CA, certificate, key) PEM files in `dir`.
pub fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // OpenSSL (curl, SWUpdate) builds no chain to a CA without a subject.
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "ota test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server_params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("params");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_cert = server_params.signed_by(&server_key, &issuer).expect("server certificate");
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write PEM");
        path
    };
    (
        write("ca.pem", ca.pem()),
        write("server.pem", server_cert.pem()),
        write("server-key.pem", server_key.serialize_pem()),
    )
}

/// Starts `nats-server -c config`, logging to `log` (left for a failing test to read).
pub(crate) fn spawn_nats_server(config: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("log");
    Command::new("nats-server")
        .arg("-c")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("nats-server is installed (scripts/test.sh installs it)")
}

pub(crate) async fn until_it_listens(url: &str) {
    let addr = url.trim_start_matches("nats://").to_owned();
    tokio::time::timeout(Duration::from_secs(20), async {
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the nats-server listens");
}
