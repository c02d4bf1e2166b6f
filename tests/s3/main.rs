//! Firmware in S3 (an S3-compatible server on loopback: moto), downloads handed to
//! the store by pre-signed redirect. A binary of its own: the S3 client is set up
//! from `AWS_*` variables, which only this process sets.

use std::process::Stdio;
use std::time::Duration;

use hawkbit::ddi::{Client, ClientAuthorization, Execution, Finished};
use ota_testkit::{eventually, json_of, TestApp, TestOptions};
use serde_json::json;

/// An S3-compatible server for this test only, stopped when dropped.
struct Moto {
    child: tokio::process::Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let child = tokio::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("moto_server (PyPI moto[server]; scripts/test.sh installs it) must be on PATH");
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/firmware-bucket");
    eventually("moto answers and the bucket exists", Duration::from_secs(30), || async {
        http.put(&url).send().await.ok().filter(|r| r.status().is_success()).map(|_| ())
    })
    .await;
    Moto { child, port }
}

#[tokio::test]
async fn firmware_lives_in_s3_and_devices_download_it_from_the_store_by_presigned_redirect() {
    let s3 = moto().await;
    // Only this test binary reads these, and it sets them before any server starts.
    for (key, value) in [
        ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", s3.port)),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ] {
        std::env::set_var(key, value);
    }
    let app = TestApp::spawn_with(TestOptions {
        storage_url: Some("s3://firmware-bucket/ota".to_owned()),
        download_redirect: true,
        ..TestOptions::full()
    })
    .await;
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let metadata = json!({"name": "os", "version": "2.0", "device_model": "gw"});
    let (status, firmware) = app.upload_firmware_with(metadata, "bundle.swu", bytes.clone()).await;
    assert_eq!(status, 201, "{firmware}");
    let firmware = firmware["id"].as_str().expect("id").to_owned();
    // The operator download streams from S3 through the server.
    let through = eventually("the catalog lists the firmware", Duration::from_secs(30), || async {
        let response = app.get(&format!("/api/v1/firmware/{firmware}/content")).send().await.ok()?;
        response.status().is_success().then_some(response)
    })
    .await;
    let got = through.bytes().await.expect("bytes");
    assert!(got.as_ref() == bytes.as_slice(), "the S3 copy differs from the upload ({} bytes)", got.len());

    let token = app.enrol("s3-dev", "rev-a").await;
    let body = json!({"name": "s3", "firmware_id": firmware, "target": {"device_ids": ["s3-dev"]}});
    let (status, created) = json_of(app.post("/api/v1/campaigns").json(&body).send().await.expect("create")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(app.campaign_action(&id, "start").await.0, 200);

    let device = Client::new(
        &format!("http://{}", app.addr),
        "default",
        "s3-dev",
        ClientAuthorization::TargetToken(token.clone()),
        None,
        None,
        Some(Duration::from_secs(10)),
    )
    .expect("client");
    let update = eventually("offered", Duration::from_secs(30), || async {
        device.poll().await.ok()?.update()?.fetch().await.ok()
    })
    .await;
    let link = format!("/default/controller/v1/s3-dev/softwaremodules/{firmware}/artifacts/bundle.swu");
    let no_follow = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let redirect = no_follow
        .get(app.url(&link))
        .header("Authorization", format!("TargetToken {token}"))
        .send()
        .await
        .expect("get");
    assert_eq!(redirect.status(), 302);
    let location = redirect.headers()["location"].to_str().expect("location").to_owned();
    assert!(location.starts_with(&format!("http://127.0.0.1:{}/firmware-bucket/ota/sha256/", s3.port)), "{location}");
    assert!(location.contains("X-Amz-Signature="), "{location}");

    // The client follows the redirect to the store, which serves the bytes.
    let dir = tempfile::tempdir().expect("dir");
    let chunk = update.chunks().next().expect("chunk");
    let downloaded = chunk.artifacts().next().expect("artifact").download(dir.path()).await.expect("download");
    downloaded.check_sha256().await.expect("the store's bytes are the image");
    update.send_feedback(Execution::Closed, Finished::Success, vec![]).await.expect("feedback");
    eventually("succeeded and the hand-off recorded", Duration::from_secs(30), || async {
        let lane = json_of(app.get("/api/v1/devices/s3-dev/update").send().await.ok()?).await.1;
        let log = json_of(app.get(&format!("/api/v1/firmware/{firmware}/downloads")).send().await.ok()?).await.1;
        let handed = log["items"].as_array()?.iter().any(|d| d["via"] == "store_redirect");
        (lane["state"] == "succeeded" && handed).then_some(())
    })
    .await;
}
