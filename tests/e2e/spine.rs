//! The event spine: command -> store -> relay -> NATS -> projection -> query.
//!
//! Besides the happy path, these tests prove the spine's promises under
//! concurrency: no accepted command is lost or doubled, the relay never passes
//! a transaction that commits late, a projection can fill a gap from the event
//! store, and a replayed read model equals the live one. The helpers below
//! (`assert_spine_consistent`, `Ledger`, `Load`, ...) are shared with `faults.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::message::PublishMessage;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use ota::server::Components;
use ota_domain::campaign::Campaign;
use ota_domain::EventRecord;
use ota_projections::ProjectionName;
use ota_testkit::{eventually, json_of, read_models, TestApp, TestOptions};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_firmware_reaches_the_catalog_through_nats() {
    let app = TestApp::spawn().await;
    let id = app.firmware("1.0.0").await;
    let body: serde_json::Value = eventually("firmware in catalog", Duration::from_secs(20), || async {
        let r = app.get(&format!("/api/v1/firmware/{id}")).send().await.ok()?;
        (r.status() == 200).then_some(())?;
        r.json().await.ok()
    })
    .await;
    assert_eq!(body["version"], "1.0.0");
    assert_eq!(body["created_by"], "user:tester");
}

// ---------------------------------------------------------------------------
// Shared set-up and checks
// ---------------------------------------------------------------------------

/// Every projection the server runs.
pub(crate) const PROJECTIONS: [ProjectionName; 5] = [
    ProjectionName::Firmware,
    ProjectionName::Campaigns,
    ProjectionName::Activity,
    ProjectionName::Devices,
    ProjectionName::Updates,
];

/// Devices every spine test registers (model `gw`, as `TestApp::firmware` builds for).
pub(crate) const DEVICES: [&str; 3] = ["dev-1", "dev-2", "dev-3"];

/// The store, relay and projections, without the rollout process manager: the
/// tests below must know exactly who writes to a campaign.
pub(crate) fn spine_only() -> TestOptions {
    TestOptions { components: Components { rollouts: false, ..Components::default() }, ..TestOptions::default() }
}

/// A server of the spine only, with `DEVICES` registered and a firmware for them.
pub(crate) async fn spine_app(options: TestOptions) -> (TestApp, String) {
    let app = TestApp::spawn_with(options).await;
    app.register_devices(&DEVICES.map(String::from), "hw-1").await;
    let firmware = app.firmware("1.0.0").await;
    (app, firmware)
}

/// Rows in the event store.
pub(crate) async fn stored_events(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.db).await.expect("count events")
}

/// Messages in the JetStream events stream (0 while it does not exist yet).
pub(crate) async fn stream_messages(app: &TestApp) -> u64 {
    match app.js.get_stream(app.names.events_stream()).await {
        Ok(stream) => stream.get_info().await.expect("stream info").state.messages,
        Err(_) => 0,
    }
}

/// Waits until the stream holds exactly one message per stored event. Fails at
/// once if it ever holds more: an event was published twice.
pub(crate) async fn relayed_all(app: &TestApp) {
    eventually("every stored event in the JetStream stream", Duration::from_secs(30), || async {
        // Stream first: the store only grows, so `published <= stored` must hold.
        let published = stream_messages(app).await;
        let stored = stored_events(app).await;
        assert!(
            published as i64 <= stored,
            "the stream holds {published} messages for {stored} stored events: something was published twice"
        );
        (published as i64 == stored).then_some(())
    })
    .await
}

/// `(aggregate_type, aggregate_id, sequence)` of every message in the stream, in stream order.
pub(crate) async fn stream_event_ids(app: &TestApp) -> Vec<(String, String, i64)> {
    let stream = app.js.get_stream(app.names.events_stream()).await.expect("events stream");
    let total = stream.get_info().await.expect("stream info").state.messages;
    if total == 0 {
        return Vec::new();
    }
    let consumer = stream
        .create_consumer(pull::OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() })
        .await
        .expect("ordered consumer");
    let mut messages = consumer.messages().await.expect("ordered messages");
    let mut ids = Vec::with_capacity(total as usize);
    while (ids.len() as u64) < total {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("reading the stream stalled")
            .expect("stream ended early")
            .expect("stream message");
        let record: EventRecord = serde_json::from_slice(&message.payload).expect("message is an event record");
        ids.push((record.aggregate_type, record.aggregate_id, record.sequence));
    }
    ids
}

