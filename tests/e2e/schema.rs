//! Schema evolution against the real Postgres: snapshots of another version are
//! not trusted, and a database filled by the previous release (migrations before
//! 0015, rows as its code wrote them) migrates and is read by this build.
//!
//! These tests need only Postgres: each creates its own database and drops it
//! when it passes (a failed test's database is kept, and named, for inspection).

use std::borrow::Cow;

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::{Aggregate, DomainEvent};
use ota_domain::campaign::{Campaign, CampaignCommand, CampaignEvent, CampaignFirmware, Membership, Target};
use ota_domain::device::{DeviceEvent, DeviceProfile};
use ota_domain::device_update::{DeviceUpdate, DeviceUpdateCommand, LaneKind, Origin, UpdateFirmware, UpdateState};
use ota_domain::firmware::FirmwareEvent;
use ota_domain::rollout::RolloutPlan;
use ota_domain::{CampaignId, CommandMeta, Decide, DeviceId, FirmwareId};
use ota_migrations::MIGRATOR;
use ota_orchestrator::chain::{self, StoredEvent};
use ota_orchestrator::Store;
use serde_json::{json, Value};
use sqlx::migrate::Migrator;
use sqlx::{PgConnection, PgPool, Row};

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The first migration of this release; the previous release stopped before it.
const FIRST_NEW_MIGRATION: i64 = 15;

/// A database of its own; dropped when the test got to the end.
struct TestDb {
    name: String,
    pool: PgPool,
}

impl TestDb {
    async fn create() -> Self {
        let name = format!("ota_test_schema_{}", uuid::Uuid::new_v4().simple());
        let admin = PgPool::connect(ADMIN_URL).await.expect("postgres is running on 127.0.0.1:5432");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("create database");
        admin.close().await;
        let pool = ota_migrations::connect(&format!("postgres://postgres@127.0.0.1:5432/{name}"), 8)
            .await
            .expect("connect to the test database");
        eprintln!("schema test database: {name}");
        TestDb { name, pool }
    }

    async fn drop_database(self) {
        self.pool.close().await;
        let admin = PgPool::connect(ADMIN_URL).await.expect("postgres");
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&admin).await;
    }
}

/// The migrations the previous release shipped (every one before 0015).
fn previous_release() -> Migrator {
    Migrator {
        migrations: Cow::Owned(MIGRATOR.iter().filter(|m| m.version < FIRST_NEW_MIGRATION).cloned().collect()),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    }
}

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 2, 1, 8, 0, 0).single().expect("a valid time") + Duration::seconds(seconds)
}

fn campaign_id() -> CampaignId {
    CampaignId::from_uuid(uuid::Uuid::from_u128(0x5c4e_3a00_0000_4000_8000_0000_0000_0001))
}

fn firmware_id() -> FirmwareId {
    FirmwareId::derive("gateway", "2.1.0", "gw-1")
}

fn device(n: u32) -> DeviceId {
    DeviceId::parse(&format!("gw-{n:03}")).expect("a valid device id")
}

fn meta() -> CommandMeta {
    CommandMeta::new(ota_domain::Actor::system("schema-test"))
}

/// A running campaign's events, `count` of them: created, started, then an
/// operator pausing and resuming it (a long stream, past a snapshot boundary).
fn campaign_events(count: usize) -> Vec<CampaignEvent> {
    let firmware = CampaignFirmware {
        id: firmware_id(),
        name: "gateway".into(),
        version: "2.1.0".into(),
        device_model: "gw-1".into(),
    };
    let mut commands = vec![
        CampaignCommand::Create {
            id: campaign_id(),
            name: "winter rollout".into(),
            firmware,
            target: Target { device_ids: vec![device(1), device(2)], filter: None, continuous: false },
            rollout: RolloutPlan::default(),
            created_by: "user:alice".into(),
            at: t(0),
        },
        CampaignCommand::Start {
            membership: Some(Membership { seed: 7, waves: vec![vec![device(1)], vec![device(2)]], excluded: 0 }),
            at: t(1),
        },
    ];
    for i in 0..count {
        let at = t(10 + i as i64);
        commands.push(CampaignCommand::Pause { reason: Some(format!("check {i}")), gate: None, at });
        commands.push(CampaignCommand::Resume { at });
    }
    let mut state = Campaign::default();
    let mut events = Vec::new();
    for command in commands {
        for event in state.decide(command).expect("the campaign accepts the command") {
            state.apply(event.clone());
            events.push(event);
        }
        if events.len() >= count {
            break;
        }
    }
    events.truncate(count);
    events
}

