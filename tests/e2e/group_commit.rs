//! Group commit: many commands in one transaction, each aggregate keeping its
//! optimistic concurrency against concurrent writers.

use std::collections::BTreeMap;

use chrono::Utc;
use ota_domain::device::{AttributeMode, Device, DeviceCommand, DeviceProfile};
use ota_domain::device_update::{DeviceUpdate, DeviceUpdateCommand, Origin, UpdateFirmware, UpdateState};
use ota_domain::{Actor, CommandMeta, DeviceId, FirmwareId};
use ota_orchestrator::devices::StatusReport;
use ota_orchestrator::Store;
use ota_testkit::{TestApp, GATEWAY_TOKEN};

fn set(key: &str, value: String) -> DeviceCommand {
    DeviceCommand::SetAttributes {
        mode: AttributeMode::Merge,
        attributes: BTreeMap::from([(key.to_owned(), value)]),
        at: Utc::now(),
    }
}

/// Registers a device at firmware 1.0 (model `gw`) and assigns it an update to 2.0.
pub(crate) async fn assigned_2_0(store: &Store, id: &DeviceId, meta: &CommandMeta) {
    let profile =
        DeviceProfile { device_model: "gw".into(), firmware_version: Some("1.0".into()), ..Default::default() };
    let register = DeviceCommand::Register { id: id.clone(), profile, at: Utc::now() };
    store.execute::<Device>(id, register, meta).await.expect("register");
    let firmware = UpdateFirmware { id: FirmwareId::derive("fw", "2.0", "gw"), version: "2.0".into() };
    let assign = DeviceUpdateCommand::Assign { origin: Origin::default(), firmware, from: None, at: Utc::now() };
    store.execute::<DeviceUpdate>(id, assign, meta).await.expect("assign");
}

/// The device's last two events are its success and then its inventory change,
/// stored by one transaction.
async fn assert_success_and_inventory_in_one_transaction(app: &TestApp, device: &str) {
    let last: Vec<(String, String)> = sqlx::query_as(
        "SELECT aggregate_type, tx_id::text FROM events WHERE aggregate_id = $1
         ORDER BY global_seq DESC LIMIT 2",
    )
    .bind(device)
    .fetch_all(&app.db)
    .await
    .expect("events");
    let types: Vec<&str> = last.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, ["Device", "DeviceUpdate"], "the success, then its inventory change");
    assert_eq!(last[0].1, last[1].1, "one transaction: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_group_commits_and_single_commands_lose_and_double_nothing() {
    let app = TestApp::spawn().await;
    let store = app.server.state.store.clone();
    let meta = CommandMeta::new(Actor::system("test"));
    let devices: Vec<String> = (0..30).map(|i| format!("gc-{i}")).collect();
    for d in &devices {
        let id = DeviceId::parse(d).expect("id");
        let profile = DeviceProfile { device_model: "gw".into(), ..Default::default() };
        store
            .execute::<Device>(&id.clone(), DeviceCommand::Register { id, profile, at: Utc::now() }, &meta)
            .await
            .expect("register");
    }
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let (store, meta, devices) = (store.clone(), meta.clone(), devices.clone());
        tasks.push(tokio::spawn(async move {
            let mut ok = 0usize;
            let mut failures = Vec::new();
            for round in 0..15 {
                if writer % 2 == 0 {
                    // Overlapping batches, with the same device twice in one batch.
                    let items = (0..40)
                        .map(|i| {
                            let d = devices[(writer * 7 + round * 3 + i) % devices.len()].clone();
                            (d, set("k", format!("{writer}.{round}.{i}")), meta.clone())
                        })
                        .collect();
                    for r in store.execute_many::<Device>(items).await {
                        match r {
                            Ok(_) => ok += 1,
                            Err(e) => failures.push(e.to_string()),
                        }
                    }
                } else {
                    for i in 0..10 {
                        let d = &devices[(writer + round + i) % devices.len()];
                        match store
                            .execute::<Device>(
                                &DeviceId::parse(d).expect("id"),
                                set("k", format!("{writer}.{round}.{i}")),
                                &meta,
                            )
                            .await
                        {
                            Ok(_) => ok += 1,
                            Err(e) => failures.push(e.to_string()),
                        }
                    }
                }
            }
            (ok, failures)
        }));
    }
    let mut accepted = 0;
    let mut failures = Vec::new();
    for t in tasks {
        let (ok, failed) = t.await.expect("writer");
        accepted += ok;
        failures.extend(failed);
    }
    assert_eq!(failures, Vec::<String>::new());
    assert_eq!(accepted, 4 * 15 * 40 + 4 * 15 * 10, "every command was accepted (conflicts are retried)");
    let changes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'Device' AND event_type = 'DeviceProfileChanged'",
    )
    .fetch_one(&app.db)
    .await
    .expect("count");
    assert_eq!(changes as usize, accepted, "one event per accepted command: nothing lost, nothing doubled");
    let gaps: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT aggregate_id, max(sequence) AS m, count(*) AS n FROM events
         WHERE aggregate_type = 'Device' GROUP BY aggregate_id) s WHERE m <> n",
    )
    .fetch_one(&app.db)
    .await
    .expect("gaps");
    assert_eq!(gaps, 0, "sequences are contiguous per device");
}