async fn stored_event_ids(app: &TestApp) -> HashSet<(String, String, i64)> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as("SELECT aggregate_type, aggregate_id, sequence FROM events")
        .fetch_all(&app.db)
        .await
        .expect("stored events");
    rows.into_iter().collect()
}

/// Campaign events that change its status (and count in `status_changes`).
const STATUS_EVENTS: &str = "('CampaignScheduled', 'CampaignStarted', 'CampaignPaused', 'CampaignResumed',
    'CampaignCancelled', 'CampaignCompleted', 'CampaignAborted')";

/// Waits until the relay and every projection caught up, then proves the whole
/// spine agrees with the event store:
/// - the stream holds every stored event exactly once, each aggregate in order;
/// - `activity` holds every event exactly once, applied in per-aggregate order 1..n;
/// - `campaigns` and `campaign_status_counts` equal what the aggregates say;
/// - `firmware` has one row per firmware aggregate.
///
/// Returns the number of stored events.
pub(crate) async fn assert_spine_consistent(app: &TestApp) -> i64 {
    relayed_all(app).await;
    for projection in PROJECTIONS {
        app.caught_up(projection).await;
    }
    let stored = stored_event_ids(app).await;

    // The stream: nothing missing, nothing doubled, each aggregate in order.
    let published = stream_event_ids(app).await;
    let mut seen = HashSet::new();
    let mut last: HashMap<(String, String), i64> = HashMap::new();
    for (kind, id, sequence) in &published {
        assert!(seen.insert((kind.clone(), id.clone(), *sequence)), "{kind}:{id}:{sequence} is in the stream twice");
        let previous = last.insert((kind.clone(), id.clone()), *sequence);
        assert!(
            previous.is_none_or(|p| p < *sequence),
            "{kind}:{id}: sequence {sequence} published after {previous:?}"
        );
    }
    assert_eq!(seen, stored, "the stream and the event store differ");

    // The activity log: the same events, each once, applied in order.
    let activity: i64 =
        sqlx::query_scalar("SELECT count(*) FROM activity").fetch_one(&app.db).await.expect("count activity");
    assert_eq!(activity, stored.len() as i64, "activity rows vs events");
    let mismatched: Vec<String> = sqlx::query_scalar(
        "SELECT concat_ws(':', aggregate_type, aggregate_id, sequence, e.global_seq, a.global_seq)
         FROM events e FULL JOIN activity a USING (aggregate_type, aggregate_id, sequence)
         WHERE e.global_seq IS DISTINCT FROM a.global_seq LIMIT 10",
    )
    .fetch_all(&app.db)
    .await
    .expect("compare activity");
    assert!(mismatched.is_empty(), "activity differs from events: {mismatched:?}");
    let out_of_order: Vec<String> = sqlx::query_scalar(
        "SELECT concat_ws(':', aggregate_type, aggregate_id, sequence, applied_order, rank) FROM (
            SELECT aggregate_type, aggregate_id, sequence, applied_order,
                   row_number() OVER (PARTITION BY aggregate_type, aggregate_id ORDER BY applied_order) AS rank
            FROM activity) applied
         WHERE sequence <> rank LIMIT 10",
    )
    .fetch_all(&app.db)
    .await
    .expect("activity order");
    assert!(
        out_of_order.is_empty(),
        "activity not applied as 1..n per aggregate (type:id:sequence:applied_order:rank): {out_of_order:?}"
    );

    // Campaigns: every aggregate's folded state is what the read model says.
    let streams: Vec<(String, i64, i64)> = sqlx::query_as(&format!(
        "SELECT aggregate_id, count(*), count(*) FILTER (WHERE event_type IN {STATUS_EVENTS})
         FROM events WHERE aggregate_type = 'Campaign' GROUP BY aggregate_id"
    ))
    .fetch_all(&app.db)
    .await
    .expect("campaign streams");
    let views: HashMap<String, (String, i32)> =
        sqlx::query_as::<_, (uuid::Uuid, String, i32)>("SELECT id, status, status_changes FROM campaigns")
            .fetch_all(&app.db)
            .await
            .expect("campaign views")
            .into_iter()
            .map(|(id, status, changes)| (id.to_string(), (status, changes)))
            .collect();
    assert_eq!(views.len(), streams.len(), "one campaign row per aggregate");
    let mut expected_counts: BTreeMap<String, i64> = BTreeMap::new();
    for (id, events, status_events) in &streams {
        let (state, version) =
            app.server.state.store.load::<Campaign>(&id.parse().expect("campaign id")).await.expect("load campaign");
        assert_eq!(version as i64, *events, "campaign {id}: version vs events");
        let (status, changes) = views.get(id).expect("campaign in read model");
        assert_eq!(status, state.status.as_str(), "campaign {id}: status");
        assert_eq!(*changes as i64, *status_events, "campaign {id}: status changes");
        *expected_counts.entry(state.status.as_str().to_owned()).or_default() += 1;
    }
    let counts: BTreeMap<String, i64> =
        sqlx::query_as::<_, (String, i64)>("SELECT status, count FROM campaign_status_counts")
            .fetch_all(&app.db)
            .await
            .expect("status counts")
            .into_iter()
            .inspect(|(status, count)| assert!(*count >= 0, "negative count for {status}"))
            .filter(|(_, count)| *count != 0)
            .collect();
    assert_eq!(counts, expected_counts, "campaign_status_counts");

    let (firmware_rows, firmware_streams): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM firmware),
                (SELECT count(DISTINCT aggregate_id) FROM events WHERE aggregate_type = 'Firmware')",
    )
    .fetch_one(&app.db)
    .await
    .expect("firmware rows");
    assert_eq!(firmware_rows, firmware_streams, "one firmware row per aggregate");
    stored.len() as i64
}

