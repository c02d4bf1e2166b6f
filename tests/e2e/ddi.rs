//! The hawkBit DDI API driven by a client we did not write: the crates.io `hawkbit`
//! crate (Collabora / Liebherr), plus raw HTTP where the wire itself is the point.

use std::time::Duration;

use hawkbit::ddi::{Client, ClientAuthorization, Execution, Finished, Update};
use ota_testkit::{eventually, json_of, TestApp, TestOptions, GATEWAY_TOKEN};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn image(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

async fn upload(app: &TestApp, version: &str, bytes: Vec<u8>) -> String {
    let metadata = json!({"name": "os", "version": version, "device_model": "gw"});
    let (status, body) = app.upload_firmware_with(metadata, "bundle.swu", bytes).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().expect("firmware id").to_owned()
}

fn client(app: &TestApp, device: &str, auth: ClientAuthorization) -> Client {
    // Upper case on purpose: hawkBit's tenants are case-insensitive and RAUC's examples use DEFAULT.
    Client::new(&format!("http://{}", app.addr), "DEFAULT", device, auth, None, None, Some(Duration::from_secs(10)))
        .expect("hawkbit client")
}

fn target(app: &TestApp, device: &str, token: &str) -> Client {
    client(app, device, ClientAuthorization::TargetToken(token.to_owned()))
}

async fn started_campaign(app: &TestApp, firmware: &str, devices: &[&str], rollout: Value) -> String {
    let body = json!({"name": "ddi", "firmware_id": firmware, "target": {"device_ids": devices}, "rollout": rollout});
    let (status, created) = json_of(app.post("/api/v1/campaigns").json(&body).send().await.expect("create")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let (status, started) = app.campaign_action(&id, "start").await;
    assert_eq!(status, 200, "{started}");
    id
}

/// Polls like a device until the server offers a deployment.
async fn offered(device: &Client) -> Update {
    eventually("a deployment is offered", Duration::from_secs(30), || async {
        device.poll().await.ok()?.update()?.fetch().await.ok()
    })
    .await
}

async fn lane_state(app: &TestApp, device: &str) -> Value {
    json_of(app.get(&format!("/api/v1/devices/{device}/update")).send().await.expect("lane")).await.1
}

async fn wait_state(app: &TestApp, device: &str, state: &str) -> Value {
    eventually(&format!("{device} {state}"), Duration::from_secs(30), || async {
        let lane = lane_state(app, device).await;
        (lane["state"] == state).then_some(lane)
    })
    .await
}

/// The raw base poll, for what the client crate does not expose.
async fn raw_poll(app: &TestApp, device: &str, authorization: &str) -> (u16, Value) {
    let url = app.url(&format!("/default/controller/v1/{device}"));
    json_of(app.http.get(url).header("Authorization", authorization).send().await.expect("poll")).await
}

#[tokio::test]
async fn a_hawkbit_client_runs_a_campaign_update_from_poll_to_success() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let bytes = image(300_000);
    let firmware = upload(&app, "2.0", bytes.clone()).await;
    let token = app.enrol("ddi-1", "rev-a").await;
    let device = target(&app, "ddi-1", &token);

    // A new device is asked for its attributes; the client sends `mode: null`.
    let reply = device.poll().await.expect("first poll");
    assert!(reply.polling_sleep().expect("HH:MM:SS sleep") > Duration::ZERO);
    assert!(reply.update().is_none(), "nothing assigned yet");
    let config = reply.config_data_request().expect("configData is requested from a new device");
    config
        .upload(Execution::Closed, Finished::Success, None, json!({"hwRevision": "rev-a", "serial": 7}), vec![])
        .await
        .expect("configData accepted");
    eventually("attributes in the inventory", Duration::from_secs(30), || async {
        let profile = json_of(app.get("/api/v1/devices/ddi-1").send().await.ok()?).await.1;
        (profile["attributes"]["serial"] == "7" && profile["hardware_version"] == "rev-a").then_some(())
    })
    .await;

    let campaign = started_campaign(&app, &firmware, &["ddi-1"], json!({})).await;
    let update = offered(&device).await;
    assert_eq!(update.download_type(), hawkbit::ddi::Type::Forced);
    assert_eq!(update.update_type(), hawkbit::ddi::Type::Forced);
    let chunk = update.chunks().next().expect("one chunk");
    assert_eq!((chunk.name(), chunk.version()), ("os", "2.0"));
    let artifact = chunk.artifacts().next().expect("one artifact");
    assert_eq!((artifact.filename(), artifact.size() as usize), ("bundle.swu", bytes.len()));
    wait_state(&app, "ddi-1", "notified").await;

    let dir = tempfile::tempdir().expect("dir");
    update
        .send_feedback_with_progress(
            Execution::Proceeding,
            Finished::None,
            json!({"cnt": 1, "of": 2}),
            vec!["Downloading"],
        )
        .await
        .expect("progress feedback");
    let downloaded = artifact.download(dir.path()).await.expect("download");
    downloaded.check_sha256().await.expect("sha256 matches");
    downloaded.check_sha1().await.expect("sha1 matches");
    downloaded.check_md5().await.expect("md5 matches");
    let lane = wait_state(&app, "ddi-1", "downloading").await;
    assert_eq!(lane["progress"], 50, "{lane}");

    update.send_feedback(Execution::Closed, Finished::Success, vec!["Installed"]).await.expect("final feedback");
    wait_state(&app, "ddi-1", "succeeded").await;
    eventually("campaign completed", Duration::from_secs(30), || async {
        let view = json_of(app.get(&format!("/api/v1/campaigns/{campaign}")).send().await.ok()?).await.1;
        (view["status"] == "completed").then_some(())
    })
    .await;

    // Closed: the same final word again is 410 Gone, as hawkBit answers.
    let again = update.send_feedback(Execution::Closed, Finished::Success, vec![]).await;
    let status = again.err().and_then(|e| match e {
        hawkbit::ddi::Error::ReqwestError(e) => e.status().map(|s| s.as_u16()),
        _ => None,
    });
    assert_eq!(status, Some(410));

    // The poll now points at the installed base and no longer at a deployment.
    let (status, poll) = raw_poll(&app, "ddi-1", &format!("TargetToken {token}")).await;
    assert_eq!(status, 200);
    assert!(poll["_links"]["deploymentBase"].is_null(), "{poll}");
    let installed = poll["_links"]["installedBase"]["href"].as_str().expect("installedBase link");
    let (status, base) = json_of(
        app.http.get(installed).header("Authorization", format!("TargetToken {token}")).send().await.expect("get"),
    )
    .await;
    assert_eq!((status, base["id"].as_str()), (200, Some("1")), "{base}");

    // The device's firmware version and its download are on record.
    eventually("firmware version in the inventory", Duration::from_secs(30), || async {
        let profile = json_of(app.get("/api/v1/devices/ddi-1").send().await.ok()?).await.1;
        (profile["firmware_version"] == "2.0").then_some(())
    })
    .await;
    let stats = eventually("download recorded", Duration::from_secs(30), || async {
        let body = json_of(app.get(&format!("/api/v1/firmware/{firmware}/downloads")).send().await.ok()?).await.1;
        (body["stats"]["devices_complete"] == 1).then_some(body)
    })
    .await;
    assert_eq!(stats["stats"]["bytes"], bytes.len(), "{stats}");
    assert_eq!(stats["items"][0]["via"], "target_token", "{stats}");
    eventually("last seen recorded", Duration::from_secs(10), || async {
        let device = json_of(app.get("/api/v1/devices/ddi-1").send().await.ok()?).await.1;
        device["last_seen"].is_string().then_some(())
    })
    .await;
}

#[tokio::test]
async fn failure_feedback_fails_the_update_with_the_devices_messages() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let firmware = upload(&app, "2.0", image(1000)).await;
    let token = app.enrol("ddi-f", "rev-a").await;
    started_campaign(&app, &firmware, &["ddi-f"], json!({})).await;
    let update = offered(&target(&app, "ddi-f", &token)).await;
    update
        .send_feedback(Execution::Closed, Finished::Failure, vec!["ERROR: bad image", "rolled back"])
        .await
        .expect("failure feedback");
    let lane = wait_state(&app, "ddi-f", "failed").await;
    assert_eq!(lane["message"], "ERROR: bad image; rolled back", "{lane}");
}

