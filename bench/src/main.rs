//! Write-path benchmark: commands stored per second through the store (1 and 16
//! clients) beside a raw single-row INSERT-per-transaction loop in the same
//! run, relay throughput from a backlog, and projection lag under load.
//!
//! Run: `cargo run --release -p ota-bench -- --commands 3000`
//! (`--rollout-devices N`: the fleet-scale rollout instead; `--ddi-devices N`: the DDI base-poll load instead;
//! `--ddi-cycle-devices N`: the DDI full update cycle instead; `--import-devices N`: bulk import instead;
//! `--ceilings-devices N`: each stage's ceiling on one backlog instead.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use ota::server::Components;
use ota_domain::device_update::{DeviceUpdate, DeviceUpdateCommand, Origin, UpdateFirmware};
use ota_domain::{Actor, CommandMeta, DeviceId, FirmwareId};
use ota_projections::ProjectionName;
use ota_testkit::{TestApp, TestOptions};
use sqlx::PgPool;

/// The same allocator as the `ota` binary, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod ceilings;
mod ddi;
mod ddi_cycle;
mod first_contact;
mod import;
mod rollout;
mod visibility;
mod wrk;

#[derive(Parser)]
struct Args {
    /// Commands per measured run.
    #[arg(long, default_value_t = 3000)]
    commands: usize,
    /// Run the fleet-scale rollout benchmark with this many devices instead.
    #[arg(long)]
    rollout_devices: Option<usize>,
    /// Devices reporting concurrently in the rollout benchmark.
    #[arg(long, default_value_t = 256)]
    reporters: usize,
    /// Run only the hawkBit DDI base-poll benchmark with this many registered devices.
    #[arg(long)]
    ddi_devices: Option<usize>,
    /// Measured seconds of the DDI benchmark (after a 2 s warm-up), per route.
    #[arg(long, default_value_t = 10)]
    ddi_seconds: u64,
    /// Keep-alive connections polling concurrently in the DDI benchmarks (base poll and full cycle).
    #[arg(long, default_value_t = 64)]
    ddi_connections: usize,
    /// Generate the DDI base polls with Debian's `wrk` in its own process, with
    /// this many threads, instead of the bench's own generator.
    #[arg(long)]
    ddi_wrk_threads: Option<usize>,
    /// Run only the DDI full-cycle benchmark (poll, deploymentBase, feedback, download, final
    /// feedback) with this many devices in one started campaign.
    #[arg(long)]
    ddi_cycle_devices: Option<usize>,
    /// Run only the first-contact benchmark: this many unknown devices enrol
    /// through the DDI gateway token (base poll + configData), `--ddi-connections` at once.
    #[arg(long)]
    first_contact_devices: Option<usize>,
    /// Run only the bulk-import benchmark with this many devices.
    #[arg(long)]
    import_devices: Option<usize>,
    /// Run only the ceilings benchmark: a rollout of this many devices stored with
    /// the projections stopped, then the NATS pull and batched INSERT ceilings, each
    /// projection catching up alone, and each read model replayed, on that backlog.
    #[arg(long)]
    ceilings_devices: Option<usize>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Some(devices) = args.ceilings_devices {
        ceilings::run(devices, args.reporters).await;
        return;
    }
    if let Some(devices) = args.import_devices {
        import::run(devices).await;
        return;
    }
    if let Some(devices) = args.first_contact_devices {
        first_contact::run(devices, args.ddi_connections).await;
        return;
    }
    if let Some(devices) = args.ddi_cycle_devices {
        ddi_cycle::run(devices, args.ddi_connections).await;
        return;
    }
    if let Some(devices) = args.ddi_devices {
        let generator = match args.ddi_wrk_threads {
            Some(threads) => ddi::Generator::Wrk { threads },
            None => ddi::Generator::Own,
        };
        ddi::run(devices, args.ddi_seconds, args.ddi_connections, generator).await;
        return;
    }
    if let Some(devices) = args.rollout_devices {
        rollout::run(devices, args.reporters).await;
        return;
    }
    println!(
        "machine: {} cores; commands per run: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.commands
    );
    for clients in [1usize, 16] {
        let app = TestApp::spawn_with(TestOptions {
            components: Components { relay: false, projections: false, rollouts: false },
            ..Default::default()
        })
        .await;
        let raw = raw_inserts(&app.db, args.commands, clients).await;
        let store = store_commands(&app, args.commands, clients, "s").await;
        println!(
            "{clients:>2} clients: raw INSERT/tx {raw:>8.0}/s | Store::execute {store:>8.0}/s | ratio store/raw {:.2}",
            store / raw
        );
        // The relay starts on a backlog of every command above.
        let backlog: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.db).await.unwrap_or(0);
        let started = Instant::now();
        let _relay = app.server.new_relay().spawn();
        let stream_name = app.names.events_stream();
        loop {
            let published = match app.js.get_stream(&stream_name).await {
                Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
                Err(_) => 0,
            };
            if published as i64 >= backlog {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let relay_rate = backlog as f64 / started.elapsed().as_secs_f64();
        println!("{clients:>2} clients: relay published a backlog of {backlog} events at {relay_rate:.0}/s");
    }
    lag_under_load(args.commands).await;
}

async fn raw_inserts(db: &PgPool, n: usize, clients: usize) -> f64 {
    sqlx::query("CREATE TABLE IF NOT EXISTS raw_bench (id text, seq bigint, body jsonb, meta jsonb)")
        .execute(db)
        .await
        .expect("raw table");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let db = db.clone();
            let next = next.clone();
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    sqlx::query("INSERT INTO raw_bench VALUES ($1, 1, $2, $3)")
                        .bind(uuid::Uuid::new_v4().to_string())
                        .bind(serde_json::json!({"UpdateAssigned": {"action": 1}}))
                        .bind(serde_json::json!({"actor_kind": "user"}))
                        .execute(&db)
                        .await
                        .expect("raw insert");
                }
            })
        })
        .collect();
    futures::future::join_all(tasks).await;
    n as f64 / started.elapsed().as_secs_f64()
}