/// Events stored per aggregate type.
pub(crate) async fn events_of(app: &TestApp, aggregate_type: &str) -> u64 {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = $1")
        .bind(aggregate_type)
        .fetch_one(&app.db)
        .await
        .expect("count events");
    n as u64
}

/// Every campaign command sent, under a request id of the client's choosing
/// (the server keeps an `x-request-id` it is given and stores it with the events).
#[derive(Clone, Default)]
pub(crate) struct Ledger {
    entries: Arc<Mutex<Vec<Sent>>>,
    next: Arc<AtomicU64>,
}

#[derive(Debug, Clone)]
struct Sent {
    request_id: String,
    action: &'static str,
    campaign: Option<String>,
    status: u16,
}

impl Ledger {
    fn request_id(&self) -> String {
        format!("ledger-{}-{}", uuid::Uuid::new_v4().simple(), self.next.fetch_add(1, Ordering::SeqCst))
    }

    fn record(&self, request_id: String, action: &'static str, campaign: Option<String>, status: u16) {
        self.entries.lock().expect("ledger").push(Sent { request_id, action, campaign, status });
    }

    pub(crate) async fn create(&self, app: &TestApp, name: &str, firmware: &str, devices: &[&str]) -> (u16, Value) {
        let request_id = self.request_id();
        let body = json!({"name": name, "firmware_id": firmware, "target": {"device_ids": devices}});
        let request = app.post("/api/v1/campaigns").header("x-request-id", &request_id).json(&body);
        let (status, body) = json_of(request.send().await.expect("create campaign")).await;
        let campaign = body["id"].as_str().map(str::to_owned);
        self.record(request_id, "create", campaign, status);
        (status, body)
    }

    pub(crate) async fn act(&self, app: &TestApp, campaign: &str, action: &'static str) -> (u16, Value) {
        let request_id = self.request_id();
        let request = app.post(&format!("/api/v1/campaigns/{campaign}/{action}")).header("x-request-id", &request_id);
        let (status, body) = json_of(request.send().await.expect("campaign action")).await;
        self.record(request_id, action, Some(campaign.to_owned()), status);
        (status, body)
    }

    /// Commands the API accepted (2xx).
    pub(crate) fn accepted(&self) -> usize {
        self.entries.lock().expect("ledger").iter().filter(|s| (200..300).contains(&s.status)).count()
    }

