//! SWUpdate's suricatta in hawkBit mode (Debian 12's `swupdate` 2022.12) against this server: a
//! real third-party device client installing a `.swu` bundle built and signed by the test.
//!
//! Debian's build verifies a CMS signature over `sw-description` and checks hardware
//! compatibility, so the test makes a throwaway certificate with `openssl`, signs, and packs the
//! bundle with `cpio -H crc`. The payload is a `files` entry written into a temp directory: no
//! block device, nothing root-only. SWUpdate reports `proceeding` while it installs and closes the
//! action only after the device rebooted into the new software: the test plays the reboot by
//! stopping the first process once its post-update command ran, and starting a second one with
//! `-c 2` (the new software tested fine), as a boot script would.
//!
//! SWUpdate sleeps as long as the server's `config.polling.sleep` says (minutes here; its own
//! `-p` is overridden by the server's value) after every poll, so the test asks it over its local
//! IPC socket, with the `swupdate-ipc` tool of the same package, for a 1 s poll and a check now.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::Duration;

use ota_testkit::{eventually, json_of, TestApp, TestOptions};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::process::{Child, Command};

const DEVICE: &str = "swu-1";
const HARDWARE: &str = "rev-a";
const TOOLS: [&str; 4] = ["swupdate", "swupdate-ipc", "cpio", "openssl"];

/// The tools are a requirement, not an option: a machine without them fails the test.
fn require_tools() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in TOOLS {
        let found = std::env::split_paths(&path).any(|dir| dir.join(tool).is_file());
        assert!(
            found,
            "`{tool}` is not installed: run scripts/test.sh as root to install the swupdate, cpio and openssl \
             Debian packages"
        );
    }
}

/// Runs a tool to completion in `dir`, feeding it `stdin`; returns its stdout.
fn run(program: &str, args: &[&str], dir: &Path, stdin: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = StdCommand::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): run scripts/test.sh as root"));
    child.stdin.take().expect("stdin").write_all(stdin).expect("write stdin");
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "`{program} {}` failed: {stderr}", args.join(" "));
    output.stdout
}

fn payload() -> Vec<u8> {
    (0..200_000usize).map(|i| (i * 7 % 253) as u8).collect()
}

/// A signed `.swu` that installs `payload` as the file `target` on hardware revision `HARDWARE`.
/// Returns the bundle and the certificate that verifies it.
fn build_swu(dir: &Path, payload: &[u8], target: &Path) -> (Vec<u8>, PathBuf) {
    let subject = "/O=ota-e2e/CN=swupdate-e2e";
    let ec = "ec_paramgen_curve:prime256v1";
    let keygen = ["req", "-x509", "-newkey", "ec", "-pkeyopt", ec, "-nodes", "-days", "1", "-subj", subject];
    run("openssl", &[&keygen[..], &["-keyout", "signing.key", "-out", "signing.crt"]].concat(), dir, b"");
    std::fs::write(dir.join("payload.bin"), payload).expect("payload");
    let description = format!(
        r#"software =
{{
    version = "2.0";
    description = "ota e2e bundle";
    hardware-compatibility: [ "{HARDWARE}" ];
    files: (
        {{
            filename = "payload.bin";
            path = "{}";
            sha256 = "{}";
        }}
    );
}}
"#,
        target.display(),
        hex::encode(Sha256::digest(payload))
    );
    std::fs::write(dir.join("sw-description"), description).expect("sw-description");
    let sign = ["cms", "-sign", "-in", "sw-description", "-out", "sw-description.sig", "-signer", "signing.crt"];
    let options = ["-inkey", "signing.key", "-outform", "DER", "-nosmimecap", "-binary"];
    run("openssl", &[&sign[..], &options[..]].concat(), dir, b"");
    // The order matters: sw-description, its signature, then the images.
    let names = b"sw-description\nsw-description.sig\npayload.bin\n";
    (run("cpio", &["-o", "-H", "crc", "--quiet"], dir, names), dir.join("signing.crt"))
}

/// One SWUpdate process (killed when dropped); its output goes to a log shown if the test fails.
struct SwUpdate {
    child: Child,
    log: PathBuf,
}

impl SwUpdate {
    fn start(args: &[String], tmp: &Path, log: PathBuf) -> Self {
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        eprintln!(
            "TMPDIR={} swupdate {}",
            tmp.display(),
            args.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(" ")
        );
        let child = Command::new("swupdate")
            .args(args)
            // SWUpdate's IPC sockets and scratch files go to $TMPDIR: one per test run.
            .env("TMPDIR", tmp)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run swupdate ({e}): run scripts/test.sh as root to install it"));
        Self { child, log }
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("swupdate exited early: {status}");
        }
    }

    /// Power off: no chance to say goodbye to the server.
    async fn kill(mut self) {
        self.child.kill().await.expect("kill swupdate");
    }
}