#[tokio::test]
async fn a_cancel_is_accepted_by_one_device_and_refused_by_another() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let firmware = upload(&app, "2.0", image(1000)).await;
    let (a_token, b_token) = (app.enrol("ddi-a", "rev-a").await, app.enrol("ddi-b", "rev-a").await);
    let (a, b) = (target(&app, "ddi-a", &a_token), target(&app, "ddi-b", &b_token));
    let campaign = started_campaign(&app, &firmware, &["ddi-a", "ddi-b"], json!({})).await;
    let (update_a, update_b) = (offered(&a).await, offered(&b).await);
    update_b.send_feedback(Execution::Proceeding, Finished::None, vec!["installing"]).await.expect("proceeding");
    wait_state(&app, "ddi-a", "notified").await;
    wait_state(&app, "ddi-b", "downloading").await;

    let (status, cancelled) = app.campaign_action(&campaign, "cancel").await;
    assert_eq!(status, 200, "{cancelled}");
    // Both were fetched, so both are asked rather than closed behind their backs.
    let cancel_of = |device: Client| async move {
        eventually("cancel offered", Duration::from_secs(30), || async { device.poll().await.ok()?.cancel_action() })
            .await
    };
    let cancel_a = cancel_of(a).await;
    let cancel_b = cancel_of(b).await;
    assert_eq!(cancel_a.id().await.expect("stop id"), update_a.action_id());

    cancel_a.send_feedback(Execution::Closed, Finished::Success, vec!["stopped"]).await.expect("accept");
    wait_state(&app, "ddi-a", "cancelled").await;

    // RAUC's answer once installing: rejected. The update goes on and may still succeed.
    cancel_b.send_feedback(Execution::Rejected, Finished::Success, vec!["too late"]).await.expect("refuse");
    let lane = eventually("refusal recorded", Duration::from_secs(30), || async {
        let lane = lane_state(&app, "ddi-b").await;
        (lane["cancel_requested"] == false && lane["state"] == "downloading").then_some(lane)
    })
    .await;
    assert_eq!(lane["state"], "downloading");
    let again = offered(&target(&app, "ddi-b", &b_token)).await;
    assert_eq!(again.action_id(), update_b.action_id());
    update_b.send_feedback(Execution::Closed, Finished::Success, vec![]).await.expect("success after refusal");
    wait_state(&app, "ddi-b", "succeeded").await;
}

