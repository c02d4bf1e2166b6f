//! Issue 12, item 2: signed release metadata. A release binds name, version,
//! device model, hardware versions, SHA-256, size and a release counter under a
//! domain-separated signature; an upload that differs from it is refused, and
//! devices receive it with the update (DDI chunk metadata, NATS command) to
//! check before they install.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use futures::StreamExt;
use hawkbit::ddi::{Client, ClientAuthorization};
use ota_api::auth::Role;
use ota_testkit::{eventually, json_of, DeviceBus, TestApp, TestOptions};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn label(version: &str, hardware: &[&str], counter: u64) -> ota::signing::ReleaseLabel {
    ota::signing::ReleaseLabel {
        name: "os".into(),
        version: version.into(),
        device_model: "gw".into(),
        hardware_versions: hardware.iter().map(|h| h.to_string()).collect(),
        release_counter: counter,
    }
}

fn sign(seed: &str, label: ota::signing::ReleaseLabel, bytes: &[u8]) -> Value {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("bundle.swu");
    std::fs::write(&file, bytes).expect("write");
    serde_json::to_value(ota::signing::sign_release(&file, label, seed, "ci").expect("sign")).expect("json")
}

async fn upload(app: &TestApp, metadata: Value, bytes: &[u8]) -> (u16, Value) {
    app.upload_firmware_with(metadata, "bundle.swu", bytes.to_vec()).await
}

async fn events(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.db).await.expect("count")
}

#[tokio::test]
async fn an_upload_that_differs_from_its_signed_release_is_refused_and_stores_nothing() {
    let (seed, public) = ota::signing::keygen();
    let app =
        TestApp::spawn_with(TestOptions { firmware_keys: format!("ci:{public}"), ..TestOptions::default() }).await;
    let image = b"gateway image 2.0".to_vec();
    let release = sign(&seed, label("2.0", &["rev-a"], 7), &image);
    let before = events(&app).await;

    let as_uploaded = |version: &str, model: &str, hardware: Value| {
        json!({"name": "os", "version": version, "device_model": model, "hardware_versions": hardware,
            "release": release})
    };
    let relabellings = [
        (as_uploaded("9.9", "gw", json!(["rev-a"])), image.clone(), "version"),
        (as_uploaded("2.0", "gw-2", json!(["rev-a"])), image.clone(), "device_model"),
        (as_uploaded("2.0", "gw", json!(["rev-a", "rev-b"])), image.clone(), "hardware_versions"),
        (as_uploaded("2.0", "gw", json!(["rev-a"])), b"another image".to_vec(), "sha256"),
    ];
    for (metadata, bytes, field) in relabellings {
        let (status, body) = upload(&app, metadata, &bytes).await;
        assert_eq!((status, body["error"].as_str()), (422, Some("firmware.release_mismatch")), "{field}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| m.contains(field)), "{field}: {body}");
    }
    let mut both = as_uploaded("2.0", "gw", json!(["rev-a"]));
    both["signature"] = json!("00");
    both["key_id"] = json!("ci");
    let (status, body) = upload(&app, both, &image).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("invalid_field")), "{body}");
    assert_eq!(events(&app).await, before, "a refused upload records nothing");

    let (status, body) = upload(&app, as_uploaded("2.0", "gw", json!(["rev-a"])), &image).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["signature"], json!({"status": "verified", "key_id": "ci", "release_counter": 7}));
}

/// What a device does with the envelope before installing, written without the
/// server's code: DSSE's PAE over the payload, ed25519 with the release key.
fn device_checks(envelope: &Value, public: &str) -> Value {
    assert_eq!(envelope["payloadType"], "application/vnd.ota.release.v1+json");
    let payload = BASE64.decode(envelope["payload"].as_str().expect("payload")).expect("base64");
    let payload_type = envelope["payloadType"].as_str().expect("type");
    let mut signed = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    signed.extend_from_slice(&payload);
    let key: [u8; 32] = hex::decode(public).expect("hex").try_into().expect("32 bytes");
    let key = VerifyingKey::from_bytes(&key).expect("key");
    let signature = &envelope["signatures"][0];
    assert_eq!(signature["keyid"], "ci");
    let sig: [u8; 64] =
        BASE64.decode(signature["sig"].as_str().expect("sig")).expect("base64").try_into().expect("64 bytes");
    key.verify(&signed, &Signature::from_bytes(&sig)).expect("the release verifies on the device");
    serde_json::from_slice(&payload).expect("release json")
}