fn fold<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> A {
    let mut state = A::default();
    for event in events {
        state.apply(event);
    }
    state
}

/// Inserts one row as postgres-es wrote it (the seven columns it names).
async fn insert_row(
    conn: &mut PgConnection,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
    event_type: &str,
    event_version: &str,
    payload: &Value,
) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(sequence)
    .bind(event_type)
    .bind(event_version)
    .bind(payload)
    .bind(serde_json::to_value(meta().to_map()).expect("metadata"))
    .execute(conn)
    .await
    .expect("insert an event");
}

/// Events of one aggregate, in one transaction, at version 1.0 (all the previous release wrote).
async fn insert_events<E: DomainEvent>(pool: &PgPool, aggregate_type: &str, id: &str, events: &[E]) {
    let mut tx = pool.begin().await.expect("begin");
    for (i, event) in events.iter().enumerate() {
        let payload = serde_json::to_value(event).expect("payload");
        insert_row(&mut tx, aggregate_type, id, i as i64 + 1, &event.event_type(), "1.0", &payload).await;
    }
    tx.commit().await.expect("commit");
}

/// `UpdateAssigned` as releases before `kind`, `origin.wave` and `origin.retry` wrote it.
fn old_update_assigned(action: u32, at: DateTime<Utc>) -> Value {
    json!({"UpdateAssigned": {
        "action": action,
        "origin": {"campaign": campaign_id()},
        "firmware": {"id": firmware_id(), "version": "2.1.0"},
        "from": null,
        "at": at,
    }})
}

fn progress(action: u32, state: &str, at: DateTime<Utc>) -> Value {
    json!({"ProgressReported": {"action": action, "state": state, "progress": null, "message": null, "at": at}})
}

async fn stored_events(pool: &PgPool) -> Vec<(i64, String, String, Value)> {
    sqlx::query_as("SELECT global_seq, event_type, event_version, payload FROM events ORDER BY global_seq")
        .fetch_all(pool)
        .await
        .expect("read events")
}