impl Drop for SwUpdate {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("---- {} ----\n{log}", self.log.display());
        }
    }
}

/// Sends a command to the running SWUpdate over its IPC socket (retried until the socket is up).
async fn swupdate_ipc(tmp: &Path, args: &[&str]) {
    eventually(&format!("swupdate-ipc {}", args.join(" ")), Duration::from_secs(10), || async {
        let output = StdCommand::new("swupdate-ipc").args(args).env("TMPDIR", tmp).output().ok()?;
        String::from_utf8_lossy(&output.stdout).contains("returned 0").then_some(())
    })
    .await
}

async fn lane(app: &TestApp) -> Value {
    json_of(app.get(&format!("/api/v1/devices/{DEVICE}/update")).send().await.expect("lane")).await.1
}

#[tokio::test]
async fn swupdate_suricatta_installs_a_signed_bundle_from_a_campaign_and_confirms_it_after_reboot() {
    require_tools();
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let token = app.enrol(DEVICE, HARDWARE).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let (build, root, tmp) = (dir.path().join("build"), dir.path().join("root"), dir.path().join("tmp"));
    for d in [&build, &root, &tmp] {
        std::fs::create_dir(d).expect("dir");
    }
    let bytes = payload();
    let target = root.join("payload.bin");
    let (swu, cert) = build_swu(&build, &bytes, &target);

    let metadata = json!({"name": "gw-os", "version": "2.0", "device_model": "gw"});
    let (status, body) = app.upload_firmware_with(metadata, "gw-os-2.0.swu", swu.clone()).await;
    assert_eq!(status, 201, "{body}");
    let firmware = body["id"].as_str().expect("firmware id").to_owned();
    let campaign = json!({"name": "swupdate", "firmware_id": firmware, "target": {"device_ids": [DEVICE]}});
    let (status, created) = json_of(app.post("/api/v1/campaigns").json(&campaign).send().await.expect("create")).await;
    assert_eq!(status, 201, "{created}");
    let campaign = created["id"].as_str().expect("campaign id").to_owned();
    let (status, body) = app.campaign_action(&campaign, "start").await;
    assert_eq!(status, 200, "{body}");

    // `identify` entries are what SWUpdate sends as configData attributes.
    let config = dir.path().join("swupdate.cfg");
    let identify = format!(
        "{{ name = \"hwRevision\"; value = \"{HARDWARE}\"; }}, {{ name = \"serialNo\"; value = \"swu-0001\"; }}"
    );
    std::fs::write(&config, format!("globals : {{ }};\nidentify : ( {identify} );\n")).expect("config");
    let rebooted = dir.path().join("rebooted");
    let command_line = |suricatta_extra: &str| -> Vec<String> {
        let suricatta = format!("-t default -u http://{} -i {DEVICE} -k {token}{suricatta_extra}", app.addr);
        let f = config.display().to_string();
        let k = cert.display().to_string();
        // The post-update command is where a device reboots; here it leaves a mark.
        let p = format!("touch {}", rebooted.display());
        let h = format!("gw:{HARDWARE}");
        ["-v", "-f", &f, "-k", &k, "-H", &h, "-p", &p, "-u", &suricatta].map(String::from).to_vec()
    };

    // First boot: poll, configData, deploymentBase, HEAD + GET of the .swu, install, feedback.
    let mut first = SwUpdate::start(&command_line(""), &tmp, dir.path().join("swupdate-1.log"));
    swupdate_ipc(&tmp, &["hawkbitcfg", "-p", "1"]).await;
    swupdate_ipc(&tmp, &["hawkbitcfg", "-t"]).await;
    eventually("SWUpdate installed the bundle and ran its post-update command", Duration::from_secs(60), || {
        first.assert_running();
        let done = rebooted.exists();
        async move { done.then_some(()) }
    })
    .await;
    assert_eq!(std::fs::read(&target).expect("the installed payload"), bytes);
    // It reported its progress (chunk 1 of 1 installed) and keeps the action open until the reboot.
    let before = eventually("SWUpdate's progress reports", Duration::from_secs(30), || async {
        let lane = lane(&app).await;
        (lane["progress"] == 100).then_some(lane)
    })
    .await;
    assert_eq!(before["state"], "downloading", "{before}");
    let message = before["message"].as_str().unwrap_or_default();
    assert!(["Installed Chunk.", "All Chunks Installed."].contains(&message), "{before}");
    first.kill().await;

    // Second boot: the new software works; SWUpdate is told so and closes the action.
    let second = SwUpdate::start(&command_line(" -c 2"), &tmp, dir.path().join("swupdate-2.log"));
    let lane = eventually("SWUpdate confirmed the update", Duration::from_secs(60), || async {
        let lane = lane(&app).await;
        (lane["state"] == "succeeded").then_some(lane)
    })
    .await;
    assert_eq!(lane["message"], "Update Installed.", "{lane}");
    eventually("campaign completed", Duration::from_secs(30), || async {
        let view = json_of(app.get(&format!("/api/v1/campaigns/{campaign}")).send().await.ok()?).await.1;
        (view["status"] == "completed").then_some(())
    })
    .await;
    second.kill().await;

    // SWUpdate's configData PUT (no `mode`, `"id": ""`) was taken as the device's attributes.
    let profile = eventually("SWUpdate's attributes in the inventory", Duration::from_secs(30), || async {
        let profile = json_of(app.get(&format!("/api/v1/devices/{DEVICE}")).send().await.ok()?).await.1;
        (profile["attributes"]["serialNo"] == "swu-0001").then_some(profile)
    })
    .await;
    assert_eq!(profile["attributes"]["hwRevision"], HARDWARE, "{profile}");
    assert_eq!(profile["firmware_version"], "2.0", "{profile}");

    // The whole bundle was served to the device, once.
    let downloads = eventually("the download is on record", Duration::from_secs(30), || async {
        let body = json_of(app.get(&format!("/api/v1/firmware/{firmware}/downloads")).send().await.ok()?).await.1;
        (body["stats"]["devices_complete"] == 1).then_some(body)
    })
    .await;
    assert_eq!(downloads["stats"]["bytes"], swu.len(), "{downloads}");
    assert_eq!(downloads["items"][0]["via"], "target_token", "{downloads}");
}