#[tokio::test]
async fn devices_receive_the_signed_release_and_can_check_it_before_installing() {
    let (seed, public) = ota::signing::keygen();
    // The device bus with accounts and TLS: the NATS device is its own nkey.
    let bus = DeviceBus::start(&["rel-nats"]).await;
    let app = TestApp::spawn_with(TestOptions {
        firmware_keys: format!("ci:{public}"),
        nats: Some((bus.server_connection(), "ota".into())),
        ..TestOptions::full()
    })
    .await;
    let image: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let metadata = json!({"name": "os", "version": "2.0", "device_model": "gw",
        "release": sign(&seed, label("2.0", &[], 11), &image)});
    let (status, body) = upload(&app, metadata, &image).await;
    assert_eq!(status, 201, "{body}");
    let firmware = body["id"].as_str().expect("id").to_owned();

    // DDI: a hawkBit client finds the release in the chunk's metadata.
    let token = app.enrol("rel-ddi", "rev-a").await;
    let device = Client::new(
        &format!("http://{}", app.addr),
        "DEFAULT",
        "rel-ddi",
        ClientAuthorization::TargetToken(token),
        None,
        None,
        Some(Duration::from_secs(10)),
    )
    .expect("hawkbit client");
    let request = json!({"name": "rel", "firmware_id": firmware, "target": {"device_ids": ["rel-ddi"]}});
    let (status, created) = json_of(app.post("/api/v1/campaigns").json(&request).send().await.expect("create")).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(app.campaign_action(created["id"].as_str().expect("id"), "start").await.0, 200);
    let update = eventually("a deployment is offered", Duration::from_secs(30), || async {
        device.poll().await.ok()?.update()?.fetch().await.ok()
    })
    .await;
    let chunk = update.chunks().next().expect("one chunk");
    let (_, value) = chunk.metadata().find(|(key, _)| *key == "ota.release").expect("the release in the metadata");
    let release = device_checks(&serde_json::from_str(value).expect("envelope json"), &public);
    assert_eq!((release["version"].as_str(), release["device_model"].as_str()), (Some("2.0"), Some("gw")));
    assert_eq!((release["release_counter"].as_u64(), release["size"].as_u64()), (Some(11), Some(image.len() as u64)));
    let dir = tempfile::tempdir().expect("dir");
    let artifact = chunk.artifacts().next().expect("artifact");
    let downloaded = artifact.download(dir.path()).await.expect("download");
    let bytes = tokio::fs::read(downloaded.file()).await.expect("read");
    assert_eq!(release["sha256"].as_str(), Some(hex::encode(Sha256::digest(&bytes)).as_str()));

    // NATS: the command carries the same envelope inline.
    app.enrol("rel-nats", "rev-a").await;
    let nats = bus.device("rel-nats").await.client;
    let mut commands = nats.subscribe(bus.names.device_commands("rel-nats")).await.expect("subscribe");
    nats.flush().await.expect("flush");
    let assign = app.post("/api/v1/devices/rel-nats/update").json(&json!({"firmware_id": firmware}));
    assert_eq!(assign.send().await.expect("assign").status(), 201);
    let message =
        tokio::time::timeout(Duration::from_secs(30), commands.next()).await.expect("pushed").expect("message");
    let command: Value = serde_json::from_slice(&message.payload).expect("json");
    assert_eq!(device_checks(&command["firmware"]["release"], &public), release, "{command}");
}

async fn as_admin(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let request = app.http.post(app.url(path)).bearer_auth(app.token_for("root", Role::Admin)).json(&body);
    json_of(request.send().await.expect("request")).await
}

async fn campaign_view(app: &TestApp, id: &str) -> Value {
    json_of(app.get(&format!("/api/v1/campaigns/{id}")).send().await.expect("campaign")).await.1
}

