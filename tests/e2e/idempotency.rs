//! Idempotent commands (issue #11, item 5): a POST retried with the same
//! `Idempotency-Key` after its answer was lost returns the first outcome and
//! executes nothing twice, across campaign creation and actions, device
//! registration and firmware upload.

use ota_api::auth::Role;
use std::time::Duration;

use ota_testkit::{eventually, json_of, AnswerLosingProxy, TestApp};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

const KEY: &str = "Idempotency-Key";
const REPLAYED: &str = "idempotent-replayed";

/// Status, headers and JSON body of a POST as the test operator, with an optional key.
async fn post_json(app: &TestApp, path: &str, key: Option<&str>, body: &Value) -> (u16, HeaderMap, Value) {
    send(with_key(app.post(path).json(body), key)).await
}

fn with_key(request: reqwest::RequestBuilder, key: Option<&str>) -> reqwest::RequestBuilder {
    match key {
        Some(key) => request.header(KEY, key),
        None => request,
    }
}

async fn send(request: reqwest::RequestBuilder) -> (u16, HeaderMap, Value) {
    let response = request.send().await.expect("send");
    let headers = response.headers().clone();
    let (status, body) = json_of(response).await;
    (status, headers, body)
}

fn replayed(headers: &HeaderMap) -> bool {
    headers.get(REPLAYED).is_some_and(|v| v == "true")
}

/// Sends `request` (built against `proxy`) while the proxy loses its answer.
async fn lose_answer(proxy: &AnswerLosingProxy, request: reqwest::RequestBuilder) {
    let before = proxy.lost();
    proxy.lose_next(1);
    let outcome = request.send().await;
    assert!(outcome.is_err(), "the answer should have been lost: {outcome:?}");
    assert_eq!(proxy.lost(), before + 1, "the proxy lost exactly the one answer");
}

/// A client of its own (no pooled connection) that speaks to the server through the proxy.
fn through(app: &TestApp, proxy: &AnswerLosingProxy, path: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new().post(format!("http://{}{path}", proxy.addr)).bearer_auth(app.token(Role::Operator))
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.db).await.expect("count")
}

async fn events_of(app: &TestApp, aggregate_type: &str, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = $1 AND event_type = $2")
        .bind(aggregate_type)
        .bind(event_type)
        .fetch_one(&app.db)
        .await
        .expect("count events")
}

fn campaign(name: &str, firmware: &str, devices: &[&str]) -> Value {
    json!({"name": name, "firmware_id": firmware, "target": {"device_ids": devices}})
}

