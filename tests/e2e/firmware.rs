//! Firmware over HTTP: streamed multipart upload with its checks and refusals,
//! the catalog's queries, and ranged downloads.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use md5::Md5;
use ota_projections::ProjectionName;
use ota_testkit::{json_of, TestApp, TestOptions};
use reqwest::header;
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256};

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn sha1_hex(bytes: &[u8]) -> String {
    hex::encode(Sha1::digest(bytes))
}

fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// `len` deterministic, non-repeating-looking bytes (xorshift), different per `seed`.
fn image(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn meta(name: &str, version: &str, model: &str) -> Value {
    json!({"name": name, "version": version, "device_model": model})
}

fn metadata_part(text: impl Into<String>) -> Part {
    Part::text(text.into()).mime_str("application/json").expect("mime")
}

fn file_part(bytes: Vec<u8>, filename: &str) -> Part {
    Part::bytes(bytes).file_name(filename.to_owned())
}

async fn send_form(app: &TestApp, form: Form) -> (u16, Value) {
    json_of(app.post("/api/v1/firmware").multipart(form).send().await.expect("upload request")).await
}

/// Every regular file below `<storage>/<dir>`, recursively.
fn files_under(app: &TestApp, dir: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![Path::new(&app.settings.storage_url).join(dir)];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

async fn event_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.db).await.expect("count events")
}