async fn assignments(app: &TestApp, device: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'DeviceUpdate' AND aggregate_id = $1
         AND event_type = 'UpdateAssigned'",
    )
    .bind(device)
    .fetch_one(&app.db)
    .await
    .expect("count")
}

/// Anti-rollback: devices running release 5 are not taken to release 3 unless
/// an admin allows the downgrade, and the permission is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_release_reaches_a_device_only_when_an_admin_allows_the_downgrade() {
    let (seed, public) = ota::signing::keygen();
    let app = TestApp::spawn_with(TestOptions { firmware_keys: format!("ci:{public}"), ..TestOptions::full() }).await;
    let mut ids = Vec::new();
    for (version, counter) in [("3.0", 3), ("5.0", 5)] {
        let image = format!("gateway image {version}").into_bytes();
        let metadata = json!({"name": "os", "version": version, "device_model": "gw",
            "release": sign(&seed, label(version, &[], counter), &image)});
        let (status, body) = upload(&app, metadata, &image).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_str().expect("id").to_owned());
    }
    let (earlier, later) = (ids[0].clone(), ids[1].clone());
    for (device, running) in [("down-0", "5.0"), ("down-1", "5.0"), ("down-2", "5.0"), ("up-0", "3.0")] {
        let body = json!({"id": device, "device_model": "gw", "firmware_version": running});
        assert_eq!(app.post("/api/v1/devices").json(&body).send().await.expect("register").status(), 201);
    }

    // A single update.
    let path = "/api/v1/devices/down-0/update";
    let (status, body) = json_of(app.post(path).json(&json!({"firmware_id": earlier})).send().await.expect("up")).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("update.downgrade")), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("release 5") && m.contains("release 3")), "{body}");
    let allowing = json!({"firmware_id": earlier, "allow_downgrade": true});
    let (status, body) = json_of(app.post(path).json(&allowing).send().await.expect("up")).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")), "{body}");
    assert_eq!(as_admin(&app, path, allowing).await.0, 201);
    let upgrade = app.post("/api/v1/devices/up-0/update").json(&json!({"firmware_id": later}));
    assert_eq!(upgrade.send().await.expect("upgrade").status(), 201, "a later release needs nothing");

    // A campaign without the permission skips the devices it would downgrade.
    let targets = json!({"device_ids": ["down-1", "down-2"]});
    let plain = json!({"name": "back", "firmware_id": earlier, "target": targets});
    let (status, created) = json_of(app.post("/api/v1/campaigns").json(&plain).send().await.expect("create")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(app.campaign_action(&id, "start").await.0, 200);
    eventually("downgrades skipped", Duration::from_secs(30), || async {
        (campaign_view(&app, &id).await["waves"][0]["skipped"] == 2).then_some(())
    })
    .await;
    assert_eq!((assignments(&app, "down-1").await, assignments(&app, "down-2").await), (0, 0));

    // Allowing it is an admin's decision, recorded in the campaign's first event.
    let allowed = json!({"name": "back", "firmware_id": earlier, "target": targets,
        "rollout": {"allow_downgrade": true}});
    let (status, body) = json_of(app.post("/api/v1/campaigns").json(&allowed).send().await.expect("create")).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")), "{body}");
    let (status, created) = as_admin(&app, "/api/v1/campaigns", allowed).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let (payload, actor): (Value, String) = sqlx::query_as(
        "SELECT payload, metadata->>'actor_id' FROM events WHERE aggregate_type = 'Campaign'
         AND aggregate_id = $1 AND event_type = 'CampaignCreated'",
    )
    .bind(&id)
    .fetch_one(&app.db)
    .await
    .expect("created event");
    assert_eq!((&payload["CampaignCreated"]["rollout"]["allow_downgrade"], actor.as_str()), (&json!(true), "root"));
    assert_eq!(app.campaign_action(&id, "start").await.0, 200);
    eventually("downgrades assigned", Duration::from_secs(30), || async {
        (campaign_view(&app, &id).await["waves"][0]["assigned"] == 2).then_some(())
    })
    .await;
    assert_eq!((assignments(&app, "down-1").await, assignments(&app, "down-2").await), (1, 1));
}