#[tokio::test]
async fn an_action_is_served_again_after_a_reboot_and_a_download_resumes_by_range() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let bytes = image(200_000);
    let firmware = upload(&app, "2.0", bytes.clone()).await;
    let token = app.enrol("ddi-r", "rev-a").await;
    started_campaign(&app, &firmware, &["ddi-r"], json!({})).await;
    let first = offered(&target(&app, "ddi-r", &token)).await;
    let (status, before) = raw_poll(&app, "ddi-r", &format!("TargetToken {token}")).await;
    assert_eq!(status, 200);

    // The download breaks off half-way: the client keeps `<file>.part` and resumes with Range.
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("bundle.swu.part"), &bytes[..70_000]).expect("partial file");
    first.send_feedback(Execution::Download, Finished::None, vec![]).await.expect("download feedback");

    // Reboot: a new client, the same action, the same link, the same content.
    let rebooted = target(&app, "ddi-r", &token);
    let (_, after) = raw_poll(&app, "ddi-r", &format!("TargetToken {token}")).await;
    assert_eq!(before["_links"]["deploymentBase"], after["_links"]["deploymentBase"]);
    let second = offered(&rebooted).await;
    assert_eq!(second.action_id(), first.action_id());
    let artifact = second.chunks().next().and_then(|c| c.artifacts().next().map(|a| a.filename().to_owned()));
    assert_eq!(artifact.as_deref(), Some("bundle.swu"));
    let chunk = second.chunks().next().expect("chunk");
    let downloaded = chunk.artifacts().next().expect("artifact").download(dir.path()).await.expect("resumed");
    assert_eq!(std::fs::read(downloaded.file()).expect("file"), bytes);
    second.send_feedback(Execution::Closed, Finished::Success, vec![]).await.expect("success");
    wait_state(&app, "ddi-r", "succeeded").await;

    let body = eventually("the resumed range is on record", Duration::from_secs(30), || async {
        let body = json_of(app.get(&format!("/api/v1/firmware/{firmware}/downloads")).send().await.ok()?).await.1;
        let items = body["items"].as_array()?;
        items.iter().any(|d| d["offset"] == 70_000 && d["whole"] == false && d["complete"] == true).then_some(body)
    })
    .await;
    assert_eq!(body["stats"]["bytes"], 130_000, "{body}");
}