    /// Every accepted command is in the store exactly once (one commit, on its
    /// campaign, starting with the event its action makes, contiguous); no
    /// refused one left anything; and (if `complete`) users wrote nothing else
    /// to any campaign.
    pub(crate) async fn assert_in_store(&self, app: &TestApp, complete: bool) {
        let rows: Vec<Written> = sqlx::query_as(
            "SELECT metadata->>'request_id' AS request_id, aggregate_id AS campaign,
                    array_agg(event_type ORDER BY sequence) AS types, count(DISTINCT tx_id) AS commits,
                    min(sequence) AS first, max(sequence) AS last, count(*) AS events
             FROM events WHERE aggregate_type = 'Campaign' AND metadata->>'actor_kind' = 'user'
             GROUP BY 1, 2",
        )
        .fetch_all(&app.db)
        .await
        .expect("events by request id");
        let mut stored: HashMap<Option<String>, Vec<Written>> = HashMap::new();
        for row in rows {
            stored.entry(row.request_id.clone()).or_default().push(row);
        }
        let entries = self.entries.lock().expect("ledger").clone();
        for sent in &entries {
            let found = stored.get(&Some(sent.request_id.clone()));
            if !(200..300).contains(&sent.status) {
                assert!(found.is_none(), "refused {sent:?} left events: {found:?}");
                continue;
            }
            let found = found.unwrap_or_else(|| panic!("accepted {sent:?} is not in the store"));
            assert_eq!(found.len(), 1, "accepted {sent:?} wrote to several campaigns: {found:?}");
            let Written { campaign, types, commits, first, last, events, .. } = &found[0];
            assert_eq!(Some(campaign), sent.campaign.as_ref(), "{sent:?} wrote to another campaign");
            assert_eq!(*commits, 1, "accepted {sent:?} was committed {commits} times: {types:?}");
            assert_eq!(last - first + 1, *events, "{sent:?}: its events are not contiguous");
            let expected = match sent.action {
                "create" => "CampaignCreated",
                "start" => "CampaignStarted",
                "pause" => "CampaignPaused",
                "resume" => "CampaignResumed",
                "cancel" => "CampaignCancelled",
                other => panic!("unknown action {other}"),
            };
            assert_eq!(types[0], expected, "{sent:?}: {types:?}");
            if sent.action != "start" {
                assert_eq!(types.len(), 1, "{sent:?} should store exactly one event: {types:?}");
            }
        }
        if complete {
            let known: HashSet<String> = entries.iter().map(|s| s.request_id.clone()).collect();
            let unknown: Vec<_> = stored.keys().filter(|r| r.as_ref().is_none_or(|r| !known.contains(r))).collect();
            assert!(unknown.is_empty(), "campaign events no client was told about: {unknown:?}");
        }
    }
}

/// The events one request wrote to one campaign.
#[derive(Debug, sqlx::FromRow)]
struct Written {
    request_id: Option<String>,
    campaign: String,
    types: Vec<String>,
    commits: i64,
    first: i64,
    last: i64,
    events: i64,
}

/// A small deterministic PRNG (xorshift64*), so a failing run can be reasoned about.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

/// A background load: writers each drive their own campaigns through
/// create, start, pause, resume, pause, resume, cancel, over and over. Every
/// command must succeed (each campaign has a single writer).
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    writers: Vec<JoinHandle<()>>,
}

impl Load {
    pub(crate) fn start(app: Arc<TestApp>, ledger: &Ledger, firmware: &str, writers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let writers = (0..writers)
            .map(|w| {
                let (app, ledger, stop, firmware) = (app.clone(), ledger.clone(), stop.clone(), firmware.to_owned());
                tokio::spawn(async move {
                    let mut round = 0;
                    while !stop.load(Ordering::SeqCst) {
                        round += 1;
                        let (status, body) =
                            ledger.create(&app, &format!("load {w}.{round}"), &firmware, &DEVICES).await;
                        assert_eq!(status, 201, "create under load: {body}");
                        let id = body["id"].as_str().expect("campaign id").to_owned();
                        for action in ["start", "pause", "resume", "pause", "resume", "cancel"] {
                            if stop.load(Ordering::SeqCst) {
                                break;
                            }
                            let (status, body) = ledger.act(&app, &id, action).await;
                            assert_eq!(status, 200, "{action} under load: {body}");
                        }
                    }
                })
            })
            .collect();
        Self { stop, writers }
    }

    pub(crate) async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for writer in self.writers {
            writer.await.expect("writer");
        }
    }
}