async fn snapshot_rows(pool: &PgPool, id: &str) -> Vec<(i64, i64, Value)> {
    sqlx::query_as(
        "SELECT last_sequence, current_snapshot, payload FROM snapshots
         WHERE aggregate_type = 'Campaign' AND aggregate_id = $1",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .expect("read snapshots")
}

/// A campaign's state as its own events say, decoded like every reader does.
async fn campaign_from_events(pool: &PgPool, id: &str) -> Campaign {
    let rows = sqlx::query(
        "SELECT event_type, event_version, payload FROM events
         WHERE aggregate_type = 'Campaign' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .expect("read campaign events");
    fold(rows.iter().map(|row| {
        ota_domain::upcast::decode::<CampaignEvent>(
            "Campaign",
            row.get::<&str, _>("event_type"),
            row.get::<&str, _>("event_version"),
            row.get("payload"),
        )
        .expect("campaign events decode")
    }))
}

async fn overwrite_snapshot(pool: &PgPool, id: &str, payload: Value) {
    sqlx::query("UPDATE snapshots SET payload = $2 WHERE aggregate_type = 'Campaign' AND aggregate_id = $1")
        .bind(id)
        .bind(payload)
        .execute(pool)
        .await
        .expect("overwrite the snapshot");
}

#[tokio::test]
async fn a_snapshot_of_another_version_is_dropped_and_the_campaign_rebuilt_from_events() {
    let db = TestDb::create().await;
    MIGRATOR.run(&db.pool).await.expect("migrate");
    let store = Store::new(db.pool.clone());
    let id = campaign_id().to_string();
    // 60 events through the store: it writes a snapshot at 50.
    let events = campaign_events(60);
    insert_events(&db.pool, "Campaign", &id, &events[..40]).await;
    let mut state: Campaign = fold(events[..40].iter().cloned());
    let mut at = 1000;
    while store.load::<Campaign>(&campaign_id()).await.expect("load").1 < 60 {
        let command = match state.status {
            ota_domain::campaign::CampaignStatus::Paused => CampaignCommand::Resume { at: t(at) },
            _ => CampaignCommand::Pause { reason: None, gate: None, at: t(at) },
        };
        state = store.execute::<Campaign>(&campaign_id(), command, &meta()).await.expect("execute").state;
        at += 1;
    }
    let rows = snapshot_rows(&db.pool, &id).await;
    assert_eq!(rows.len(), 1, "one snapshot");
    let (last_sequence, _, sealed) = rows[0].clone();
    assert_eq!(last_sequence, 50);
    assert_eq!(sealed["snapshot_version"], json!(Campaign::SNAPSHOT_VERSION));
    let truth = campaign_from_events(&db.pool, &id).await;
    assert_eq!(store.load::<Campaign>(&campaign_id()).await.expect("load").0, truth);

    // A current-version snapshot is what the store starts from (so the checks below mean something).
    let mut doctored = sealed.clone();
    doctored["state"]["name"] = json!("from the snapshot");
    overwrite_snapshot(&db.pool, &id, doctored.clone()).await;
    assert_eq!(store.load::<Campaign>(&campaign_id()).await.expect("load").0.name, "from the snapshot");

    // The same snapshot under an older version: ignored, deleted, rebuilt from events.
    doctored["snapshot_version"] = json!(Campaign::SNAPSHOT_VERSION - 1);
    overwrite_snapshot(&db.pool, &id, doctored.clone()).await;
    let (loaded, version) = store.load::<Campaign>(&campaign_id()).await.expect("load");
    assert_eq!((loaded, version), (truth.clone(), 60));
    assert!(snapshot_rows(&db.pool, &id).await.is_empty(), "the stale snapshot is deleted");

    // A snapshot from before versions existed (the bare state) is just as stale.
    sqlx::query(
        "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload)
         VALUES ('Campaign', $1, 50, 1, $2)",
    )
    .bind(&id)
    .bind(doctored["state"].clone())
    .execute(&db.pool)
    .await
    .expect("an old snapshot");
    assert_eq!(store.load::<Campaign>(&campaign_id()).await.expect("load").0, truth);
    assert!(snapshot_rows(&db.pool, &id).await.is_empty());

    // Commands go on; the next boundary (100) writes a fresh snapshot of the current version.
    let mut state = truth;
    for i in 0..40 {
        let command = match state.status {
            ota_domain::campaign::CampaignStatus::Paused => CampaignCommand::Resume { at: t(2000 + i) },
            _ => CampaignCommand::Pause { reason: None, gate: None, at: t(2000 + i) },
        };
        state = store.execute::<Campaign>(&campaign_id(), command, &meta()).await.expect("execute").state;
    }
    let rows = snapshot_rows(&db.pool, &id).await;
    assert_eq!(rows.len(), 1, "exactly one snapshot row: {rows:?}");
    assert_eq!((rows[0].0, rows[0].1), (100, 1));
    assert_eq!(rows[0].2["snapshot_version"], json!(Campaign::SNAPSHOT_VERSION));
    assert_eq!(
        store.load::<Campaign>(&campaign_id()).await.expect("load").0,
        campaign_from_events(&db.pool, &id).await
    );
    db.drop_database().await;
}

/// What the previous release left: rows as its code wrote them, positions in
/// (tx_id, global_seq) order, and the global_seq the relay and chain stopped at.
struct OldRelease {
    /// The first event, in the old (tx_id, global_seq) order, the relay had not published.
    first_unpublished: i64,
    /// The global_seq of the last event it had published.
    last_published: i64,
    linked: usize,
}

/// Fills a database migrated to the previous release: a firmware, two devices, a
/// campaign of 99 events with the snapshot postgres-es wrote at 50 (the bare
/// state), the devices' updates with `UpdateAssigned` in its 1.0 shape, one of
/// them written by two transactions that committed out of order; then the
/// relay checkpoint and the hash chain as the old relay and chainer left them.
async fn fill_as_previous_release(pool: &PgPool) -> OldRelease {
    let firmware = FirmwareEvent::FirmwareUploaded {
        id: firmware_id(),
        spec: ota_domain::firmware::FirmwareSpec {
            name: "gateway".into(),
            version: "2.1.0".into(),
            device_model: "gw-1".into(),
            hardware_versions: vec![],
            release_notes: None,
        },
        binary: ota_domain::firmware::FirmwareBinary {
            filename: "gateway.swu".into(),
            size: 4096,
            sha256: "a".repeat(64),
            sha1: "b".repeat(40),
            md5: "c".repeat(32),
            storage_path: "firmware/gateway.swu".into(),
        },
        signature: Default::default(),
        release: None,
        at: t(-100),
    };
    insert_events(pool, "Firmware", &firmware_id().to_string(), &[firmware]).await;
    for n in [1, 2] {
        let profile =
            DeviceProfile { device_model: "gw-1".into(), firmware_version: Some("2.0.0".into()), ..Default::default() };
        let registered = DeviceEvent::DeviceRegistered { id: device(n), profile, at: t(-50) };
        insert_events(pool, "Device", &device(n).to_string(), &[registered]).await;
    }
    let campaign = campaign_events(99);
    let id = campaign_id().to_string();
    insert_events(pool, "Campaign", &id, &campaign).await;
    let at_50: Campaign = fold(campaign[..50].iter().cloned());
    sqlx::query(
        "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload)
         VALUES ('Campaign', $1, 50, 1, $2)",
    )
    .bind(&id)
    .bind(serde_json::to_value(&at_50).expect("state"))
    .execute(pool)
    .await
    .expect("the old snapshot");

    // gw-002's transaction A takes its position first; B (gw-001's notification)
    // commits in between; then A inserts again. In (tx_id, global_seq) order A's
    // rows come before B's, though B's position is lower than A's second row.
    let (gw1, gw2) = (device(1).to_string(), device(2).to_string());
    let mut tx = pool.begin().await.expect("begin");
    insert_row(&mut tx, "DeviceUpdate", &gw1, 1, "UpdateAssigned", "1.0", &old_update_assigned(1, t(200))).await;
    tx.commit().await.expect("commit");
    let mut a = pool.begin().await.expect("begin A");
    insert_row(&mut a, "DeviceUpdate", &gw2, 1, "UpdateAssigned", "1.0", &old_update_assigned(1, t(210))).await;
    let mut b = pool.begin().await.expect("begin B");
    let notified = json!({"DeviceNotified": {"action": 1, "at": t(215)}});
    insert_row(&mut b, "DeviceUpdate", &gw1, 2, "DeviceNotified", "1.0", &notified).await;
    b.commit().await.expect("commit B");
    insert_row(&mut a, "DeviceUpdate", &gw2, 2, "ProgressReported", "1.0", &progress(1, "downloading", t(220))).await;
    a.commit().await.expect("commit A");
    let mut tx = pool.begin().await.expect("begin");
    insert_row(&mut tx, "DeviceUpdate", &gw1, 3, "ProgressReported", "1.0", &progress(1, "succeeded", t(300))).await;
    tx.commit().await.expect("commit");

    // The old relay had published everything up to A's last row, in its order
    // (B's row and the last one not yet); the old chainer had linked the same prefix.
    let old_order = sqlx::query(
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, global_seq,
                recorded_at, tx_id::text AS tx
         FROM events ORDER BY tx_id, global_seq",
    )
    .fetch_all(pool)
    .await
    .expect("events in the old order");
    let published = old_order.len() - 2;
    let last_published = &old_order[published - 1];
    let first_unpublished: i64 = old_order[published].get("global_seq");
    sqlx::query(
        "INSERT INTO relay_checkpoint (name, tx_id, global_seq, published) VALUES ('relay', $1::text::xid8, $2, $3)",
    )
    .bind(last_published.get::<String, _>("tx"))
    .bind(last_published.get::<i64, _>("global_seq"))
    .bind(published as i64)
    .execute(pool)
    .await
    .expect("the old relay checkpoint");
    let mut previous = chain::GENESIS;
    for (i, row) in old_order[..published].iter().enumerate() {
        let event = StoredEvent {
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
        previous = chain::link(&previous, &event);
        sqlx::query("INSERT INTO event_chain (position, tx_id, global_seq, link) VALUES ($1, $2::text::xid8, $3, $4)")
            .bind(i as i64 + 1)
            .bind(row.get::<String, _>("tx"))
            .bind(event.global_seq)
            .bind(previous.to_vec())
            .execute(pool)
            .await
            .expect("an old chain link");
    }
    OldRelease { first_unpublished, last_published: last_published.get("global_seq"), linked: published }
}

#[tokio::test]
async fn a_database_of_the_previous_release_migrates_and_is_read_by_this_one() {
    let db = TestDb::create().await;
    previous_release().run(&db.pool).await.expect("the previous release's migrations");
    let old = fill_as_previous_release(&db.pool).await;
    assert!(old.first_unpublished < old.last_published, "the out-of-order commit is in the data");
    let before = stored_events(&db.pool).await;

    MIGRATOR.run(&db.pool).await.expect("this release's migrations");

    // The events are untouched: same rows, same versions, same payloads.
    assert_eq!(stored_events(&db.pool).await, before);

    // The relay's cursor is now a global_seq below which everything was published.
    let (cursor, published): (i64, i64) =
        sqlx::query_as("SELECT global_seq, published FROM relay_checkpoint WHERE name = 'relay'")
            .fetch_one(&db.pool)
            .await
            .expect("the converted checkpoint");
    // B's row sits below A's second row, which was published: the cursor goes back
    // to just below B's, and A's second row goes out again (consumers deduplicate).
    assert_eq!(cursor, old.first_unpublished - 1);
    assert_eq!(published, old.linked as i64);
    let tx_column: Option<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'relay_checkpoint' AND column_name = 'tx_id'",
    )
    .fetch_optional(&db.pool)
    .await
    .expect("columns");
    assert_eq!(tx_column, None);

    // The old chain still verifies, link for link.
    let verification = chain::verify(&db.pool).await.expect("verify");
    assert!(verification.ok, "{verification:?}");
    assert_eq!(verification.verified, old.linked as i64);

    // The store reads what the old code wrote: the 1.0 assignments upcast...
    let store = Store::new(db.pool.clone());
    let (gw1, version) = store.load::<DeviceUpdate>(&device(1)).await.expect("load gw-001");
    assert_eq!(version, 3);
    let lane = gw1.current.clone().expect("gw-001 has an update");
    assert_eq!(lane.kind, LaneKind::Update);
    assert_eq!(lane.origin, Origin { campaign: Some(campaign_id()), wave: None, retry: 0, timeout_secs: None });
    assert_eq!(lane.state, UpdateState::Succeeded);
    // ... the same through the group-commit loads ...
    let ids = [device(1).to_string(), device(2).to_string()];
    let many = store.load_many::<DeviceUpdate>(&ids).await.expect("load many");
    assert_eq!(many.get(&ids[0]).map(|(s, v)| (s, *v)), Some((&gw1, 3)));
    assert_eq!(
        many.get(&ids[1]).and_then(|(s, _)| s.current.as_ref()).map(|l| l.state),
        Some(UpdateState::Downloading)
    );
    // ... and the campaign ignores its pre-version snapshot and rebuilds from events.
    let id = campaign_id().to_string();
    let (campaign, version) = store.load::<Campaign>(&campaign_id()).await.expect("load the campaign");
    assert_eq!(version, 99);
    assert_eq!(campaign, fold(campaign_events(99)));
    assert!(snapshot_rows(&db.pool, &id).await.is_empty(), "the old snapshot is dropped");

    // New writes: a new assignment is stored at 1.1; the campaign's next snapshot is versioned.
    let assign = DeviceUpdateCommand::Assign {
        origin: Origin { campaign: None, wave: None, retry: 0, timeout_secs: None },
        firmware: UpdateFirmware { id: firmware_id(), version: "2.2.0".into() },
        from: Some(UpdateFirmware { id: firmware_id(), version: "2.1.0".into() }),
        at: t(400),
    };
    store.execute::<DeviceUpdate>(&device(1), assign, &meta()).await.expect("assign anew");
    let version: String = sqlx::query_scalar(
        "SELECT event_version FROM events WHERE aggregate_type = 'DeviceUpdate' AND aggregate_id = $1 AND sequence = 4",
    )
    .bind(&ids[0])
    .fetch_one(&db.pool)
    .await
    .expect("the new assignment");
    assert_eq!(version, "1.1");
    let resume_or_pause = match campaign.status {
        ota_domain::campaign::CampaignStatus::Paused => CampaignCommand::Resume { at: t(500) },
        _ => CampaignCommand::Pause { reason: None, gate: None, at: t(500) },
    };
    store.execute::<Campaign>(&campaign_id(), resume_or_pause, &meta()).await.expect("the campaign goes on");
    let rows = snapshot_rows(&db.pool, &id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].2["snapshot_version"], json!(Campaign::SNAPSHOT_VERSION));

    // The audit and the projections' replay read the old rows through the same chain.
    // The audit's clock is the rows' recorded_at, which is now.
    let later = Utc::now() + Duration::minutes(1);
    let audit = ota_orchestrator::audit::device_at(&db.pool, &ids[1], later).await.expect("audit gw-002");
    assert_eq!(audit.update.map(|l| (l.kind, l.origin.retry)), Some((LaneKind::Update, 0)));
    ota_orchestrator::audit::campaign_at(&db.pool, campaign_id(), later).await.expect("audit the campaign");
    let mut conn = db.pool.acquire().await.expect("connection");
    let records = ota_projections::event_log::page_after(&mut conn, None, None, 0, 1000).await.expect("replay page");
    for record in records.iter().filter(|r| r.aggregate_type == "DeviceUpdate") {
        record.decode::<ota_domain::device_update::DeviceUpdateEvent>().expect("decodes");
    }
    drop(conn);
    db.drop_database().await;
}