#[tokio::test]
async fn ranges_etags_md5sum_and_head_follow_hawkbit() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let bytes = image(10_000);
    let firmware = upload(&app, "2.0", bytes.clone()).await;
    let token = app.enrol("ddi-h", "rev-a").await;
    started_campaign(&app, &firmware, &["ddi-h"], json!({})).await;
    offered(&target(&app, "ddi-h", &token)).await;
    let auth = format!("TargetToken {token}");
    let base = app.url(&format!("/default/controller/v1/ddi-h/softwaremodules/{firmware}/artifacts"));
    let (status, list) = json_of(app.http.get(&base).header("Authorization", &auth).send().await.expect("list")).await;
    assert_eq!(status, 200, "{list}");
    let sha1 = list[0]["hashes"]["sha1"].as_str().expect("sha1").to_owned();
    assert!(list[0]["size"].is_u64(), "size is an integer: {list}");
    for rel in ["download", "download-http", "md5sum", "md5sum-http"] {
        assert!(list[0]["_links"][rel]["href"].is_string(), "{rel}: {list}");
    }
    let file = format!("{base}/bundle.swu");
    let get = |range: Option<&str>| {
        let mut request = app.http.get(&file).header("Authorization", &auth);
        if let Some(range) = range {
            request = request.header("Range", range);
        }
        request.send()
    };
    let part = get(Some("bytes=100-199")).await.expect("range");
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 100-199/10000");
    assert_eq!(part.headers()["etag"], format!("\"{sha1}\"").as_str());
    assert_eq!(part.bytes().await.expect("body").as_ref(), &bytes[100..200]);
    let past = get(Some("bytes=20000-")).await.expect("past the end");
    assert_eq!(past.status(), 416);
    assert_eq!(past.headers()["content-range"], "bytes */10000");
    let stale = app
        .http
        .get(&file)
        .header("Authorization", &auth)
        .header("Range", "bytes=0-9")
        .header("If-Range", "\"not-the-etag\"")
        .send()
        .await
        .expect("if-range");
    assert_eq!(stale.status(), 200, "a stale If-Range gets the whole image");
    let head = app.http.head(&file).header("Authorization", &auth).send().await.expect("head");
    assert_eq!((head.status().as_u16(), head.headers()["content-length"].to_str().ok()), (200, Some("10000")));
    let md5 = app.http.get(format!("{file}.MD5SUM")).header("Authorization", &auth).send().await.expect("md5sum");
    let md5_text = md5.text().await.expect("text");
    assert!(md5_text.ends_with("  bundle.swu\n"), "{md5_text}");
    let other = app.http.get(format!("{base}/other.swu")).header("Authorization", &auth).send().await.expect("other");
    assert_eq!(other.status(), 404);
}