/// Inserts into `events` that did not survive: postgres-es reports a
/// concurrent append as a unique violation, and the aborted row still used up
/// its `global_seq` (identity values are never handed back).
async fn aborted_event_inserts(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(max(global_seq), 0) - count(*) FROM events")
        .fetch_one(&app.db)
        .await
        .expect("global positions")
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// 32 writers through the HTTP API, most of them on the same few campaigns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_writers_on_shared_campaigns_lose_and_double_nothing() {
    const WRITERS: u64 = 32;
    const STEPS: usize = 60;
    let (app, firmware) = spine_app(spine_only()).await;
    let app = Arc::new(app);
    let ledger = Ledger::default();

    // One long-lived campaign everybody keeps pausing and resuming (its stream
    // crosses several snapshot boundaries), plus a pool of campaigns of which
    // writers pick the newest few. Writers choose the action the last status
    // they saw allows, so several of them send the same one at once: one wins,
    // the others lose the append, retry, and are refused.
    let (status, body) = ledger.create(&app, "marathon", &firmware, &DEVICES).await;
    assert_eq!(status, 201, "{body}");
    let marathon = body["id"].as_str().expect("campaign id").to_owned();
    let live: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen: Arc<Mutex<HashMap<String, String>>> =
        Arc::new(Mutex::new(HashMap::from([(marathon.clone(), "draft".to_owned())])));
    let refusals: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (app, ledger, firmware, marathon) = (app.clone(), ledger.clone(), firmware.clone(), marathon.clone());
        let (live, seen, refusals) = (live.clone(), seen.clone(), refusals.clone());
        writers.push(tokio::spawn(async move {
            let mut rng = Rng::new(w + 1);
            for step in 0..STEPS {
                let known = live.lock().expect("live").len();
                if known < 6 || rng.below(100) < 8 {
                    let (status, body) = ledger.create(&app, &format!("w{w} s{step}"), &firmware, &DEVICES).await;
                    assert_eq!(status, 201, "create: {body}");
                    let id = body["id"].as_str().expect("campaign id").to_owned();
                    seen.lock().expect("seen").insert(id.clone(), "draft".into());
                    live.lock().expect("live").push(id);
                    continue;
                }
                let id = if rng.below(100) < 30 {
                    marathon.clone()
                } else {
                    let live = live.lock().expect("live");
                    live[live.len() - 1 - rng.below(live.len().min(6))].clone()
                };
                let status = seen.lock().expect("seen")[&id].clone();
                let action = match status.as_str() {
                    _ if id != marathon && rng.below(100) < 5 => "cancel",
                    "draft" => "start",
                    "running" => "pause",
                    _ => "resume",
                };
                let (code, body) = ledger.act(&app, &id, action).await;
                match code {
                    200 => {
                        let now = body["status"].as_str().expect("status").to_owned();
                        if now == "cancelled" {
                            live.lock().expect("live").retain(|l| *l != id);
                        }
                        seen.lock().expect("seen").insert(id, now);
                    }
                    409 => {
                        let code = body["error"].as_str().unwrap_or("?").to_owned();
                        *refusals.lock().expect("refusals").entry(code).or_default() += 1;
                        // Answers arrive in any order: learn the status from the store.
                        let (state, _) = app
                            .server
                            .state
                            .store
                            .load::<Campaign>(&id.parse().expect("campaign id"))
                            .await
                            .expect("load");
                        seen.lock().expect("seen").insert(id, state.status.as_str().to_owned());
                    }
                    other => panic!("{action} {id}: unexpected {other} {body}"),
                }
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    let refusals = refusals.lock().expect("refusals").clone();
    let accepted = ledger.accepted() as u64;
    let marathon_changes: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type IN {STATUS_EVENTS}"
    ))
    .bind(&marathon)
    .fetch_one(&app.db)
    .await
    .expect("marathon");
    eprintln!(
        "{accepted} accepted commands ({marathon_changes} status changes of the marathon), refusals {refusals:?}"
    );
    assert!(accepted >= WRITERS * STEPS as u64 / 4, "too few commands accepted to prove anything: {accepted}");
    assert!(marathon_changes > 60, "the marathon should cross a snapshot boundary (every 50): {marathon_changes}");
    // Every conflict was resolved by a retry inside the store: a refusal only
    // ever says the transition no longer applies, never "retry yourself".
    assert!(refusals.keys().all(|code| code == "campaign.invalid_transition"), "unexpected refusals: {refusals:?}");

    // No accepted command was lost, none was doubled, no refused one was stored.
    ledger.assert_in_store(&app, true).await;
    // The writers really raced: appends lost to a concurrent one and were retried.
    let conflicts = aborted_event_inserts(&app).await;
    eprintln!("{conflicts} conflicting appends were retried");
    assert!(conflicts > 0, "no append ever conflicted: the test proves nothing");
    // Every event reached every projection exactly once, in per-aggregate order.
    assert_spine_consistent(&app).await;
}

/// Only transactions that write events can hold the relay and the chainer back.
/// A write transaction in another database of the cluster, or one here that
/// wrote no events (a replay, an idle session), used to stop all publishing for
/// as long as it stayed open: both read below the cluster-wide `xmin`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_that_write_no_events_do_not_hold_back_publishing() {
    use sqlx::{Connection, PgConnection};
    let (app, firmware) = spine_app(spine_only()).await;
    relayed_all(&app).await;
    let options = app.db.connect_options().as_ref().clone();
    let mut other_database = PgConnection::connect_with(&options.clone().database("postgres")).await.expect("connect");
    let mut elsewhere = other_database.begin().await.expect("begin elsewhere");
    let mut same_database = PgConnection::connect_with(&options).await.expect("connect");
    let mut here = same_database.begin().await.expect("begin here");
    for open in [&mut *elsewhere, &mut *here] {
        sqlx::query("SET LOCAL idle_in_transaction_session_timeout = 0").execute(&mut *open).await.expect("no limit");
        // A transaction id: what the cluster-wide horizon waits for.
        sqlx::query("SELECT pg_current_xact_id()").execute(open).await.expect("take a transaction id");
    }

    let before = stored_events(&app).await;
    let (status, body) = app.create_campaign("while others are open", &firmware, &DEVICES).await;
    assert_eq!(status, 201, "{body}");
    assert!(stored_events(&app).await > before, "the campaign's events are stored");
    relayed_all(&app).await;
    let stored = stored_events(&app).await;
    eventually("the chainer to link every event", Duration::from_secs(30), || async {
        let linked: i64 =
            sqlx::query_scalar("SELECT count(*) FROM event_chain").fetch_one(&app.db).await.expect("links");
        (linked == stored).then_some(())
    })
    .await;
    elsewhere.rollback().await.expect("rollback elsewhere");
    here.rollback().await.expect("rollback here");
}

/// Rows inserted by transactions that have not committed yet are invisible to
/// the relay, but so must be everything committed after them: a cursor on
/// `global_seq` would pass the open one and lose it (eventstore.md §2.3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_waits_for_a_transaction_that_commits_late() {
    let (app, firmware) = spine_app(spine_only()).await;
    relayed_all(&app).await;
    let published_before = stream_messages(&app).await;

    // A writer inserts an event and stays open.
    let probe = uuid::Uuid::new_v4().to_string();
    let mut late = app.db.begin().await.expect("begin");
    sqlx::query("SET LOCAL idle_in_transaction_session_timeout = 0").execute(&mut *late).await.expect("no limit");
    let late_seq: i64 = sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('Probe', $1, 1, 'ProbeRecorded', '1.0', $2, $3)
         RETURNING global_seq",
    )
    .bind(&probe)
    .bind(json!({"note": "committed late"}))
    .bind(json!({"actor_kind": "system", "actor_id": "probe"}))
    .fetch_one(&mut *late)
    .await
    .expect("insert the late event");

    // Meanwhile, later events commit through the API.
    let (status, body) = app.create_campaign("after the probe", &firmware, &DEVICES).await;
    assert_eq!(status, 201, "{body}");
    let campaign = body["id"].as_str().expect("campaign id").to_owned();
    for action in ["start", "pause"] {
        let (status, body) = app.campaign_action(&campaign, action).await;
        assert_eq!(status, 200, "{action}: {body}");
    }
    let later: Vec<i64> = sqlx::query_scalar("SELECT global_seq FROM events WHERE aggregate_id = $1 ORDER BY sequence")
        .bind(&campaign)
        .fetch_all(&app.db)
        .await
        .expect("later positions");
    assert!(later.len() >= 3, "{later:?}");
    assert!(later.iter().all(|g| *g > late_seq), "the trap needs later events at higher positions: {later:?}");

    // The relay keeps polling (a whole step after those commits) and publishes nothing.
    let committed: DateTime<Utc> =
        sqlx::query_scalar("SELECT clock_timestamp()").fetch_one(&app.db).await.expect("clock");
    relay_stepped_after(&app, committed).await;
    assert_eq!(stream_messages(&app).await, published_before, "the relay published past an open transaction");
    let checkpoint: i64 = sqlx::query_scalar("SELECT global_seq FROM relay_checkpoint WHERE name = $1")
        .bind(app.names.prefix())
        .fetch_one(&app.db)
        .await
        .expect("relay checkpoint");
    assert!(checkpoint < late_seq, "checkpoint {checkpoint} passed the open event {late_seq}");

    // Once it commits, everything arrives, the late event first.
    late.commit().await.expect("commit the late event");
    relayed_all(&app).await;
    app.caught_up(ProjectionName::Activity).await;
    let order = stream_event_ids(&app).await;
    let position = |kind: &str, id: &str, seq: i64| {
        order
            .iter()
            .position(|(k, i, s)| k == kind && i == id && *s == seq)
            .unwrap_or_else(|| panic!("{kind}:{id}:{seq} not in the stream"))
    };
    let probe_at = position("Probe", &probe, 1);
    for seq in 1..=later.len() as i64 {
        assert!(position("Campaign", &campaign, seq) > probe_at, "Campaign {seq} overtook the late event");
    }
    let probe_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM activity WHERE aggregate_type = 'Probe' AND aggregate_id = $1")
            .bind(&probe)
            .fetch_one(&app.db)
            .await
            .expect("probe activity");
    assert_eq!(probe_rows, 1);
    assert_spine_consistent(&app).await;
}

