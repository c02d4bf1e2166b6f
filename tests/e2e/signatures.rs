//! Firmware signatures: a signed release (name, version, model, hardware, SHA-256,
//! size, counter) checked at upload against trusted keys; with signing required,
//! unverified firmware is refused everywhere.

use ota::server::{self, Components};
use ota_testkit::{json_of, TestApp, TestOptions};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Signs the release of `os:<version>:gw` made of `bytes` the way `ota firmware sign`
/// does, through the same function.
pub(crate) fn sign(seed: &str, version: &str, bytes: &[u8]) -> Value {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("image.swu");
    std::fs::write(&file, bytes).expect("write");
    let label = ota::signing::ReleaseLabel {
        name: "os".into(),
        version: version.into(),
        device_model: "gw".into(),
        hardware_versions: vec![],
        release_counter: 3,
    };
    serde_json::to_value(ota::signing::sign_release(&file, label, seed, "ci").expect("sign")).expect("json")
}

async fn upload(app: &TestApp, version: &str, bytes: &[u8], release: Option<Value>) -> (u16, Value) {
    let mut metadata = json!({"name": "os", "version": version, "device_model": "gw"});
    if let Some(release) = release {
        metadata["release"] = release;
    }
    app.upload_firmware_with(metadata, "image.swu", bytes.to_vec()).await
}

#[tokio::test]
async fn uploads_record_whether_their_signature_verified() {
    let (seed, public) = ota::signing::keygen();
    let (other_seed, _) = ota::signing::keygen();
    let app =
        TestApp::spawn_with(TestOptions { firmware_keys: format!("ci:{public}"), ..TestOptions::default() }).await;

    let signed = b"signed image".to_vec();
    let (status, body) = upload(&app, "1.0", &signed, Some(sign(&seed, "1.0", &signed))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(&body["signature"], &json!({"status": "verified", "key_id": "ci", "release_counter": 3}));

    let (status, body) = upload(&app, "2.0", b"plain image", None).await;
    assert_eq!((status, &body["signature"]), (201, &json!({"status": "unsigned"})), "{body}");

    // Signed by a key nobody trusts: stored (signing is not required here), and marked invalid.
    let forged = b"forged image".to_vec();
    let (status, body) = upload(&app, "3.0", &forged, Some(sign(&other_seed, "3.0", &forged))).await;
    assert_eq!((status, body["signature"]["status"].as_str()), (201, Some("invalid")), "{body}");

    // A signature over the image digest alone binds no version or model: it no longer verifies.
    let digest_only = b"digest-signed image".to_vec();
    let key = ed25519_dalek::SigningKey::from_bytes(&hex::decode(&seed).expect("hex").try_into().expect("32 bytes"));
    let signature = hex::encode(ed25519_dalek::Signer::sign(&key, &Sha256::digest(&digest_only)).to_bytes());
    let metadata =
        json!({"name": "os", "version": "4.0", "device_model": "gw", "key_id": "ci", "signature": signature});
    let (status, body) = app.upload_firmware_with(metadata, "image.swu", digest_only).await;
    assert_eq!((status, body["signature"]["status"].as_str()), (201, Some("invalid")), "{body}");
    assert!(body["signature"]["reason"].as_str().is_some_and(|r| r.contains("ota firmware sign")), "{body}");

    // The catalog shows the check too.
    let id = body["id"].as_str().expect("id").to_owned();
    let listed = ota_testkit::eventually("catalog", std::time::Duration::from_secs(30), || async {
        let (status, view) = json_of(app.get(&format!("/api/v1/firmware/{id}")).send().await.ok()?).await;
        (status == 200).then_some(view)
    })
    .await;
    assert_eq!(listed["signature"]["status"], "invalid", "{listed}");
}

#[tokio::test]
async fn with_signing_required_unverified_firmware_is_refused_for_upload_campaigns_and_updates() {
    let (seed, public) = ota::signing::keygen();
    let app =
        TestApp::spawn_with(TestOptions { firmware_keys: format!("ci:{public}"), ..TestOptions::default() }).await;
    // Uploaded before signing became mandatory.
    let (status, old) = upload(&app, "0.9", b"legacy image", None).await;
    assert_eq!(status, 201, "{old}");
    let legacy = old["id"].as_str().expect("id").to_owned();

    // The same database, now served with signing required.
    let mut settings = app.settings.clone();
    settings.require_signed_firmware = true;
    settings.listen = "127.0.0.1:0".parse().expect("addr");
    let strict = server::start(&settings, Components { relay: false, projections: false, rollouts: false })
        .await
        .expect("strict server");
    let url = |path: &str| format!("http://{}{path}", strict.addr);
    let token = app.token(ota_api::auth::Role::Operator);
    let post = |path: &str| app.http.post(url(path)).bearer_auth(&token);

    let form = |version: &str, bytes: &[u8], release: Option<Value>| {
        let mut metadata = json!({"name": "os", "version": version, "device_model": "gw"});
        if let Some(release) = release {
            metadata["release"] = release;
        }
        reqwest::multipart::Form::new()
            .part(
                "metadata",
                reqwest::multipart::Part::text(metadata.to_string()).mime_str("application/json").expect("mime"),
            )
            .part("file", reqwest::multipart::Part::bytes(bytes.to_vec()).file_name("image.swu"))
    };
    let events_before: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.db).await.expect("count");
    let (status, body) =
        json_of(post("/api/v1/firmware").multipart(form("1.0", b"unsigned", None)).send().await.expect("up")).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("firmware.signature_required")), "{body}");
    let (other_seed, _) = ota::signing::keygen();
    let wrong = sign(&other_seed, "1.1", b"tampered");
    let (status, body) =
        json_of(post("/api/v1/firmware").multipart(form("1.1", b"tampered", Some(wrong))).send().await.expect("up"))
            .await;
    assert_eq!((status, body["error"].as_str()), (422, Some("firmware.signature_invalid")), "{body}");
    let events_after: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.db).await.expect("count");
    assert_eq!(events_before, events_after, "a refused upload records nothing");

    let good = sign(&seed, "2.0", b"release");
    let (status, body) =
        json_of(post("/api/v1/firmware").multipart(form("2.0", b"release", Some(good))).send().await.expect("up"))
            .await;
    assert_eq!((status, body["signature"]["status"].as_str()), (201, Some("verified")), "{body}");

    // Campaigns and single-device updates of the legacy, unverified image are refused.
    let campaign = json!({"name": "legacy", "firmware_id": legacy, "target": {"device_ids": ["sig-1"]}});
    let (status, body) = json_of(post("/api/v1/campaigns").json(&campaign).send().await.expect("campaign")).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("campaign.unverified_firmware")), "{body}");
    let device = json!({"id": "sig-1", "device_model": "gw", "firmware_version": "0.1"});
    assert_eq!(post("/api/v1/devices").json(&device).send().await.expect("device").status(), 201);
    let (status, body) = json_of(
        post("/api/v1/devices/sig-1/update").json(&json!({"firmware_id": legacy})).send().await.expect("update"),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (422, Some("update.unverified_firmware")), "{body}");
    let verified = ota_domain::FirmwareId::derive("os", "2.0", "gw").to_string();
    let ok = json!({"name": "signed", "firmware_id": verified, "target": {"device_ids": ["sig-1"]}});
    assert_eq!(post("/api/v1/campaigns").json(&ok).send().await.expect("campaign").status(), 201);
}
