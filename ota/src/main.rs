//! `ota`: the orchestrator's one binary. It parses a subcommand and calls the
//! library; no logic lives here.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ota::server::{self, Components};
use ota::Settings;
use ota_api::auth::{Auth, Role};
use ota_projections::ProjectionName;

/// glibc malloc spent about 45 % of the server's CPU consolidating its free
/// lists while projections caught up on a 100k-device rollout (perf, BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "ota", version, about = "Event-sourced OTA firmware campaign orchestrator")]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API, the relay and the projection workers.
    Serve,
    /// Create the database if needed and apply migrations (as the schema's owner).
    Migrate {
        /// Then grant this role what `ota serve` needs, events only to read and append
        /// (created if missing); run the server as it.
        #[arg(long)]
        server_role: Option<String>,
    },
    /// Rebuild read models from the event store ("all", a projection name, or
    /// "tallies": the gates' wave counters).
    Replay {
        #[arg(default_value = "all")]
        projection: String,
    },
    /// Run a live demo fleet of simulated devices on the NATS device channel.
    Simulate {
        #[command(flatten)]
        fleet: ota::simulate::FleetOptions,
    },
    /// Print a new ed25519 key pair for signing firmware (or chain heads).
    Keygen {
        /// The key id to list it under in OTA_FIRMWARE_KEYS.
        #[arg(long, default_value = "release")]
        key_id: String,
    },
    /// Firmware: release signing, and the catalog on a server (upload, list, show).
    Firmware {
        #[command(subcommand)]
        what: FirmwareCommand,
    },
    /// Campaigns on a server: create, follow and steer them.
    Campaign {
        #[command(subcommand)]
        what: ota_cli::campaign::CampaignCommand,
    },
    /// The device inventory on a server: list, show, history, rollbacks, bulk import.
    Device {
        #[command(subcommand)]
        what: ota_cli::device::DeviceCommand,
    },
    /// Store an API key (read from stdin or OTA_API_KEY) for a server, after checking it there.
    Login(ota_cli::login::LoginArgs),
    /// Forget the stored login.
    Logout,
    /// The tamper-evident event log.
    Audit {
        #[command(subcommand)]
        what: AuditCommand,
    },
    /// The device bus: nats-server accounts in which devices and the server share nothing.
    Bus {
        #[command(subcommand)]
        what: BusCommand,
    },
    /// Print a bearer token signed with OTA_JWT_SECRET.
    Token {
        /// admin, operator, approver, viewer or auditor.
        #[arg(long, default_value = "operator")]
        role: Role,
        #[arg(long, default_value = "cli")]
        subject: String,
        /// Lifetime, e.g. 30m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
    },
}

#[derive(Subcommand)]
enum FirmwareCommand {
    /// Sign a release: prints a DSSE envelope binding the image's SHA-256 and size
    /// to its name, version, device model, hardware versions and release counter,
    /// ready for the upload metadata's `release`. With `--cosign`, adds this key's
    /// signature to another signer's envelope instead (threshold signing).
    Sign {
        file: std::path::PathBuf,
        /// The private key: 64 hex characters, or @path to a file holding them (OTA_SIGNING_KEY also works).
        #[arg(long, env = "OTA_SIGNING_KEY", hide_env_values = true)]
        key: String,
        /// The id the server trusts the key under (OTA_FIRMWARE_KEYS).
        #[arg(long, default_value = "release")]
        key_id: String,
        #[arg(long, required_unless_present = "cosign")]
        name: Option<String>,
        #[arg(long, required_unless_present = "cosign")]
        version: Option<String>,
        #[arg(long, required_unless_present = "cosign")]
        device_model: Option<String>,
        /// Comma-separated hardware versions the image supports (none: any).
        #[arg(long, value_delimiter = ',')]
        hardware_versions: Vec<String>,
        /// Grows with every release of this name and model (anti-rollback).
        #[arg(long, required_unless_present = "cosign")]
        release_counter: Option<u64>,
        /// An envelope file another signer made for this image.
        #[arg(long, conflicts_with_all = ["name", "version", "device_model", "release_counter"])]
        cosign: Option<std::path::PathBuf>,
    },
    #[command(flatten)]
    Catalog(ota_cli::firmware::FirmwareCommand),
}

