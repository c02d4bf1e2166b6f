//! Rollouts end to end: a simulated fleet on NATS, the process manager, waves,
//! gates, approval, cancel, and a process manager killed mid-campaign.

use std::time::Duration;

use ota_api::auth::Role;
use ota_domain::campaign::Campaign;
use ota_projections::ProjectionName;
use ota_testkit::{eventually, json_of, Behavior, TestApp, TestOptions};
use serde_json::{json, Value};

pub(crate) fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:03}")).collect()
}

pub(crate) async fn campaign(app: &TestApp, devices: &[String], rollout: Value) -> String {
    let firmware = app.firmware("2.0").await;
    let body =
        json!({"name": "rollout", "firmware_id": firmware, "target": {"device_ids": devices}, "rollout": rollout});
    let (status, created) = json_of(app.post("/api/v1/campaigns").json(&body).send().await.expect("create")).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().expect("id").to_owned()
}

pub(crate) async fn detail(app: &TestApp, id: &str) -> Value {
    json_of(app.get(&format!("/api/v1/campaigns/{id}")).send().await.expect("get")).await.1
}

pub(crate) async fn wait_status(app: &TestApp, id: &str, status: &str) -> Value {
    eventually(&format!("campaign {status}"), Duration::from_secs(60), || async {
        let d = detail(app, id).await;
        (d["status"] == status).then_some(d)
    })
    .await
}

async fn await_decision(app: &TestApp, id: &str, decision: &str) {
    eventually(decision, Duration::from_secs(30), || async {
        let d = detail(app, id).await;
        d["decisions"].as_array()?.iter().any(|x| x["decision"] == decision).then_some(())
    })
    .await;
}

/// A single number from the test database.
async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.db).await.expect("count")
}

/// The linked rollback campaign of an aborted campaign, once it exists.
async fn rollback_of(app: &TestApp, id: &str) -> uuid::Uuid {
    let id = uuid::Uuid::parse_str(id).expect("campaign id");
    eventually("rollback campaign", Duration::from_secs(30), || async {
        sqlx::query_scalar("SELECT id FROM campaigns WHERE rollback_of = $1")
            .bind(id)
            .fetch_optional(&app.db)
            .await
            .ok()?
    })
    .await
}

/// Waits until a reacting consumer (`rollout`, `dispatch`, ...) has taken and
/// acknowledged every message on the events stream.
async fn handled_all(app: &TestApp, consumer: &str) {
    let durable = app.names.consumer(consumer);
    eventually(&format!("{consumer} to handle every message"), Duration::from_secs(30), || async {
        let stream = app.js.get_stream(app.names.events_stream()).await.ok()?;
        let mut consumer = stream.get_consumer::<async_nats::jetstream::consumer::pull::Config>(&durable).await.ok()?;
        let info = consumer.info().await.ok()?;
        (info.num_pending == 0 && info.num_ack_pending == 0 && info.delivered.stream_sequence > 0).then_some(())
    })
    .await;
}

