//! The event spine: command -> store -> relay -> NATS -> projection -> query.

use std::time::Duration;

use ota_testkit::{eventually, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_firmware_reaches_the_catalog_through_nats() {
    let app = TestApp::spawn().await;
    let id = app.firmware("1.0.0").await;
    let body: serde_json::Value =
        eventually("firmware in catalog", Duration::from_secs(20), || async {
            let r = app
                .get(&format!("/api/v1/firmware/{id}"))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())?;
            r.json().await.ok()
        })
        .await;
    assert_eq!(body["version"], "1.0.0");
    assert_eq!(body["created_by"], "user:tester");
}
