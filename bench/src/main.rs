//! Write-path benchmark: commands stored per second through the store (1 and 16
//! clients) beside a raw single-row INSERT-per-transaction loop in the same
//! run, relay throughput from a backlog, and projection lag under load.
//!
//! Run: `cargo run --release -p ota-bench -- --commands 3000`
//! (`--rollout-devices N`: the fleet-scale rollout instead; `--ddi-devices N`: the DDI base-poll load instead;
//! `--ddi-cycle-devices N`: the DDI full update cycle instead; `--import-devices N`: bulk import instead;
//! `--ceilings-devices N`: each stage's ceiling on one backlog instead;
//! `--network-devices N`: reports over the network from a separate process instead;
//! `--suite`: all of them, with a table and JSON of every figure.)

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
mod figures;
mod first_contact;
mod import;
mod network;
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
    /// Run only the network-path benchmark with this many devices: a quarter report
    /// in-process, the others from a separate process over DDI feedback, the status
    /// route and NATS, `--reporters` devices in flight.
    #[arg(long)]
    network_devices: Option<usize>,
    /// Run every benchmark above, one after another, at the sizes BENCHMARKS.md
    /// quotes; print a table of every figure and write them as JSON.
    #[arg(long)]
    suite: bool,
    /// Divide the suite's device and command counts by this (a quick check of the suite itself).
    #[arg(long, default_value_t = 1)]
    suite_scale: usize,
    /// Where to write the figures as JSON (the suite's default: bench-results.json).
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// The network bench's separate process: report over this route.
    #[arg(long, value_enum, hide = true)]
    network_child: Option<network::Route>,
    #[arg(long, hide = true, default_value = "")]
    child_addr: String,
    #[arg(long, hide = true, default_value = "")]
    child_nats_prefix: String,
    #[arg(long, hide = true)]
    child_devices: Option<std::path::PathBuf>,
    #[arg(long, hide = true, default_value_t = 1024)]
    child_in_flight: usize,
    #[arg(long, hide = true, default_value = "")]
    child_token: String,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let (Some(route), Some(devices)) = (args.network_child, &args.child_devices) {
        let (addr, prefix, token) = (&args.child_addr, &args.child_nats_prefix, &args.child_token);
        network::run_child(route, addr, prefix, devices, args.child_in_flight, token).await;
        return;
    }
    if args.suite {
        suite(&args).await;
    } else if let Some(devices) = args.network_devices {
        figures::section("network");
        network::run(devices, args.reporters).await;
    } else if let Some(devices) = args.ceilings_devices {
        figures::section("ceilings");
        ceilings::run(devices, args.reporters).await;
    } else if let Some(devices) = args.import_devices {
        figures::section("import");
        import::run(devices).await;
    } else if let Some(devices) = args.first_contact_devices {
        figures::section("first contact");
        first_contact::run(devices, args.ddi_connections).await;
    } else if let Some(devices) = args.ddi_cycle_devices {
        figures::section("ddi cycle");
        ddi_cycle::run(devices, args.ddi_connections).await;
    } else if let Some(devices) = args.ddi_devices {
        let generator = match args.ddi_wrk_threads {
            Some(threads) => ddi::Generator::Wrk { threads },
            None => ddi::Generator::Own,
        };
        figures::section("ddi");
        ddi::run(devices, args.ddi_seconds, args.ddi_connections, generator).await;
    } else if let Some(devices) = args.rollout_devices {
        figures::section("rollout");
        rollout::run(devices, args.reporters).await;
    } else {
        figures::section("commands");
        commands(args.commands).await;
    }
    if let (false, Some(path)) = (args.suite, &args.json) {
        write_results(path).await;
    }
}

/// Every benchmark, one after another, at the sizes BENCHMARKS.md quotes
/// (divided by `--suite-scale`); ends with a table of every figure and its
/// anchors, and writes them as JSON.
async fn suite(args: &Args) {
    let scaled = |n: usize| (n / args.suite_scale.max(1)).max(100);
    let wrk = std::process::Command::new("wrk").arg("--version").output().is_ok();
    figures::section("commands");
    commands(scaled(10_000)).await;
    figures::section("rollout");
    rollout::run(scaled(100_000), 1024).await;
    figures::section("ceilings");
    ceilings::run(scaled(40_000), 1024).await;
    figures::section("network");
    network::run(scaled(40_000), 1024).await;
    figures::section("ddi");
    ddi::run(scaled(1000), args.ddi_seconds, 64, ddi::Generator::Own).await;
    if wrk {
        figures::section("ddi under wrk");
        ddi::run(scaled(1000), args.ddi_seconds, 64, ddi::Generator::Wrk { threads: 2 }).await;
    } else {
        println!("wrk is not installed (Debian package `wrk`): the outside-generator DDI run is left out");
    }
    figures::section("ddi cycle");
    ddi_cycle::run(scaled(2000), 64).await;
    figures::section("first contact");
    first_contact::run(scaled(20_000), 64).await;
    figures::section("import");
    import::run(scaled(100_000)).await;
    println!("\n{}", figures::table(&figures::all()));
    let path = args.json.clone().unwrap_or_else(|| "bench-results.json".into());
    write_results(&path).await;
}

async fn write_results(path: &std::path::Path) {
    let admin = format!("postgres://postgres@{}/postgres", ota_testkit::POSTGRES);
    let machine = match PgPool::connect(&admin).await {
        Ok(db) => figures::Machine::describe(&db).await,
        Err(e) => panic!("cannot reach Postgres to describe the machine: {e}"),
    };
    match figures::write_json(path, &machine, &figures::all()) {
        Ok(()) => println!("figures written to {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}

/// Commands stored per second (1 and 16 clients) beside raw INSERTs, the relay
/// on the backlog they leave, and projection lag under load.
async fn commands(n: usize) {
    println!("machine: {} cores; commands per run: {n}", std::thread::available_parallelism().map_or(0, |n| n.get()));
    for clients in [1usize, 16] {
        let app = TestApp::spawn_with(TestOptions {
            components: Components { relay: false, projections: false, rollouts: false },
            ..Default::default()
        })
        .await;
        let raw = raw_inserts(&app.db, n, clients).await;
        let store = store_commands(&app, n, clients, "s").await;
        println!(
            "{clients:>2} clients: raw INSERT/tx {raw:>8.0}/s | Store::execute {store:>8.0}/s | ratio store/raw {:.2}",
            store / raw
        );
        figures::record(format!("raw single-row INSERT per transaction, {clients} clients (anchor)"), raw, "rows/s");
        figures::record(format!("commands stored through Store::execute, {clients} clients"), store, "commands/s");
        figures::record(format!("Store::execute / raw INSERT, {clients} clients"), store / raw, "ratio");
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
        figures::record(
            format!("relay publishes a backlog of {backlog} events ({clients} clients' commands)"),
            relay_rate,
            "events/s",
        );
    }
    lag_under_load(n).await;
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
    figures::record("commands stored with relay and projections live, 16 clients", rate, "commands/s");
    figures::record("activity projection caught up after the last commit", drain.as_secs_f64() * 1000.0, "ms");
}
