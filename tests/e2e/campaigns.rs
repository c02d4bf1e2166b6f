//! Campaigns over HTTP: creation and its refusals, the lifecycle, queries,
//! history and statistics.

use std::collections::BTreeSet;

use ota_projections::ProjectionName;
use ota_testkit::{json_of, TestApp};
use reqwest::header;
use serde_json::{json, Value};

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "unexpected status, body: {body}");
    assert_eq!(body["error"], want_code, "unexpected error code: {body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "error without message: {body}");
}

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

fn id_of(body: &Value) -> String {
    body["id"].as_str().expect("id").to_owned()
}

async fn campaign_events(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'Campaign'")
        .fetch_one(&app.db)
        .await
        .expect("count events")
}

/// Creates a draft campaign over `devices`; returns its id.
async fn draft(app: &TestApp, firmware_id: &str, name: &str, devices: &[&str]) -> String {
    let (status, body) = app.create_campaign(name, firmware_id, devices).await;
    assert_eq!(status, 201, "{body}");
    id_of(&body)
}

async fn act(app: &TestApp, id: &str, action: &str, want_status: &str) {
    let (status, body) = app.campaign_action(id, action).await;
    assert_eq!(status, 200, "{action}: {body}");
    assert_eq!(body["status"], want_status, "{action}: {body}");
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    json_of(app.get(path).send().await.expect("get")).await
}

