//! Faults of the event spine: a relay killed mid-stream, two relays, a
//! projection that dies between apply and ack, and NATS or Postgres going away.
//! Each ends by proving nothing was lost or doubled (`assert_spine_consistent`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull;
use chrono::{DateTime, Utc};
use ota_orchestrator::relay::RelayRole;
use ota_projections::activity::ActivityProjection;
use ota_projections::campaigns::CampaignsProjection;
use ota_projections::devices::DevicesProjection;
use ota_projections::firmware::FirmwareProjection;
use ota_projections::updates::UpdatesProjection;
use ota_projections::worker::consumer_name;
use ota_projections::ProjectionName;
use ota_testkit::{eventually, json_of, read_models, TestApp};
use serde_json::{json, Value};

use crate::spine::{
    assert_spine_consistent, events_of, relayed_all, spine_app, spine_only, stored_events, stream_messages, Ledger,
    Load, DEVICES, RELAY_SESSION,
};

/// Sessions of the leading relay.
async fn relay_sessions(app: &TestApp) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM pg_stat_activity a WHERE {RELAY_SESSION}"))
        .bind(app.names.prefix())
        .fetch_one(&app.db)
        .await
        .expect("relay sessions")
}

/// The durable consumers of firmware, campaigns, activity, devices and updates.
fn consumer_names(app: &TestApp) -> [String; 5] {
    [
        consumer_name::<FirmwareProjection>(&app.names),
        consumer_name::<CampaignsProjection>(&app.names),
        consumer_name::<ActivityProjection>(&app.names),
        consumer_name::<DevicesProjection>(&app.names),
        consumer_name::<UpdatesProjection>(&app.names),
    ]
}

/// Waits until every projection consumer has delivered everything and had it
/// acknowledged; returns each one's acknowledged deliveries.
async fn consumers_idle(app: &TestApp) -> [u64; 5] {
    let stream = app.js.get_stream(app.names.events_stream()).await.expect("events stream");
    let mut acked = [0; 5];
    for (i, name) in consumer_names(app).iter().enumerate() {
        acked[i] = eventually(
            &format!("{name} to have everything delivered and acknowledged"),
            Duration::from_secs(20),
            || async {
                let mut consumer = stream.get_consumer::<pull::Config>(name).await.ok()?;
                let info = consumer.info().await.ok()?;
                (info.num_pending == 0 && info.num_ack_pending == 0).then_some(info.ack_floor.consumer_sequence)
            },
        )
        .await;
    }
    acked
}

async fn grows_to(app: &TestApp, what: &str, events: i64) {
    eventually(what, Duration::from_secs(20), || async { (stored_events(app).await >= events).then_some(()) }).await
}