/// Issue 12, item 4: the DDI cache keeps nothing before authentication and is
/// bounded. Bad tokens, for unknown ids or for real devices, leave nothing
/// behind; authenticated devices are kept up to the bound, least recent first out.
#[tokio::test]
async fn the_ddi_cache_keeps_only_authenticated_devices_and_is_bounded() {
    let app = TestApp::spawn_with(TestOptions { ddi_cache_devices: Some(3), ..TestOptions::default() }).await;
    let targets = &app.server.state.ddi.targets;
    let mut tokens = Vec::new();
    for i in 0..5 {
        let id = format!("cached-{i}");
        tokens.push((id.clone(), app.enrol(&id, "hw").await));
    }
    for i in 0..200 {
        let (status, _) = raw_poll(&app, &format!("unknown-{i}"), "TargetToken not-a-token").await;
        assert_eq!(status, 401);
    }
    let (status, _) = raw_poll(&app, "cached-0", "TargetToken not-its-token").await;
    assert_eq!(status, 401);
    assert_eq!(targets.len(), 0, "a refused caller left a device in the cache");

    for (id, token) in &tokens {
        let (status, body) = raw_poll(&app, id, &format!("TargetToken {token}")).await;
        assert_eq!(status, 200, "{id}: {body}");
    }
    assert_eq!(targets.len(), 3, "the cache holds its bound, no more");
    // The cached device still refuses a wrong token.
    let (status, _) = raw_poll(&app, "cached-4", "TargetToken not-its-token").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn tokens_act_only_as_their_own_device_and_gateways_register_devices() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let mine = app.enrol("ddi-x", "rev-a").await;
    let theirs = app.enrol("ddi-y", "rev-a").await;
    assert_eq!(raw_poll(&app, "ddi-x", &format!("TargetToken {mine}")).await.0, 200);
    assert_eq!(raw_poll(&app, "ddi-x", &format!("TargetToken {theirs}")).await.0, 401);
    assert_eq!(raw_poll(&app, "ddi-x", "TargetToken wrong").await.0, 401);
    assert_eq!(raw_poll(&app, "ddi-x", "Bearer x").await.0, 401);
    assert_eq!(raw_poll(&app, "nobody", &format!("TargetToken {mine}")).await.0, 401);
    let (status, body) = raw_poll(&app, "ddi-x", "").await;
    assert_eq!(status, 401, "{body}");
    assert!(body["message"].is_string(), "a JSON body says what is wrong: {body}");
    let unknown_tenant =
        app.http.get(app.url("/acme/controller/v1/ddi-x")).header("Authorization", format!("TargetToken {mine}"));
    assert_eq!(unknown_tenant.send().await.expect("tenant").status(), 404);

    // The native status route: a device's token acts only as that device.
    let status_of = |device: &str, token: &str| {
        app.http
            .post(app.url(&format!("/api/v1/devices/{device}/status")))
            .header("Authorization", format!("TargetToken {token}"))
            .json(&json!({"state": "downloading"}))
            .send()
    };
    assert_eq!(status_of("ddi-y", &mine).await.expect("status").status(), 401);

    // Rotation: the old token stops working, the new one works.
    let (status, rotated) = json_of(app.post("/api/v1/devices/ddi-x/token").send().await.expect("rotate")).await;
    assert_eq!(status, 200, "{rotated}");
    let fresh = rotated["target_token"].as_str().expect("new token");
    assert_eq!(raw_poll(&app, "ddi-x", &format!("TargetToken {mine}")).await.0, 401);
    assert_eq!(raw_poll(&app, "ddi-x", &format!("TargetToken {fresh}")).await.0, 200);

    // A gateway acts for any device and registers the ones it has never seen.
    let gateway = client(&app, "new-cam-7", ClientAuthorization::GatewayToken(GATEWAY_TOKEN.to_owned()));
    let reply = gateway.poll().await.expect("gateway poll registers the device");
    let config = reply.config_data_request().expect("attributes wanted");
    config
        .upload(Execution::Closed, Finished::Success, None, json!({"model": "cam", "hwRevision": "b2"}), vec![])
        .await
        .expect("configData");
    let device = eventually("auto-registered device", Duration::from_secs(30), || async {
        let (status, body) = json_of(app.get("/api/v1/devices/new-cam-7").send().await.ok()?).await;
        (status == 200 && body["device_model"] == "cam").then_some(body)
    })
    .await;
    assert_eq!(device["hardware_version"], "b2");
    assert_eq!(raw_poll(&app, "other", &format!("GatewayToken not-{GATEWAY_TOKEN}")).await.0, 401);
}

