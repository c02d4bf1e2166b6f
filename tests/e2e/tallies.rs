//! The gates' counters are kept with the reports (issue 15): a gate judges a
//! report the moment it is committed, whatever the read models are doing, and
//! the counters equal what the read model and a rebuild from events count.

use std::collections::BTreeMap;

use ota_projections::ProjectionName;
use ota_testkit::{Behavior, TestApp, TestOptions};
use serde_json::{json, Value};

use crate::rollouts::{campaign, ids, members, wait_status};

/// A campaign of `devices`, started.
async fn started(app: &TestApp, devices: &[String], rollout: Value) -> String {
    let id = campaign(app, devices, rollout).await;
    let (status, started) = app.campaign_action(&id, "start").await;
    assert_eq!(status, 200, "{started}");
    id
}

/// `(campaign, wave, state) -> count`, zeros left out.
type Counts = BTreeMap<(uuid::Uuid, i32, String), i64>;

async fn inline_counts(app: &TestApp) -> Counts {
    let rows: Vec<(uuid::Uuid, i32, String, i64)> = sqlx::query_as(
        "SELECT campaign_id, wave, state, sum(count)::bigint FROM wave_tallies GROUP BY 1, 2, 3 HAVING sum(count) <> 0",
    )
    .fetch_all(&app.db)
    .await
    .expect("inline counters");
    rows.into_iter().map(|(c, w, s, n)| ((c, w, s), n)).collect()
}

/// `(campaign, wave, state, retry, count)`, zeros left out.
async fn counts_by_attempt(app: &TestApp) -> Vec<(uuid::Uuid, i32, String, i32, i64)> {
    sqlx::query_as(
        "SELECT campaign_id, wave, state, retry, sum(count)::bigint FROM wave_tallies
         GROUP BY 1, 2, 3, 4 HAVING sum(count) <> 0 ORDER BY 1, 2, 3, 4",
    )
    .fetch_all(&app.db)
    .await
    .expect("counters by attempt")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_judge_reports_as_they_commit_with_the_updates_read_model_stopped() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    for worker in app.server.workers.iter().filter(|w| w.projection == ProjectionName::Updates) {
        worker.stop();
    }
    let fleet = app.fleet().await;
    let (good, bad) = (ids("fine", 40), ids("broken", 40));
    app.register_devices(&good, "rev-a").await;
    app.register_devices(&bad, "rev-a").await;
    for device in &bad {
        fleet.set(device, Behavior::Fail);
    }
    let gated = json!({"waves": [{"count": 10}, {"percent": 100}],
        "failure_threshold_percent": 20, "min_finished": 10, "on_failure": "pause"});
    let failing = started(&app, &bad, gated.clone()).await;
    let passing = started(&app, &good, gated).await;

    let paused = wait_status(&app, &failing, "paused").await;
    let last = paused["decisions"].as_array().expect("decisions").last().cloned().unwrap_or_default();
    assert_eq!((last["decision"].as_str(), last["wave"].as_i64()), (Some("paused"), Some(0)), "{paused}");
    assert_eq!((last["gate"]["gate"].as_str(), last["gate"]["failed"].as_u64()), (Some("failure_threshold"), Some(10)));
    let done = wait_status(&app, &passing, "completed").await;
    let gate = &done["decisions"].as_array().expect("decisions")[2]["gate"];
    assert_eq!(gate["succeeded"], 10, "wave 0's gate counted its successes: {done}");
    for device in &members(&app, &failing).await[1] {
        assert_eq!(fleet.updates_received(device), 0, "{device}: the paused campaign assigned no more");
    }
    // The gates decided while the updates read model had projected nothing.
    let projected: i64 =
        sqlx::query_scalar("SELECT count(*) FROM device_updates").fetch_one(&app.db).await.expect("count");
    assert_eq!(projected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inline_counters_equal_the_read_model_and_a_rebuild_from_events() {
    let app = TestApp::spawn_with(TestOptions::full()).await;
    let fleet = app.fleet().await;
    let devices = ids("mixed", 60);
    app.register_devices(&devices, "rev-a").await;
    for (i, device) in devices.iter().enumerate() {
        match i % 6 {
            0 => fleet.set(device, Behavior::Fail),
            1 => fleet.set(device, Behavior::Silent),
            _ => {}
        }
    }
    // Failures and timeouts are retried once, in their wave: the counters must
    // move each device's first attempt out as its retry comes in.
    let rollout = json!({"waves": [{"percent": 50}, {"percent": 100}], "device_timeout_secs": 1, "max_retries": 1,
        "failure_threshold_percent": 100, "success_threshold_percent": 50, "min_finished": 60});
    let id = started(&app, &devices, rollout).await;
    wait_status(&app, &id, "completed").await;
    app.all_caught_up().await;

    let inline = inline_counts(&app).await;
    let projected: Vec<(uuid::Uuid, i32, String, i64)> = sqlx::query_as(
        "SELECT campaign_id, wave, state, count FROM campaign_wave_counts WHERE count <> 0 ORDER BY 1, 2, 3",
    )
    .fetch_all(&app.db)
    .await
    .expect("projected counters");
    let projected: Counts = projected.into_iter().map(|(c, w, s, n)| ((c, w, s), n)).collect();
    assert_eq!(inline, projected);
    let total_failed: i64 = inline.iter().filter(|((_, _, s), _)| s == "failed").map(|(_, n)| n).sum();
    let total_timed_out: i64 = inline.iter().filter(|((_, _, s), _)| s == "timed_out").map(|(_, n)| n).sum();
    assert_eq!((total_failed, total_timed_out), (10, 10), "{inline:?}");

    let before = counts_by_attempt(&app).await;
    assert!(before.iter().any(|(_, _, s, retry, _)| s == "failed" && *retry == 1), "{before:?}");
    ota_orchestrator::store::rebuild_wave_tallies(&app.db).await.expect("rebuild");
    assert_eq!(counts_by_attempt(&app).await, before, "a rebuild from the events counts the same");
    let slots: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT slot) FROM wave_tallies").fetch_one(&app.db).await.expect("slots");
    assert_eq!(slots, 1, "the rebuild replaced the live counters");

    // A database from before the counters existed: the leader builds them once.
    sqlx::query("DELETE FROM wave_tallies").execute(&app.db).await.expect("empty");
    sqlx::query("DELETE FROM wave_tallies_built").execute(&app.db).await.expect("unbuilt");
    ota_orchestrator::store::build_wave_tallies(&app.db).await.expect("build");
    assert_eq!(counts_by_attempt(&app).await, before, "built from the events");
    sqlx::query("UPDATE wave_tallies SET count = count + 1").execute(&app.db).await.expect("skew");
    ota_orchestrator::store::build_wave_tallies(&app.db).await.expect("build once");
    assert_ne!(counts_by_attempt(&app).await, before, "built once only: a second call leaves them");
}
