//! The audit chain against checkpoints kept outside the database, with the real
//! binary: `ota serve` writes signed checkpoints, and `ota audit verify --anchor`
//! tells an intact chain from one a superuser rewrote (recomputing every link so
//! the plain check passes), one whose tail was cut, and a tampered checkpoint.

// Shared with the crash tests; this one needs only the operator's basics.
#[allow(dead_code)]
mod support;

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use ota_testkit::{eventually, Deployment};
use serde_json::json;

use support::{Operator, BIN};

/// Checkpoints in the directory, sorted by position (the names sort so).
fn checkpoints(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|f| f.file_name().is_some_and(|n| n.to_string_lossy().starts_with("checkpoint-")));
    files.sort();
    files
}

async fn linked(deployment: &Deployment) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(max(position), 0) FROM event_chain")
        .fetch_one(&deployment.db)
        .await
        .expect("chain head")
}

async fn events(deployment: &Deployment) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&deployment.db).await.expect("count")
}

/// What a superuser who wants the plain check to pass does after an edit:
/// recompute every link from the events, in the chain's order.
async fn recompute_chain(deployment: &Deployment) {
    use futures::TryStreamExt;
    use sqlx::Row;
    let rows: Vec<sqlx::postgres::PgRow> = sqlx::query(
        "SELECT c.position, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload,
                e.metadata, e.global_seq, e.recorded_at
         FROM event_chain c JOIN events e ON e.global_seq = c.global_seq ORDER BY c.position",
    )
    .fetch(&deployment.db)
    .try_collect()
    .await
    .expect("chain");
    let mut previous = ota_orchestrator::chain::GENESIS;
    for row in rows {
        let event = ota_orchestrator::chain::StoredEvent {
            aggregate_type: row.get("aggregate_type"),
            aggregate_id: row.get("aggregate_id"),
            sequence: row.get("sequence"),
            event_type: row.get("event_type"),
            event_version: row.get("event_version"),
            payload: row.get("payload"),
            metadata: row.get("metadata"),
            global_seq: row.get("global_seq"),
            recorded_at: row.get("recorded_at"),
        };
        previous = ota_orchestrator::chain::link(&previous, &event);
        sqlx::query("UPDATE event_chain SET link = $1 WHERE position = $2")
            .bind(previous.as_slice())
            .bind(row.get::<i64, _>("position"))
            .execute(&deployment.db)
            .await
            .expect("relink");
    }
}

async fn verify(deployment: &Deployment, anchor: Option<&Path>) -> (ExitStatus, String) {
    let mut args = vec!["audit", "verify"];
    let anchor = anchor.map(|a| a.display().to_string());
    if let Some(anchor) = &anchor {
        args.extend(["--anchor", anchor]);
    }
    deployment.run_to_end(&args).await
}

