//! Webhooks end to end: a receiver on loopback gets signed deliveries of the
//! events it subscribed to, failures are retried with backoff until it
//! answers, every attempt is in the delivery log, and nothing else arrives.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use ota_api::auth::Role;
use ota_notify::signature;
use ota_testkit::{eventually, json_of, TestApp, TestOptions};
use serde_json::{json, Value};

/// What the receiver got: the headers that matter and the body.
#[derive(Debug, Clone)]
struct Received {
    delivery: String,
    attempt: String,
    topic: String,
    signature: String,
    body: Bytes,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    /// Requests still to be answered 500.
    failures_left: Arc<Mutex<u32>>,
}

impl Receiver {
    /// Serves on loopback; the first `failures` requests get a 500.
    async fn start(failures: u32) -> (Self, String) {
        let receiver = Receiver { failures_left: Arc::new(Mutex::new(failures)), ..Receiver::default() };
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let received = Received {
        delivery: header("ota-delivery"),
        attempt: header("ota-attempt"),
        topic: header("ota-topic"),
        signature: header("ota-signature"),
        body,
    };
    if let Ok(mut got) = receiver.got.lock() {
        got.push(received);
    }
    let Ok(mut left) = receiver.failures_left.lock() else { return StatusCode::INTERNAL_SERVER_ERROR };
    if *left > 0 {
        *left -= 1;
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

fn admin(app: &TestApp, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    app.http.request(method, app.url(path)).bearer_auth(app.token(Role::Admin))
}

async fn subscribe(app: &TestApp, url: &str, topics: &[&str]) -> (String, String) {
    let body = json!({"url": url, "topics": topics, "description": "test receiver"});
    let (status, created) =
        json_of(admin(app, reqwest::Method::POST, "/api/v1/webhooks").json(&body).send().await.expect("create")).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().expect("secret shown once").to_owned();
    assert!(secret.starts_with("whsec_") && secret.len() > 40, "{created}");
    (created["id"].as_str().expect("id").to_owned(), secret)
}

async fn deliveries(app: &TestApp, webhook: &str) -> Value {
    let path = format!("/api/v1/webhooks/{webhook}/deliveries");
    json_of(admin(app, reqwest::Method::GET, &path).send().await.expect("deliveries")).await.1
}

fn at(value: &Value) -> DateTime<Utc> {
    value.as_str().and_then(|s| s.parse().ok()).expect("a timestamp")
}

/// Waits until the webhook fan-out has taken and acknowledged every event.
async fn fanned_out(app: &TestApp) {
    let durable = app.names.consumer("webhooks");
    eventually("the webhook fan-out to catch up", Duration::from_secs(30), || async {
        let stream = app.js.get_stream(app.names.events_stream()).await.ok()?;
        let mut consumer = stream.get_consumer::<async_nats::jetstream::consumer::pull::Config>(&durable).await.ok()?;
        let info = consumer.info().await.ok()?;
        (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_deliveries_are_retried_with_backoff_until_the_receiver_answers() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let (receiver, url) = Receiver::start(2).await;
    let (webhook, secret) = subscribe(&app, &url, &["firmware.uploaded", "campaign.completed"]).await;

    let firmware = app.firmware("7.0").await;
    let got = eventually("three attempts", Duration::from_secs(30), || async {
        let got = receiver.got();
        (got.len() >= 3).then_some(got)
    })
    .await;
    let now = Utc::now().timestamp();
    for (n, request) in got.iter().enumerate() {
        assert_eq!(request.delivery, got[0].delivery, "a retry is the same delivery");
        assert_eq!(request.attempt, (n + 1).to_string());
        assert_eq!(request.topic, "firmware.uploaded");
        assert_eq!(signature::verify(&secret, &request.signature, &request.body, now, 300), Ok(()), "{request:?}");
        assert!(signature::verify("whsec_wrong", &request.signature, &request.body, now, 300).is_err());
    }
    let body: Value = serde_json::from_slice(&got[0].body).expect("JSON body");
    assert_eq!(
        (body["topic"].as_str(), body["webhook_id"].as_str()),
        (Some("firmware.uploaded"), Some(webhook.as_str()))
    );
    assert_eq!(body["id"], got[0].delivery);
    let event = &body["event"];
    assert_eq!(
        (event["aggregate_type"].as_str(), event["event_type"].as_str()),
        (Some("Firmware"), Some("FirmwareUploaded"))
    );
    assert_eq!(event["aggregate_id"], firmware);
    assert!(event["global_seq"].is_i64() && event["metadata"]["actor_id"].is_string(), "{event}");

    let log = eventually("the delivery logged as delivered", Duration::from_secs(10), || async {
        let page = deliveries(&app, &webhook).await;
        (page["items"][0]["status"] == "delivered").then_some(page)
    })
    .await;
    assert_eq!(log["total"], 1, "{log}");
    let delivery = &log["items"][0];
    assert_eq!(
        (delivery["attempts"].as_i64(), delivery["event_key"].as_str()),
        (Some(3), Some(format!("Firmware:{firmware}:1").as_str())),
        "{delivery}"
    );
    let attempts = delivery["attempt_log"].as_array().expect("attempt log");
    let statuses: Vec<i64> = attempts.iter().filter_map(|a| a["status"].as_i64()).collect();
    assert_eq!(statuses, [500, 500, 204], "{delivery}");
    // One second, then two: the backoff doubles.
    let gaps: Vec<i64> = attempts.windows(2).map(|w| (at(&w[1]["at"]) - at(&w[0]["at"])).num_milliseconds()).collect();
    assert!(gaps[0] >= 900 && gaps[1] >= 1_900, "gaps {gaps:?}");

    // The test endpoint sends once, now, signed like the rest.
    let path = format!("/api/v1/webhooks/{webhook}/test");
    let (status, tested) = json_of(admin(&app, reqwest::Method::POST, &path).send().await.expect("test")).await;
    assert_eq!(
        (status, tested["status"].as_str(), tested["topic"].as_str()),
        (200, Some("delivered"), Some("webhook.test")),
        "{tested}"
    );
    assert_eq!(tested["attempt_log"][0]["status"], 204, "{tested}");
    let last = receiver.got().pop().expect("the test arrived");
    assert_eq!(
        (last.topic.as_str(), last.delivery.as_str()),
        ("webhook.test", tested["id"].as_str().unwrap_or_default())
    );
    assert_eq!(signature::verify(&secret, &last.signature, &last.body, Utc::now().timestamp(), 300), Ok(()));

    // Unsubscribed: a later event sends nothing.
    let before = receiver.got().len();
    let path = format!("/api/v1/webhooks/{webhook}");
    let (status, _) = json_of(admin(&app, reqwest::Method::DELETE, &path).send().await.expect("delete")).await;
    assert_eq!(status, 204);
    app.firmware("7.1").await;
    fanned_out(&app).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(receiver.got().len(), before, "nothing after the subscription was deleted");
    let (status, _) = json_of(admin(&app, reqwest::Method::GET, &path).send().await.expect("get")).await;
    assert_eq!(status, 404);
    assert_eq!(deliveries(&app, &webhook).await["total"], 2, "the log stays readable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_is_given_up_after_its_attempts() {
    let options = TestOptions { webhook_max_attempts: Some(3), ..TestOptions::full() };
    let app = TestApp::spawn_with(options).await;
    // Nothing listens there.
    let closed = ota_testkit::free_port();
    let (webhook, _) = subscribe(&app, &format!("http://{closed}/hook"), &["firmware.uploaded"]).await;
    let (other_receiver, other_url) = Receiver::start(0).await;
    let (_, _) = subscribe(&app, &other_url, &["campaign.started"]).await;
    app.firmware("8.0").await;
    let log = eventually("the delivery given up", Duration::from_secs(30), || async {
        let page = deliveries(&app, &webhook).await;
        (page["items"][0]["status"] == "failed").then_some(page)
    })
    .await;
    let delivery = &log["items"][0];
    assert_eq!(delivery["attempts"], 3, "{delivery}");
    assert!(delivery["next_attempt_at"].is_null(), "{delivery}");
    for attempt in delivery["attempt_log"].as_array().expect("log") {
        assert!(attempt["status"].is_null(), "{attempt}");
        assert!(attempt["error"].as_str().is_some_and(|e| !e.is_empty()), "{attempt}");
    }
    let page = json_of(
        admin(&app, reqwest::Method::GET, &format!("/api/v1/webhooks/{webhook}/deliveries?status=pending"))
            .send()
            .await
            .expect("filter"),
    )
    .await
    .1;
    assert_eq!(page["total"], 0, "{page}");
    fanned_out(&app).await;
    assert!(other_receiver.got().is_empty(), "a firmware upload is not campaign.started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriptions_are_refused_and_only_an_admin_may_subscribe() {
    let app = TestApp::spawn().await;
    for (body, needle) in [
        (json!({"url": "ftp://127.0.0.1/x", "topics": ["campaign.paused"]}), "http"),
        (json!({"url": "not a url", "topics": ["campaign.paused"]}), "url"),
        (json!({"url": "https://hooks.example.com/x", "topics": ["campaign.paused"]}), "OTA_WEBHOOK_ALLOWED_NETWORKS"),
        (json!({"url": "http://10.1.2.3/x", "topics": ["campaign.paused"]}), "10.1.2.3"),
        (json!({"url": "http://127.0.0.1/x", "topics": []}), "topics"),
        (json!({"url": "http://127.0.0.1/x", "topics": ["campaign.exploded"]}), "campaign.exploded"),
        (json!({"url": "http://127.0.0.1/x", "topics": ["webhook.test"]}), "webhook.test"),
        (
            json!({"url": "http://127.0.0.1/x", "topics": ["gate.decided"], "description": "x".repeat(501)}),
            "description",
        ),
    ] {
        let (status, answer) =
            json_of(admin(&app, reqwest::Method::POST, "/api/v1/webhooks").json(&body).send().await.expect("create"))
                .await;
        assert_eq!((status, answer["error"].as_str()), (422, Some("invalid_field")), "{body}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| m.contains(needle)), "{body}: {answer}");
    }
    let body = json!({"url": "http://127.0.0.1:9/x", "topics": ["gate.decided"]});
    let request = app.http.post(app.url("/api/v1/webhooks")).bearer_auth(app.token(Role::Operator)).json(&body);
    let (status, answer) = json_of(request.send().await.expect("create")).await;
    assert_eq!((status, answer["error"].as_str()), (403, Some("forbidden")), "{answer}");
    let (_, list) = json_of(admin(&app, reqwest::Method::GET, "/api/v1/webhooks").send().await.expect("list")).await;
    assert_eq!(list["total"], 0, "nothing was subscribed: {list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_forged_on_the_bus_sends_no_webhook() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let (receiver, url) = Receiver::start(0).await;
    subscribe(&app, &url, &["campaign.started", "firmware.uploaded"]).await;
    let forged_id = uuid::Uuid::new_v4().to_string();
    let forged = json!({
        "aggregate_type": "Campaign", "aggregate_id": forged_id, "sequence": 2, "global_seq": 999_999,
        "event_type": "CampaignStarted", "event_version": "1.0",
        "payload": {"CampaignStarted": {"at": Utc::now()}},
        "metadata": {"actor_kind": "user", "actor_id": "mallory"}, "recorded_at": Utc::now(),
    });
    let subject = format!("{}.events.Campaign.{forged_id}", app.names.prefix());
    app.js.publish(subject, forged.to_string().into()).await.expect("publish").await.expect("stored in the stream");
    // A real event after it, so the fan-out has certainly passed the forged one.
    let firmware = app.firmware("9.0").await;
    let got = eventually("the real event's delivery", Duration::from_secs(30), || async {
        let got = receiver.got();
        (!got.is_empty()).then_some(got)
    })
    .await;
    fanned_out(&app).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let topics: Vec<String> = receiver.got().iter().map(|r| r.topic.clone()).collect();
    assert_eq!(topics, ["firmware.uploaded"], "only the stored event was announced");
    let body: Value = serde_json::from_slice(&got[0].body).expect("JSON");
    assert_eq!(body["event"]["aggregate_id"], firmware);
}