async fn fleet_with_firmware(app: &TestApp) -> String {
    app.register_devices(&["idem-1".to_owned(), "idem-2".to_owned()], "rev-a").await;
    app.firmware("2.0.0").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_created_when_its_answer_was_lost_is_created_once() {
    let app = TestApp::spawn().await;
    let firmware = fleet_with_firmware(&app).await;
    let proxy = AnswerLosingProxy::start(app.addr).await;
    let body = campaign("lost answer", &firmware, &["idem-1", "idem-2"]);

    lose_answer(&proxy, through(&app, &proxy, "/api/v1/campaigns").header(KEY, "create-1").json(&body)).await;
    assert_eq!(events_of(&app, "Campaign", "CampaignCreated").await, 1, "the command committed before the cut");

    let (status, headers, retry) = post_json(&app, "/api/v1/campaigns", Some("create-1"), &body).await;
    assert_eq!(status, 201, "{retry}");
    assert!(replayed(&headers), "the retry is the stored answer");
    assert_eq!(headers.get("content-type").map(|v| v.as_bytes()), Some(&b"application/json"[..]));
    let (again_status, _, again) = post_json(&app, "/api/v1/campaigns", Some("create-1"), &body).await;
    assert_eq!((again_status, &again), (201, &retry), "every retry gets the same answer");

    assert_eq!(events_of(&app, "Campaign", "CampaignCreated").await, 1, "nothing executed twice");
    let stored: String = sqlx::query_scalar("SELECT aggregate_id FROM events WHERE event_type = 'CampaignCreated'")
        .fetch_one(&app.db)
        .await
        .expect("the campaign");
    assert_eq!(retry["id"].as_str(), Some(stored.as_str()), "the replay names the one campaign created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_start_and_cancel_whose_answers_were_lost_run_once() {
    let app = TestApp::spawn().await;
    let firmware = fleet_with_firmware(&app).await;
    let (status, created) = app.create_campaign("actions", &firmware, &["idem-1", "idem-2"]).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let proxy = AnswerLosingProxy::start(app.addr).await;

    for (action, key, event) in [("start", "start-1", "CampaignStarted"), ("cancel", "cancel-1", "CampaignCancelled")] {
        let path = format!("/api/v1/campaigns/{id}/{action}");
        lose_answer(&proxy, through(&app, &proxy, &path).header(KEY, key)).await;
        let (status, headers, body) = send(app.post(&path).header(KEY, key)).await;
        assert_eq!(status, 200, "{action}: {body}");
        assert!(replayed(&headers), "{action}: replayed");
        assert_eq!(events_of(&app, "Campaign", event).await, 1, "{action} ran once");
        // Without the key the same action is a new command, refused by the campaign's state.
        let (status, _, body) = send(app.post(&path)).await;
        assert_eq!(status, 409, "{action} again, without a key: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_registered_when_its_answer_was_lost_gets_its_token_on_retry() {
    let app = TestApp::spawn().await;
    let proxy = AnswerLosingProxy::start(app.addr).await;
    let body = json!({"id": "idem-dev", "device_model": "gw", "firmware_version": "1.0"});

    lose_answer(&proxy, through(&app, &proxy, "/api/v1/devices").header(KEY, "enrol-1").json(&body)).await;
    let (status, headers, retry) = post_json(&app, "/api/v1/devices", Some("enrol-1"), &body).await;
    // The first outcome: 201 with the DDI token shown once, which a re-execution (200) would not show.
    assert_eq!(status, 201, "{retry}");
    assert!(replayed(&headers));
    let token = retry["target_token"].as_str().expect("the first answer's token");
    // One registration's events, once: the device and its first DDI token.
    let stream: Vec<String> =
        sqlx::query_scalar("SELECT event_type FROM events WHERE aggregate_id = 'idem-dev' ORDER BY sequence")
            .fetch_all(&app.db)
            .await
            .expect("the device's events");
    assert_eq!(stream, ["DeviceRegistered", "DeviceTokenIssued"]);
    // The token is in the stored answer, but sealed: the table does not show it.
    let in_clear: i64 =
        sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE position(convert_to($1, 'UTF8') IN body) > 0")
            .bind(token)
            .fetch_one(&app.db)
            .await
            .expect("search the stored answers");
    assert_eq!(in_clear, 0);

    // The replayed token is the one the server stored: the device can poll with it.
    let poll = app
        .http
        .get(app.url("/default/controller/v1/idem-dev"))
        .header("Authorization", format!("TargetToken {token}"))
        .send()
        .await
        .expect("poll");
    assert_eq!(poll.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_whose_client_left_mid_request_still_completes_for_the_retry() {
    let app = TestApp::spawn().await;
    // Hold the event store's inserts back, so the command is still running when its client leaves.
    let mut blocker = app.db.begin().await.expect("begin");
    sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE").execute(&mut *blocker).await.expect("lock events");
    let body = json!({"id": "idem-left", "device_model": "gw"});
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().expect("client");
    let request = impatient.post(app.url("/api/v1/devices")).bearer_auth(app.token(Role::Operator));
    let gone = request.header(KEY, "left-1").json(&body).send().await;
    assert!(gone.is_err(), "the client gave up: {gone:?}");
    let (status, _, answer) = post_json(&app, "/api/v1/devices", Some("left-1"), &body).await;
    assert_eq!((status, answer["error"].as_str()), (409, Some("idempotency_key_in_flight")), "{answer}");

    blocker.rollback().await.expect("release the lock");
    let (headers, answer) = eventually("the first request's outcome", Duration::from_secs(10), || async {
        let (status, headers, answer) = post_json(&app, "/api/v1/devices", Some("left-1"), &body).await;
        (status != 409).then_some((headers, answer))
    })
    .await;
    assert!(replayed(&headers), "the outcome of the request whose client left: {answer}");
    assert!(answer["target_token"].is_string(), "{answer}");
    assert_eq!(events_of(&app, "Device", "DeviceRegistered").await, 1);
}

fn upload_form(version: &str, image: &[u8]) -> reqwest::multipart::Form {
    let metadata = json!({"name": "idem-os", "version": version, "device_model": "gw"});
    reqwest::multipart::Form::new()
        .part(
            "metadata",
            reqwest::multipart::Part::text(metadata.to_string()).mime_str("application/json").expect("mime"),
        )
        .part("file", reqwest::multipart::Part::bytes(image.to_vec()).file_name("image.swu"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firmware_upload_whose_answer_was_lost_is_stored_once_and_replayed() {
    let app = TestApp::spawn().await;
    let proxy = AnswerLosingProxy::start(app.addr).await;
    // Larger than one read, so the upload streams through the fingerprint in many chunks.
    let image: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();

    let lost = through(&app, &proxy, "/api/v1/firmware").header(KEY, "upload-1").multipart(upload_form("3.0", &image));
    lose_answer(&proxy, lost).await;
    // A retry is a new form, with a new boundary: still the same request.
    let (status, headers, retry) =
        send(app.post("/api/v1/firmware").header(KEY, "upload-1").multipart(upload_form("3.0", &image))).await;
    assert_eq!(status, 201, "{retry}");
    assert!(replayed(&headers));
    assert_eq!(retry["size"], image.len());
    assert_eq!(events_of(&app, "Firmware", "FirmwareUploaded").await, 1);

    // The same key with other bytes is another request.
    let mut other = image.clone();
    other[1000] ^= 1;
    let (status, headers, body) =
        send(app.post("/api/v1/firmware").header(KEY, "upload-1").multipart(upload_form("3.0", &other))).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("idempotency_key_reused")), "{body}");
    assert!(!replayed(&headers));
    assert_eq!(events_of(&app, "Firmware", "FirmwareUploaded").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_with_another_body_is_refused_and_executes_nothing() {
    let app = TestApp::spawn().await;
    let firmware = fleet_with_firmware(&app).await;
    let first = campaign("first", &firmware, &["idem-1"]);
    let (status, _, _) = post_json(&app, "/api/v1/campaigns", Some("k-1"), &first).await;
    assert_eq!(status, 201);

    let second = campaign("second", &firmware, &["idem-1"]);
    let (status, headers, body) = post_json(&app, "/api/v1/campaigns", Some("k-1"), &second).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("idempotency_key_reused")), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("Idempotency-Key")), "{body}");
    let request_id = headers.get("x-request-id").and_then(|v| v.to_str().ok());
    assert_eq!(body["request_id"].as_str(), request_id, "the error names its request");
    assert_eq!(events_of(&app, "Campaign", "CampaignCreated").await, 1);

    // A query string is part of the request, too.
    let (status, _, body) = post_json(&app, "/api/v1/campaigns?dry=1", Some("k-1"), &first).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("idempotency_key_reused")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_get_one_outcome_or_a_409_in_flight() {
    let app = TestApp::spawn().await;
    let firmware = fleet_with_firmware(&app).await;
    let body = campaign("raced", &firmware, &["idem-1", "idem-2"]);

    let sends = (0..8).map(|_| post_json(&app, "/api/v1/campaigns", Some("race-1"), &body));
    let answers = futures::future::join_all(sends).await;
    let mut ids = std::collections::BTreeSet::new();
    for (status, headers, body) in &answers {
        match status {
            201 => {
                ids.insert(body["id"].as_str().expect("id").to_owned());
            }
            409 => {
                assert_eq!(body["error"], "idempotency_key_in_flight", "{body}");
                assert!(headers.get("retry-after").is_some(), "a 409 in flight says when to retry");
            }
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    assert_eq!(ids.len(), 1, "every success is the one outcome: {answers:?}");
    assert_eq!(events_of(&app, "Campaign", "CampaignCreated").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_scoped_to_their_caller_and_path() {
    let app = TestApp::spawn().await;
    let firmware = fleet_with_firmware(&app).await;
    let body = campaign("scoped", &firmware, &["idem-1"]);
    let (status, _, mine) = post_json(&app, "/api/v1/campaigns", Some("shared-key"), &body).await;
    assert_eq!(status, 201);

    let other = app.token_for("someone-else", Role::Operator);
    let request = app.http.post(app.url("/api/v1/campaigns")).bearer_auth(other).header(KEY, "shared-key").json(&body);
    let (status, headers, theirs) = send(request).await;
    assert_eq!(status, 201, "{theirs}");
    assert!(!replayed(&headers), "another caller's key is another key");
    assert_ne!(mine["id"], theirs["id"]);

    // The same caller's key on another path is another key as well.
    let device = json!({"id": "idem-9", "device_model": "gw"});
    let (status, headers, _) = post_json(&app, "/api/v1/devices", Some("shared-key"), &device).await;
    assert_eq!(status, 201);
    assert!(!replayed(&headers));
    assert_eq!(events_of(&app, "Campaign", "CampaignCreated").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_header_every_request_executes() {
    let app = TestApp::spawn().await;
    let firmware = fleet_with_firmware(&app).await;
    let body = campaign("twice", &firmware, &["idem-1"]);
    for _ in 0..2 {
        let (status, headers, body) = post_json(&app, "/api/v1/campaigns", None, &body).await;
        assert_eq!(status, 201, "{body}");
        assert!(!replayed(&headers));
    }
    assert_eq!(events_of(&app, "Campaign", "CampaignCreated").await, 2);
    assert_eq!(count(&app, "SELECT count(*) FROM idempotency_keys").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_key_is_a_400_and_executes_nothing() {
    let app = TestApp::spawn().await;
    let body = json!({"id": "idem-bad", "device_model": "gw"});
    let long = "k".repeat(256);
    for key in ["", "two words", long.as_str()] {
        let (status, headers, answer) = post_json(&app, "/api/v1/devices", Some(key), &body).await;
        assert_eq!((status, answer["error"].as_str()), (400, Some("idempotency_key_invalid")), "{key:?}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| m.contains("Idempotency-Key")), "{answer}");
        let request_id = headers.get("x-request-id").and_then(|v| v.to_str().ok());
        assert_eq!(answer["request_id"].as_str(), request_id);
    }
    assert_eq!(count(&app, "SELECT count(*) FROM events WHERE aggregate_id = 'idem-bad'").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_is_not_stored_and_the_retry_executes() {
    let app = TestApp::spawn().await;
    // The event store refuses this one device's events: the command fails after the key was claimed.
    let break_store = "CREATE FUNCTION refuse_idem() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'refused for the test'; END $$;
        CREATE TRIGGER refuse_idem BEFORE INSERT ON events FOR EACH ROW
        WHEN (NEW.aggregate_id = 'idem-5xx') EXECUTE FUNCTION refuse_idem()";
    sqlx::raw_sql(break_store).execute(&app.db).await.expect("break the store");
    let body = json!({"id": "idem-5xx", "device_model": "gw"});

    let (status, _, answer) = post_json(&app, "/api/v1/devices", Some("retry-me"), &body).await;
    assert!(status >= 500, "{status}: {answer}");
    assert_eq!(count(&app, "SELECT count(*) FROM idempotency_keys").await, 0, "the key was given back");

    sqlx::raw_sql("DROP TRIGGER refuse_idem ON events").execute(&app.db).await.expect("mend the store");
    let (status, headers, answer) = post_json(&app, "/api/v1/devices", Some("retry-me"), &body).await;
    assert_eq!(status, 201, "{answer}");
    assert!(!replayed(&headers), "executed, not replayed");
    assert_eq!(events_of(&app, "Device", "DeviceRegistered").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_replayed_as_refused() {
    let app = TestApp::spawn().await;
    let path = "/api/v1/campaigns/00000000-0000-4000-8000-000000000000/start";
    let (status, _, first) = send(app.post(path).header(KEY, "refused-1")).await;
    assert_eq!(status, 404, "{first}");
    let (status, headers, again) = send(app.post(path).header(KEY, "refused-1")).await;
    assert_eq!((status, &again["error"]), (404, &first["error"]));
    assert!(replayed(&headers));
    let request_id = headers.get("x-request-id").and_then(|v| v.to_str().ok());
    assert_eq!(again["request_id"].as_str(), request_id, "a replayed error names the retry's request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_keys_are_swept_and_can_be_used_again() {
    let app = TestApp::spawn().await;
    let body = json!({"id": "idem-old", "device_model": "gw"});
    let (status, _, _) = post_json(&app, "/api/v1/devices", Some("old-1"), &body).await;
    assert_eq!(status, 201);
    sqlx::query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
        .execute(&app.db)
        .await
        .expect("age the key");

    // An expired key is a new key: the request executes (a re-registration answers 200).
    let (status, headers, _) = post_json(&app, "/api/v1/devices", Some("old-1"), &body).await;
    assert_eq!(status, 200);
    assert!(!replayed(&headers));

    sqlx::query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
        .execute(&app.db)
        .await
        .expect("age the key");
    let deleted = ota_api::idempotency::store::sweep(&app.db).await.expect("sweep");
    assert_eq!(deleted, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM idempotency_keys").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_covered_post_documents_the_header_and_its_answers() {
    let app = TestApp::spawn().await;
    let (status, doc) = json_of(app.http.get(app.url("/api/v1/openapi.json")).send().await.expect("document")).await;
    assert_eq!(status, 200);
    let mut covered = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let Some(post) = item.get("post") else { continue };
        let header =
            post["parameters"].as_array().into_iter().flatten().find(|p| p["name"] == KEY && p["in"] == "header");
        let expected = path.starts_with("/api/v1/") && !ota_api::idempotency::NOT_COVERED.contains(&path.as_str());
        assert_eq!(header.is_some(), expected, "POST {path}");
        if let Some(header) = header {
            covered += 1;
            assert_eq!(header["required"], false, "POST {path}");
            assert_eq!(header["schema"]["maxLength"], 255, "POST {path}");
            for status in ["409", "422"] {
                let description = post["responses"][status]["description"].as_str().unwrap_or_default();
                assert!(description.contains("idempotency_key"), "POST {path} {status}: {description}");
            }
        }
    }
    assert!(covered >= 14, "only {covered} POST routes take the header");
}