/// The group committer decides on the states it stored last. Another writer
/// makes such a state stale; neither a change nor a no-op may then be decided
/// wrongly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_remembered_by_the_group_committer_that_went_stale_decides_nothing_wrongly() {
    let app = TestApp::spawn().await;
    let store = app.server.state.store.clone();
    let meta = CommandMeta::new(Actor::system("test"));
    let id = DeviceId::parse("stale-1").expect("id");
    let assign = |version: &str| DeviceUpdateCommand::Assign {
        origin: Origin::default(),
        firmware: UpdateFirmware { id: FirmwareId::derive("fw", version, "gw"), version: version.into() },
        from: None,
        at: Utc::now(),
    };
    let report = |state| StatusReport { state, progress: None, message: None, firmware_version: None, action: None };
    store.execute::<DeviceUpdate>(&id, assign("2.0"), &meta).await.expect("assign");
    let reports = app.server.state.reports.clone();
    reports.report(&id, report(UpdateState::Installing), &meta, Utc::now()).await.expect("installing");

    // Another writer closes the update: the committer's remembered `installing` is stale.
    let succeeded = DeviceUpdateCommand::Report {
        action: None,
        state: UpdateState::Succeeded,
        progress: None,
        message: None,
        at: Utc::now(),
    };
    store.execute::<DeviceUpdate>(&id, succeeded, &meta).await.expect("succeeded elsewhere");
    // On the stale state a second `installing` is a duplicate and nothing would be stored.
    let late = reports.report(&id, report(UpdateState::Installing), &meta, Utc::now()).await.expect("late");
    assert!(!late.unchanged(), "decided on the fresh state, where the update is closed");
    assert_eq!(late.state.current.as_ref().map(|lane| lane.state), Some(UpdateState::Succeeded));

    // Stale again, and this time the stale state would append at a taken sequence.
    store.execute::<DeviceUpdate>(&id, assign("3.0"), &meta).await.expect("next update elsewhere");
    let next = reports.report(&id, report(UpdateState::Downloading), &meta, Utc::now()).await.expect("downloading");
    let lane = next.state.current.as_ref().expect("lane");
    assert_eq!((lane.action, lane.state), (2, UpdateState::Downloading), "redone after the other writer's event");

    let (stored, version) = store.load::<DeviceUpdate>(&id).await.expect("load");
    assert_eq!(stored, next.state);
    assert_eq!(version, next.version);
    let sequences: Vec<i64> =
        sqlx::query_scalar("SELECT sequence FROM events WHERE aggregate_id = 'stale-1' ORDER BY sequence")
            .fetch_all(&app.db)
            .await
            .expect("events");
    assert_eq!(sequences, (1..=version as i64).collect::<Vec<_>>());
}

/// A success and the inventory version it installs are one transaction: the
/// device is never seen to have succeeded on firmware its inventory lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_report_and_its_inventory_change_commit_together() {
    let app = TestApp::spawn().await;
    let store = app.server.state.store.clone();
    let meta = CommandMeta::new(Actor::system("test"));
    let id = DeviceId::parse("chained-1").expect("id");
    assigned_2_0(&store, &id, &meta).await;

    let reports = app.server.state.reports.clone();
    let report = |state| StatusReport { state, progress: None, message: None, firmware_version: None, action: None };
    reports.report(&id, report(UpdateState::Installing), &meta, Utc::now()).await.expect("installing");
    let done = reports.report(&id, report(UpdateState::Succeeded), &meta, Utc::now()).await.expect("succeeded");
    assert_eq!(done.state.current.as_ref().map(|lane| lane.state), Some(UpdateState::Succeeded));

    let (device, _) = store.load::<Device>(&id).await.expect("device");
    assert_eq!(device.profile.firmware_version.as_deref(), Some("2.0"));
    assert_success_and_inventory_in_one_transaction(&app, "chained-1").await;
}