#[tokio::test]
async fn a_nats_push_device_updates_with_a_signed_link_and_tampering_is_refused() {
    use futures::StreamExt;
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let bytes = image(50_000);
    let firmware = upload(&app, "2.0", bytes.clone()).await;
    app.enrol("push-1", "rev-a").await;
    let nats = async_nats::connect("127.0.0.1:4222").await.expect("nats");
    let mut commands = nats.subscribe(app.names.device_commands("push-1")).await.expect("subscribe");
    nats.flush().await.expect("flush");
    let (status, body) = json_of(
        app.post("/api/v1/devices/push-1/update").json(&json!({"firmware_id": firmware})).send().await.expect("assign"),
    )
    .await;
    assert!(status == 201 || status == 200, "{body}");
    let message =
        tokio::time::timeout(Duration::from_secs(30), commands.next()).await.expect("pushed").expect("message");
    let command: Value = serde_json::from_slice(&message.payload).expect("json");
    assert_eq!(command["type"], "update", "{command}");
    assert_eq!(command["firmware"]["sha256"], hex::encode(Sha256::digest(&bytes)), "{command}");
    let url = command["download_url"].as_str().expect("signed link").to_owned();

    // No token needed, Range works, and the bytes are the image.
    let got = app.http.get(&url).send().await.expect("download");
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.expect("bytes").as_ref(), bytes.as_slice());
    let part = app.http.get(&url).header("Range", "bytes=10-19").send().await.expect("range");
    assert_eq!(part.status(), 206);
    // Tampered signature, expiry or path: 403.
    let flipped =
        if url.ends_with('0') { format!("{}1", &url[..url.len() - 1]) } else { format!("{}0", &url[..url.len() - 1]) };
    let later = url.replacen("expires=", "expires=9", 1);
    let elsewhere = url.replacen("/push-1/", "/push-2/", 1);
    for bad in [flipped, later, elsewhere] {
        assert_eq!(app.http.get(&bad).send().await.expect("tampered").status(), 403, "{bad}");
    }

    let action = command["action"].clone();
    for state in ["downloading", "installing", "succeeded"] {
        let report = json!({"state": state, "action": action});
        let reply = nats.request(app.names.device_status("push-1"), report.to_string().into()).await.expect("report");
        let reply: Value = serde_json::from_slice(&reply.payload).expect("reply");
        assert_eq!(reply["ok"], true, "{reply}");
    }
    wait_state(&app, "push-1", "succeeded").await;
    eventually("signed download recorded", Duration::from_secs(30), || async {
        let body = json_of(app.get(&format!("/api/v1/firmware/{firmware}/downloads")).send().await.ok()?).await.1;
        body["items"].as_array()?.iter().any(|d| d["via"] == "signed_url").then_some(())
    })
    .await;
}