#[derive(Subcommand)]
enum BusCommand {
    /// Make a NATS user key: writes its seed to FILE (mode 0600; the device's, or the
    /// server's NATS_NKEY_SEED) and prints the public key for a members file.
    Key { file: std::path::PathBuf },
    /// Print a nats-server configuration with the OTA, DEVICES and OBSERVERS accounts.
    /// Members files hold `<name> <public nkey>` lines (a device's name is its id).
    Config {
        #[arg(long, default_value = "127.0.0.1:4222")]
        listen: String,
        #[arg(long, default_value = "/var/lib/nats")]
        jetstream_dir: std::path::PathBuf,
        /// Server certificate and key: every client must then use TLS.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<std::path::PathBuf>,
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<std::path::PathBuf>,
        /// The server instances' keys.
        #[arg(long)]
        servers: std::path::PathBuf,
        #[arg(long)]
        devices: Option<std::path::PathBuf>,
        #[arg(long)]
        observers: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain over every event; exit 1 and name the first broken link if any.
    /// With --anchor, also recompute it up to a signed head kept outside the database:
    /// exit 3 if that head is forged, 4 if the chain was rewritten, 5 if its tail was cut.
    Verify {
        /// A checkpoint file (OTA_AUDIT_CHECKPOINT_URL) or a saved `/audit/head` answer.
        #[arg(long)]
        anchor: Option<std::path::PathBuf>,
        /// The audit public key (hex) the anchor must be signed with (default: that of OTA_AUDIT_SIGNING_KEY).
        #[arg(long, env = "OTA_AUDIT_PUBLIC_KEY")]
        public_key: Option<String>,
    },
    /// A campaign as it stood at a moment, and who ordered what until then.
    Campaign {
        id: uuid::Uuid,
        /// RFC 3339 (default: now).
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::Utc>>,
    },
}

/// A private key given inline or as `@path`.
fn read_key(key: String) -> anyhow::Result<String> {
    match key.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}")),
        None => Ok(key),
    }
}

