//! Every management route fed arbitrary bodies, queries and path parameters, as
//! every role: a client mistake is a 4xx with a JSON body, never a 5xx, never a panic.

use proptest::strategy::{Just, Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use reqwest::Method;
use serde_json::json;

use ota_api::auth::Role;
use ota_testkit::TestApp;

fn bodies() -> impl Strategy<Value = String> {
    let names = proptest::sample::select(vec![
        "name",
        "firmware_id",
        "target",
        "rollout",
        "waves",
        "device_ids",
        "id",
        "device_model",
        "state",
        "progress",
        "reason",
        "role",
        "expires_at",
        "filter",
        "hardware_versions",
        "percent",
        "count",
        "maintenance_window",
        "start_at",
        "max_per_minute",
        "tags",
        "attributes",
    ]);
    let leaf = proptest::prop_oneof![
        Just(json!(null)),
        proptest::num::i64::ANY.prop_map(|n| json!(n)),
        proptest::num::f64::ANY.prop_map(|n| json!(n)),
        "\\PC{0,40}".prop_map(|s| json!(s)),
        Just(json!([])),
        Just(json!({})),
        Just(json!("2026-13-45T99:99:99Z")),
        Just(json!({"percent": -5})),
        Just(json!([{"count": 0}, {"percent": 101}])),
    ];
    let object = proptest::collection::btree_map(names, leaf, 0..6)
        .prop_map(|m| serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()).to_string());
    proptest::prop_oneof![object, "\\PC{0,80}", Just("{".to_owned()), Just("[1,2".to_owned()), Just("\u{0}".to_owned())]
}

fn segments() -> impl Strategy<Value = String> {
    proptest::string::string_regex("([a-zA-Z0-9._~-]|%[0-9A-F]{2}|%FF|%00){0,40}").expect("regex")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_requests_to_every_route_get_4xx_never_5xx() {
    let app = TestApp::spawn_with(ota_testkit::TestOptions::full()).await;
    let (firmware, campaign) = crate::auth::fixtures(&app).await;
    let table = crate::auth::route_table(&app).await;
    let roles = [Role::Admin, Role::Operator, Role::Viewer, Role::Auditor];
    let tokens: Vec<String> = roles.iter().map(|r| app.token(*r)).collect();
    let case = (0..table.len(), segments(), bodies(), segments(), 0..roles.len(), proptest::bool::ANY);
    let mut runner = TestRunner::deterministic();
    for _ in 0..600 {
        let (route, segment, body, query, role, real_id) = case.new_tree(&mut runner).expect("case").current();
        let (method, template) = &table[route];
        let id = match (real_id, template.starts_with("/firmware"), template.starts_with("/campaigns")) {
            (true, true, _) => firmware.clone(),
            (true, _, true) => campaign.clone(),
            _ => segment.clone(),
        };
        let path = format!("/api/v1{}?{query}=1&at={segment}&page={segment}", template.replace("{id}", &id));
        let request = app.http.request(method.clone(), app.url(&path)).bearer_auth(&tokens[role]);
        let request = match *method {
            Method::GET => request,
            _ => request.header("content-type", "application/json").body(body.clone()),
        };
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        if response.headers().get("content-type").is_some_and(|v| v == "text/event-stream") {
            // A stream that opened never ends; its opening is the answer.
            assert_eq!(status, 200, "{method} {path}");
            continue;
        }
        let text = response.text().await.unwrap_or_default();
        assert!(status < 500, "{method} {path} {body:?} -> {status}: {text}");
        if status >= 400 {
            let parsed: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            assert!(parsed["message"].is_string(), "{method} {path} -> {status} without a JSON message: {text}");
        }
    }
    // And the server still answers.
    assert_eq!(app.get("/api/v1/stats").send().await.expect("stats").status(), 200);
}
