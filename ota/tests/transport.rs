//! The transport against the real binary (issue 12, item 5): half-open connections
//! are closed after the header timeout and never delay a normal request, HTTPS with
//! a certificate of our own, and client addresses taken from `X-Forwarded-For` only
//! behind a trusted proxy.

use std::path::Path;
use std::time::{Duration, Instant};

use ota_api::auth::Role;
use ota_testkit::{Deployment, ServerProcess};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_ota");

/// Connections that send part of a request and then nothing.
const HALF_OPEN: usize = 1_000;

/// A connection that sent half a request's headers and stopped.
async fn half_open(server: &ServerProcess) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: ota\r\nX-Slow: ").await.expect("half a request");
    stream
}

/// Reads until the server closes the connection.
async fn closed_by_server(mut stream: TcpStream) {
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_are_closed_after_the_header_timeout_and_never_delay_a_request() {
    let deployment = Deployment::new(BIN).await;
    let server = deployment.start_with(&[("OTA_HEADER_TIMEOUT_SECS", "4")], None).await;
    let opened = Instant::now();
    let streams = futures::future::join_all((0..HALF_OPEN).map(|_| half_open(&server))).await;
    eprintln!("{HALF_OPEN} half-open connections in {:?}", opened.elapsed());

    // A normal request, on a fresh connection, while they are all held.
    let asked = Instant::now();
    let response = deployment.http.get(server.url("/health")).send().await.expect("health");
    let took = asked.elapsed();
    eprintln!("a request beside {HALF_OPEN} half-open connections took {took:?}");
    assert_eq!(response.status(), 200);
    assert!(took < Duration::from_secs(1), "a request took {took:?} beside {HALF_OPEN} half-open connections");
    let held = streams.iter().filter(|s| still_open(s)).count();
    assert_eq!(held, HALF_OPEN, "the half-open connections were open during the request ({:?})", opened.elapsed());

    // Every one of them is closed by the server once its 4 s are up.
    let closing = tokio::time::timeout(
        Duration::from_secs(15),
        futures::future::join_all(streams.into_iter().map(closed_by_server)),
    );
    closing.await.expect("the server closed every half-open connection");
    let closed = opened.elapsed();
    eprintln!("all closed {closed:?} after the first was opened");
    assert!(closed >= Duration::from_secs(4), "closed before the header timeout: {closed:?}");
}

/// Nothing to read and no end of stream: the server holds the connection.
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_connection_limit_a_new_connection_waits_until_one_ends() {
    let deployment = Deployment::new(BIN).await;
    let env = [("OTA_MAX_CONNECTIONS", "2"), ("OTA_HEADER_TIMEOUT_SECS", "2")];
    let server = deployment.start_with(&env, None).await;
    // The readiness probe's keep-alive connection may still hold a slot: wait it out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = [half_open(&server).await, half_open(&server).await];
    let asked = Instant::now();
    let fresh = reqwest::Client::new();
    let response = fresh.get(server.url("/health")).send().await.expect("health");
    let waited = asked.elapsed();
    eprintln!("a request beyond the limit waited {waited:?}");
    assert_eq!(response.status(), 200);
    assert!(waited >= Duration::from_secs(1), "answered at once beyond the limit: {waited:?}");
    assert!(waited < Duration::from_secs(6), "a freed slot was not taken: {waited:?}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout_but_serves_requests_until_then() {
    let deployment = Deployment::new(BIN).await;
    let server = deployment.start_with(&[("OTA_HEADER_TIMEOUT_SECS", "2")], None).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    for _ in 0..2 {
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: ota\r\n\r\n").await.expect("request");
        // The answer ends with its JSON body, `{"status":"ok"}`.
        let mut answer = Vec::new();
        while !answer.ends_with(b"}") {
            let mut chunk = [0u8; 512];
            let n = stream.read(&mut chunk).await.expect("answer");
            assert!(n > 0, "closed before answering: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&chunk[..n]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    }
    tokio::time::timeout(Duration::from_secs(10), closed_by_server(stream)).await.expect("idle connection closed");
}

/// A CA and a certificate it signed for 127.0.0.1 and localhost, written as PEM files;
/// returns the CA's PEM (what clients trust).
fn certificate(dir: &Path) -> String {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "ota test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("server key");
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write cert");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key");
    ca_cert.pem()
}

/// An HTTPS client that trusts only `ca` (a PEM).
fn trusting(ca: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).expect("CA"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_with_the_configured_certificate_and_plain_http_to_it_fails() {
    let deployment = Deployment::new(BIN).await;
    let dir = tempfile::tempdir().expect("dir");
    let ca = certificate(dir.path());
    let client = trusting(&ca).build().expect("client");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let env = [("OTA_TLS_CERT", cert.to_str().expect("path")), ("OTA_TLS_KEY", key.to_str().expect("path"))];
    let server = deployment.start_with(&env, Some(&client)).await;

    let response = client.get(server.url("/health")).send().await.expect("HTTPS request");
    assert_eq!(response.status(), 200);
    assert!(server.url("/").starts_with("https://"));

    let plain = format!("http://{}/health", server.addr);
    let refused = deployment.http.get(&plain).send().await;
    assert!(refused.is_err(), "plain HTTP to the TLS port was answered: {refused:?}");
    // A client that does not trust the certificate gets no answer either.
    let untrusting =
        reqwest::Client::builder().use_rustls_tls().tls_built_in_root_certs(false).build().expect("client");
    assert!(untrusting.get(server.url("/health")).send().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_handshake_is_closed_after_the_header_timeout() {
    let deployment = Deployment::new(BIN).await;
    let dir = tempfile::tempdir().expect("dir");
    let ca = certificate(dir.path());
    let client = trusting(&ca).build().expect("client");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let env = [
        ("OTA_TLS_CERT", cert.to_str().expect("path")),
        ("OTA_TLS_KEY", key.to_str().expect("path")),
        ("OTA_HEADER_TIMEOUT_SECS", "2"),
    ];
    let server = deployment.start_with(&env, Some(&client)).await;
    // The first bytes of a ClientHello record header, then nothing.
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream.write_all(&[0x16, 0x03, 0x01]).await.expect("a partial hello");
    tokio::time::timeout(Duration::from_secs(10), closed_by_server(stream)).await.expect("stalled handshake closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_key_without_a_certificate_refuses_to_start_and_says_why() {
    let deployment = Deployment::new(BIN).await;
    let (status, log) = deployment.exit_of(&["serve"], &[("OTA_TLS_KEY", "/nonexistent/key.pem")]).await;
    assert!(!status.success(), "{log}");
    assert!(log.contains("OTA_TLS_CERT and OTA_TLS_KEY go together"), "{log}");
}

/// `/health` asked as from `client` by a proxy on loopback; the status codes.
async fn asked_through_proxy(deployment: &Deployment, server: &ServerProcess, client: &str, n: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..n {
        let request = deployment.http.get(server.url("/health")).header("X-Forwarded-For", client);
        statuses.push(request.send().await.expect("request").status().as_u16());
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_address_budget() {
    let deployment = Deployment::new(BIN).await;
    // 1 request/s per address, burst 4; the loopback exemption stays on (the default):
    // a proxy on loopback must not exempt its clients.
    let env = [("OTA_TRUSTED_PROXIES", "127.0.0.1"), ("OTA_RATE_LIMIT_ADDRESS", "1")];
    let server = deployment.start_with(&env, None).await;
    let first = asked_through_proxy(&deployment, &server, "198.51.100.1", 6).await;
    assert!(first[..4].iter().all(|s| *s == 200) && first[4..].iter().all(|s| *s == 429), "{first:?}");
    // Another client behind the same proxy has its own budget ...
    let second = asked_through_proxy(&deployment, &server, "203.0.113.9, 198.51.100.2", 4).await;
    assert!(second.iter().all(|s| *s == 200), "{second:?}");
    // ... and one that prepends a fresh address to its header is still itself.
    let spoofing = asked_through_proxy(&deployment, &server, "192.0.2.77, 198.51.100.1", 1).await;
    assert_eq!(spoofing, [429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trusted_proxies_a_spoofed_forwarded_for_does_not_escape_the_address_limit() {
    let deployment = Deployment::new(BIN).await;
    let env = [("OTA_RATE_LIMIT_ADDRESS", "1"), ("OTA_RATE_LIMIT_EXEMPT_LOOPBACK", "false")];
    let server = deployment.start_with(&env, None).await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.extend(asked_through_proxy(&deployment, &server, &format!("198.51.100.{i}"), 1).await);
    }
    assert!(statuses[statuses.len() - 2..].iter().all(|s| *s == 429), "{statuses:?}");
}

/// A CA for device certificates: its PEM and the issuer that signs with it.
fn device_ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().expect("CA key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let pem = params.self_signed(&key).expect("CA certificate").pem();
    (pem, rcgen::Issuer::new(params, key))
}

/// A client that presents a certificate for `common_name` signed by `issuer`.
fn device_client(ca: &str, issuer: &rcgen::Issuer<'static, rcgen::KeyPair>, common_name: &str) -> reqwest::Client {
    let key = rcgen::KeyPair::generate().expect("device key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, issuer).expect("device certificate");
    let identity = reqwest::Identity::from_pem(format!("{}{}", cert.pem(), key.serialize_pem()).as_bytes());
    trusting(ca).identity(identity.expect("identity")).build().expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_with_a_certificate_of_the_device_ca_polls_as_itself_without_a_token() {
    let deployment = Deployment::new(BIN).await;
    let dir = tempfile::tempdir().expect("dir");
    let ca = certificate(dir.path());
    let (devices_ca, issuer) = device_ca("ota device CA");
    let (_, rogue) = device_ca("another CA");
    let client_ca = dir.path().join("devices-ca.pem");
    std::fs::write(&client_ca, &devices_ca).expect("write CA");
    let operator = trusting(&ca).build().expect("client");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let env = [
        ("OTA_TLS_CERT", cert.to_str().expect("path")),
        ("OTA_TLS_KEY", key.to_str().expect("path")),
        ("OTA_TLS_CLIENT_CA", client_ca.to_str().expect("path")),
    ];
    let server = deployment.start_with(&env, Some(&operator)).await;
    let device = json!({"id": "mtls-1", "device_model": "gw", "firmware_version": "1.0"});
    let registered = operator
        .post(server.url("/api/v1/devices"))
        .bearer_auth(deployment.token(Role::Operator))
        .json(&device)
        .send()
        .await
        .expect("register");
    assert_eq!(registered.status(), 201, "operators need no certificate");

    let poll =
        |client: &reqwest::Client, id: &str| client.get(server.url(&format!("/default/controller/v1/{id}"))).send();
    let mtls_1 = device_client(&ca, &issuer, "mtls-1");
    let answer = poll(&mtls_1, "mtls-1").await.expect("poll");
    assert_eq!(answer.status(), 200, "its own certificate lets it in");
    let body: serde_json::Value = answer.json().await.expect("JSON");
    assert!(body["config"]["polling"]["sleep"].is_string(), "{body}");
    let status = json!({"state": "downloading", "action": 1});
    let as_itself =
        mtls_1.post(server.url("/api/v1/devices/mtls-1/status")).json(&status).send().await.expect("status");
    let refused = matches!(as_itself.status().as_u16(), 401 | 403);
    assert!(!refused, "the native status route takes the certificate too: {}", as_itself.status());

    let other = poll(&mtls_1, "mtls-2").await.expect("poll");
    assert_eq!(other.status(), 401, "a certificate speaks for its own device only");
    let unregistered = poll(&device_client(&ca, &issuer, "mtls-2"), "mtls-2").await.expect("poll");
    assert_eq!(unregistered.status(), 401, "a certificate does not enrol a device");
    assert_eq!(poll(&operator, "mtls-1").await.expect("poll").status(), 401, "no certificate, no token");
    assert!(poll(&device_client(&ca, &rogue, "mtls-1"), "mtls-1").await.is_err(), "another CA's certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_ca_without_tls_refuses_to_start_and_says_why() {
    let deployment = Deployment::new(BIN).await;
    let (status, log) = deployment.exit_of(&["serve"], &[("OTA_TLS_CLIENT_CA", "/nonexistent/ca.pem")]).await;
    assert!(!status.success(), "{log}");
    assert!(log.contains("OTA_TLS_CLIENT_CA needs OTA_TLS_CERT"), "{log}");
}