async fn post_raw(app: &TestApp, path: &str, content_type: Option<&str>, body: &str) -> (u16, Value) {
    let mut request = app.post(path).body(body.to_owned());
    if let Some(ct) = content_type {
        request = request.header(header::CONTENT_TYPE, ct);
    }
    json_of(request.send().await.expect("post")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_answers_201_with_a_draft() {
    let app = TestApp::spawn().await;
    let firmware_id = app.firmware("1.0.0").await;

    let (status, body) = app.create_campaign("  spring rollout ", &firmware_id, &["dev-1", "dev-2", "dev-3"]).await;
    assert_eq!(status, 201, "{body}");
    assert!(uuid::Uuid::parse_str(&id_of(&body)).is_ok(), "{body}");
    assert_eq!(body["name"], "spring rollout");
    assert_eq!(body["status"], "draft");
    assert_eq!(body["device_count"], 3);
    assert_eq!(body["target"]["device_ids"], json!(["dev-1", "dev-2", "dev-3"]));
    assert_eq!(body["firmware"], json!({"id": firmware_id, "name": "os", "version": "1.0.0", "device_model": "gw"}));
    assert!(body["created_at"].is_string(), "{body}");
    assert_eq!(body["started_at"], Value::Null);
    assert_eq!(body["ended_at"], Value::Null);
    assert_eq!(campaign_events(&app).await, 1);

    // Each create is a new campaign.
    let (status, again) = app.create_campaign("spring rollout", &firmware_id, &["dev-1"]).await;
    assert_eq!(status, 201, "{again}");
    assert_ne!(again["id"], body["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_refuses_unknown_malformed_and_deprecated_firmware() {
    let app = TestApp::spawn().await;

    let unknown = uuid::Uuid::new_v4().to_string();
    let (status, body) = app.create_campaign("c", &unknown, &["dev-1"]).await;
    assert_error(status, &body, 422, "campaign.unknown_firmware");
    assert!(message(&body).contains("firmware_id"), "{body}");

    for bad in ["not-a-uuid", "", "1234"] {
        let (status, body) = app.create_campaign("c", bad, &["dev-1"]).await;
        assert_error(status, &body, 422, "invalid_field");
        assert!(message(&body).contains("firmware_id"), "{bad:?}: {body}");
    }

    let firmware_id = app.firmware("1.0.0").await;
    let (status, body) =
        json_of(app.post(&format!("/api/v1/firmware/{firmware_id}/deprecate")).send().await.expect("deprecate")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.create_campaign("c", &firmware_id, &["dev-1"]).await;
    assert_error(status, &body, 422, "campaign.deprecated_firmware");
    assert!(message(&body).contains("deprecated"), "{body}");

    assert_eq!(campaign_events(&app).await, 0, "nothing was created");
}

/// (case, content type, body, status, error code, text the message must contain)
type BodyCase = (&'static str, Option<&'static str>, String, u16, &'static str, &'static str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_refuses_bad_bodies_with_json_errors() {
    let app = TestApp::spawn().await;
    let fw = app.firmware("1.0.0").await;
    let valid = json!({"name": "c", "firmware_id": fw, "target": {"device_ids": ["dev-1", "dev-2"]}});
    // Sets (or adds) the member at a JSON pointer.
    let with = |pointer: &str, value: Value| {
        let mut body = valid.clone();
        let (parent, key) = pointer.rsplit_once('/').expect("pointer");
        body.pointer_mut(parent).and_then(Value::as_object_mut).expect("parent object").insert(key.to_owned(), value);
        body.to_string()
    };
    let without = |field: &str| {
        let mut body = valid.clone();
        body.as_object_mut().expect("object").remove(field);
        body.to_string()
    };
    let json_ct = Some("application/json");
    let cases: Vec<BodyCase> = vec![
        ("missing name", json_ct, without("name"), 422, "invalid_field", "name"),
        ("missing target", json_ct, without("target"), 422, "invalid_field", "target"),
        ("missing firmware_id", json_ct, without("firmware_id"), 422, "invalid_field", "firmware_id"),
        ("unknown field", json_ct, with("/priority", json!(5)), 422, "invalid_field", "priority"),
        ("unknown target field", json_ct, with("/target/groups", json!(["eu"])), 422, "invalid_field", "groups"),
        ("empty device_ids", json_ct, with("/target/device_ids", json!([])), 422, "campaign.empty_target", "no device"),
        ("target without device_ids", json_ct, with("/target", json!({})), 422, "campaign.empty_target", "no device"),
        (
            "duplicate device id",
            json_ct,
            with("/target/device_ids", json!(["dev-1", "dev-2", "dev-1"])),
            422,
            "campaign.duplicate_device",
            "dev-1",
        ),
        (
            "device id with a slash",
            json_ct,
            with("/target/device_ids", json!(["dev-1", "eu/dev-2"])),
            422,
            "invalid_field",
            "device_ids[1]",
        ),
        (
            "device id with a control character",
            json_ct,
            with("/target/device_ids", json!(["dev\u{0}1"])),
            422,
            "invalid_field",
            "device_ids[0]",
        ),
        (
            "device id with a newline",
            json_ct,
            with("/target/device_ids", json!(["dev-1", "dev-2", "dev\n3"])),
            422,
            "invalid_field",
            "device_ids[2]",
        ),
        ("empty device id", json_ct, with("/target/device_ids", json!([""])), 422, "invalid_field", "device_ids[0]"),
        (
            "overlong device id",
            json_ct,
            with("/target/device_ids", json!(["d".repeat(257)])),
            422,
            "invalid_field",
            "device_ids[0]",
        ),
        (
            "device ids not a list",
            json_ct,
            with("/target/device_ids", json!("dev-1")),
            422,
            "invalid_field",
            "device_ids",
        ),
        ("empty name", json_ct, with("/name", json!("")), 422, "invalid_field", "name"),
        ("whitespace name", json_ct, with("/name", json!("  \t ")), 422, "invalid_field", "name"),
        ("name with a control character", json_ct, with("/name", json!("a\u{1b}b")), 422, "invalid_field", "name"),
        ("overlong name", json_ct, with("/name", json!("n".repeat(201))), 422, "invalid_field", "name"),
        ("name not a string", json_ct, with("/name", json!(7)), 422, "invalid_field", "name"),
        ("body not an object", json_ct, "[]".to_owned(), 422, "invalid_field", ""),
        ("malformed JSON", json_ct, "{\"name\": \"c\",".to_owned(), 400, "invalid_request", ""),
        ("not JSON", json_ct, "name=c".to_owned(), 400, "invalid_request", ""),
        ("empty body", json_ct, String::new(), 400, "invalid_request", ""),
        ("form content type", Some("application/x-www-form-urlencoded"), valid.to_string(), 415, "invalid_request", ""),
        ("text content type", Some("text/plain"), valid.to_string(), 415, "invalid_request", ""),
        ("no content type", None, valid.to_string(), 415, "invalid_request", ""),
    ];
    for (case, content_type, body, want_status, code, names) in cases {
        let (status, answer) = post_raw(&app, "/api/v1/campaigns", content_type, &body).await;
        assert_eq!(status, want_status, "{case}: {answer}");
        assert_eq!(answer["error"], code, "{case}: {answer}");
        assert!(
            message(&answer).contains(names) && !message(&answer).is_empty(),
            "{case}: message should name {names:?}: {answer}"
        );
    }
    assert_eq!(campaign_events(&app).await, 0, "nothing was created");

    // The valid body itself is accepted, so each refusal above is about its one change.
    let (status, answer) = post_raw(&app, "/api/v1/campaigns", json_ct, &valid.to_string()).await;
    assert_eq!(status, 201, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifecycle_runs_start_pause_resume_cancel() {
    let app = TestApp::spawn().await;
    let fw = app.firmware("1.0.0").await;
    let id = draft(&app, &fw, "c", &["dev-1", "dev-2"]).await;

    let (status, body) = app.campaign_action(&id, "start").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "running");
    assert_eq!(body["id"], id.as_str());
    assert!(body["started_at"].is_string(), "{body}");
    assert_eq!(body["ended_at"], Value::Null);

    act(&app, &id, "pause", "paused").await;
    act(&app, &id, "resume", "running").await;

    let (status, body) = app.campaign_action(&id, "cancel").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "cancelled");
    assert!(body["ended_at"].is_string(), "{body}");
    assert_eq!(body["device_count"], 2);
    // Created, started (+ its membership snapshot), paused, resumed, cancelled.
    assert_eq!(campaign_events(&app).await, 6);

    app.caught_up(ProjectionName::Campaigns).await;
    let (status, view) = get(&app, &format!("/api/v1/campaigns/{id}")).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "cancelled");
    assert_eq!(view["status_changes"], 4);
    assert!(view["started_at"].is_string() && view["ended_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_transitions_are_409_naming_the_status() {
    let app = TestApp::spawn().await;
    let fw = app.firmware("1.0.0").await;
    let id = draft(&app, &fw, "c", &["dev-1"]).await;

    for action in ["pause", "resume"] {
        let (status, body) = app.campaign_action(&id, action).await;
        assert_error(status, &body, 409, "campaign.invalid_transition");
        assert!(message(&body).contains("draft"), "{action}: {body}");
        assert!(message(&body).contains(action), "{action}: {body}");
    }

    act(&app, &id, "start", "running").await;
    for action in ["start", "resume"] {
        let (status, body) = app.campaign_action(&id, action).await;
        assert_error(status, &body, 409, "campaign.invalid_transition");
        assert!(message(&body).contains("running"), "{action}: {body}");
    }

    act(&app, &id, "cancel", "cancelled").await;
    for action in ["start", "pause", "resume", "cancel"] {
        let (status, body) = app.campaign_action(&id, action).await;
        assert_error(status, &body, 409, "campaign.invalid_transition");
        assert!(message(&body).contains("cancelled"), "{action}: {body}");
    }
    // Only the created, started (+ membership) and cancelled events exist.
    assert_eq!(campaign_events(&app).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_on_unknown_campaigns_are_404_and_bad_ids_400() {
    let app = TestApp::spawn().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    for action in ["start", "pause", "resume", "cancel"] {
        let (status, body) = app.campaign_action(&unknown, action).await;
        assert_error(status, &body, 404, "campaign.not_found");
        let (status, body) = app.campaign_action("not-a-uuid", action).await;
        assert_error(status, &body, 400, "invalid_request");
    }
    let (status, body) = get(&app, &format!("/api/v1/campaigns/{unknown}")).await;
    assert_error(status, &body, 404, "not_found");
    for path in ["/api/v1/campaigns/not-a-uuid", "/api/v1/campaigns/not-a-uuid/history"] {
        let (status, body) = get(&app, path).await;
        assert_error(status, &body, 400, "invalid_request");
    }
    assert_eq!(campaign_events(&app).await, 0);
}

async fn action_with(app: &TestApp, id: &str, action: &str, body: Option<&str>) -> (u16, Value) {
    let mut request = app.post(&format!("/api/v1/campaigns/{id}/{action}"));
    if let Some(body) = body {
        request = request.header(header::CONTENT_TYPE, "application/json").body(body.to_owned());
    }
    json_of(request.send().await.expect("action")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_cancel_take_an_optional_reason() {
    let app = TestApp::spawn().await;
    let fw = app.firmware("1.0.0").await;
    let a = draft(&app, &fw, "a", &["dev-1"]).await;
    let b = draft(&app, &fw, "b", &["dev-1"]).await;
    act(&app, &a, "start", "running").await;
    act(&app, &b, "start", "running").await;

    // A body with an unknown field, a blank reason or no JSON at all is refused and changes nothing.
    for bad in
        [r#"{"reason": "x", "force": true}"#, r#"{"why": "x"}"#, r#"{"reason": "   "}"#, r#"{"reason": 5}"#, "not json"]
    {
        for action in ["pause", "cancel"] {
            let (status, body) = action_with(&app, &a, action, Some(bad)).await;
            assert_eq!(status, 422, "{action} {bad}: {body}");
            assert_eq!(body["error"], "invalid_field", "{action} {bad}: {body}");
        }
    }
    let (_, body) = action_with(&app, &a, "pause", Some(r#"{"why": "x"}"#)).await;
    assert!(message(&body).contains("why"), "{body}");
    let (_, body) = action_with(&app, &a, "pause", Some(r#"{"reason": " "}"#)).await;
    assert!(message(&body).contains("reason"), "{body}");
    assert_eq!(campaign_events(&app).await, 6, "refusals wrote nothing");

    // With a reason.
    let (status, body) = action_with(&app, &a, "pause", Some(r#"{"reason": "maintenance window"}"#)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "paused");
    // With an empty body, and with whitespace only.
    let (status, body) = action_with(&app, &b, "pause", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "paused");
    let (status, body) = action_with(&app, &b, "cancel", Some("  \n")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "cancelled");
    // A reason may be null, or absent from an empty object.
    let (status, body) = action_with(&app, &a, "resume", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = action_with(&app, &a, "pause", Some("{}")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = action_with(&app, &a, "cancel", Some(r#"{"reason": "device batch recalled"}"#)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "cancelled");

    // The reasons are recorded.
    let reasons: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT payload -> event_type ->> 'reason' FROM events
         WHERE aggregate_id = $1 AND event_type IN ('CampaignPaused', 'CampaignCancelled')
         ORDER BY sequence",
    )
    .bind(&a)
    .fetch_all(&app.db)
    .await
    .expect("reasons");
    assert_eq!(reasons, [Some("maintenance window".to_owned()), None, Some("device batch recalled".to_owned())]);
    app.caught_up(ProjectionName::Campaigns).await;
    let (_, view) = get(&app, &format!("/api/v1/campaigns/{a}")).await;
    assert_eq!(view["last_reason"], "device batch recalled");
    let (_, view) = get(&app, &format!("/api/v1/campaigns/{b}")).await;
    assert_eq!(view["status"], "cancelled");
    assert_eq!(view["last_reason"], Value::Null);
}

async fn list(app: &TestApp, query: &str) -> (u16, Value) {
    get(app, &format!("/api/v1/campaigns{query}")).await
}

fn ids(page: &Value) -> BTreeSet<String> {
    page["items"].as_array().expect("items").iter().map(id_of).collect()
}

/// Five campaigns: two drafts, one running, one paused, one cancelled.
struct Fleet {
    drafts: BTreeSet<String>,
    running: String,
    paused: String,
    cancelled: String,
}

async fn fleet(app: &TestApp) -> Fleet {
    let fw = app.firmware("1.0.0").await;
    let d1 = draft(app, &fw, "d1", &["dev-1"]).await;
    let d2 = draft(app, &fw, "d2", &["dev-1", "dev-2"]).await;
    let running = draft(app, &fw, "r", &["dev-1", "dev-2", "dev-3"]).await;
    act(app, &running, "start", "running").await;
    let paused = draft(app, &fw, "p", &["dev-4"]).await;
    act(app, &paused, "start", "running").await;
    act(app, &paused, "pause", "paused").await;
    let cancelled = draft(app, &fw, "x", &["dev-5"]).await;
    act(app, &cancelled, "cancel", "cancelled").await;
    app.caught_up(ProjectionName::Campaigns).await;
    Fleet { drafts: [d1, d2].into_iter().collect(), running, paused, cancelled }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_filters_by_status_and_paginates() {
    let app = TestApp::spawn().await;
    let fleet = fleet(&app).await;
    let one = |id: &String| -> BTreeSet<String> { [id.clone()].into_iter().collect() };

    let (status, all) = list(&app, "").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["total"], 5);
    assert_eq!(all["page"], 1);
    assert_eq!(all["page_size"], 50);
    assert_eq!(ids(&all).len(), 5);

    for (filter, want) in [
        ("draft", fleet.drafts.clone()),
        ("running", one(&fleet.running)),
        ("paused", one(&fleet.paused)),
        ("cancelled", one(&fleet.cancelled)),
        ("completed", BTreeSet::new()),
        ("aborted", BTreeSet::new()),
    ] {
        let (status, page) = list(&app, &format!("?status={filter}")).await;
        assert_eq!(status, 200, "{filter}: {page}");
        assert_eq!(page["total"], want.len(), "{filter}");
        assert_eq!(ids(&page), want, "{filter}");
        assert!(page["items"].as_array().expect("items").iter().all(|c| c["status"] == filter));
    }
    let (status, page) = list(&app, "?status=draft&page=2&page_size=1").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 2);
    assert_eq!(ids(&page).len(), 1);
    assert!(fleet.drafts.is_superset(&ids(&page)));

    let mut seen = BTreeSet::new();
    for (page, want) in [(1, 2), (2, 2), (3, 1), (4, 0)] {
        let (status, body) = list(&app, &format!("?page={page}&page_size=2")).await;
        assert_eq!(status, 200, "page {page}: {body}");
        assert_eq!(body["total"], 5);
        assert_eq!(body["page"], page);
        assert_eq!(body["page_size"], 2);
        let on_page = ids(&body);
        assert_eq!(on_page.len(), want, "page {page}");
        assert!(seen.is_disjoint(&on_page), "an item appears on two pages");
        seen.extend(on_page);
    }
    assert_eq!(seen, ids(&all));

    for query in ["?status=bogus", "?status=", "?status=DRAFT", "?page=0", "?page_size=0", "?page_size=1000", "?page=x"]
    {
        let (status, body) = list(&app, query).await;
        assert_error(status, &body, 400, "invalid_request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_campaign_shows_its_status_size_and_changes() {
    let app = TestApp::spawn().await;
    let fleet = fleet(&app).await;

    let (status, view) = get(&app, &format!("/api/v1/campaigns/{}", fleet.paused)).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["id"], fleet.paused.as_str());
    assert_eq!(view["name"], "p");
    assert_eq!(view["status"], "paused");
    assert_eq!(view["device_count"], 1);
    assert_eq!(view["status_changes"], 2);
    assert_eq!(view["firmware"]["name"], "os");
    assert_eq!(view["firmware"]["version"], "1.0.0");
    assert_eq!(view["firmware"]["device_model"], "gw");
    assert_eq!(view["created_by"], "user:tester");
    assert!(view["started_at"].is_string(), "{view}");
    assert_eq!(view["ended_at"], Value::Null);

    let (status, view) = get(&app, &format!("/api/v1/campaigns/{}", fleet.running)).await;
    assert_eq!(status, 200);
    assert_eq!(view["status"], "running");
    assert_eq!(view["device_count"], 3);
    assert_eq!(view["status_changes"], 1);

    let (status, view) = get(&app, &format!("/api/v1/campaigns/{}", fleet.cancelled)).await;
    assert_eq!(status, 200);
    assert_eq!(view["status"], "cancelled");
    assert_eq!(view["status_changes"], 1);
    assert_eq!(view["started_at"], Value::Null);
    assert!(view["ended_at"].is_string(), "{view}");

    for d in &fleet.drafts {
        let (status, view) = get(&app, &format!("/api/v1/campaigns/{d}")).await;
        assert_eq!(status, 200);
        assert_eq!(view["status"], "draft");
        assert_eq!(view["status_changes"], 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_lists_the_events_in_order_with_their_actor() {
    let app = TestApp::spawn().await;
    let fw = app.firmware("1.0.0").await;
    app.register_devices(&["dev-1".to_owned()], "rev-a").await;

    let response = app
        .post("/api/v1/campaigns")
        .header("x-request-id", "req-create-1")
        .json(&json!({"name": "h", "firmware_id": fw, "target": {"device_ids": ["dev-1"]}}))
        .send()
        .await
        .expect("create");
    assert_eq!(response.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("req-create-1"));
    let (status, body) = json_of(response).await;
    assert_eq!(status, 201, "{body}");
    let id = id_of(&body);
    act(&app, &id, "start", "running").await;
    act(&app, &id, "pause", "paused").await;
    act(&app, &id, "resume", "running").await;
    act(&app, &id, "cancel", "cancelled").await;
    app.caught_up(ProjectionName::Activity).await;

    let (status, history) = get(&app, &format!("/api/v1/campaigns/{id}/history")).await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["total"], 6);
    let items = history["items"].as_array().expect("items");
    let events: Vec<&str> = items.iter().map(|e| e["event_type"].as_str().expect("event type")).collect();
    assert_eq!(
        events,
        [
            "CampaignCreated",
            "CampaignStarted",
            "MembershipResolved",
            "CampaignPaused",
            "CampaignResumed",
            "CampaignCancelled"
        ]
    );
    let sequences: Vec<i64> = items.iter().map(|e| e["sequence"].as_i64().expect("sequence")).collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5, 6]);
    let globals: Vec<i64> = items.iter().map(|e| e["global_seq"].as_i64().expect("global_seq")).collect();
    assert!(globals.windows(2).all(|w| w[0] < w[1]), "{globals:?}");
    assert!(items.iter().all(|e| e["actor"] == "user:tester"), "{history}");
    assert_eq!(items[0]["request_id"], "req-create-1");
    assert!(items[1]["request_id"].is_string(), "{history}");

    let (status, page) = get(&app, &format!("/api/v1/campaigns/{id}/history?page=2&page_size=2")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 6);
    let seq: Vec<i64> =
        page["items"].as_array().expect("items").iter().map(|e| e["sequence"].as_i64().expect("sequence")).collect();
    assert_eq!(seq, [3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_campaigns_by_status() {
    let app = TestApp::spawn().await;
    let (status, empty) = get(&app, "/api/v1/stats").await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(
        empty,
        json!({"devices": 0, "devices_by_firmware": {}, "firmware": 0, "campaigns_by_status": {},
            "updates_by_state": {}, "success_rate": null})
    );

    let fleet = fleet(&app).await;
    app.caught_up(ProjectionName::Firmware).await;
    app.caught_up(ProjectionName::Devices).await;
    let (status, stats) = get(&app, "/api/v1/stats").await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["firmware"], 1);
    assert!(stats["devices"].as_i64().is_some_and(|n| n > 0), "{stats}");
    assert_eq!(stats["devices_by_firmware"], json!({"1.0": stats["devices"]}), "{stats}");
    assert_eq!(stats["campaigns_by_status"], json!({"draft": 2, "running": 1, "paused": 1, "cancelled": 1}));

    // The counts follow further moves.
    act(&app, &fleet.paused, "resume", "running").await;
    act(&app, &fleet.running, "cancel", "cancelled").await;
    for d in &fleet.drafts {
        act(&app, d, "start", "running").await;
    }
    app.caught_up(ProjectionName::Campaigns).await;
    let (_, stats) = get(&app, "/api/v1/stats").await;
    assert_eq!(stats["campaigns_by_status"], json!({"running": 3, "cancelled": 2}));
    // And match the list's totals.
    for (status, want) in [("running", 3), ("cancelled", 2), ("draft", 0)] {
        let (_, page) = list(&app, &format!("?status={status}")).await;
        assert_eq!(page["total"], want, "{status}");
    }
}

async fn patch(app: &TestApp, id: &str, body: Value) -> (u16, Value) {
    let request = app
        .http
        .patch(app.url(&format!("/api/v1/campaigns/{id}")))
        .bearer_auth(app.token(ota_api::auth::Role::Operator));
    json_of(request.json(&body).send().await.expect("patch")).await
}

async fn delete(app: &TestApp, id: &str) -> (u16, Value) {
    let request = app
        .http
        .delete(app.url(&format!("/api/v1/campaigns/{id}")))
        .bearer_auth(app.token(ota_api::auth::Role::Operator));
    let response = request.send().await.expect("delete");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Issue 14, item 5: a draft is edited and deleted; a started campaign is neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_is_edited_or_deleted_and_a_started_campaign_is_not() {
    let app = TestApp::spawn().await;
    let (v2, v3) = (app.firmware("2.0").await, app.firmware("3.0").await);
    let id = draft(&app, &v2, "spring", &["ed-1", "ed-2"]).await;

    let (status, edited) =
        patch(&app, &id, json!({"name": "autumn", "firmware_id": v3, "target": {"device_ids": ["ed-1"]}})).await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(
        (edited["name"].as_str(), edited["firmware"]["version"].as_str()),
        (Some("autumn"), Some("3.0")),
        "{edited}"
    );
    let (status, body) = patch(&app, &id, json!({"rollout": {"waves": []}})).await;
    assert_error(status, &body, 422, "rollout.no_waves");
    let (status, body) = patch(&app, &id, json!({"colour": "red"})).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = patch(&app, &id, json!({"target": {"device_ids": []}})).await;
    assert_error(status, &body, 422, "campaign.empty_target");
    app.caught_up(ProjectionName::Campaigns).await;
    let (_, view) = get(&app, &format!("/api/v1/campaigns/{id}")).await;
    assert_eq!((view["name"].as_str(), view["device_count"].as_u64()), (Some("autumn"), Some(1)), "{view}");
    let edits = view["decisions"].as_array().expect("decisions").iter().filter(|d| d["decision"] == "edited").count();
    assert_eq!(edits, 1, "the edit is in the decision log, with its actor: {view}");

    // Started: its definition is history.
    act(&app, &id, "start", "running").await;
    let (status, body) = patch(&app, &id, json!({"name": "winter"})).await;
    assert_error(status, &body, 409, "campaign.invalid_transition");
    let (status, body) = delete(&app, &id).await;
    assert_error(status, &body, 409, "campaign.invalid_transition");

    // A draft deleted is gone from reads; its events stay.
    let gone = draft(&app, &v2, "mistake", &["ed-2"]).await;
    let before = campaign_events(&app).await;
    let (status, body) = delete(&app, &gone).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(campaign_events(&app).await, before + 1, "deletion is an event");
    app.caught_up(ProjectionName::Campaigns).await;
    assert_eq!(get(&app, &format!("/api/v1/campaigns/{gone}")).await.0, 404);
    let (_, page) = list(&app, "").await;
    assert!(!ids(&page).contains(&gone), "{page}");
    let (status, body) = delete(&app, &gone).await;
    assert_error(status, &body, 404, "campaign.not_found");
    let (status, body) = patch(&app, &gone, json!({"name": "again"})).await;
    assert_error(status, &body, 404, "campaign.not_found");
    let (_, stats) = get(&app, "/api/v1/stats").await;
    let by_status = &stats["campaigns_by_status"];
    assert_eq!((by_status["draft"].as_u64().unwrap_or(0), by_status["running"].as_u64()), (0, Some(1)), "{stats}");
}
