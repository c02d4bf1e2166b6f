//! Issue 14, item 4: devices imported in bulk as JSON, NDJSON or CSV; every row
//! checked first, all or nothing unless `partial`; importing again changes nothing.

use ota_testkit::{json_of, TestApp};
use serde_json::{json, Value};

async fn import(app: &TestApp, query: &str, content_type: &str, body: String) -> (u16, Value) {
    let request = app.post(&format!("/api/v1/devices:import{query}")).header("content-type", content_type).body(body);
    json_of(request.send().await.expect("import")).await
}

async fn device(app: &TestApp, id: &str) -> (u16, Value) {
    json_of(app.get(&format!("/api/v1/devices/{id}")).send().await.expect("device")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_import_creates_then_changes_nothing_then_updates_what_changed() {
    let app = TestApp::spawn().await;
    let rows = |firmware: &str| {
        json!([
            {"id": "imp-1", "device_model": "gw", "firmware_version": "1.0"},
            {"id": "imp-2", "device_model": "gw", "hardware_version": "rev-b", "firmware_version": firmware},
            {"id": "imp-3", "device_model": "cam", "tags": ["plant-7"], "attributes": {"site": "Lyon"}},
        ])
        .to_string()
    };
    let (status, first) = import(&app, "", "application/json", rows("1.0")).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!((first["rows"].as_u64(), first["created"].as_u64()), (Some(3), Some(3)), "{first}");
    let token = first["target_tokens"]["imp-2"].as_str().expect("a new device's token").to_owned();
    let poll =
        app.http.get(app.url("/default/controller/v1/imp-2")).header("Authorization", format!("TargetToken {token}"));
    assert_eq!(poll.send().await.expect("poll").status(), 200, "the imported token works");

    let (status, again) = import(&app, "", "application/json", rows("1.0")).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!((again["created"].as_u64(), again["unchanged"].as_u64()), (Some(0), Some(3)), "{again}");
    assert_eq!(again["target_tokens"], json!({}), "no device gets a new token: {again}");

    let (_, changed) = import(&app, "", "application/json; charset=utf-8", rows("1.1")).await;
    assert_eq!((changed["updated"].as_u64(), changed["unchanged"].as_u64()), (Some(1), Some(2)), "{changed}");
    app.all_caught_up().await;
    let (_, imp2) = device(&app, "imp-2").await;
    assert_eq!((&imp2["firmware_version"], &imp2["hardware_version"]), (&json!("1.1"), &json!("rev-b")), "{imp2}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_columns_become_profiles_tags_and_attributes() {
    let app = TestApp::spawn().await;
    let csv = "id,device_model,hardware_version,firmware_version,tags,attributes.site\n\
               csv-1,gw,rev-a,1.0,plant-7;north,Lyon\n\
               csv-2,gw,,1.0,,\n";
    let (status, report) = import(&app, "", "text/csv", csv.into()).await;
    assert_eq!((status, report["created"].as_u64()), (200, Some(2)), "{report}");
    app.all_caught_up().await;
    let (_, first) = device(&app, "csv-1").await;
    assert_eq!(first["tags"], json!(["north", "plant-7"]), "{first}");
    assert_eq!(first["attributes"], json!({"site": "Lyon"}), "{first}");
    let (_, second) = device(&app, "csv-2").await;
    assert_eq!((&second["hardware_version"], &second["attributes"]), (&Value::Null, &json!({})), "{second}");

    let (status, refused) = import(&app, "", "text/csv", "id,model\nx,gw\n".into()).await;
    assert_eq!((status, refused["error"].as_str()), (422, Some("import.unreadable")), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_row_refuses_the_whole_file_unless_partial_is_asked() {
    let app = TestApp::spawn().await;
    let ndjson = [
        json!({"id": "nd-1", "device_model": "gw"}).to_string(),
        json!({"id": "bad/id", "device_model": "gw"}).to_string(),
        json!({"id": "nd-2"}).to_string(),
        String::new(),
        json!({"id": "nd-1", "device_model": "gw"}).to_string(),
        json!({"id": "nd-3", "device_model": "gw", "colour": "red"}).to_string(),
        json!({"id": "nd-4", "device_model": "gw"}).to_string(),
    ]
    .join("\n");
    let (status, refused) = import(&app, "", "application/x-ndjson", ndjson.clone()).await;
    assert_eq!((status, refused["error"].as_str()), (422, Some("import.invalid_rows")), "{refused}");
    let rows: Vec<u64> =
        refused["details"]["failed"].as_array().expect("failed").iter().filter_map(|f| f["row"].as_u64()).collect();
    assert_eq!(rows, [2, 3, 5, 6], "each bad row is named: {refused}");
    assert!(refused["message"].as_str().is_some_and(|m| m.contains("nothing was imported")), "{refused}");
    assert_eq!(device(&app, "nd-1").await.0, 404, "nothing was stored");
    assert_eq!(device(&app, "nd-4").await.0, 404, "nothing was stored");

    let (status, partial) = import(&app, "?partial=true", "application/x-ndjson", ndjson).await;
    assert_eq!((status, partial["created"].as_u64()), (200, Some(2)), "{partial}");
    assert_eq!(partial["failed"].as_array().map(Vec::len), Some(4), "{partial}");
    app.all_caught_up().await;
    assert_eq!(device(&app, "nd-4").await.0, 200);

    let (status, body) = import(&app, "", "application/xml", "<devices/>".into()).await;
    assert_eq!((status, body["error"].as_str()), (415, Some("import.unsupported_type")), "{body}");
    let too_many = (0..=100_000).map(|i| format!("{{\"id\":\"m-{i}\",\"device_model\":\"gw\"}}")).collect::<Vec<_>>();
    let (status, body) = import(&app, "", "application/x-ndjson", too_many.join("\n")).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("import.too_many_rows")), "{body}");
    let (status, body) = import(&app, "", "application/json", "{\"id\": 1}".into()).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("import.unreadable")), "{body}");
}