fn parse_ttl(raw: &str) -> Result<Duration, String> {
    let (number, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let n: u64 = number.parse().map_err(|_| format!("bad duration {raw:?}"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("bad duration unit in {raw:?}; use s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,async_nats=warn".into()),
        )
        .with_writer(std::io::stderr);
    match cli.settings.log_format {
        // One object a line, with the request's span (and its request id) in each.
        ota::settings::LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).init(),
        ota::settings::LogFormat::Text => logs.init(),
    }
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = cli.settings;
    match cli.command {
        // The operator CLI talks to a server over HTTP and prints its own errors
        // (the server's code and message) with its own exit codes.
        Command::Firmware { what: FirmwareCommand::Catalog(what) } => {
            return Ok(ota_cli::finish(ota_cli::firmware::run(what).await))
        }
        Command::Campaign { what } => return Ok(ota_cli::finish(ota_cli::campaign::run(what).await)),
        Command::Device { what } => return Ok(ota_cli::finish(ota_cli::device::run(what).await)),
        Command::Login(args) => return Ok(ota_cli::finish(ota_cli::login::login(args).await)),
        Command::Logout => return Ok(ota_cli::finish(ota_cli::login::logout())),
        Command::Serve => {
            let mut running = server::start(&settings, Components::default()).await?;
            shutdown_signal().await;
            tracing::info!("shutting down");
            running.shutdown().await;
        }
        Command::Migrate { server_role } => {
            let pool = ota_migrations::connect(&settings.database_url, 2).await?;
            ota_migrations::migrate(&pool).await?;
            println!("migrations applied");
            if let Some(role) = server_role {
                ota_migrations::grant_server_role(&pool, &role).await?;
                println!("role {role} may read and append events, never change them");
            }
        }
        Command::Replay { projection } => {
            let targets: Vec<ProjectionName> = match projection.as_str() {
                "all" => ProjectionName::ALL.to_vec(),
                "tallies" => vec![],
                other => vec![other.parse().context(
                    "choose one of: all, tallies, firmware, campaigns, activity, devices, updates, downloads",
                )?],
            };
            let tallies = matches!(projection.as_str(), "all" | "tallies");
            let connections = u32::try_from(targets.len()).unwrap_or(8) + 1;
            let pool = ota_migrations::connect(&settings.database_url, connections).await?;
            ota_migrations::migrate(&pool).await?;
            let replayed = ota::replay::rebuild(&pool, &targets, tallies).await?;
            for (name, applied) in replayed.read_models {
                println!("{name}: rebuilt from {applied} events");
            }
            if let Some(read) = replayed.tallies {
                println!("tallies (the gates' wave counters): rebuilt from {read} events");
            }
        }
        Command::Simulate { fleet } => {
            tokio::select! {
                result = ota::simulate::run(&settings, &fleet) => result?,
                () = shutdown_signal() => tracing::info!("demo fleet stopped"),
            }
        }
        Command::Keygen { key_id } => {
            let (private, public) = ota::signing::keygen();
            println!("private key (keep secret, for `ota firmware sign --key`): {private}");
            println!("public key:  {public}");
            println!("trust it with: OTA_FIRMWARE_KEYS={key_id}:{public}");
        }
        Command::Firmware { what: FirmwareCommand::Sign { file, key, key_id, cosign, .. } } if cosign.is_some() => {
            let raw = read_key(key)?;
            let path = cosign.unwrap_or_default();
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let envelope = serde_json::from_str(&text).with_context(|| format!("{} is no envelope", path.display()))?;
            let envelope = ota::signing::cosign_release(&file, envelope, &raw, &key_id)?;
            println!("{}", serde_json::to_string_pretty(&envelope)?);
        }
        Command::Firmware {
            what:
                FirmwareCommand::Sign {
                    file,
                    key,
                    key_id,
                    name,
                    version,
                    device_model,
                    hardware_versions,
                    release_counter,
                    ..
                },
        } => {
            let raw = read_key(key)?;
            let label = ota::signing::ReleaseLabel {
                name: name.unwrap_or_default(),
                version: version.unwrap_or_default(),
                device_model: device_model.unwrap_or_default(),
                hardware_versions,
                release_counter: release_counter.unwrap_or_default(),
            };
            let envelope = ota::signing::sign_release(&file, label, &raw, &key_id)?;
            println!("{}", serde_json::to_string_pretty(&envelope)?);
        }
        Command::Audit { what: AuditCommand::Verify { anchor, public_key } } => {
            let anchor = match anchor {
                Some(path) => {
                    let raw = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                    let signing_key = settings.audit_signing_key.as_ref().map(|k| k.expose());
                    Some((raw, ota::audit::trusted_key(public_key.as_deref(), signing_key)?))
                }
                None => None,
            };
            let pool = ota_migrations::connect(&settings.database_url, 2).await?;
            let anchored = anchor.as_ref().map(|(raw, key)| (raw.as_str(), key));
            let report = ota::audit::verify(&pool, anchored).await?;
            // Without an anchor, the same report as before anchors existed.
            match anchored {
                Some(_) => println!("{}", serde_json::to_string_pretty(&report)?),
                None => println!("{}", serde_json::to_string_pretty(&report.chain)?),
            }
            let verdict = report.verdict;
            if verdict != ota::audit::Verdict::Holds {
                eprintln!("error: {}", verdict.explain(&report));
            }
            return Ok(ExitCode::from(verdict.exit_code()));
        }
        Command::Audit { what: AuditCommand::Campaign { id, at } } => {
            let pool = ota_migrations::connect(&settings.database_url, 2).await?;
            let at = at.unwrap_or_else(chrono::Utc::now);
            let audit = ota_orchestrator::audit::campaign_at(&pool, ota_domain::CampaignId::from_uuid(id), at).await?;
            print!("{}", ota::print::campaign_at(&audit));
        }
        Command::Bus { what: BusCommand::Key { file } } => {
            let (seed, public) = ota::bus_accounts::new_user_key();
            ota::secret::write_private(&file, &seed).with_context(|| format!("writing {}", file.display()))?;
            println!("{public}");
        }
        Command::Bus {
            what: BusCommand::Config { listen, jetstream_dir, tls_cert, tls_key, servers, devices, observers },
        } => {
            let members = |path: Option<std::path::PathBuf>| -> anyhow::Result<Vec<ota::bus_accounts::Member>> {
                let Some(path) = path else { return Ok(Vec::new()) };
                let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                ota::bus_accounts::parse_members(&text).with_context(|| path.display().to_string())
            };
            let accounts = ota::bus_accounts::BusAccounts {
                names: settings.bus()?,
                listen,
                jetstream_dir,
                tls: tls_cert.zip(tls_key),
                servers: members(Some(servers))?,
                devices: members(devices)?,
                observers: members(observers)?,
            };
            print!("{}", accounts.render());
        }
        Command::Token { role, subject, ttl } => {
            let auth = Auth::new(&settings.token_settings())?;
            println!("{}", auth.issue(&subject, role, ttl)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM (what service managers send).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