pub(crate) async fn members(app: &TestApp, id: &str) -> Vec<Vec<String>> {
    let (campaign, _) =
        app.server.state.store.load::<Campaign>(&id.parse().expect("campaign id")).await.expect("load campaign");
    let m = campaign.membership.expect("membership");
    m.waves.iter().map(|w| w.iter().map(|d| d.to_string()).collect()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_succeeds_through_every_wave_and_records_its_decisions() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let fleet = app.fleet().await;
    let devices = ids("ok", 240);
    let (a, b) = devices.split_at(120);
    app.register_devices(a, "rev-a").await;
    app.register_devices(b, "rev-b").await;
    let id = campaign(&app, &devices, json!({"waves": [{"percent": 5}, {"percent": 50}, {"percent": 100}]})).await;
    let (status, started) = app.campaign_action(&id, "start").await;
    let sizes: Vec<Value> =
        started["waves"].as_array().map_or_else(Vec::new, |w| w.iter().map(|w| w["size"].clone()).collect());
    assert_eq!((status, json!(sizes)), (200, json!([12, 108, 120])), "{started}");
    let done = wait_status(&app, &id, "completed").await;
    app.all_caught_up().await;
    let done = if done["waves"][2]["succeeded"] == 120 { done } else { detail(&app, &id).await };
    for (wave, size) in [(0, 12), (1, 108), (2, 120)] {
        assert_eq!(done["waves"][wave]["size"], size);
        assert_eq!(done["waves"][wave]["succeeded"], size, "{done}");
    }
    let decisions: Vec<&str> =
        done["decisions"].as_array().expect("decisions").iter().filter_map(|d| d["decision"].as_str()).collect();
    assert_eq!(decisions, ["started", "wave_started", "wave_started", "wave_started", "completed"]);
    assert_eq!(done["decisions"][2]["gate"]["succeeded"], 12, "the gate's numbers are recorded");
    // Canaries are representative: both hardware versions are in wave 0.
    let wave0 = &members(&app, &id).await[0];
    assert!(wave0.iter().any(|d| a.contains(d)) && wave0.iter().any(|d| b.contains(d)), "{wave0:?}");
    for device in &devices {
        assert_eq!(fleet.updates_received(device), 1, "{device} got exactly one update command");
    }
    let (_, stats) = json_of(app.get("/api/v1/stats").send().await.expect("stats")).await;
    assert_eq!(
        (stats["updates_by_state"]["succeeded"].as_i64(), stats["success_rate"].as_f64()),
        (Some(240), Some(1.0))
    );
    let (_, page) = json_of(
        app.get(&format!("/api/v1/campaigns/{id}/devices?state=succeeded&page_size=500"))
            .send()
            .await
            .expect("devices"),
    )
    .await;
    assert_eq!(page["total"], 240);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_second_wave_pauses_after_approval_and_the_operator_aborts() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let fleet = app.fleet().await;
    let devices = ids("gate", 100);
    app.register_devices(&devices, "rev-a").await;
    let rollout = json!({"waves": [{"count": 10}, {"percent": 100}], "after_success": "pause",
        "failure_threshold_percent": 10, "min_finished": 10, "on_failure": "pause", "rollback_on_abort": true});
    let id = campaign(&app, &devices, rollout).await;
    app.campaign_action(&id, "start").await;
    await_decision(&app, &id, "approval_requested").await;
    let wave1 = members(&app, &id).await[1].clone();
    for device in wave1.iter().take(30) {
        fleet.set(device, Behavior::Fail);
    }
    let (status, _) = app.approve(&id).await;
    assert_eq!(status, 200);
    let paused = wait_status(&app, &id, "paused").await;
    let last = paused["decisions"].as_array().expect("decisions").last().cloned().unwrap_or_default();
    assert_eq!((last["decision"].as_str(), last["wave"].as_i64()), (Some("paused"), Some(1)), "{paused}");
    assert_eq!(last["gate"]["gate"], "failure_threshold");
    assert!(last["gate"]["failed"].as_u64() > Some(1), "{last}");
    let (status, aborted) = json_of(
        app.post(&format!("/api/v1/campaigns/{id}/abort"))
            .json(&json!({"reason": "bad build"}))
            .send()
            .await
            .expect("abort"),
    )
    .await;
    assert_eq!((status, aborted["status"].as_str()), (200, Some("aborted")), "{aborted}");
    // Devices still in flight when the operator aborts are told to stop.
    eventually("no device left in flight", Duration::from_secs(30), || async {
        app.caught_up(ProjectionName::Updates).await;
        let active: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM device_updates WHERE state IN ('assigned','notified','downloading','downloaded','installing')",
        )
        .fetch_one(&app.db)
        .await
        .ok()?;
        (active == 0).then_some(())
    })
    .await;
    // Only the devices set to fail ever failed; the others succeeded or were cancelled in flight.
    let by_state: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM device_updates WHERE wave = 1 GROUP BY state ORDER BY state")
            .fetch_all(&app.db)
            .await
            .expect("count");
    let count = |s: &str| by_state.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
    assert!((1..=30).contains(&count("failed")), "{by_state:?}");
    assert_eq!(count("failed") + count("succeeded") + count("cancelled"), 90, "{by_state:?}");
    // The operator's abort rolls the devices that had updated back, in a linked campaign: every
    // device that succeeded before the abort. (Devices asked to cancel may still finish after it;
    // the rollback may or may not have seen those.)
    let rollback = rollback_of(&app, &id).await;
    let done = wait_status(&app, &rollback.to_string(), "completed").await;
    let before_abort: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT aggregate_id) FROM events WHERE aggregate_type = 'DeviceUpdate'
           AND event_type = 'ProgressReported' AND payload->'ProgressReported'->>'state' = 'succeeded'
           AND global_seq < (SELECT global_seq FROM events WHERE aggregate_id = $1 AND event_type = 'CampaignAborted')",
    )
    .bind(&id)
    .fetch_one(&app.db)
    .await
    .expect("count");
    let members = done["device_count"].as_i64().unwrap_or_default();
    assert!(before_abort >= 10 && (before_abort..=10 + count("succeeded")).contains(&members), "{before_abort} {done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_wave_cancels_devices_in_flight_and_assigns_no_more() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let fleet = app.fleet().await;
    let devices = ids("cx", 60);
    app.register_devices(&devices, "rev-a").await;
    for d in &devices {
        fleet.set(d, Behavior::Silent);
    }
    let id = campaign(&app, &devices, json!({"waves": [{"count": 20}, {"percent": 100}]})).await;
    app.campaign_action(&id, "start").await;
    eventually("wave 0 assigned", Duration::from_secs(30), || async {
        let d = detail(&app, &id).await;
        (d["waves"][0]["assigned"] == 20).then_some(())
    })
    .await;
    let (status, cancelled) = app.campaign_action(&id, "cancel").await;
    assert_eq!((status, cancelled["status"].as_str()), (200, Some("cancelled")), "{cancelled}");
    assert_eq!(cancelled["unassigned"], 40);
    let wave0 = members(&app, &id).await[0].clone();
    eventually("devices in flight cancelled", Duration::from_secs(30), || async {
        app.caught_up(ProjectionName::Updates).await;
        let cancelled: i64 = sqlx::query_scalar("SELECT count(*) FROM device_updates WHERE state = 'cancelled'")
            .fetch_one(&app.db)
            .await
            .ok()?;
        (cancelled == 20).then_some(())
    })
    .await;
    for d in &wave0 {
        assert_eq!(fleet.cancels_received(d), 1, "{d} was told to cancel");
    }
    let others = count(&app, "SELECT count(*) FROM device_updates WHERE wave = 1").await;
    assert_eq!(others, 0, "no device of the next wave was ever assigned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_manager_killed_mid_campaign_resumes_and_never_assigns_a_device_twice() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let _fleet = app.fleet().await;
    let devices = ids("pm", 200);
    app.register_devices(&devices, "rev-a").await;
    let id =
        campaign(&app, &devices, json!({"waves": [{"percent": 10}, {"percent": 100}], "max_per_minute": 100000})).await;
    app.campaign_action(&id, "start").await;
    eventually("some devices assigned", Duration::from_secs(30), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'UpdateAssigned'")
            .fetch_one(&app.db)
            .await
            .ok()?;
        (n >= 10).then_some(())
    })
    .await;
    app.server.rollouts.as_ref().expect("process manager").stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _second = app.server.new_process_manager().spawn();
    wait_status(&app, &id, "completed").await;
    let twice = count(
        &app,
        "SELECT count(*) FROM (SELECT aggregate_id FROM events WHERE event_type = 'UpdateAssigned'
         GROUP BY aggregate_id HAVING count(*) > 1) doubled",
    )
    .await;
    assert_eq!(twice, 0, "no device was assigned twice");
    let assigned =
        count(&app, "SELECT count(DISTINCT aggregate_id) FROM events WHERE event_type = 'UpdateAssigned'").await;
    assert_eq!(assigned, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuous_campaign_takes_devices_that_come_to_match_its_filter() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let fleet = app.fleet().await;
    let register = |id: &str, tags: Vec<&str>| {
        let body =
            json!({"id": id, "device_model": "gw", "hardware_version": "a", "firmware_version": "1.0", "tags": tags});
        let request = app.post("/api/v1/devices").json(&body);
        async move {
            let (status, body) = json_of(request.send().await.expect("register")).await;
            assert!(status == 201 || status == 200, "{body}");
        }
    };
    for i in 0..5 {
        register(&format!("eu-{i}"), vec!["eu"]).await;
    }
    register("us-0", vec!["us"]).await;
    app.caught_up(ProjectionName::Devices).await;
    let firmware = app.firmware("2.0").await;
    let body = json!({"name": "eu fleet", "firmware_id": firmware,
        "target": {"filter": {"tags": ["eu"]}, "continuous": true}});
    let (status, created) = json_of(app.post("/api/v1/campaigns").json(&body).send().await.expect("create")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let (_, started) = app.campaign_action(&id, "start").await;
    assert_eq!(started["device_count"], 5, "{started}");

    // New and changed devices join as their inventory event arrives.
    register("eu-new", vec!["eu"]).await;
    register("us-0", vec!["us", "eu"]).await;
    register("us-1", vec!["us"]).await;
    eventually("joiners updated", Duration::from_secs(30), || async {
        (fleet.updates_received("eu-new") == 1 && fleet.updates_received("us-0") == 1).then_some(())
    })
    .await;
    let d = eventually("7 devices succeeded", Duration::from_secs(30), || async {
        let d = detail(&app, &id).await;
        (d["waves"][0]["succeeded"] == 7).then_some(d)
    })
    .await;
    assert_eq!(d["status"], "running", "a continuous campaign stays open: {d}");
    assert_eq!(fleet.updates_received("us-1"), 0);

    // Messages on the bus are only a reason to look at the stored device: a forged
    // registration, or a forged change of a device that does not match, joins nothing.
    let profile = json!({"device_model": "gw", "hardware_version": "a", "firmware_version": "1.0", "tags": ["eu"]});
    let now = chrono::Utc::now();
    let forged = [
        (
            "eu-ghost",
            "DeviceRegistered",
            json!({"DeviceRegistered": {"id": "eu-ghost", "profile": profile, "at": now}}),
        ),
        ("us-1", "DeviceProfileChanged", json!({"DeviceProfileChanged": {"profile": profile, "at": now}})),
    ];
    for (device, event_type, payload) in forged {
        let record = ota_domain::EventRecord {
            aggregate_type: "Device".into(),
            aggregate_id: device.into(),
            sequence: 7,
            global_seq: 999_999,
            event_type: event_type.into(),
            event_version: "1.0".into(),
            payload,
            payload_omitted: false,
            metadata: Default::default(),
            recorded_at: now,
        };
        let subject = app.names.event_subject("Device", device);
        let message = serde_json::to_vec(&record).expect("encode");
        app.js.publish(subject, message.into()).await.expect("publish").await.expect("stored");
    }
    handled_all(&app, "rollout_devices").await;
    app.caught_up(ProjectionName::Campaigns).await;
    let d = detail(&app, &id).await;
    assert_eq!(d["device_count"], 7, "a forged device event made a member: {d}");
    let joined =
        d["decisions"].as_array().expect("decisions").iter().filter(|x| x["decision"] == "members_joined").count();
    assert_eq!(joined, 2, "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_campaign_starts_at_its_time() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let _fleet = app.fleet().await;
    let devices = ids("sch", 10);
    app.register_devices(&devices, "rev-a").await;
    let start_at = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let id = campaign(&app, &devices, json!({"start_at": start_at})).await;
    let (status, body) = app.campaign_action(&id, "start").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("scheduled")), "{body}");
    let done = wait_status(&app, &id, "completed").await;
    let started_at = chrono::DateTime::parse_from_rfc3339(done["started_at"].as_str().expect("started")).expect("time");
    let planned = chrono::DateTime::parse_from_rfc3339(&start_at).expect("time");
    assert!(started_at >= planned, "started {started_at} before {planned}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_devices_time_out_are_retried_and_then_trip_the_gate() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let fleet = app.fleet().await;
    let devices = ids("mute", 6);
    app.register_devices(&devices, "rev-a").await;
    for d in &devices {
        fleet.set(d, Behavior::Silent);
    }
    let rollout = json!({"device_timeout_secs": 1, "max_retries": 1, "failure_threshold_percent": 50,
        "min_finished": 6, "on_failure": "abort"});
    let id = campaign(&app, &devices, rollout).await;
    app.campaign_action(&id, "start").await;
    let aborted = wait_status(&app, &id, "aborted").await;
    let last = aborted["decisions"].as_array().expect("decisions").last().cloned().unwrap_or_default();
    assert_eq!((last["decision"].as_str(), last["gate"]["failed"].as_u64()), (Some("aborted"), Some(6)), "{aborted}");
    for d in &devices {
        assert_eq!(fleet.updates_received(d), 2, "{d}: first try and one retry");
    }
    app.caught_up(ProjectionName::Updates).await;
    let retried = count(&app, "SELECT count(*) FROM update_history WHERE retry = 1 AND state = 'timed_out'").await;
    assert_eq!(retried, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_with_rollback_rolls_the_updated_devices_back_in_a_linked_campaign() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let fleet = app.fleet().await;
    let _v1 = app.firmware("1.0").await;
    let devices = ids("rb", 40);
    app.register_devices(&devices, "rev-a").await;
    let rollout = json!({"waves": [{"count": 10}, {"percent": 100}], "after_success": "pause",
        "failure_threshold_percent": 10, "min_finished": 5, "on_failure": "abort", "rollback_on_abort": true});
    let id = campaign(&app, &devices, rollout).await;
    app.campaign_action(&id, "start").await;
    await_decision(&app, &id, "approval_requested").await;
    let wave1 = members(&app, &id).await[1].clone();
    for device in &wave1 {
        fleet.set(device, Behavior::Fail);
    }
    app.approve(&id).await;
    wait_status(&app, &id, "aborted").await;

    let rollback = rollback_of(&app, &id).await;
    let done = wait_status(&app, &rollback.to_string(), "completed").await;
    assert_eq!(done["device_count"], 10, "the ten canaries had updated: {done}");
    app.all_caught_up().await;
    let rolled_back = count(&app, "SELECT count(*) FROM rollback_log WHERE state = 'rolled_back'").await;
    assert_eq!(rolled_back, 10);
    let back_on_v1 = count(&app, "SELECT count(*) FROM devices WHERE firmware_version = '1.0'").await;
    assert_eq!(back_on_v1, 40, "canaries rolled back, the rest never left 1.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_caps_assignments_per_minute() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let _fleet = app.fleet().await;
    let devices = ids("rate", 30);
    app.register_devices(&devices, "rev-a").await;
    let id = campaign(&app, &devices, json!({"max_per_minute": 7})).await;
    app.campaign_action(&id, "start").await;
    let d = eventually("seven assigned", Duration::from_secs(30), || async {
        let d = detail(&app, &id).await;
        (d["waves"][0]["assigned"] == 7).then_some(d)
    })
    .await;
    // Several process-manager ticks later, the minute's budget still holds (unless the minute turned).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = detail(&app, &id).await;
    let assigned = later["waves"][0]["assigned"].as_i64().unwrap_or(0);
    assert!(assigned == 7 || assigned == 14, "at most one minute's budget per minute: {later} (was {d})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_assigned_outside_the_maintenance_window() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let _fleet = app.fleet().await;
    let devices = ids("win", 8);
    app.register_devices(&devices, "rev-a").await;
    let now = chrono::Utc::now();
    let at = |h: i64| (now + chrono::Duration::hours(h)).format("%H:%M").to_string();
    let closed = campaign(
        &app,
        &devices[..4],
        json!({"maintenance_window": {"start": at(3), "duration_minutes": 60, "utc_offset": "+00:00"}}),
    )
    .await;
    let open = campaign(
        &app,
        &devices[4..],
        json!({"maintenance_window": {"start": at(-1), "duration_minutes": 180, "utc_offset": "+00:00"}}),
    )
    .await;
    app.campaign_action(&closed, "start").await;
    app.campaign_action(&open, "start").await;
    wait_status(&app, &open, "completed").await;
    app.caught_up(ProjectionName::Campaigns).await;
    let d = detail(&app, &closed).await;
    assert_eq!((d["status"].as_str(), d["waves"][0]["assigned"].as_i64()), (Some("running"), Some(0)), "{d}");
}

/// Issue 11 (mass cancel): a campaign event on NATS whose payload was left out (a
/// `MembershipResolved` above 512 KiB), or a forged cancel or abort, cancels nothing
/// while the campaign in the event store runs: the process manager decides on the
/// stored campaign, never on the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_messages_that_the_store_does_not_back_cancel_nothing() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let fleet = app.fleet().await;
    let devices = ids("fg", 20);
    app.register_devices(&devices, "rev-a").await;
    for d in &devices {
        fleet.set(d, Behavior::Silent);
    }
    let id = campaign(&app, &devices, json!({"rollback_on_abort": true})).await;
    app.campaign_action(&id, "start").await;
    eventually("every device assigned", Duration::from_secs(30), || async {
        let d = detail(&app, &id).await;
        (d["waves"][0]["assigned"] == 20).then_some(())
    })
    .await;

    let subject = app.names.event_subject("Campaign", &id);
    let now = chrono::Utc::now();
    let record = |sequence: i64, event_type: &str, payload: Value, omitted: bool| {
        json!({"aggregate_type": "Campaign", "aggregate_id": id, "sequence": sequence, "global_seq": 1_000_000 + sequence,
               "event_type": event_type, "event_version": "1.0", "payload": payload, "payload_omitted": omitted,
               "metadata": {}, "recorded_at": now})
    };
    let messages = [
        record(2, "MembershipResolved", Value::Null, true),
        record(90, "CampaignCancelled", json!({"CampaignCancelled": {"reason": "forged", "at": now}}), false),
        record(91, "CampaignAborted", json!({"CampaignAborted": {"reason": "forged", "gate": null, "at": now}}), false),
    ];
    for message in messages {
        let ack = app.js.publish(subject.clone(), message.to_string().into()).await.expect("publish");
        ack.await.expect("stored by JetStream");
    }
    // Once the process manager's consumer has acknowledged all three, it has reacted.
    handled_all(&app, "rollout").await;
    app.caught_up(ProjectionName::Updates).await;

    let cancelled =
        count(&app, "SELECT count(*) FROM device_updates WHERE state = 'cancelled' OR cancel_requested").await;
    assert_eq!(cancelled, 0, "no device was asked to cancel");
    for d in &devices {
        assert_eq!(fleet.cancels_received(d), 0, "{d} got no cancel");
    }
    assert_eq!(count(&app, "SELECT count(*) FROM campaigns WHERE rollback_of IS NOT NULL").await, 0, "no rollback");
    assert_eq!(detail(&app, &id).await["status"], "running");

    // A real cancel still cancels the devices in flight.
    let (status, body) = app.campaign_action(&id, "cancel").await;
    assert_eq!(status, 200, "{body}");
    eventually("devices in flight asked to cancel", Duration::from_secs(30), || async {
        app.caught_up(ProjectionName::Updates).await;
        let asked =
            count(&app, "SELECT count(*) FROM device_updates WHERE cancel_requested OR state = 'cancelled'").await;
        (asked == 20).then_some(())
    })
    .await;
}

/// A device offline when its update went out (core NATS would have dropped the
/// command) finds it when it connects: each device's last command is kept.
#[tokio::test]
async fn a_device_offline_when_its_update_went_out_gets_it_when_it_connects() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let devices = ids("offline", 3);
    app.register_devices(&devices, "hw").await;
    let id = campaign(&app, &devices, json!({})).await;
    let (status, body) = app.campaign_action(&id, "start").await;
    assert_eq!(status, 200, "{body}");
    // Every command went out while no device listened.
    eventually("the commands to be kept", Duration::from_secs(30), || async {
        let mut stream = app.js.get_stream(app.names.commands_stream()).await.ok()?;
        (stream.info().await.ok()?.state.messages == 3).then_some(())
    })
    .await;

    let fleet = app.fleet().await;
    let done = wait_status(&app, &id, "completed").await;
    assert_eq!(done["waves"][0]["succeeded"], 3, "{done}");
    for device in &devices {
        assert_eq!(fleet.updates_received(device), 1, "{device} got its command once");
    }
}

/// Device commands follow the stored lane, not the message: an assignment
/// replayed on the bus after its update ended (a relay that restarts past
/// JetStream's two-minute duplicate window publishes again) or forged for a
/// device with no such update pushes nothing.
#[tokio::test]
async fn replayed_or_forged_assignments_on_the_bus_push_no_command() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let firmware = app.firmware("2.0").await;
    app.register_devices(&["replayed-1".to_owned()], "hw").await;
    let (status, body) = json_of(
        app.post("/api/v1/devices/replayed-1/update")
            .json(&json!({"firmware_id": firmware}))
            .send()
            .await
            .expect("assign"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let commands = || async {
        let mut stream = app.js.get_stream(app.names.commands_stream()).await.ok()?;
        Some(stream.info().await.ok()?.state.messages)
    };
    eventually("the command to go out", Duration::from_secs(30), || async { (commands().await? == 1).then_some(()) })
        .await;
    let (status, body) = json_of(
        app.post("/api/v1/devices/replayed-1/status")
            .json(&json!({"state": "succeeded"}))
            .send()
            .await
            .expect("report"),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let (sequence, global_seq, payload): (i64, i64, Value) = sqlx::query_as(
        "SELECT sequence, global_seq, payload FROM events
         WHERE aggregate_id = 'replayed-1' AND event_type = 'UpdateAssigned'",
    )
    .fetch_one(&app.db)
    .await
    .expect("the assignment");
    let record = |device: &str, sequence: i64, global_seq: i64| ota_domain::EventRecord {
        aggregate_type: "DeviceUpdate".into(),
        aggregate_id: device.into(),
        sequence,
        global_seq,
        event_type: "UpdateAssigned".into(),
        event_version: "1.0".into(),
        payload: payload.clone(),
        payload_omitted: false,
        metadata: Default::default(),
        recorded_at: chrono::Utc::now(),
    };
    for (device, sequence, global_seq) in [("replayed-1", sequence, global_seq), ("forged-1", 1, 999_999)] {
        let subject = app.names.event_subject("DeviceUpdate", device);
        let message = serde_json::to_vec(&record(device, sequence, global_seq)).expect("encode");
        app.js.publish(subject, message.into()).await.expect("publish").await.expect("stored");
    }
    handled_all(&app, "dispatch").await;
    assert_eq!(commands().await, Some(1), "a replayed or forged assignment was pushed to a device");
}

async fn approve_as(app: &TestApp, id: &str, subject: &str, role: Role, body: Option<Value>) -> (u16, Value) {
    let mut request =
        app.http.post(app.url(&format!("/api/v1/campaigns/{id}/approve"))).bearer_auth(app.token_for(subject, role));
    if let Some(body) = body {
        request = request.json(&body);
    }
    json_of(request.send().await.expect("approve")).await
}

/// Issue 12, four eyes: an operator creates, someone else approves; the creator
/// approves its own wave only as an admin who records why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_someone_else_approves_a_wave_unless_an_admin_records_an_override() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let _fleet = app.fleet().await;
    let devices = ids("eyes", 30);
    app.register_devices(&devices, "rev-a").await;
    let rollout = json!({"waves": [{"count": 10}, {"count": 10}, {"percent": 100}], "after_success": "pause"});
    // Created by the operator `tester` (`app.post`).
    let id = campaign(&app, &devices, rollout).await;
    app.campaign_action(&id, "start").await;
    await_decision(&app, &id, "approval_requested").await;

    let override_body = || Some(json!({"override_reason": "alone on call"}));
    let refusals = [
        ("tester", Role::Operator, None, "forbidden"),
        ("vera", Role::Viewer, None, "forbidden"),
        ("tester", Role::Approver, None, "campaign.own_approval"),
        ("tester", Role::Admin, None, "campaign.own_approval"),
        ("tester", Role::Approver, override_body(), "forbidden"),
        ("bob", Role::Approver, override_body(), "forbidden"),
    ];
    for (subject, role, body, code) in refusals {
        let (status, answer) = approve_as(&app, &id, subject, role, body.clone()).await;
        assert_eq!((status, answer["error"].as_str()), (403, Some(code)), "{subject} as {role:?} {body:?}: {answer}");
    }
    assert_eq!(approve_as(&app, &id, "bob", Role::Approver, None).await.0, 200);

    eventually("second approval requested", Duration::from_secs(30), || async {
        let d = detail(&app, &id).await;
        let asked = d["decisions"].as_array()?.iter().filter(|x| x["decision"] == "approval_requested").count();
        (asked == 2).then_some(())
    })
    .await;
    let (status, answer) = approve_as(&app, &id, "tester", Role::Admin, override_body()).await;
    assert_eq!(status, 200, "{answer}");

    let done = wait_status(&app, &id, "completed").await;
    let approvals: Vec<(Value, Value)> = done["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .filter(|d| d["decision"] == "wave_approved")
        .map(|d| (d["actor"].clone(), d["reason"].clone()))
        .collect();
    assert_eq!(approvals.len(), 2, "{done}");
    assert_eq!(approvals[0], (json!("user:bob"), Value::Null));
    assert_eq!(approvals[1].0, "user:tester");
    assert!(approvals[1].1.as_str().is_some_and(|r| r.contains("admin override") && r.contains("alone on call")));
}