/// Nothing of a refused upload may remain: no event, no stored or staged object.
async fn assert_nothing_stored(app: &TestApp) {
    assert_eq!(event_count(app).await, 0, "no event may be written");
    assert_eq!(files_under(app, "sha256"), Vec::<PathBuf>::new(), "no binary stored");
    assert_eq!(files_under(app, "staging"), Vec::<PathBuf>::new(), "no staged upload left");
}

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "unexpected status, body: {body}");
    assert_eq!(body["error"], want_code, "unexpected error code: {body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "error without message: {body}");
}

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_answers_201_with_hashes_then_200_for_the_same_bytes() {
    let app = TestApp::spawn().await;
    let bytes = image(10_000, 1);

    let (status, body) = app.upload_firmware("router-os", "1.2.3", "gw-100", bytes.clone()).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("id").to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "id is a UUID: {id}");
    assert_eq!(body["name"], "router-os");
    assert_eq!(body["version"], "1.2.3");
    assert_eq!(body["device_model"], "gw-100");
    assert_eq!(body["size"], 10_000);
    assert_eq!(body["sha256"], sha256_hex(&bytes));
    assert_eq!(body["sha1"], sha1_hex(&bytes));
    assert_eq!(body["md5"], md5_hex(&bytes));
    assert_eq!(body["status"], "active");
    assert_eq!(body["filename"], "image.swu");

    // The binary is stored by content, once.
    let stored = files_under(&app, "sha256");
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(stored[0].ends_with(sha256_hex(&bytes)), "{stored:?}");
    assert_eq!(std::fs::read(&stored[0]).expect("stored file"), bytes);
    assert_eq!(event_count(&app).await, 1);

    let (status, again) = app.upload_firmware("router-os", "1.2.3", "gw-100", bytes.clone()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["sha256"], sha256_hex(&bytes));
    assert_eq!(again["size"], 10_000);
    assert_eq!(event_count(&app).await, 1, "a repeat writes no event");
    assert_eq!(files_under(&app, "sha256").len(), 1);
    assert_eq!(files_under(&app, "staging"), Vec::<PathBuf>::new());

    // Another version is another firmware.
    let (status, other) = app.upload_firmware("router-os", "1.2.4", "gw-100", bytes.clone()).await;
    assert_eq!(status, 201, "{other}");
    assert_ne!(other["id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_uploads_store_one_firmware() {
    let app = TestApp::spawn().await;
    let bytes = image(50_000, 18);
    let uploads = (0..4).map(|_| app.upload_firmware("os", "1.0", "gw", bytes.clone()));
    let answers = futures::future::join_all(uploads).await;
    let mut statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 200, 201], "{answers:?}");
    let ids: BTreeSet<&str> = answers.iter().map(|(_, b)| b["id"].as_str().expect("id")).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(event_count(&app).await, 1);
    assert_eq!(files_under(&app, "sha256").len(), 1);
    assert_eq!(files_under(&app, "staging"), Vec::<PathBuf>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_containing_the_separator_get_ids_of_their_own() {
    let app = TestApp::spawn().await;
    let bytes = image(1_000, 19);
    let (status, first) = app.upload_firmware("os:1", "2", "gw", bytes.clone()).await;
    assert_eq!(status, 201, "{first}");
    // `os:1` + `2` and `os` + `1:2` would share the key "os:1:2"; the id keeps them apart.
    let (status, second) = app.upload_firmware("os", "1:2", "gw", image(1_000, 20)).await;
    assert_eq!(status, 201, "{second}");
    assert_ne!(first["id"], second["id"]);
    assert_eq!(second["name"], "os");
    let (status, again) = app.upload_firmware("os:1", "2", "gw", bytes).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["name"], "os:1");
    assert_eq!(event_count(&app).await, 2);
    assert_eq!(files_under(&app, "staging"), Vec::<PathBuf>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_name_version_model_with_other_bytes_is_a_409_conflict() {
    let app = TestApp::spawn().await;
    let first = image(4_000, 2);
    let (status, body) = app.upload_firmware("os", "2.0", "gw", first.clone()).await;
    assert_eq!(status, 201, "{body}");

    let (status, conflict) = app.upload_firmware("os", "2.0", "gw", image(4_000, 3)).await;
    assert_error(status, &conflict, 409, "firmware.content_conflict");

    // The first upload stands; the conflicting bytes were not kept.
    assert_eq!(event_count(&app).await, 1);
    let stored = files_under(&app, "sha256");
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(stored[0].ends_with(sha256_hex(&first)));
    assert_eq!(files_under(&app, "staging"), Vec::<PathBuf>::new());
    app.caught_up(ProjectionName::Firmware).await;
    let (status, view) =
        json_of(app.get(&format!("/api/v1/firmware/{}", body["id"].as_str().expect("id"))).send().await.expect("get"))
            .await;
    assert_eq!(status, 200);
    assert_eq!(view["sha256"], sha256_hex(&first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sha256_checksum_mismatch_is_422_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let bytes = image(5_000, 4);
    let mut metadata = meta("os", "1.0", "gw");
    metadata["checksum_sha256"] = json!(sha256_hex(b"something else"));
    let (status, body) = app.upload_firmware_with(metadata, "image.swu", bytes.clone()).await;
    assert_error(status, &body, 422, "checksum_mismatch");
    assert!(message(&body).contains("checksum_sha256"), "{body}");
    assert_nothing_stored(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_md5_checksum_mismatch_is_422_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let bytes = image(5_000, 5);
    let mut metadata = meta("os", "1.0", "gw");
    // A correct sha256 does not excuse a wrong md5.
    metadata["checksum_sha256"] = json!(sha256_hex(&bytes));
    metadata["checksum_md5"] = json!(md5_hex(b"something else"));
    let (status, body) = app.upload_firmware_with(metadata, "image.swu", bytes).await;
    assert_error(status, &body, 422, "checksum_mismatch");
    assert!(message(&body).contains("checksum_md5"), "{body}");
    assert_nothing_stored(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_checksums_are_accepted_in_any_case() {
    let app = TestApp::spawn().await;
    let bytes = image(3_000, 6);
    let mut metadata = meta("os", "1.0", "gw");
    metadata["checksum_sha256"] = json!(sha256_hex(&bytes).to_uppercase());
    metadata["checksum_md5"] = json!(md5_hex(&bytes));
    let (status, body) = app.upload_firmware_with(metadata, "image.swu", bytes.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["sha256"], sha256_hex(&bytes));
    assert_eq!(body["md5"], md5_hex(&bytes));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_size_limit_is_413_json_and_stores_nothing() {
    let app = TestApp::spawn_with(TestOptions { max_firmware_bytes: 1024, ..Default::default() }).await;
    let (status, body) = app.upload_firmware("os", "1.0", "gw", image(4096, 7)).await;
    assert_error(status, &body, 413, "too_large");
    assert!(message(&body).contains("1024"), "{body}");
    assert_nothing_stored(&app).await;

    // Exactly at the limit is fine.
    let at_limit = image(1024, 8);
    let (status, body) = app.upload_firmware("os", "1.1", "gw", at_limit.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["size"], 1024);
    assert_eq!(body["sha256"], sha256_hex(&at_limit));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_parts_are_checked() {
    let app = TestApp::spawn().await;
    let metadata = meta("os", "1.0", "gw").to_string();

    // No metadata part.
    let form = Form::new().part("file", file_part(image(100, 9), "a.bin"));
    let (status, body) = send_form(&app, form).await;
    assert_error(status, &body, 400, "invalid_request");
    assert!(message(&body).contains("metadata"), "{body}");

    // No file part.
    let form = Form::new().part("metadata", metadata_part(metadata.clone()));
    let (status, body) = send_form(&app, form).await;
    assert_error(status, &body, 400, "invalid_request");
    assert!(message(&body).contains("file"), "{body}");

    // An unknown part, before and after the file.
    for unknown_first in [true, false] {
        let mut form = Form::new().part("metadata", metadata_part(metadata.clone()));
        if unknown_first {
            form = form.text("signature", "abc").part("file", file_part(image(100, 10), "a.bin"));
        } else {
            form = form.part("file", file_part(image(100, 10), "a.bin")).text("signature", "abc");
        }
        let (status, body) = send_form(&app, form).await;
        assert_error(status, &body, 400, "invalid_request");
        assert!(message(&body).contains("signature"), "{body}");
    }

    // Two file parts.
    let form = Form::new()
        .part("metadata", metadata_part(metadata.clone()))
        .part("file", file_part(image(100, 11), "a.bin"))
        .part("file", file_part(image(100, 12), "b.bin"));
    let (status, body) = send_form(&app, form).await;
    assert_error(status, &body, 400, "invalid_request");

    // A file before a missing metadata part is not kept.
    let form = Form::new().part("file", file_part(image(100, 13), "a.bin"));
    let (status, _) = send_form(&app, form).await;
    assert_eq!(status, 400);

    // Not multipart at all: still our JSON error.
    let (status, body) =
        json_of(app.post("/api/v1/firmware").json(&json!({"name": "os"})).send().await.expect("request")).await;
    assert_error(status, &body, 400, "invalid_request");

    assert_nothing_stored(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_metadata_is_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let valid = meta("os", "1.0", "gw");
    let with = |field: &str, value: Value| {
        let mut m = valid.clone();
        m[field] = value;
        m.to_string()
    };
    let without = |field: &str| {
        let mut m = valid.clone();
        m.as_object_mut().expect("object").remove(field);
        m.to_string()
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("not JSON", "this is not json".to_owned(), "metadata"),
        ("JSON but not an object", "[1, 2]".to_owned(), "metadata"),
        ("missing name", without("name"), "`name`"),
        ("missing version", without("version"), "`version`"),
        ("missing device_model", without("device_model"), "`device_model`"),
        ("empty name", with("name", json!("")), "name:"),
        ("whitespace name", with("name", json!("   \t ")), "name:"),
        ("control char in name", with("name", json!("os\u{7}")), "name:"),
        ("overlong name", with("name", json!("n".repeat(129))), "name:"),
        ("empty version", with("version", json!(" ")), "version:"),
        ("empty device_model", with("device_model", json!("")), "device_model:"),
        ("name not a string", with("name", json!(42)), "metadata"),
        ("short checksum_sha256", with("checksum_sha256", json!("abc123")), "checksum_sha256"),
        ("non-hex checksum_sha256", with("checksum_sha256", json!("z".repeat(64))), "checksum_sha256"),
        ("md5-length checksum_sha256", with("checksum_sha256", json!(md5_hex(b"x"))), "checksum_sha256"),
        ("bad checksum_md5", with("checksum_md5", json!("not-a-digest")), "checksum_md5"),
        ("unknown field", with("colour", json!("red")), "colour"),
        ("empty hardware version", with("hardware_versions", json!(["rev-a", ""])), "hardware_versions"),
    ];
    for (case, metadata, names) in cases {
        let form = Form::new()
            .part("metadata", metadata_part(metadata))
            .part("file", file_part(image(2_000, 14), "image.swu"));
        let (status, body) = send_form(&app, form).await;
        assert_eq!(status, 422, "{case}: {body}");
        assert_eq!(body["error"], "invalid_field", "{case}: {body}");
        assert!(message(&body).contains(names), "{case}: message should name {names:?}: {body}");
    }
    assert_nothing_stored(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_metadata_is_422_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let mut metadata = meta("os", "1.0", "gw");
    metadata["release_notes"] = json!("n".repeat(100 * 1024));
    // The file comes first, so a staged upload exists when the metadata is refused.
    let form = Form::new()
        .part("file", file_part(image(2_000, 17), "image.swu"))
        .part("metadata", metadata_part(metadata.to_string()));
    let (status, body) = send_form(&app, form).await;
    assert_error(status, &body, 422, "invalid_field");
    assert!(message(&body).contains("metadata"), "{body}");
    assert!(message(&body).contains("64 KiB"), "{body}");
    assert_nothing_stored(&app).await;

    // Metadata just under the limit is read whole (and its release notes checked).
    metadata["release_notes"] = json!("n".repeat(20_001));
    let (status, body) = app.upload_firmware_with(metadata, "image.swu", image(2_000, 17)).await;
    assert_error(status, &body, 422, "invalid_field");
    assert!(message(&body).contains("release_notes"), "{body}");
    assert_nothing_stored(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mib_upload_streams_and_hashes_correctly() {
    let app = TestApp::spawn().await;
    let bytes = image(20 * 1024 * 1024 + 123, 15);
    let (status, body) = app.upload_firmware("big", "1.0", "gw", bytes.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["size"], bytes.len());
    assert_eq!(body["sha256"], sha256_hex(&bytes));
    assert_eq!(body["sha1"], sha1_hex(&bytes));
    assert_eq!(body["md5"], md5_hex(&bytes));
    assert_eq!(files_under(&app, "staging"), Vec::<PathBuf>::new());

    app.caught_up(ProjectionName::Firmware).await;
    let id = body["id"].as_str().expect("id");
    let response = app.get(&format!("/api/v1/firmware/{id}/content")).send().await.expect("download");
    assert_eq!(response.status(), 200);
    let downloaded = response.bytes().await.expect("body");
    assert_eq!(downloaded.len(), bytes.len());
    assert_eq!(sha256_hex(&downloaded), sha256_hex(&bytes));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_artifact_filename_is_the_uploaded_name_without_any_path() {
    let app = TestApp::spawn().await;
    let cases = [
        ("router-fw-1.0.swu", "router-fw-1.0.swu"),
        ("../../x.swu", "x.swu"),
        ("/etc/passwd", "passwd"),
        ("C:\\images\\win.bin", "win.bin"),
    ];
    for (i, (given, want)) in cases.iter().enumerate() {
        let (status, body) =
            app.upload_firmware_with(meta("os", &format!("1.{i}"), "gw"), given, image(100, 16 + i as u64)).await;
        assert_eq!(status, 201, "{given}: {body}");
        assert_eq!(body["filename"], *want, "{given}");
    }
    // A name that is only a path falls back to name-version.bin.
    let (status, body) = app.upload_firmware_with(meta("os", "9.9", "gw"), "../", image(100, 30)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["filename"], "os-9.9.bin");

    app.caught_up(ProjectionName::Firmware).await;
    let (status, page) = json_of(app.get("/api/v1/firmware?page_size=100").send().await.expect("list")).await;
    assert_eq!(status, 200, "{page}");
    let names: BTreeSet<String> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|f| f["filename"].as_str().expect("filename").to_owned())
        .collect();
    let want: BTreeSet<String> =
        ["router-fw-1.0.swu", "x.swu", "passwd", "win.bin", "os-9.9.bin"].into_iter().map(str::to_owned).collect();
    assert_eq!(names, want);
}

async fn list(app: &TestApp, query: &str) -> (u16, Value) {
    json_of(app.get(&format!("/api/v1/firmware{query}")).send().await.expect("list")).await
}

fn ids_of(page: &Value) -> Vec<String> {
    page["items"].as_array().expect("items").iter().map(|f| f["id"].as_str().expect("id").to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_paginates_and_filters_by_device_model() {
    let app = TestApp::spawn().await;
    let mut gw = BTreeSet::new();
    let mut cam = BTreeSet::new();
    for i in 0..3u64 {
        let (status, body) = app.upload_firmware("os", &format!("1.{i}"), "gw", image(100, 40 + i)).await;
        assert_eq!(status, 201);
        gw.insert(body["id"].as_str().expect("id").to_owned());
    }
    for i in 0..2u64 {
        let (status, body) = app.upload_firmware("cam-os", &format!("2.{i}"), "cam", image(100, 50 + i)).await;
        assert_eq!(status, 201);
        cam.insert(body["id"].as_str().expect("id").to_owned());
    }
    app.caught_up(ProjectionName::Firmware).await;

    let (status, all) = list(&app, "").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["total"], 5);
    assert_eq!(all["page"], 1);
    assert_eq!(all["page_size"], 50);
    assert_eq!(ids_of(&all).len(), 5);
    assert_eq!(all["items"][0]["created_by"], "user:tester");

    let mut seen = BTreeSet::new();
    for (page, want) in [(1, 2), (2, 2), (3, 1), (4, 0)] {
        let (status, body) = list(&app, &format!("?page={page}&page_size=2")).await;
        assert_eq!(status, 200, "page {page}: {body}");
        assert_eq!(body["total"], 5);
        assert_eq!(body["page"], page);
        assert_eq!(body["page_size"], 2);
        let ids = ids_of(&body);
        assert_eq!(ids.len(), want, "page {page}");
        for id in ids {
            assert!(seen.insert(id), "an item appears on two pages");
        }
    }
    let every: BTreeSet<String> = gw.union(&cam).cloned().collect();
    assert_eq!(seen, every);

    let (status, body) = list(&app, "?device_model=cam").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 2);
    assert_eq!(ids_of(&body).into_iter().collect::<BTreeSet<_>>(), cam);
    assert!(body["items"].as_array().expect("items").iter().all(|f| f["device_model"] == "cam"));

    let (status, body) = list(&app, "?device_model=gw&page=2&page_size=2").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 3);
    assert_eq!(ids_of(&body).len(), 1);
    assert!(gw.contains(&ids_of(&body)[0]));

    let (status, body) = list(&app, "?device_model=toaster").await;
    assert_eq!(status, 200);
    assert_eq!(body["total"], 0);
    assert_eq!(body["items"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_paging_is_400() {
    let app = TestApp::spawn().await;
    for query in
        ["?page=0", "?page_size=0", "?page_size=1000", "?page_size=501", "?page=-1", "?page=abc", "?page_size=1.5"]
    {
        let (status, body) = list(&app, query).await;
        assert_error(status, &body, 400, "invalid_request");
        assert!(message(&body).contains("page"), "{query}: {body}");
    }
    let (status, body) = list(&app, "?page_size=500").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["page_size"], 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_firmware_by_id() {
    let app = TestApp::spawn().await;
    let bytes = image(777, 60);
    let (status, up) = app.upload_firmware("os", "3.0", "gw", bytes.clone()).await;
    assert_eq!(status, 201);
    let id = up["id"].as_str().expect("id");
    app.caught_up(ProjectionName::Firmware).await;

    let (status, body) = json_of(app.get(&format!("/api/v1/firmware/{id}")).send().await.expect("get")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], id);
    assert_eq!(body["size"], 777);
    assert_eq!(body["sha256"], sha256_hex(&bytes));
    assert_eq!(body["sha1"], sha1_hex(&bytes));
    assert_eq!(body["md5"], md5_hex(&bytes));
    assert_eq!(body["status"], "active");
    assert!(body.get("storage_path").is_none(), "storage path is internal: {body}");

    let unknown = uuid::Uuid::new_v4();
    for path in [format!("/api/v1/firmware/{unknown}"), format!("/api/v1/firmware/{unknown}/content")] {
        let (status, body) = json_of(app.get(&path).send().await.expect("get")).await;
        assert_error(status, &body, 404, "not_found");
    }
    for path in [
        "/api/v1/firmware/not-a-uuid",
        "/api/v1/firmware/not-a-uuid/content",
        "/api/v1/firmware/not-a-uuid/history",
        "/api/v1/firmware/123",
    ] {
        let (status, body) = json_of(app.get(path).send().await.expect("get")).await;
        assert_error(status, &body, 400, "invalid_request");
    }
}

async fn uploaded_and_projected(app: &TestApp, bytes: Vec<u8>, filename: &str) -> String {
    let (status, body) = app.upload_firmware_with(meta("os", "5.0", "gw"), filename, bytes).await;
    assert_eq!(status, 201, "{body}");
    app.caught_up(ProjectionName::Firmware).await;
    body["id"].as_str().expect("id").to_owned()
}

fn header_of(response: &reqwest::Response, name: header::HeaderName) -> Option<String> {
    response.headers().get(name).map(|v| v.to_str().expect("ascii header").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_downloads_whole_and_by_range() {
    let app = TestApp::spawn().await;
    let bytes = image(1_000, 70);
    let len = bytes.len();
    let id = uploaded_and_projected(&app, bytes.clone(), "router.swu").await;
    let path = format!("/api/v1/firmware/{id}/content");
    let etag = format!("\"{}\"", sha1_hex(&bytes));

    // The whole image.
    let r = app.get(&path).send().await.expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(header_of(&r, header::ETAG).as_deref(), Some(etag.as_str()));
    assert_eq!(header_of(&r, header::ACCEPT_RANGES).as_deref(), Some("bytes"));
    assert_eq!(header_of(&r, header::CONTENT_LENGTH), Some(len.to_string()));
    assert_eq!(header_of(&r, header::CONTENT_TYPE).as_deref(), Some("application/octet-stream"));
    let disposition = header_of(&r, header::CONTENT_DISPOSITION).expect("disposition");
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert!(disposition.contains("filename=\"router.swu\""), "{disposition}");
    assert_eq!(r.bytes().await.expect("body").as_ref(), bytes.as_slice());

    let ranged = |range: &str| app.get(&path).header(header::RANGE, range.to_owned());

    // A closed range.
    let r = ranged("bytes=2-5").send().await.expect("get");
    assert_eq!(r.status(), 206);
    assert_eq!(header_of(&r, header::CONTENT_RANGE), Some(format!("bytes 2-5/{len}")));
    assert_eq!(header_of(&r, header::CONTENT_LENGTH).as_deref(), Some("4"));
    assert_eq!(header_of(&r, header::ETAG).as_deref(), Some(etag.as_str()));
    assert_eq!(r.bytes().await.expect("body").as_ref(), &bytes[2..6]);

    // A suffix range: the last three bytes.
    let r = ranged("bytes=-3").send().await.expect("get");
    assert_eq!(r.status(), 206);
    assert_eq!(header_of(&r, header::CONTENT_RANGE), Some(format!("bytes {}-{}/{len}", len - 3, len - 1)));
    assert_eq!(r.bytes().await.expect("body").as_ref(), &bytes[len - 3..]);

    // An open range.
    let r = ranged("bytes=4-").send().await.expect("get");
    assert_eq!(r.status(), 206);
    assert_eq!(header_of(&r, header::CONTENT_RANGE), Some(format!("bytes 4-{}/{len}", len - 1)));
    assert_eq!(r.bytes().await.expect("body").as_ref(), &bytes[4..]);

    // The last byte alone.
    let r = ranged(&format!("bytes={}-{}", len - 1, len - 1)).send().await.expect("get");
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.expect("body").as_ref(), &bytes[len - 1..]);

    // Unsatisfiable.
    for range in ["bytes=999999-", &format!("bytes={len}-")] {
        let r = ranged(range).send().await.expect("get");
        assert_eq!(r.status(), 416, "{range}");
        assert_eq!(header_of(&r, header::CONTENT_RANGE), Some(format!("bytes */{len}")), "{range}");
        let request_id = header_of(&r, header::HeaderName::from_static("x-request-id"));
        let (_, body) = json_of(r).await;
        assert_eq!(body["error"], "range_not_satisfiable", "{range}");
        assert_eq!(body["request_id"].as_str().map(str::to_owned), request_id, "{range}: {body}");
    }

    // A suffix longer than the image selects all of it (RFC 9110 14.1.3).
    let r = ranged(&format!("bytes=-{}", len * 5)).send().await.expect("get");
    assert_eq!(r.status(), 206);
    assert_eq!(header_of(&r, header::CONTENT_RANGE), Some(format!("bytes 0-{}/{len}", len - 1)));
    assert_eq!(r.bytes().await.expect("body").as_ref(), bytes.as_slice());

    // A range unit the server does not know must be ignored (RFC 9110 14.2),
    // and so is a malformed range.
    for range in ["items=0-5", "bytes=abc", "bytes 2-5"] {
        let r = ranged(range).send().await.expect("get");
        assert_eq!(r.status(), 200, "{range}");
        assert_eq!(header_of(&r, header::CONTENT_RANGE), None, "{range}");
        assert_eq!(r.bytes().await.expect("body").len(), len, "{range}");
    }

    // If-Range: a stale validator gets the whole current image, a current one the range.
    let r = ranged("bytes=2-5")
        .header(header::IF_RANGE, "\"0000000000000000000000000000000000000000\"")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(header_of(&r, header::CONTENT_RANGE), None);
    assert_eq!(r.bytes().await.expect("body").as_ref(), bytes.as_slice());
    let r = ranged("bytes=2-5").header(header::IF_RANGE, etag.clone()).send().await.expect("get");
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.expect("body").as_ref(), &bytes[2..6]);

    // If-None-Match: the current ETag is not modified, another one is.
    let r = app.get(&path).header(header::IF_NONE_MATCH, etag.clone()).send().await.expect("get");
    assert_eq!(r.status(), 304);
    assert_eq!(header_of(&r, header::ETAG).as_deref(), Some(etag.as_str()));
    assert!(r.bytes().await.expect("body").is_empty());
    let r = app.get(&path).header(header::IF_NONE_MATCH, "\"other\"").send().await.expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.expect("body").len(), len);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_image_downloads_empty_and_satisfies_no_range() {
    let app = TestApp::spawn().await;
    let id = uploaded_and_projected(&app, Vec::new(), "empty.bin").await;
    let path = format!("/api/v1/firmware/{id}/content");

    let r = app.get(&path).send().await.expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(header_of(&r, header::CONTENT_LENGTH).as_deref(), Some("0"));
    assert_eq!(header_of(&r, header::ETAG), Some(format!("\"{}\"", sha1_hex(b""))));
    assert!(r.bytes().await.expect("body").is_empty());

    for range in ["bytes=0-", "bytes=0-0", "bytes=-1"] {
        let r = app.get(&path).header(header::RANGE, range).send().await.expect("get");
        assert_eq!(r.status(), 416, "{range}");
        assert_eq!(header_of(&r, header::CONTENT_RANGE).as_deref(), Some("bytes */0"), "{range}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_download_reassembles_the_image() {
    let app = TestApp::spawn().await;
    let bytes = image(1024 * 1024 + 37, 80);
    let len = bytes.len();
    let id = uploaded_and_projected(&app, bytes.clone(), "big.swu").await;
    let path = format!("/api/v1/firmware/{id}/content");
    let half = len / 2;

    let first = app.get(&path).header(header::RANGE, format!("bytes=0-{}", half - 1)).send().await.expect("first half");
    assert_eq!(first.status(), 206);
    let etag = header_of(&first, header::ETAG).expect("etag");
    let mut assembled = first.bytes().await.expect("body").to_vec();
    assert_eq!(assembled.len(), half);

    let rest = app
        .get(&path)
        .header(header::RANGE, format!("bytes={half}-"))
        .header(header::IF_RANGE, etag)
        .send()
        .await
        .expect("rest");
    assert_eq!(rest.status(), 206);
    assert_eq!(header_of(&rest, header::CONTENT_RANGE), Some(format!("bytes {half}-{}/{len}", len - 1)));
    assembled.extend_from_slice(&rest.bytes().await.expect("body"));
    assert_eq!(assembled.len(), len);
    assert_eq!(sha256_hex(&assembled), sha256_hex(&bytes));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprecate_once_then_409() {
    let app = TestApp::spawn().await;
    let id = app.firmware("1.0").await;
    let path = format!("/api/v1/firmware/{id}/deprecate");

    let (status, body) = json_of(app.post(&path).send().await.expect("deprecate")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["status"], "deprecated");

    let (status, body) =
        json_of(app.post(&path).json(&json!({"reason": "again"})).send().await.expect("deprecate")).await;
    assert_error(status, &body, 409, "firmware.already_deprecated");

    app.caught_up(ProjectionName::Firmware).await;
    let (status, view) = json_of(app.get(&format!("/api/v1/firmware/{id}")).send().await.expect("get")).await;
    assert_eq!(status, 200);
    assert_eq!(view["status"], "deprecated");

    // History: upload then deprecation, by the tester.
    app.caught_up(ProjectionName::Activity).await;
    let (status, history) =
        json_of(app.get(&format!("/api/v1/firmware/{id}/history")).send().await.expect("history")).await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["total"], 2);
    let events: Vec<&str> = history["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["event_type"].as_str().expect("event type"))
        .collect();
    assert_eq!(events, ["FirmwareUploaded", "FirmwareDeprecated"]);
    assert!(history["items"].as_array().expect("items").iter().all(|e| e["actor"] == "user:tester"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprecate_refuses_unknown_ids_and_bad_bodies() {
    let app = TestApp::spawn().await;
    let unknown = uuid::Uuid::new_v4();
    let (status, body) =
        json_of(app.post(&format!("/api/v1/firmware/{unknown}/deprecate")).send().await.expect("deprecate")).await;
    assert_error(status, &body, 404, "firmware.not_found");
    let (status, body) =
        json_of(app.post("/api/v1/firmware/not-a-uuid/deprecate").send().await.expect("deprecate")).await;
    assert_error(status, &body, 400, "invalid_request");

    let id = app.firmware("1.0").await;
    let (status, body) = json_of(
        app.post(&format!("/api/v1/firmware/{id}/deprecate"))
            .json(&json!({"reason": "old", "force": true}))
            .send()
            .await
            .expect("deprecate"),
    )
    .await;
    assert_error(status, &body, 422, "invalid_field");
    assert!(message(&body).contains("force"), "{body}");
    // The refused request changed nothing.
    let (status, body) = json_of(
        app.post(&format!("/api/v1/firmware/{id}/deprecate"))
            .json(&json!({"reason": "superseded by 1.1"}))
            .send()
            .await
            .expect("deprecate"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "deprecated");
}

/// The download log's totals and its page are read while a projection writes: they must count the same rows.
/// Read apart (as they once were), a row committed between the two reads showed in the page and not in the
/// totals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_download_totals_and_page_describe_the_same_rows_while_rows_arrive() {
    let app = TestApp::spawn().await;
    let id = app.firmware("1.0").await;
    let firmware = uuid::Uuid::parse_str(&id).expect("uuid");
    app.caught_up(ProjectionName::Firmware).await;
    let writer = {
        let db = app.db.clone();
        tokio::spawn(async move {
            for n in 0..400_i64 {
                sqlx::query(
                    r#"INSERT INTO firmware_downloads
                       (device_id, sequence, action, firmware_id, requests, "offset", bytes, complete, whole, via, at)
                       VALUES ($1, 1, 1, $2, 1, 0, $3, true, true, 'test', now())"#,
                )
                .bind(format!("dl-{n}"))
                .bind(firmware)
                .bind(n + 1)
                .execute(&db)
                .await
                .expect("insert");
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads == 0 {
        let (status, body) = json_of(
            app.get(&format!("/api/v1/firmware/{id}/downloads?page_size=500")).send().await.expect("downloads"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let items = body["items"].as_array().expect("items");
        let bytes: i64 = items.iter().map(|d| d["bytes"].as_i64().expect("bytes")).sum();
        assert_eq!(body["stats"]["downloads"], items.len(), "{body}");
        assert_eq!(body["total"], items.len(), "{body}");
        assert_eq!(body["stats"]["bytes"], bytes, "{body}");
        reads += 1;
    }
    writer.await.expect("writer");
}

/// Storage a crash or a failed store left behind is collected; nothing a
/// firmware refers to, and nothing young (an upload still running), is touched.
#[tokio::test]
async fn orphaned_uploads_and_unreferenced_binaries_are_collected() {
    let app = TestApp::spawn().await;
    let image = b"collected image".to_vec();
    let (status, body) = app.upload_firmware("os", "3.0", "gw", image.clone()).await;
    assert_eq!(status, 201, "{body}");
    let root = PathBuf::from(&app.settings.storage_url);
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 24 * 3600);
    let age = |path: &Path, at: std::time::SystemTime| {
        std::fs::File::options().write(true).open(path).expect("open").set_modified(at).expect("set mtime");
    };
    let write = |relative: &str, at: std::time::SystemTime| {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(&path, b"left behind").expect("write");
        age(&path, at);
        path
    };
    // The uploaded firmware's binary, old but referenced.
    let referenced = root.join(format!("sha256/{}", sha256_hex(&image)));
    age(&referenced, old);
    let crashed_upload = write("staging/crashed-upload", old);
    let running_upload = write("staging/running-upload", std::time::SystemTime::now());
    let never_stored = write(&format!("sha256/{}", sha256_hex(b"event never committed")), old);
    let just_promoted = write(&format!("sha256/{}", sha256_hex(b"event on its way")), std::time::SystemTime::now());

    let blobs = ota_api::storage::Blobs::open(&app.settings.storage_url).expect("storage");
    // The server's own collector may take its first pass meanwhile: either way, once.
    let collected = ota::gc::collect(&app.db, &blobs, ota::gc::GRACE).await.expect("collect");
    assert!(collected.staged <= 1 && collected.unreferenced <= 1, "{collected:?}");
    assert!(!crashed_upload.exists() && !never_stored.exists(), "orphans are gone");
    assert!(referenced.exists() && running_upload.exists() && just_promoted.exists(), "the rest stays");
    // The firmware still downloads.
    app.caught_up(ProjectionName::Firmware).await;
    let id = body["id"].as_str().expect("id");
    let response = app.get(&format!("/api/v1/firmware/{id}/content")).send().await.expect("download");
    assert_eq!(response.bytes().await.expect("body").to_vec(), image);
}
