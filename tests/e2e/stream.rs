//! The live stream: a page following a campaign gets its events and its
//! devices' as they happen, and after a reconnect the ones it missed, once.

use std::time::Duration;

use futures::StreamExt;
use ota_api::auth::Role;
use ota_testkit::{json_of, TestApp, TestOptions};
use serde_json::{json, Value};

/// One server-sent event: (id, event, data).
type Sent = (i64, String, Value);

/// Reads events from an open stream until `until` says stop (or 60 s pass).
async fn read(response: reqwest::Response, until: impl Fn(&[Sent]) -> bool) -> Vec<Sent> {
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut got: Vec<Sent> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !until(&got) {
        let chunk = tokio::time::timeout_at(deadline, body.next()).await.expect("events within 60 s");
        buffer.push_str(&String::from_utf8_lossy(&chunk.expect("open stream").expect("chunk")));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let (mut id, mut name, mut data) = (None, String::new(), String::new());
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if let Some(id) = id {
                got.push((id, name, serde_json::from_str(&data).expect("data is JSON")));
            }
        }
    }
    got
}

fn ended(got: &[Sent]) -> bool {
    got.iter().any(|(_, name, _)| name == "CampaignCompleted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_page_follows_its_campaign_and_its_devices_and_resumes_without_gaps() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let _fleet = app.fleet().await;
    let firmware = app.firmware("2.0").await;
    let (_, created) = app.create_campaign("followed", &firmware, &["st-1", "st-2", "st-3"]).await;
    let id = created["id"].as_str().expect("id").to_owned();
    // Another campaign's device, whose events the page must not see.
    app.register_devices(&["st-other".to_owned()], "rev-a").await;

    let url = app.url(&format!("/api/v1/stream?types=Campaign,DeviceUpdate&campaign={id}"));
    let viewer = app.http.get(&url).bearer_auth(app.token(Role::Viewer)).send().await.expect("stream");
    assert_eq!(viewer.status(), 200);
    assert_eq!(viewer.headers()["content-type"], "text/event-stream");
    let (status, _) = app.campaign_action(&id, "start").await;
    assert_eq!(status, 200);
    let assign = app.post("/api/v1/devices/st-other/update").json(&json!({"firmware_id": firmware}));
    assign.send().await.expect("assign other");
    let got = read(viewer, ended).await;

    let ids: Vec<i64> = got.iter().map(|(id, ..)| *id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order, each once: {ids:?}");
    for (id, name, data) in &got {
        assert_eq!((data["global_seq"].as_i64(), data["event_type"].as_str()), (Some(*id), Some(name.as_str())));
        assert_ne!(data["aggregate_id"], "st-other", "another campaign's device: {data}");
    }
    let reports =
        got.iter().filter(|(_, name, data)| name == "ProgressReported" && data["aggregate_type"] == "DeviceUpdate");
    assert!(reports.count() >= 3, "its devices' reports: {got:?}");

    // Reconnect from the start event: what followed it comes back from the store, once.
    let started = got.iter().find(|(_, name, _)| name == "CampaignStarted").expect("started").0;
    let again = app.http.get(&url).bearer_auth(app.token(Role::Viewer)).header("Last-Event-ID", started.to_string());
    let resumed = read(again.send().await.expect("stream"), ended).await;
    let after: Vec<i64> = got.iter().map(|(id, ..)| *id).filter(|id| *id > started).collect();
    let resumed_ids: Vec<i64> = resumed.iter().map(|(id, ..)| *id).collect();
    assert_eq!(resumed_ids, after, "the missed events, in order, without gaps or repeats");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stream_requests_are_refused() {
    let app = TestApp::spawn().await;
    let unknown = uuid::Uuid::new_v4();
    for (path, last, status, code) in [
        ("/api/v1/stream?types=Gadget".to_owned(), None, 422, "invalid_field"),
        ("/api/v1/stream".to_owned(), Some("yesterday"), 422, "invalid_field"),
        (format!("/api/v1/stream?campaign={unknown}"), None, 404, "campaign.not_found"),
        ("/api/v1/stream?campaign=nope".to_owned(), None, 400, "invalid_request"),
    ] {
        let mut request = app.get(&path);
        if let Some(last) = last {
            request = request.header("Last-Event-ID", last);
        }
        let (got, body) = json_of(request.send().await.expect("stream")).await;
        assert_eq!((got, body["error"].as_str()), (status, Some(code)), "{path}: {body}");
    }
    let anonymous = app.http.get(app.url("/api/v1/stream")).send().await.expect("stream");
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_holds_a_bounded_number_of_streams_and_a_closed_one_frees_its_slot() {
    let app = TestApp::spawn().await;
    let open = || app.get("/api/v1/stream?types=Campaign").send();
    let mut streams = Vec::new();
    for _ in 0..app.settings.streams_per_identity {
        let response = open().await.expect("stream");
        assert_eq!(response.status(), 200);
        streams.push(response);
    }
    let (status, body) = json_of(open().await.expect("one more")).await;
    assert_eq!((status, body["error"].as_str()), (429, Some("rate_limited")), "{body}");
    // Another identity is not held back by this one's streams.
    let other = app.http.get(app.url("/api/v1/stream")).bearer_auth(app.token_for("someone-else", Role::Viewer));
    assert_eq!(other.send().await.expect("other").status(), 200);
    drop(streams.pop());
    let reopened = ota_testkit::eventually("the closed stream's slot", Duration::from_secs(10), || async {
        let response = open().await.ok()?;
        (response.status() == 200).then_some(response)
    })
    .await;
    drop(reopened);
}
