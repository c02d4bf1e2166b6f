//! The tamper-evident log: a hash chain over the global event order that names the
//! first event edited, inserted or deleted behind the server's back.

use std::time::Duration;

use ota_api::auth::Role;
use ota_testkit::{eventually, json_of, TestApp, AUDIT_KEY_HEX};
use serde_json::Value;

async fn verify(app: &TestApp) -> Value {
    let (status, body) = json_of(app.get_as("/api/v1/audit/verify", Role::Auditor).send().await.expect("verify")).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn events(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.db).await.expect("count")
}

/// Waits until every stored event is linked and the chain verifies.
async fn chained(app: &TestApp) -> Value {
    let total = events(app).await;
    eventually("every event linked", Duration::from_secs(30), || async {
        let report = verify(app).await;
        (report["ok"] == true && report["verified"] == total).then_some(report)
    })
    .await
}

async fn position_of(app: &TestApp, global_seq: i64) -> i64 {
    sqlx::query_scalar("SELECT position FROM event_chain WHERE global_seq = $1")
        .bind(global_seq)
        .fetch_one(&app.db)
        .await
        .expect("position")
}

async fn sql(app: &TestApp, statement: &str) {
    sqlx::query(statement).execute(&app.db).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
}

#[tokio::test]
async fn edits_insertions_and_deletions_behind_the_servers_back_are_named() {
    let app = TestApp::spawn().await;
    let firmware = app.firmware("2.0").await;
    // A position handed out and never used, as a rolled-back transaction leaves one:
    // the only place a forger can slip an event into the past.
    let unused: i64 = sqlx::query_scalar("SELECT nextval(pg_get_serial_sequence('events', 'global_seq'))")
        .fetch_one(&app.db)
        .await
        .expect("burn a position");
    let (status, created) = app.create_campaign("audited", &firmware, &["aud-1", "aud-2"]).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    app.campaign_action(&id, "start").await;
    app.campaign_action(&id, "pause").await;
    let report = chained(&app).await;
    let head = report["head"].clone();
    assert_eq!(head["position"], events(&app).await, "{report}");

    let seqs: Vec<i64> =
        sqlx::query_scalar("SELECT global_seq FROM events ORDER BY global_seq").fetch_all(&app.db).await.expect("seqs");
    let (second, middle) = (seqs[1], seqs[seqs.len() / 2]);

    // An event slipped into the past, at the unused position.
    sql(
        &app,
        &format!(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata,
                                 global_seq)
             OVERRIDING SYSTEM VALUE
             VALUES ('Firmware', 'forged', 1, 'FirmwareDeprecated', '1.0', '{{}}'::jsonb, '{{}}'::jsonb, {unused})"
        ),
    )
    .await;
    let forged = unused;
    let report = verify(&app).await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["first_broken"]["problem"], "inserted", "{report}");
    assert_eq!(report["first_broken"]["global_seq"], forged, "{report}");
    sql(&app, "DELETE FROM events WHERE aggregate_id = 'forged'").await;
    assert_eq!(verify(&app).await["ok"], true);

    // One event's metadata edited: who ordered it.
    let original: Value = sqlx::query_scalar("SELECT metadata FROM events WHERE global_seq = $1")
        .bind(middle)
        .fetch_one(&app.db)
        .await
        .expect("metadata");
    sql(
        &app,
        &format!("UPDATE events SET metadata = metadata || '{{\"actor_id\":\"mallory\"}}' WHERE global_seq = {middle}"),
    )
    .await;
    let report = verify(&app).await;
    assert_eq!(report["first_broken"]["problem"], "edited", "{report}");
    assert_eq!(report["first_broken"]["global_seq"], middle, "{report}");
    assert_eq!(report["first_broken"]["position"], position_of(&app, middle).await, "{report}");
    sqlx::query("UPDATE events SET metadata = $1 WHERE global_seq = $2")
        .bind(&original)
        .bind(middle)
        .execute(&app.db)
        .await
        .expect("restore");
    assert_eq!(verify(&app).await["ok"], true);

    // One event deleted.
    sql(&app, &format!("DELETE FROM events WHERE global_seq = {second}")).await;
    let report = verify(&app).await;
    assert_eq!(report["first_broken"]["problem"], "missing", "{report}");
    assert_eq!(report["first_broken"]["global_seq"], second, "{report}");
    assert_eq!(report["first_broken"]["position"], 2, "{report}");
}