/// When another writer got to the device's inventory first, the success and its
/// inventory change are decided again together, not stored in two transactions
/// (the inventory used to be redone on its own, and a failure there was only
/// logged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_whose_inventory_change_lost_a_race_is_redone_with_it() {
    let app = TestApp::spawn().await;
    let store = app.server.state.store.clone();
    let meta = CommandMeta::new(Actor::system("test"));
    let id = DeviceId::parse("pair-1").expect("id");
    assigned_2_0(&store, &id, &meta).await;
    let reports = app.server.state.reports.clone();
    // A report naming a version makes the committer decide (and remember) the inventory.
    let installing = StatusReport {
        state: UpdateState::Installing,
        progress: None,
        message: None,
        firmware_version: Some("1.1".into()),
        action: None,
    };
    reports.report(&id, installing, &meta, Utc::now()).await.expect("installing");
    // Another writer appends to the inventory: the remembered state is stale.
    store.execute::<Device>(&id, set("site", "b".into()), &meta).await.expect("other writer");

    let succeeded = StatusReport {
        state: UpdateState::Succeeded,
        progress: None,
        message: None,
        firmware_version: None,
        action: None,
    };
    let done = reports.report(&id, succeeded, &meta, Utc::now()).await.expect("succeeded");
    assert_eq!(done.state.current.as_ref().map(|lane| lane.state), Some(UpdateState::Succeeded));
    let (device, _) = store.load::<Device>(&id).await.expect("device");
    assert_eq!(device.profile.firmware_version.as_deref(), Some("2.0"));
    assert_eq!(device.profile.attributes.get("site").map(String::as_str), Some("b"), "the other write is kept");
    assert_success_and_inventory_in_one_transaction(&app, "pair-1").await;
}

