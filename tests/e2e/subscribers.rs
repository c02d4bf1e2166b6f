//! An external subscriber of the public NATS subjects (docs/events.md, "On
//! NATS", version 1) that reacts to what it reads. It knows only the
//! documented contract: the subject, the headers and the record's fields,
//! decoded into its own type, not the server's.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use ota_testkit::{eventually, json_of, TestApp};
use serde::Deserialize;
use serde_json::{json, Value};

/// The public record, version 1, as an outside consumer would declare it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicRecord {
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    global_seq: i64,
    event_type: String,
    event_version: String,
    payload: Value,
    #[serde(default)]
    payload_omitted: bool,
    metadata: HashMap<String, String>,
    recorded_at: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_freeze_bot_on_the_public_subjects_pauses_every_campaign_that_starts() {
    let app = TestApp::spawn().await;
    let nats = async_nats::connect("127.0.0.1:4222").await.expect("NATS");
    // The documented subject of one aggregate type: <prefix>.events.<AggregateType>.<id>.
    let mut campaigns = nats.subscribe(format!("{}.events.Campaign.*", app.names.prefix())).await.expect("subscribe");
    nats.flush().await.expect("flush");

    // The bot: on CampaignStarted, pause the campaign through the API, saying why.
    let http = app.http.clone();
    let (base, token) = (app.url(""), app.token(ota_api::auth::Role::Operator));
    let bot = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(message) = campaigns.next().await {
            let record: PublicRecord = serde_json::from_slice(&message.payload).expect("a v1 public record");
            let headers = message.headers.clone().unwrap_or_default();
            let msg_id = headers.get("Nats-Msg-Id").map(|v| v.to_string());
            let position = headers.get("Ota-Global-Seq").and_then(|v| v.as_str().parse::<i64>().ok());
            let expected_id = format!("{}:{}:{}", record.aggregate_type, record.aggregate_id, record.sequence);
            assert_eq!(msg_id.as_deref(), Some(expected_id.as_str()), "{record:?}");
            assert_eq!(position, Some(record.global_seq), "{record:?}");
            assert!(!record.payload_omitted && record.payload.get(&record.event_type).is_some(), "{record:?}");
            assert!(!record.event_version.is_empty() && !record.recorded_at.is_empty());
            if record.event_type == "CampaignStarted" {
                let url = format!("{base}/api/v1/campaigns/{}/pause", record.aggregate_id);
                let pause = http.post(url).bearer_auth(&token).json(&json!({"reason": "change freeze"}));
                let status = pause.send().await.map(|r| r.status().as_u16()).unwrap_or(0);
                seen.push((record.aggregate_id.clone(), record.metadata.get("actor_id").cloned(), status));
            }
            if record.event_type == "CampaignPaused" {
                return seen;
            }
        }
        seen
    });

    let firmware = app.firmware("3.0").await;
    let (status, created) = app.create_campaign("friday deploy", &firmware, &["frz-1"]).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let (status, started) = app.campaign_action(&id, "start").await;
    assert_eq!(status, 200, "{started}");

    let reacted = tokio::time::timeout(Duration::from_secs(30), bot).await.expect("the bot reacts").expect("bot task");
    assert_eq!(reacted, [(id.clone(), Some("tester".to_owned()), 200)], "the start, by whom, and the bot's pause");
    let paused = eventually("the campaign paused by the bot", Duration::from_secs(30), || async {
        let (_, body) = json_of(app.get(&format!("/api/v1/campaigns/{id}")).send().await.ok()?).await;
        (body["status"] == "paused").then_some(body)
    })
    .await;
    assert_eq!(paused["last_reason"], "change freeze", "{paused}");
}