fn assign() -> DeviceUpdateCommand {
    DeviceUpdateCommand::Assign {
        origin: Origin::default(),
        firmware: UpdateFirmware { id: FirmwareId::derive("os", "2", "gw"), version: "2".into() },
        from: None,
        at: Utc::now(),
    }
}

/// One command per fresh DeviceUpdate stream, as a rollout's assignments are.
async fn store_commands(app: &TestApp, n: usize, clients: usize, tag: &str) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let meta = CommandMeta::new(Actor::system("bench"));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let store = app.server.state.store.clone();
            let next = next.clone();
            let meta = meta.clone();
            let tag = tag.to_owned();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    store
                        .execute::<DeviceUpdate>(
                            &DeviceId::parse(&format!("{tag}-dev-{i}")).expect("id"),
                            assign(),
                            &meta,
                        )
                        .await
                        .expect("command");
                }
            })
        })
        .collect();
    futures::future::join_all(tasks).await;
    n as f64 / started.elapsed().as_secs_f64()
}

/// Commands with relay and projections running: how far behind do read models get?
async fn lag_under_load(n: usize) {
    let app = TestApp::spawn().await;
    let sampler_db = app.db.clone();
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = sampling.clone();
    let sampler = tokio::spawn(async move {
        let mut worst = 0i64;
        while flag.load(Ordering::Relaxed) {
            let behind: i64 = sqlx::query_scalar(
                "SELECT (SELECT count(*) FROM events) - COALESCE((SELECT applied FROM projection_status WHERE projection = 'activity'), 0)",
            )
            .fetch_one(&sampler_db)
            .await
            .unwrap_or(0);
            worst = worst.max(behind);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        worst
    });
    let rate = store_commands(&app, n, 16, "lag").await;
    let load_done = Instant::now();
    app.caught_up(ProjectionName::Activity).await;
    let drain = load_done.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let worst = sampler.await.unwrap_or(0);
    println!(
        "16 clients with relay + 5 projections live: {rate:.0} commands/s; worst activity-projection lag {worst} events; caught up {:.0} ms after the last commit",
        drain.as_secs_f64() * 1000.0
    );
}