#[tokio::test]
async fn the_chain_head_is_exported_signed() {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    let app = TestApp::spawn().await;
    app.firmware("2.0").await;
    chained(&app).await;
    let (status, head) = json_of(app.get_as("/api/v1/audit/head", Role::Auditor).send().await.expect("head")).await;
    assert_eq!(status, 200, "{head}");
    let seed: [u8; 32] = hex::decode(AUDIT_KEY_HEX).expect("hex").try_into().expect("32 bytes");
    let expected_key = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    assert_eq!(head["public_key"], hex::encode(expected_key.to_bytes()));
    let key = VerifyingKey::from_bytes(&expected_key.to_bytes()).expect("key");
    let signature: [u8; 64] =
        hex::decode(head["signature"].as_str().expect("signature")).expect("hex").try_into().expect("64 bytes");
    let message = head["message"].as_str().expect("message");
    assert!(message.contains(head["link"].as_str().expect("link")), "{head}");
    key.verify(message.as_bytes(), &Signature::from_bytes(&signature)).expect("the signature verifies");
    let forged = message.replace("position", "posit1on");
    assert!(key.verify(forged.as_bytes(), &Signature::from_bytes(&signature)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_device_and_fleet_read_at_a_past_moment_match_what_was_seen_then() {
    let app = TestApp::spawn_with(ota_testkit::TestOptions::full()).await;
    let _fleet = app.fleet().await;
    let devices: Vec<String> = (0..20).map(|i| format!("pit-{i:02}")).collect();
    app.register_devices(&devices, "rev-a").await;
    let firmware = app.firmware("2.0").await;
    let rollout = serde_json::json!({"waves": [{"count": 5}, {"percent": 100}], "after_success": "pause"});
    let body = serde_json::json!({"name": "pit", "firmware_id": firmware, "target": {"device_ids": devices}, "rollout": rollout});
    let (status, created) = json_of(app.post("/api/v1/campaigns").json(&body).send().await.expect("create")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    app.campaign_action(&id, "start").await;
    let seen = eventually("first wave done, waiting for approval", Duration::from_secs(60), || async {
        let view = json_of(app.get(&format!("/api/v1/campaigns/{id}")).send().await.ok()?).await.1;
        let waiting = view["decisions"].as_array()?.iter().any(|d| d["decision"] == "approval_requested");
        (waiting && view["waves"][0]["succeeded"] == 5).then_some(view)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let then = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.approve(&id).await.0, 200);
    eventually("campaign completed", Duration::from_secs(60), || async {
        let view = json_of(app.get(&format!("/api/v1/campaigns/{id}")).send().await.ok()?).await.1;
        (view["status"] == "completed").then_some(())
    })
    .await;

    let at = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (status, past) = json_of(
        app.get_as(&format!("/api/v1/audit/campaigns/{id}?at={}", at(then).replace('+', "%2B")), Role::Auditor)
            .send()
            .await
            .expect("audit"),
    )
    .await;
    assert_eq!(status, 200, "{past}");
    assert_eq!(past["status"], seen["status"], "{past}");
    assert_eq!(past["waves"][0]["states"]["succeeded"], seen["waves"][0]["succeeded"], "{past}");
    assert!(past["waves"][1]["states"].as_object().is_some_and(|s| s.is_empty()), "nothing of wave 1 yet: {past}");
    let events = past["events"].as_array().expect("events");
    assert!(events.iter().all(|e| e["event_type"] != "CampaignCompleted"), "nothing after the moment: {past}");
    assert!(events.iter().any(|e| e["actor"].as_str().is_some_and(|a| a.contains("tester"))), "who created it: {past}");
    assert!(
        events.iter().any(|e| e["payload"].to_string().contains("success_threshold")),
        "the gate's numbers: {past}"
    );

    let (_, now) =
        json_of(app.get_as(&format!("/api/v1/audit/campaigns/{id}"), Role::Auditor).send().await.expect("audit now"))
            .await;
    assert_eq!(now["status"], "completed", "{now}");
    assert_eq!(now["waves"][1]["states"]["succeeded"], 15, "{now}");

    // The fleet at that moment: five devices on 2.0 through this campaign, fifteen still on 1.0.
    let (status, fleet) = json_of(
        app.get_as(&format!("/api/v1/audit/fleet?at={}", at(then).replace('+', "%2B")), Role::Auditor)
            .send()
            .await
            .expect("fleet"),
    )
    .await;
    assert_eq!(status, 200, "{fleet}");
    let rows = fleet["devices"].as_array().expect("devices");
    let on = |version: &str| rows.iter().filter(|d| d["firmware_version"] == version).count();
    assert_eq!((on("2.0"), on("1.0")), (5, 15), "{fleet}");
    assert!(rows.iter().filter(|d| d["firmware_version"] == "2.0").all(|d| d["campaign_id"] == id.as_str()), "{fleet}");
    let updated =
        rows.iter().find(|d| d["firmware_version"] == "2.0").and_then(|d| d["device_id"].as_str()).expect("one");
    let (status, device) = json_of(
        app.get_as(&format!("/api/v1/audit/devices/{updated}?at={}", at(then).replace('+', "%2B")), Role::Auditor)
            .send()
            .await
            .expect("device"),
    )
    .await;
    assert_eq!(status, 200, "{device}");
    assert_eq!(
        (device["running"].as_str(), device["update"]["state"].as_str()),
        (Some("2.0"), Some("succeeded")),
        "{device}"
    );

    let (status, body) = json_of(
        app.get_as(&format!("/api/v1/audit/campaigns/{id}?at=yesterday"), Role::Auditor).send().await.expect("bad"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let long_ago = "2000-01-01T00:00:00Z";
    assert_eq!(
        app.get_as(&format!("/api/v1/audit/campaigns/{id}?at={long_ago}"), Role::Auditor)
            .send()
            .await
            .expect("old")
            .status(),
        404
    );
}

/// The SQLSTATE of a refused statement (42501: insufficient privilege).
async fn refused(db: &sqlx::PgPool, statement: &str) -> String {
    match sqlx::query(statement).execute(db).await {
        Ok(done) => panic!("{statement}: allowed, {} rows", done.rows_affected()),
        Err(e) => e.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned()).unwrap_or_else(|| e.to_string()),
    }
}

#[tokio::test]
async fn the_servers_role_reads_and_appends_events_but_cannot_change_them() {
    let app = TestApp::spawn().await;
    app.firmware("2.0").await;
    chained(&app).await;
    // The server connected as this role and stored events through it.
    let server = sqlx::PgPool::connect(app.settings.database_url.expose()).await.expect("connect as the server");
    let role: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(&server).await.expect("role");
    assert_eq!(role, ota_testkit::SERVER_ROLE);
    let stored = events(&app).await;
    assert!(stored > 0);
    for statement in [
        "UPDATE events SET metadata = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
        "UPDATE event_chain SET link = '\\x00'",
        "DELETE FROM event_chain",
        "TRUNCATE event_chain",
        "ALTER TABLE events DISABLE TRIGGER events_append_only",
        "DROP TABLE events",
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (9999, 'forged', true, '\\x00', 0)",
    ] {
        assert_eq!(refused(&server, statement).await, "42501", "{statement}");
    }
    // The one delete it has takes out only rows its own open transaction wrote.
    let key: (String, String, i64) =
        sqlx::query_as("SELECT aggregate_type, aggregate_id, sequence FROM events LIMIT 1")
            .fetch_one(&app.db)
            .await
            .expect("one");
    let taken: i64 = sqlx::query_scalar("SELECT take_out_own_events($1, ARRAY[$2], ARRAY[$3])")
        .bind(&key.0)
        .bind(&key.1)
        .bind(key.2)
        .fetch_one(&server)
        .await
        .expect("take out");
    assert_eq!(taken, 0, "a committed event is never the caller's own");
    // Granted too much by mistake, the role still meets the trigger.
    sql(&app, &format!("GRANT UPDATE, DELETE, TRUNCATE ON events TO {}", ota_testkit::SERVER_ROLE)).await;
    assert_eq!(refused(&server, "DELETE FROM events").await, "42501");
    assert_eq!(refused(&server, "UPDATE events SET metadata = '{}'").await, "42501");
    assert_eq!(refused(&server, "TRUNCATE events").await, "42501");
    assert_eq!(events(&app).await, stored, "nothing changed");
    assert_eq!(verify(&app).await["ok"], true);
    server.close().await;
}

#[tokio::test]
async fn checkpoints_are_signed_heads_written_once_per_position_and_never_overwritten() {
    use ota::checkpoints::{checkpoint_name, write_checkpoint, CheckpointTarget, Checkpointed};
    let dir = tempfile::tempdir().expect("checkpoint dir");
    let url = dir.path().display().to_string();
    let app = TestApp::spawn_with(ota_testkit::TestOptions {
        audit_checkpoint_url: Some(url.clone()),
        ..ota_testkit::TestOptions::default()
    })
    .await;
    let seed: [u8; 32] = hex::decode(AUDIT_KEY_HEX).expect("hex").try_into().expect("32 bytes");
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let read = |position: i64| std::fs::read_to_string(dir.path().join(checkpoint_name(position))).ok();

    app.firmware("2.0").await;
    let first = chained(&app).await["head"]["position"].as_i64().expect("head");
    let kept = eventually("the first checkpoint", Duration::from_secs(30), || async { read(first) }).await;
    let anchor =
        ota_orchestrator::chain::check_signed_head(&kept, &key.verifying_key()).expect("signed with the audit key");
    assert_eq!(anchor.position, first);
    let report = ota::audit::verify(&app.db, Some((&kept, &key.verifying_key()))).await.expect("verify");
    assert_eq!(report.verdict, ota::audit::Verdict::Holds, "{report:?}");

    // The head moves: a new file; the first stays as it was.
    app.firmware("2.1").await;
    let second = chained(&app).await["head"]["position"].as_i64().expect("head");
    assert!(second > first);
    eventually("the second checkpoint", Duration::from_secs(30), || async { read(second) }).await;
    assert_eq!(read(first).as_deref(), Some(kept.as_str()));

    // Another instance at the same head: the name is taken, nothing is overwritten.
    let target = CheckpointTarget::open(&url).expect("target");
    let again = write_checkpoint(&app.db, &key, &target, None).await.expect("write");
    assert_eq!(again, Checkpointed::Existed(second));
    let unmoved = write_checkpoint(&app.db, &key, &target, Some(second)).await.expect("write");
    assert_eq!(unmoved, Checkpointed::Unchanged);
    let elsewhere = tempfile::tempdir().expect("another dir");
    std::fs::write(elsewhere.path().join(checkpoint_name(second)), "kept").expect("a taken name");
    let taken = CheckpointTarget::open(&elsewhere.path().display().to_string()).expect("target");
    let refused = write_checkpoint(&app.db, &key, &taken, None).await.expect("write");
    assert_eq!(refused, Checkpointed::Existed(second));
    let there = std::fs::read_to_string(elsewhere.path().join(checkpoint_name(second))).expect("read");
    assert_eq!(there, "kept", "never overwritten");
    // Created in place: no temporary file is left, nothing is renamed.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|f| f.map(|f| f.file_name().to_string_lossy().into_owned()).unwrap_or_default())
        .collect();
    assert!(names.len() >= 2, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("checkpoint-") && n.ends_with(".json")), "{names:?}");
}

#[tokio::test]
async fn the_servers_role_may_not_migrate_and_is_told_to_let_the_owner() {
    let name = format!("ota_test_{}", uuid::Uuid::new_v4().simple());
    let owner =
        ota_migrations::connect(&format!("postgres://postgres@127.0.0.1:5432/{name}"), 2).await.expect("create");
    let server_url = format!("postgres://{}@127.0.0.1:5432/{name}", ota_testkit::SERVER_ROLE);
    let server = ota_migrations::connect(&server_url, 2).await.expect("connect as the server's role");
    let refused = ota_migrations::migrate(&server).await;
    assert!(matches!(refused, Err(ota_migrations::SchemaError::NotOwner(_))), "{refused:?}");
    let told = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(told.contains("ota migrate") && told.contains("owner"), "{told}");
    // Once the owner migrated and granted, the same call only reads the schema version.
    ota_migrations::migrate(&owner).await.expect("the owner migrates");
    ota_migrations::grant_server_role(&owner, ota_testkit::SERVER_ROLE).await.expect("grant");
    ota_migrations::migrate(&server).await.expect("up to date: nothing to apply");
    server.close().await;
    owner.close().await;
    let admin = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres").await.expect("admin");
    sql_on(&admin, &format!("DROP DATABASE {name} WITH (FORCE)")).await;
}

async fn sql_on(db: &sqlx::PgPool, statement: &str) {
    sqlx::query(statement).execute(db).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
}