async fn detailed_health(app: &TestApp) -> Value {
    let response = app.http.get(app.url("/health/detailed")).send().await.expect("health request");
    json_of(response).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_stream_is_replaced_without_loss_or_duplicates() {
    let (app, firmware) = spine_app(spine_only()).await;
    let app = Arc::new(app);
    let ledger = Ledger::default();
    let load = Load::start(app.clone(), &ledger, &firmware, 4);
    eventually("the relay to publish under load", Duration::from_secs(20), || async {
        (stream_messages(&app).await >= 40).then_some(())
    })
    .await;

    // Killed while publishing: its connections, and with them its lease, go away.
    app.server.relay.as_ref().expect("relay").stop();
    eventually("the old relay's session to end", Duration::from_secs(10), || async {
        (relay_sessions(&app).await == 0).then_some(())
    })
    .await;
    let stopped = stored_events(&app).await;
    grows_to(&app, "commands to go on without a relay", stopped + 40).await;
    assert!(
        (stream_messages(&app).await as i64) < stored_events(&app).await,
        "nothing should be published without a relay"
    );
    // Make the crash the worst kind: after publishing, before checkpointing.
    // The new relay publishes everything again; Nats-Msg-Id must drop it all.
    sqlx::query("UPDATE relay_checkpoint SET global_seq = 0").execute(&app.db).await.expect("rewind the checkpoint");

    let mut relay = app.server.new_relay().spawn();
    tokio::time::timeout(Duration::from_secs(10), relay.until_leader()).await.expect("the new relay leads");
    let restarted = stored_events(&app).await;
    grows_to(&app, "commands to go on with the new relay", restarted + 40).await;
    load.stop().await;

    ledger.assert_in_store(&app, true).await;
    assert_spine_consistent(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_relay_takes_over_when_the_leader_dies() {
    let (mut app, firmware) = spine_app(spine_only()).await;
    let first = app.server.relay.as_mut().expect("relay");
    tokio::time::timeout(Duration::from_secs(10), first.until_leader()).await.expect("the first relay leads");
    let mut second = app.server.new_relay().spawn();
    eventually("the second relay to wait", Duration::from_secs(10), || async {
        (second.role() == RelayRole::Standby).then_some(())
    })
    .await;

    let (status, body) = app.create_campaign("led", &firmware, &DEVICES).await;
    assert_eq!(status, 201, "{body}");
    relayed_all(&app).await;
    // The standby tried for the lease again after that, and still waits.
    let published: DateTime<Utc> =
        sqlx::query_scalar("SELECT clock_timestamp()").fetch_one(&app.db).await.expect("clock");
    let competing = eventually("the standby to try for the lease again", Duration::from_secs(10), || async {
        let tries: Vec<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT query_start FROM pg_stat_activity WHERE datname = current_database()
                 AND application_name = 'ota lease relay:' || $1 AND query LIKE '%INSERT INTO leases%'",
        )
        .bind(app.names.prefix())
        .fetch_all(&app.db)
        .await
        .ok()?;
        // The leader's lease session last ran its own (older) INSERT, or a renewal.
        let after: Vec<_> = tries.iter().filter(|t| **t > published).collect();
        (!after.is_empty()).then_some(after.len())
    })
    .await;
    assert_eq!(competing, 1, "exactly one relay session is waiting for the lease");
    assert_eq!(second.role(), RelayRole::Standby);
    let first = app.server.relay.as_ref().expect("relay");
    assert_eq!(first.role(), RelayRole::Leader);

    first.stop();
    tokio::time::timeout(Duration::from_secs(10), second.until_leader()).await.expect("the standby takes over");
    let before = stream_messages(&app).await;
    let campaign = body["id"].as_str().expect("campaign id").to_owned();
    for action in ["start", "pause"] {
        let (status, body) = app.campaign_action(&campaign, action).await;
        assert_eq!(status, 200, "{action}: {body}");
    }
    let (status, body) = app.create_campaign("after", &firmware, &DEVICES).await;
    assert_eq!(status, 201, "{body}");
    let stored = assert_spine_consistent(&app).await;
    assert!(stored as u64 >= before + 4, "the new leader published the new events");
    assert_eq!(second.role(), RelayRole::Leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivering_every_event_to_the_projections_counts_nothing_twice() {
    let (app, firmware) = spine_app(spine_only()).await;
    let app = Arc::new(app);
    app.firmware("2.0.0").await;
    let ledger = Ledger::default();
    let load = Load::start(app.clone(), &ledger, &firmware, 3);
    grows_to(&app, "some load", 60).await;
    load.stop().await;
    let stored = assert_spine_consistent(&app).await;
    let before = read_models(&app.db).await;

    // Workers die after applying but before acknowledging: model it by removing
    // their consumers, so the whole stream is delivered to them again.
    for worker in &app.server.workers {
        worker.stop();
    }
    let stream = app.js.get_stream(app.names.events_stream()).await.expect("events stream");
    for name in &consumer_names(&app) {
        let deleted = stream.delete_consumer(name).await.expect("delete consumer");
        assert!(deleted.success, "consumer {name} deleted");
    }
    let _workers = ota_projections::spawn_all_workers(&app.server.state.pool, &app.server.state.js, &app.names);
    let [firmware_acked, campaigns_acked, activity_acked, devices_acked, _] = consumers_idle(&app).await;
    assert_eq!(activity_acked as i64, stored, "activity got every event again");
    assert_eq!(campaigns_acked, events_of(&app, "Campaign").await, "campaigns got every event again");
    assert_eq!(firmware_acked, events_of(&app, "Firmware").await, "firmware got every event again");
    assert_eq!(devices_acked, events_of(&app, "Device").await, "devices got every event again");

    let after = read_models(&app.db).await;
    assert_eq!(before, after, "a redelivery changed a read model");
    assert_spine_consistent(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_a_nats_outage_and_everything_catches_up() {
    let mut options = spine_only();
    options.nats_proxy = true;
    let (app, firmware) = spine_app(options).await;
    let proxy = app.nats_proxy.as_ref().expect("nats proxy");
    let ledger = Ledger::default();
    let (status, body) = ledger.create(&app, "before", &firmware, &DEVICES).await;
    assert_eq!(status, 201, "{body}");
    let mut ids = vec![body["id"].as_str().expect("id").to_owned()];
    assert_spine_consistent(&app).await;
    let published = stream_messages(&app).await;

    proxy.cut();
    eventually("health to see NATS down", Duration::from_secs(30), || async {
        (detailed_health(&app).await["nats"]["ok"] == false).then_some(())
    })
    .await;
    // Writes go to Postgres only, so they still succeed.
    for i in 0..5 {
        let (status, body) = ledger.create(&app, &format!("during {i}"), &firmware, &DEVICES).await;
        assert_eq!(status, 201, "create during the outage: {body}");
        ids.push(body["id"].as_str().expect("id").to_owned());
    }
    for id in &ids {
        let (status, body) = ledger.act(&app, id, "start").await;
        assert_eq!(status, 200, "start during the outage: {body}");
    }
    let written = stored_events(&app).await - published as i64;
    let health = detailed_health(&app).await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["nats"]["ok"], false, "{health}");
    assert_eq!(health["relay"]["unpublished_events"], written, "events written during the outage wait: {health}");
    // Its publishing times out (JetStream's 10 s) and the relay steps down to
    // retry; its checkpoint never passed an event NATS did not acknowledge.
    let relay = app.server.relay.as_ref().expect("relay");
    eventually("the relay to give up its term", Duration::from_secs(20), || async {
        (relay.role() != RelayRole::Leader).then_some(())
    })
    .await;
    let unpublished: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events e JOIN relay_checkpoint c ON c.name = $1
         WHERE e.global_seq > c.global_seq",
    )
    .bind(app.names.prefix())
    .fetch_one(&app.db)
    .await
    .expect("behind the checkpoint");
    assert_eq!(unpublished, written, "the relay advanced past events NATS never acknowledged");
    assert_eq!(stream_messages(&app).await, published, "nothing is published without NATS");

    proxy.restore();
    eventually("the relay to lead again", Duration::from_secs(20), || async {
        (relay.role() == RelayRole::Leader).then_some(())
    })
    .await;
    ledger.assert_in_store(&app, true).await;
    assert_spine_consistent(&app).await;
    eventually("health to recover", Duration::from_secs(20), || async {
        let health = detailed_health(&app).await;
        (health["status"] == "ok" && health["relay"]["unpublished_events"] == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_answers_503_and_recovers() {
    let mut options = spine_only();
    options.postgres_proxy = true;
    let (app, firmware) = spine_app(options).await;
    let app = Arc::new(app);
    let proxy = app.postgres_proxy.as_ref().expect("postgres proxy");
    let ledger = Ledger::default();
    let (status, body) = ledger.create(&app, "before", &firmware, &DEVICES).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("id").to_owned();
    let (status, body) = ledger.act(&app, &id, "start").await;
    assert_eq!(status, 200, "{body}");

    // Work in flight when Postgres goes: a backlog in NATS the projections have
    // not applied, and events in the store the relay has not published.
    consumers_idle(&app).await;
    for worker in &app.server.workers {
        worker.stop();
    }
    let load = Load::start(app.clone(), &ledger, &firmware, 4);
    grows_to(&app, "a backlog for the projections", 1200).await;
    app.server.relay.as_ref().expect("relay").stop();
    let relayed = stream_messages(&app).await as i64;
    grows_to(&app, "a backlog for the relay", relayed + 50).await;
    load.stop().await;

    proxy.cut();
    let create = json!({"name": "during", "firmware_id": firmware, "target": {"device_ids": DEVICES}});
    for (what, request) in [
        ("pause", app.post(&format!("/api/v1/campaigns/{id}/pause"))),
        ("create", app.post("/api/v1/campaigns").json(&create)),
    ] {
        let started = Instant::now();
        let response = tokio::time::timeout(Duration::from_secs(30), request.send())
            .await
            .unwrap_or_else(|_| panic!("{what} hung for 30 s while Postgres was away"))
            .expect("request");
        let elapsed = started.elapsed();
        let (status, body) = json_of(response).await;
        eprintln!("{what} answered {status} after {elapsed:?} while Postgres was away");
        assert_eq!(status, 503, "{what} during the outage: {body}");
        assert_eq!(body["error"], "unavailable", "{body}");
        assert!(elapsed < Duration::from_secs(11), "{what} took {elapsed:?}, beyond the pool's 10 s acquire timeout");
    }
    // A relay and workers start while Postgres is away; the workers take
    // messages they cannot apply.
    let _relay = app.server.new_relay().spawn();
    let _workers = ota_projections::spawn_all_workers(&app.server.state.pool, &app.server.state.js, &app.names);
    let stream = app.js.get_stream(app.names.events_stream()).await.expect("events stream");
    let activity = consumer_name::<ActivityProjection>(&app.names);
    eventually("workers to take messages they cannot apply", Duration::from_secs(20), || async {
        let mut consumer = stream.get_consumer::<pull::Config>(&activity).await.ok()?;
        let info = consumer.info().await.ok()?;
        (info.num_ack_pending > 0).then_some(())
    })
    .await;

    proxy.restore();
    let restored = Instant::now();
    let (status, body) = ledger.act(&app, &id, "pause").await;
    assert_eq!(status, 200, "pause after the outage: {body}");
    let (status, body) = ledger.create(&app, "after", &firmware, &DEVICES).await;
    assert_eq!(status, 201, "create after the outage: {body}");
    assert_spine_consistent(&app).await;
    // Well within the consumers' 30 s ack_wait: nothing waited for a redelivery.
    let took = restored.elapsed();
    assert!(took < Duration::from_secs(20), "caught up only {took:?} after Postgres came back");
    ledger.assert_in_store(&app, true).await;
}

/// Issue 11 (poison loops): an event whose data fails a read model's statement every
/// time (here a CHECK constraint the test adds) was retried forever and held every
/// event behind it. Now it is set aside in `projection_failures`, shown in
/// `/health/detailed`, and the projection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_fails_on_its_data_is_set_aside_and_the_projection_goes_on() {
    let app = TestApp::spawn().await;
    sqlx::query("ALTER TABLE firmware ADD CONSTRAINT test_no_poison CHECK (name <> 'poison')")
        .execute(&app.db)
        .await
        .expect("add the constraint");
    for name in ["poison", "good"] {
        let metadata = json!({"name": name, "version": "1.0", "device_model": "gw"});
        let (status, body) = app.upload_firmware_with(metadata, "image.bin", b"bytes".to_vec()).await;
        assert_eq!(status, 201, "{body}");
    }
    eventually("the good firmware is projected", Duration::from_secs(30), || async {
        let (_, page) = json_of(app.get("/api/v1/firmware").send().await.ok()?).await;
        page["items"].as_array()?.iter().any(|f| f["name"] == "good").then_some(())
    })
    .await;
    let failures: Vec<(String, String)> =
        sqlx::query_as("SELECT projection, error FROM projection_failures").fetch_all(&app.db).await.expect("failures");
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, "firmware");
    assert!(failures[0].1.contains("test_no_poison"), "{failures:?}");
    let health = detailed_health(&app).await;
    let firmware = health["projections"].as_array().and_then(|p| p.iter().find(|p| p["name"] == "firmware").cloned());
    assert_eq!(firmware.map(|f| f["failures"].clone()), Some(json!(1)), "{health}");
}

/// A leader that holds its lease but whose work stopped (here: the relay waits
/// for a transaction that wrote an event and stays open) is reported, not
/// hidden behind a renewed lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_makes_no_progress_is_reported_stalled() {
    let (app, _firmware) = spine_app(spine_only()).await;
    relayed_all(&app).await;
    let relay_leader = |report: &Value| {
        report["leaders"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["name"].as_str().is_some_and(|n| n.starts_with("relay:"))).cloned())
    };
    let report = detailed_health(&app).await;
    assert_eq!(relay_leader(&report).map(|l| l["state"].clone()), Some(json!("leading")), "{report}");

    let mut open = app.db.begin().await.expect("begin");
    // Longer than the server's 5 s limit for idle transactions, which would end it.
    sqlx::query("SET LOCAL idle_in_transaction_session_timeout = 0").execute(&mut *open).await.expect("no limit");
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('Probe', 'stall', 1, 'ProbeRecorded', '1.0', '{}', '{}')",
    )
    .execute(&mut *open)
    .await
    .expect("an event in an open transaction");
    let report = eventually("health to report the relay stalled", Duration::from_secs(40), || async {
        let report = detailed_health(&app).await;
        (relay_leader(&report)?["state"] == "stalled").then_some(report)
    })
    .await;
    assert_eq!(report["status"], "degraded", "{report}");
    open.rollback().await.expect("rollback");
    eventually("the relay to make progress again", Duration::from_secs(10), || async {
        let report = detailed_health(&app).await;
        (relay_leader(&report)?["state"] == "leading" && report["status"] == "ok").then_some(())
    })
    .await;
}

/// A message on the events subjects that the store does not back (forged, or
/// its event deleted behind the server's back) or that is no event at all is
/// recorded once and passed over: the projection neither applies it nor loops
/// on it (it used to NAK it and restart its consumer for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_the_store_does_not_back_are_recorded_and_passed_over() {
    let (app, _firmware) = spine_app(spine_only()).await;
    relayed_all(&app).await;
    let ghost = ota_domain::EventRecord {
        aggregate_type: "Device".into(),
        aggregate_id: "ghost-1".into(),
        sequence: 5,
        global_seq: 1_000_000,
        event_type: "DeviceRegistered".into(),
        event_version: "1.0".into(),
        payload: json!({}),
        payload_omitted: false,
        metadata: Default::default(),
        recorded_at: Utc::now(),
    };
    let subject = app.names.event_subject("Device", "ghost-1");
    for payload in [serde_json::to_vec(&ghost).expect("encode"), b"not an event".to_vec()] {
        app.js.publish(subject.clone(), payload.into()).await.expect("publish").await.expect("stored");
    }
    app.register_devices(&["after-ghost".to_owned()], "hw").await;
    app.caught_up(ProjectionName::Devices).await;

    let failures: Vec<(String, String)> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id FROM projection_failures WHERE projection = 'devices' ORDER BY 1",
    )
    .fetch_all(&app.db)
    .await
    .expect("failures");
    assert_eq!(
        failures,
        vec![("(not an event)".to_owned(), subject.clone()), ("Device".to_owned(), "ghost-1".to_owned())],
        "each recorded once"
    );
    let ghosts: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE id = 'ghost-1'")
        .fetch_one(&app.db)
        .await
        .expect("devices");
    assert_eq!(ghosts, 0, "nothing the store does not hold is applied");
    let health = detailed_health(&app).await;
    let devices = health["projections"].as_array().and_then(|p| p.iter().find(|p| p["name"] == "devices").cloned());
    assert_eq!(devices.map(|d| d["failures"].clone()), Some(json!(2)), "{health}");
}

/// The events stream is bounded by age and size (it grew without bound), and one
/// an earlier version created without limits is brought to them by whoever
/// starts next; the event store keeps everything, and projections go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_stream_is_bounded_by_age_and_size() {
    use ota_domain::bus::Retention;
    let (app, _firmware) = spine_app(spine_only()).await;
    relayed_all(&app).await;
    let mut stream = app.js.get_stream(app.names.events_stream()).await.expect("events stream");
    let config = stream.info().await.expect("info").config.clone();
    let defaults = Retention::default();
    assert_eq!((config.max_age, config.max_bytes), (defaults.max_age, defaults.max_bytes));

    // As an earlier version left it: no limits.
    let unbounded = async_nats::jetstream::stream::Config { max_age: Duration::ZERO, max_bytes: -1, ..config };
    app.js.update_stream(unbounded).await.expect("unbound the stream");
    let small = Retention { max_age: Duration::from_secs(3600), max_bytes: 4096 };
    let names = app.names.clone().with_events_retention(small);
    let mut stream = ota_projections::worker::ensure_events_stream(&app.js, &names).await.expect("ensure");
    let info = stream.info().await.expect("info").clone();
    assert_eq!((info.config.max_age, info.config.max_bytes), (small.max_age, small.max_bytes));
    assert!(info.state.bytes <= 4096, "the oldest messages went: {} bytes kept", info.state.bytes);
    assert!((info.state.messages as i64) < stored_events(&app).await, "the store keeps what the stream dropped");

    app.register_devices(&["after-trim".to_owned()], "hw").await;
    app.caught_up(ProjectionName::Devices).await;
}