/// The leading relay's session in `pg_stat_activity a` (`$1` is the NATS prefix).
pub(crate) const RELAY_SESSION: &str = "a.datname = current_database() AND a.application_name = 'ota relay:' || $1";

/// Waits until the leading relay (its reading session) has
/// run three queries that started after `after`: whatever they were (checkpoint,
/// page, advance), a whole step that read its page after `after` has ended.
pub(crate) async fn relay_stepped_after(app: &TestApp, after: DateTime<Utc>) {
    let seen = Mutex::new(HashSet::new());
    eventually("the relay to take another step", Duration::from_secs(10), || async {
        let started: Option<DateTime<Utc>> =
            sqlx::query_scalar(&format!("SELECT a.query_start FROM pg_stat_activity a WHERE {RELAY_SESSION}"))
                .bind(app.names.prefix())
                .fetch_optional(&app.db)
                .await
                .ok()
                .flatten();
        let mut seen = seen.lock().expect("seen");
        seen.extend(started.filter(|s| *s > after));
        (seen.len() >= 3).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_read_model_equals_the_live_one() {
    let (app, firmware) = spine_app(spine_only()).await;
    let app = Arc::new(app);
    let old = app.firmware("0.9.0").await;
    let (status, body) = json_of(
        app.post(&format!("/api/v1/firmware/{old}/deprecate"))
            .json(&json!({"reason": "superseded"}))
            .send()
            .await
            .expect("deprecate"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // A mixed workload: campaigns in every reachable state, with concurrent writers.
    let ledger = Ledger::default();
    let load = Load::start(app.clone(), &ledger, &firmware, 4);
    eventually("some load", Duration::from_secs(20), || async { (stored_events(&app).await >= 80).then_some(()) })
        .await;
    load.stop().await;
    for (i, actions) in [&[][..], &["start"][..], &["start", "pause"][..], &["cancel"][..]].iter().enumerate() {
        let (status, body) = ledger.create(&app, &format!("mixed {i}"), &firmware, &DEVICES).await;
        assert_eq!(status, 201, "{body}");
        let id = body["id"].as_str().expect("campaign id");
        for action in *actions {
            let (status, body) = ledger.act(&app, id, action).await;
            assert_eq!(status, 200, "{action}: {body}");
        }
    }
    // Device updates, in several states (one group-committed report at a time).
    for device in DEVICES {
        let (status, body) = json_of(
            app.post(&format!("/api/v1/devices/{device}/update"))
                .json(&json!({"firmware_id": firmware}))
                .send()
                .await
                .expect("assign an update"),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    for (device, states) in [("dev-1", &["downloading", "installing", "succeeded"][..]), ("dev-2", &["failed"][..])] {
        for state in states {
            let (status, body) = json_of(
                app.post(&format!("/api/v1/devices/{device}/status"))
                    .json(&json!({"state": state}))
                    .send()
                    .await
                    .expect("report"),
            )
            .await;
            assert_eq!(status, 200, "{device} {state}: {body}");
        }
    }
    assert_spine_consistent(&app).await;

    let live = read_models(&app.db).await;
    for name in PROJECTIONS {
        let applied = ota_projections::rebuild(&app.db, name).await.unwrap_or_else(|e| panic!("rebuild {name}: {e}"));
        assert!(applied > 0, "rebuild {name} applied nothing");
    }
    let replayed = read_models(&app.db).await;
    for name in [
        "firmware",
        "campaigns",
        "campaign_status_counts",
        "activity",
        "devices",
        "device_updates",
        "update_history",
        "projection_offsets",
    ] {
        assert!(!live[name].is_empty(), "{name} is empty: the comparison proves nothing");
    }
    for (name, rows) in &live {
        assert_eq!(rows, &replayed[name], "{name}: the replayed read model differs from the live one");
    }
}

/// A projection that receives an event after a gap reads the missing ones
/// from the event store before applying it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_fills_a_gap_from_the_event_store() {
    let mut options = spine_only();
    options.components.relay = false;
    let (app, firmware) = spine_app(options).await;
    let (status, body) = app.create_campaign("gappy", &firmware, &DEVICES).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("campaign id").to_owned();
    for action in ["start", "pause", "resume", "cancel"] {
        let (status, body) = app.campaign_action(&id, action).await;
        assert_eq!(status, 200, "{action}: {body}");
    }
    let stored: Vec<(i64, String)> =
        sqlx::query_as("SELECT sequence, event_type FROM events WHERE aggregate_id = $1 ORDER BY sequence")
            .bind(&id)
            .fetch_all(&app.db)
            .await
            .expect("campaign events");
    let last_seq = stored.len() as i64;
    assert!(last_seq >= 5, "{stored:?}");

    // Nothing was relayed; publish only the campaign's last event, as the relay would.
    ota_projections::worker::ensure_events_stream(&app.js, &app.names).await.expect("events stream");
    let mut conn = app.db.acquire().await.expect("connection");
    let last = ota_projections::event_log::events_between(&mut conn, "Campaign", &id, last_seq, last_seq)
        .await
        .expect("read the last event")
        .pop()
        .expect("the last event");
    drop(conn);
    assert_eq!(last.event_type, "CampaignCancelled");
    let message = PublishMessage::build()
        .payload(serde_json::to_vec(&last).expect("encode").into())
        .message_id(last.event_id())
        .header("Ota-Global-Seq", last.global_seq.to_string().as_str());
    app.js
        .send_publish(app.names.event_subject("Campaign", &id), message)
        .await
        .expect("publish")
        .await
        .expect("publish ack");

    app.caught_up(ProjectionName::Campaigns).await;
    let view = ota_projections::campaigns::get(&app.db, id.parse().expect("uuid"))
        .await
        .expect("campaign view")
        .expect("campaign in read model");
    assert_eq!(view.status, "cancelled");
    assert_eq!(view.status_changes, 4, "started, paused, resumed, cancelled");
    assert!(view.started_at.is_some() && view.ended_at.is_some());
    let counts = ota_projections::campaigns::counts_by_status(&app.db).await.expect("counts");
    assert_eq!(counts, BTreeMap::from([("cancelled".to_owned(), 1)]));
    // The activity log read the same gap, in order. (It never sees the device
    // and firmware events, which nobody published.)
    let applied = eventually("the gap in the activity log", Duration::from_secs(20), || async {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT sequence, event_type FROM activity WHERE aggregate_id = $1 ORDER BY applied_order")
                .bind(&id)
                .fetch_all(&app.db)
                .await
                .ok()?;
        (rows.len() == stored.len()).then_some(rows)
    })
    .await;
    assert_eq!(applied, stored);
}
