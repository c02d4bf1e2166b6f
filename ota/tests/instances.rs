//! Several `ota serve` processes on one Postgres and one NATS, as behind a load
//! balancer. The relay, the chainer and the rollout process manager each lead on
//! one instance at a time (by lease); killing (SIGKILL) or freezing (SIGSTOP) that
//! instance moves them to another within 10 s, the campaign goes on, and the old
//! leader, thawed, writes nothing.

mod support;

use std::time::Duration;

use ota_testkit::{eventually, json_of, Deployment, ServerProcess};
use serde_json::Value;

use support::{assert_nothing_lost_or_doubled, until, Operator, BIN};

const DEVICES: usize = 300;

/// The singleton workers' leases: (holder pid, epoch) of each, while unexpired.
async fn leaders(deployment: &Deployment) -> Vec<(String, u32, i64)> {
    let prefix = deployment.names.prefix();
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT name, holder, epoch FROM leases
         WHERE name IN ('relay:' || $1, 'rollout:' || $1, 'chain') AND expires_at > clock_timestamp()
         ORDER BY name",
    )
    .bind(prefix)
    .fetch_all(&deployment.db)
    .await
    .expect("leases");
    rows.into_iter()
        .map(|(name, holder, epoch)| {
            let pid = holder.split('/').nth(1).and_then(|p| p.parse().ok()).expect("holder names its pid");
            (name, pid, epoch)
        })
        .collect()
}

/// Waits until all three leases are held by instances among `live`; returns their holders.
async fn led_by_one_of(
    deployment: &Deployment,
    live: &[&ServerProcess],
    after_epochs: &[(String, u32, i64)],
) -> Vec<(String, u32, i64)> {
    let pids: Vec<u32> = live.iter().map(|s| s.pid()).collect();
    eventually("every singleton to lead on a live instance", Duration::from_secs(10), || async {
        let now = leaders(deployment).await;
        let moved = now.len() == 3
            && now.iter().all(|(name, pid, epoch)| {
                pids.contains(pid) && after_epochs.iter().filter(|(n, ..)| n == name).all(|(.., e)| epoch > e)
            });
        moved.then_some(now)
    })
    .await
}

async fn health(deployment: &Deployment, server: &ServerProcess) -> Value {
    json_of(deployment.http.get(server.url("/health/detailed")).send().await.expect("health")).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_run_a_campaign_through_their_leader_killed_then_frozen() {
    let deployment = Deployment::new(BIN).await;
    let operator = Operator::new(&deployment);
    let mut servers = vec![deployment.start().await, deployment.start().await, deployment.start().await];
    let first = led_by_one_of(&deployment, &servers.iter().collect::<Vec<_>>(), &[]).await;
    let (id, _fleet) = operator.start_campaign(&servers[1], DEVICES).await;

    // Killed mid-wave, with reports arriving.
    until("the second wave to report", async || operator.finished(&servers[2], &id).await >= 40).await;
    let relay_leader = first.iter().find(|(name, ..)| name.starts_with("relay:")).map(|(_, pid, _)| *pid);
    let leader = servers.iter().position(|s| Some(s.pid()) == relay_leader).expect("the relay leads on one of them");
    let killed_pid = servers[leader].pid();
    // Every singleton the killed instance held moves; the others may stay.
    let held: Vec<(String, u32, i64)> = first.iter().filter(|(_, pid, _)| *pid == killed_pid).cloned().collect();
    servers.remove(leader).kill().await;
    let second = led_by_one_of(&deployment, &servers.iter().collect::<Vec<_>>(), &held).await;

    // Frozen in the last wave: it keeps its sockets and its sessions, and does nothing.
    until("most devices to finish", async || operator.finished(&servers[0], &id).await >= (DEVICES as i64) * 2 / 3)
        .await;
    let relay_leader = second.iter().find(|(name, ..)| name.starts_with("relay:")).map(|(_, pid, _)| *pid);
    let frozen = servers.iter().position(|s| Some(s.pid()) == relay_leader).expect("the relay leads on a live one");
    let frozen_pid = servers[frozen].pid();
    servers[frozen].freeze();
    let survivor = &servers[1 - frozen];
    let held: Vec<(String, u32, i64)> = second.iter().filter(|(_, pid, _)| *pid == frozen_pid).cloned().collect();
    let third = led_by_one_of(&deployment, &[survivor], &held).await;
    until("the campaign to complete", async || operator.campaign(survivor, &id).await["status"] == "completed").await;
    let report = health(&deployment, survivor).await;
    assert_eq!(report["status"], "ok", "{report}");
    assert!(
        report["leaders"].as_array().is_some_and(|l| l.len() == 3 && l.iter().all(|l| l["state"] == "leading")),
        "{report}"
    );

    // Thawed, the old leader finds its leases gone: the new leaders keep them.
    servers[frozen].thaw();
    let thawed = &servers[frozen];
    eventually("the thawed instance to answer", Duration::from_secs(10), || async {
        deployment.http.get(thawed.url("/health")).send().await.ok().filter(|r| r.status().is_success())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(leaders(&deployment).await, third, "a thawed leader took its leases back");
    assert_nothing_lost_or_doubled(&deployment).await;
}