/// A CA of device certificates, and a certificate it signed for `common_name`:
/// (CA, certificate, key) PEM files in `dir`.
fn device_certificate(dir: &Path, common_name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "device CA");
    let ca_pem = ca.self_signed(&ca_key).expect("CA certificate").pem();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("device key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).expect("device certificate");
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write PEM");
        path
    };
    (write("devices-ca.pem", ca_pem), write("device.pem", cert.pem()), write("device-key.pem", key.serialize_pem()))
}

/// Mutual TLS with a client we did not write: SWUpdate given only a client
/// certificate (no target token) polls the server over HTTPS and sends its
/// configData as the device the certificate names.
#[tokio::test]
async fn swupdate_authenticates_with_its_client_certificate_alone() {
    require_tools();
    const DEVICE: &str = "swu-mtls";
    let app = TestApp::spawn_with(TestOptions::default()).await;
    app.enrol(DEVICE, HARDWARE).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).expect("dir");
    let (server_ca, server_cert, server_key) = ota_testkit::tls_files(dir.path());
    let (devices_ca, device_cert, device_key) = device_certificate(dir.path(), DEVICE);
    // A second server on the same database that speaks HTTPS and takes device certificates.
    let mut settings = app.settings.clone();
    settings.listen = "127.0.0.1:0".parse().expect("address");
    (settings.tls_cert, settings.tls_key, settings.tls_client_ca) =
        (Some(server_cert), Some(server_key), Some(devices_ca));
    let none = ota::server::Components { relay: false, projections: false, rollouts: false };
    let https = ota::server::start(&settings, none).await.expect("the HTTPS server starts");

    let config = dir.path().join("swupdate.cfg");
    let path = |p: &Path| p.display().to_string();
    std::fs::write(
        &config,
        format!(
            "globals : {{ }};\nidentify : ( {{ name = \"serialNo\"; value = \"mtls-0001\"; }} );\n\
             suricatta : {{ cafile = \"{}\"; sslcert = \"{}\"; sslkey = \"{}\"; }};\n",
            path(&server_ca),
            path(&device_cert),
            path(&device_key)
        ),
    )
    .expect("config");
    let build = dir.path().join("build");
    std::fs::create_dir(&build).expect("dir");
    // SWUpdate wants the key its bundles are signed with, even before it has one to install.
    let (_, signing_cert) = build_swu(&build, b"unused", &tmp.join("unused"));
    let suricatta = format!("-t default -u https://{} -i {DEVICE}", https.addr);
    let args = ["-v", "-f", &path(&config), "-k", &path(&signing_cert), "-u", &suricatta].map(String::from);
    let mut swupdate = SwUpdate::start(&args, &tmp, dir.path().join("swupdate.log"));
    eventually("SWUpdate's configData over mutual TLS", Duration::from_secs(60), || {
        swupdate.assert_running();
        let app = &app;
        async move {
            let profile = json_of(app.get(&format!("/api/v1/devices/{DEVICE}")).send().await.ok()?).await.1;
            (profile["attributes"]["serialNo"] == "mtls-0001").then_some(())
        }
    })
    .await;
    swupdate.kill().await;
}