#[track_caller]
fn assert_exit(outcome: &(ExitStatus, String), code: i32, naming: &str) {
    let (status, output) = outcome;
    assert_eq!(status.code(), Some(code), "{output}");
    assert!(output.contains(naming), "{naming:?} not named:\n{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_with_an_anchor_names_a_rewritten_chain_a_cut_tail_and_a_forged_checkpoint() {
    let mut deployment = Deployment::new(BIN).await;
    let dir = tempfile::tempdir().expect("checkpoint dir");
    deployment.settings.audit_checkpoint_url = Some(dir.path().display().to_string());
    deployment.settings.audit_checkpoint_secs = 1;
    let server = deployment.start().await;
    let operator = Operator::new(&deployment);
    for i in 0..6 {
        operator.register(&server, &format!("anchored-{i}")).await;
    }
    operator.firmware(&server).await;
    let total = events(&deployment).await;
    let checkpoint = eventually("a checkpoint of every event", Duration::from_secs(30), || async {
        let last = checkpoints(dir.path()).pop()?;
        let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&last).ok()?).ok()?;
        (file["position"] == total).then_some(last)
    })
    .await;
    assert!(linked(&deployment).await >= total);
    let status = server.terminate().await;
    assert!(status.success(), "{status}");
    let kept = std::fs::read_to_string(&checkpoint).expect("checkpoint");
    let before = checkpoints(dir.path()).len();
    assert!(before >= 1, "at least the checkpoint read above");

    // Intact: the plain check and the anchored one hold.
    assert_exit(&verify(&deployment, None).await, 0, "\"ok\": true");
    assert_exit(&verify(&deployment, Some(&checkpoint)).await, 0, "\"verdict\": \"holds\"");

    // (a) A superuser edits who ordered an event and recomputes the chain: the
    // plain check passes, the anchor does not.
    let middle: i64 = sqlx::query_scalar("SELECT global_seq FROM events ORDER BY global_seq OFFSET 3 LIMIT 1")
        .fetch_one(&deployment.db)
        .await
        .expect("an event");
    let original: serde_json::Value = sqlx::query_scalar("SELECT metadata FROM events WHERE global_seq = $1")
        .bind(middle)
        .fetch_one(&deployment.db)
        .await
        .expect("metadata");
    sqlx::query("UPDATE events SET metadata = metadata || '{\"actor_id\": \"mallory\"}' WHERE global_seq = $1")
        .bind(middle)
        .execute(&deployment.db)
        .await
        .expect("edit");
    recompute_chain(&deployment).await;
    assert_exit(&verify(&deployment, None).await, 0, "\"ok\": true");
    assert_exit(&verify(&deployment, Some(&checkpoint)).await, 4, "the chain was rewritten");
    sqlx::query("UPDATE events SET metadata = $1 WHERE global_seq = $2")
        .bind(&original)
        .bind(middle)
        .execute(&deployment.db)
        .await
        .expect("restore");
    recompute_chain(&deployment).await;
    assert_exit(&verify(&deployment, Some(&checkpoint)).await, 0, "\"verdict\": \"holds\"");

    // (b) The last two events and their links cut off: the chain is consistent
    // but ends before the anchored position.
    sqlx::query(
        "WITH cut AS (DELETE FROM event_chain WHERE position > $1 RETURNING global_seq)
         DELETE FROM events WHERE global_seq IN (SELECT global_seq FROM cut)",
    )
    .bind(total - 2)
    .execute(&deployment.db)
    .await
    .expect("cut the tail");
    assert_exit(&verify(&deployment, None).await, 0, "\"ok\": true");
    let cut = verify(&deployment, Some(&checkpoint)).await;
    assert_exit(&cut, 5, "the chain's tail was cut");
    assert!(cut.1.contains(&format!("ends at position {}", total - 2)), "{}", cut.1);

    // (c) A checkpoint moved back to before the cut (its link too), or re-signed
    // with another key: refused before the database is trusted with anything.
    let mut file: serde_json::Value = serde_json::from_str(&kept).expect("json");
    let tampered = dir.path().join("tampered.json");
    file["message"] = json!(file["message"]
        .as_str()
        .expect("message")
        .replace(&format!("position {total}\n"), &format!("position {}\n", total - 2)));
    file["position"] = json!(total - 2);
    std::fs::write(&tampered, file.to_string()).expect("write");
    assert_exit(&verify(&deployment, Some(&tampered)).await, 3, "the anchor is forged");
    let other = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let head = ota_orchestrator::chain::Head {
        position: total - 2,
        global_seq: 0,
        link: file["link"].as_str().expect("link").to_owned(),
    };
    let resigned = ota_orchestrator::chain::sign(&head, &other, chrono::Utc::now());
    std::fs::write(&tampered, serde_json::to_string(&resigned).expect("json")).expect("write");
    assert_exit(&verify(&deployment, Some(&tampered)).await, 3, "not with the trusted audit key");

    // The checkpoint itself was never touched: the server only ever creates files.
    assert_eq!(std::fs::read_to_string(&checkpoint).expect("checkpoint"), kept);
    assert_eq!(checkpoints(dir.path()).len(), before);
}
