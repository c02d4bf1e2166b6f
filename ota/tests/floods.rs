//! Floods from callers the server cannot trust, against the real binary (issue
//! 12, item 4): DDI requests for random controller ids with bad tokens are
//! refused without keeping anything, so they cost the server no memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ota_testkit::{Deployment, ServerProcess};

const BIN: &str = env!("CARGO_BIN_EXE_ota");

/// Resident memory of a process, in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// `n` polls for random controller ids with a bad token, 64 at a time; every one must be refused.
async fn flood(server: &ServerProcess, n: usize) {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (client, next) = (client.clone(), next.clone());
            let base = server.url("/DEFAULT/controller/v1");
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let url = format!("{base}/{}", uuid::Uuid::new_v4().simple());
                    let response =
                        client.get(&url).header("Authorization", "TargetToken not-a-token").send().await.expect("poll");
                    assert_eq!(response.status(), 401, "{url}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("flood task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_controller_ids_with_bad_tokens_cost_no_memory() {
    let deployment = Deployment::new(BIN).await;
    let server = deployment.start().await;
    // Pools, buffers and the allocator's arenas reach their working size first.
    flood(&server, 5_000).await;
    let before = resident_kib(server.pid());
    flood(&server, 100_000).await;
    let after = resident_kib(server.pid());
    eprintln!("resident memory: {before} KiB before, {after} KiB after 100,000 refused polls");
    assert!(
        after.saturating_sub(before) < 10 * 1024,
        "100,000 refused polls grew the server by {} KiB",
        after.saturating_sub(before)
    );
}