#[tokio::test]
async fn malformed_ddi_requests_get_4xx_never_5xx() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let firmware = upload(&app, "2.0", image(1000)).await;
    let token = app.enrol("ddi-z", "rev-a").await;
    started_campaign(&app, &firmware, &["ddi-z"], json!({})).await;
    offered(&target(&app, "ddi-z", &token)).await;
    let auth = format!("TargetToken {token}");

    let segment = proptest::string::string_regex("([a-zA-Z0-9._~-]|%[0-9A-F]{2}|%FF|%00){0,12}").expect("regex");
    let body = proptest::prop_oneof![
        proptest::string::string_regex("\\PC{0,64}").expect("regex"),
        Just(r#"{"status":{"execution":"closed","result":{"finished":"maybe"}}}"#.to_owned()),
        Just(
            r#"{"status":{"execution":"proceeding","result":{"finished":"none","progress":"x"}},"id":[1]}"#.to_owned()
        ),
        Just(r#"{"mode":"sideways","data":{"a":"b"}}"#.to_owned()),
        Just(r#"{"mode":null,"data":{}}"#.to_owned()),
        Just(r#"{"data":{"k":"x\u0007"}}"#.to_owned()),
        Just(format!(r#"{{"data":{{"k":"{}"}}}}"#, "v".repeat(500))),
        Just("[]".to_owned()),
        Just("null".to_owned()),
    ];
    use proptest::strategy::Just;
    let routes = proptest::sample::select(vec![
        ("GET", ""),
        ("GET", "/deploymentBase/{x}"),
        ("POST", "/deploymentBase/{x}/feedback"),
        ("POST", "/deploymentBase/1/feedback"),
        ("GET", "/cancelAction/{x}"),
        ("POST", "/cancelAction/1/feedback"),
        ("PUT", "/configData"),
        ("GET", "/installedBase/{x}"),
        ("GET", "/softwaremodules/{x}/artifacts"),
        ("GET", "/softwaremodules/{x}/artifacts/{x}"),
    ]);
    let case = (routes, segment, body, proptest::bool::ANY);
    let mut runner = TestRunner::deterministic();
    for _ in 0..300 {
        let ((method, route), segment, body, own) = case.new_tree(&mut runner).expect("case").current();
        let device = if own { "ddi-z".to_owned() } else { segment.clone() };
        let path = format!("/default/controller/v1/{device}{}", route.replace("{x}", &segment));
        let request = match method {
            "GET" => app.http.get(app.url(&path)),
            "PUT" => app.http.put(app.url(&path)),
            _ => app.http.post(app.url(&path)),
        };
        let response = request.header("Authorization", &auth).body(body.clone()).send().await.expect("request");
        let status = response.status().as_u16();
        assert!(status < 500, "{method} {path} {body:?} -> {status}: {:?}", response.text().await);
    }
}

/// Issue 11 (lost on stop): download records and last-seen times wait in memory for
/// up to 2.5 s; a graceful stop (what SIGTERM runs) stores them before it returns.
#[tokio::test]
async fn a_graceful_stop_stores_the_downloads_and_last_seen_times_waiting_in_memory() {
    let mut app = TestApp::spawn().await;
    let bytes = image(50_000);
    let firmware = upload(&app, "2.0", bytes.clone()).await;
    let token = app.enrol("ddi-stop", "rev-a").await;
    let assign = app.post("/api/v1/devices/ddi-stop/update").json(&json!({"firmware_id": firmware}));
    let (status, lane) = json_of(assign.send().await.expect("assign")).await;
    assert_eq!(status, 201, "{lane}");
    let update = offered(&target(&app, "ddi-stop", &token)).await;
    let dir = tempfile::tempdir().expect("dir");
    let chunk = update.chunks().next().expect("chunk");
    let downloaded = chunk.artifacts().next().expect("artifact").download(dir.path()).await.expect("download");
    assert_eq!(std::fs::read(downloaded.file()).expect("file"), bytes);

    // At once, well inside the 2 s the download log sums a device's reads over.
    app.server.shutdown().await;

    let count = |sql: &'static str| async { sqlx::query_scalar::<_, i64>(sql).fetch_one(&app.db).await.expect(sql) };
    let served = count(
        "SELECT count(*) FROM events WHERE aggregate_type = 'DeviceUpdate' AND aggregate_id = 'ddi-stop'
         AND event_type = 'DownloadServed'",
    )
    .await;
    assert_eq!(served, 1, "the download was recorded before the stop returned");
    let seen = count("SELECT count(*) FROM device_contact WHERE device_id = 'ddi-stop'").await;
    assert_eq!(seen, 1, "the poll's last-seen time was stored before the stop returned");
}

/// Issue 12 (transport): a device may run `OTA_DOWNLOADS_PER_DEVICE` (2) downloads at
/// once; the slot is held by the response body until it ends or the client goes away.
#[tokio::test]
async fn a_third_concurrent_download_of_a_device_is_refused_until_one_ends() {
    let app = TestApp::spawn().await;
    // Large enough that an unread body cannot end inside the sockets' buffers.
    let bytes = image(24 * 1024 * 1024);
    let firmware = upload(&app, "2.0", bytes.clone()).await;
    let token = app.enrol("ddi-dl", "rev-a").await;
    let assign = app.post("/api/v1/devices/ddi-dl/update").json(&json!({"firmware_id": firmware}));
    let (status, lane) = json_of(assign.send().await.expect("assign")).await;
    assert_eq!(status, 201, "{lane}");
    offered(&target(&app, "ddi-dl", &token)).await;
    let file = app.url(&format!("/default/controller/v1/ddi-dl/softwaremodules/{firmware}/artifacts/bundle.swu"));
    let download = || app.http.get(&file).header("Authorization", format!("TargetToken {token}")).send();

    let first = download().await.expect("first");
    let second = download().await.expect("second");
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (200, 200));
    let third = download().await.expect("third");
    assert_eq!(third.status(), 429);
    assert!(third.headers().contains_key("retry-after"), "{:?}", third.headers());
    let (_, body) = json_of(third).await;
    assert_eq!(body["error"], "rate_limited", "{body}");
    // A download read to its end frees its slot ...
    assert_eq!(second.bytes().await.expect("second body").len(), bytes.len());
    let fourth = freed(&download, "a slot freed by the finished download").await;
    // ... and so does a client that goes away half-way.
    drop(first);
    let fifth = freed(&download, "a slot freed by the dropped download").await;
    drop((fourth, fifth));
}

/// Asks until a download is answered 200 (the server frees a slot once the body is dropped).
async fn freed<F, Fut>(download: &F, what: &str) -> reqwest::Response
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    eventually(what, Duration::from_secs(10), || async {
        let response = download().await.ok()?;
        (response.status() == 200).then_some(response)
    })
    .await
}