/// Reports and their inventory changes, while other writers append to the same
/// devices' updates and inventories: conflicts on either side are redone, and
/// nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_reports_racing_other_writers_lose_nothing() {
    let app = TestApp::spawn().await;
    let store = app.server.state.store.clone();
    let meta = CommandMeta::new(Actor::system("test"));
    let devices: Vec<DeviceId> = (0..24).map(|i| DeviceId::parse(&format!("race-{i}")).expect("id")).collect();
    for id in &devices {
        let profile =
            DeviceProfile { device_model: "gw".into(), firmware_version: Some("1.0".into()), ..Default::default() };
        let register = DeviceCommand::Register { id: id.clone(), profile, at: Utc::now() };
        store.execute::<Device>(id, register, &meta).await.expect("register");
        let firmware = UpdateFirmware { id: FirmwareId::derive("fw", "2.0", "gw"), version: "2.0".into() };
        let assign = DeviceUpdateCommand::Assign { origin: Origin::default(), firmware, from: None, at: Utc::now() };
        store.execute::<DeviceUpdate>(id, assign, &meta).await.expect("assign");
    }
    let reports = app.server.state.reports.clone();
    let mut tasks = Vec::new();
    for id in devices.clone() {
        let (reports, meta) = (reports.clone(), meta.clone());
        tasks.push(tokio::spawn(async move {
            for state in [UpdateState::Downloading, UpdateState::Installing, UpdateState::Succeeded] {
                let report =
                    StatusReport { state, progress: None, message: None, firmware_version: None, action: None };
                reports.report(&id, report, &meta, Utc::now()).await.expect("report");
            }
        }));
    }
    for round in 0..6 {
        let (store, meta, devices) = (store.clone(), meta.clone(), devices.clone());
        tasks.push(tokio::spawn(async move {
            for id in &devices {
                store.execute::<Device>(id, set("round", round.to_string()), &meta).await.expect("attribute");
                let stale = DeviceUpdateCommand::Report {
                    action: Some(999),
                    state: UpdateState::Downloading,
                    progress: None,
                    message: None,
                    at: Utc::now(),
                };
                store.execute::<DeviceUpdate>(id, stale, &meta).await.expect("stale report");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    for id in &devices {
        let (update, _) = store.load::<DeviceUpdate>(id).await.expect("update");
        assert_eq!(update.current.as_ref().map(|lane| lane.state), Some(UpdateState::Succeeded), "{id}");
        let (device, _) = store.load::<Device>(id).await.expect("device");
        assert_eq!(device.profile.firmware_version.as_deref(), Some("2.0"), "{id}");
    }
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT event_type, count(*) FROM events WHERE aggregate_id LIKE 'race-%'
         AND event_type IN ('ProgressReported', 'ReportIgnored') GROUP BY event_type ORDER BY event_type",
    )
    .fetch_all(&app.db)
    .await
    .expect("counts");
    assert_eq!(counts, vec![("ProgressReported".to_owned(), 24 * 3), ("ReportIgnored".to_owned(), 24 * 6)]);
}

/// A remembered state brought up to date with the events since its version equals a fresh load,
/// from nothing (version 0 reads it whole) and from any point of its stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refreshed_state_equals_a_fresh_load() {
    let app = TestApp::spawn().await;
    let store = app.server.state.store.clone();
    let meta = CommandMeta::new(Actor::system("test"));
    let d = "refresh-1";
    let id = DeviceId::parse(d).expect("id");
    let profile = DeviceProfile { device_model: "gw".into(), ..Default::default() };
    store
        .execute::<Device>(&id.clone(), DeviceCommand::Register { id: id.clone(), profile, at: Utc::now() }, &meta)
        .await
        .expect("register");

    let (mut remembered, mut version) = (Device::default(), 0);
    store.refresh(d, &mut remembered, &mut version).await.expect("refresh from nothing");
    assert_eq!((remembered.clone(), version), store.load::<Device>(&id).await.expect("load"));
    assert_eq!(version, 1);

    for round in 0..3 {
        for i in 0..=round * 5 {
            store.execute::<Device>(&id, set(&format!("k{i}"), format!("{round}")), &meta).await.expect("set");
        }
        let before = version;
        store.refresh(d, &mut remembered, &mut version).await.expect("refresh");
        assert!(version > before);
        assert_eq!((remembered.clone(), version), store.load::<Device>(&id).await.expect("load"), "round {round}");
    }
    // Nothing new: nothing changes.
    let unchanged = (remembered.clone(), version);
    store.refresh(d, &mut remembered, &mut version).await.expect("refresh");
    assert_eq!((remembered, version), unchanged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_enrolling_at_once_through_the_gateway_share_transactions() {
    let app = TestApp::spawn().await;
    let auth = format!("GatewayToken {GATEWAY_TOKEN}");
    let enrolments = (0..200).map(|i| {
        let (app, auth) = (&app, &auth);
        async move {
            let base = app.url(&format!("/default/controller/v1/plug-{i:03}"));
            let poll = app.http.get(&base).header("Authorization", auth).send().await.expect("first poll");
            let body = serde_json::json!({"mode": "merge", "data": {"hwRevision": "rev-a"}});
            let config =
                app.http.put(format!("{base}/configData")).header("Authorization", auth).json(&body).send().await;
            (poll.status().as_u16(), config.expect("configData").status().as_u16())
        }
    });
    let answers = futures::future::join_all(enrolments).await;
    assert!(answers.iter().all(|a| *a == (200, 200)), "{answers:?}");
    let (devices, transactions): (i64, i64) = sqlx::query_as(
        "SELECT count(DISTINCT aggregate_id), count(DISTINCT tx_id) FROM events
         WHERE aggregate_type = 'Device' AND event_type = 'DeviceRegistered'",
    )
    .fetch_one(&app.db)
    .await
    .expect("registrations");
    assert_eq!(devices, 200);
    // One transaction per device before: 200.
    assert!(transactions <= 100, "200 registrations took {transactions} transactions");
    let profiles: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT aggregate_id) FROM events WHERE aggregate_type = 'Device'
         AND event_type = 'DeviceProfileChanged' AND payload::text LIKE '%rev-a%'",
    )
    .fetch_one(&app.db)
    .await
    .expect("profiles");
    assert_eq!(profiles, 200, "every configData stored");
}
