//! Issue 14, item 2: the operator CLI driven end to end. The real `ota` binary
//! runs as a subprocess against a real `ota serve` on its own database and NATS
//! prefix, with a fleet of simulated devices that really take updates and report.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use ota::simulate::{FleetPolicy, NatsFleet};
use ota_api::auth::Role;
use ota_testkit::{json_of, Deployment, ServerProcess};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_ota");

/// The CLI as an operator runs it: its own config directory, the server's URL,
/// and a token unless the test is about having none.
struct Cli {
    server: String,
    token: Option<String>,
    home: tempfile::TempDir,
}

/// What one run of the CLI did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn ok(self) -> String {
        assert_eq!(self.code, Some(0), "exit {:?}\nstdout:\n{}\nstderr:\n{}", self.code, self.stdout, self.stderr);
        self.stdout
    }

    #[track_caller]
    fn json(self) -> Value {
        let stdout = self.ok();
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("--json printed no JSON ({e}):\n{stdout}"))
    }

    /// Failed with exit code 1 and said why on stderr, without a panic.
    #[track_caller]
    fn refused(self, says: &[&str]) -> String {
        assert_eq!(self.code, Some(1), "exit {:?}\nstdout:\n{}\nstderr:\n{}", self.code, self.stdout, self.stderr);
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        assert!(self.stderr.starts_with("error: "), "{}", self.stderr);
        for words in says {
            assert!(self.stderr.contains(words), "stderr lacks {words:?}:\n{}", self.stderr);
        }
        self.stderr
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Cli {
    fn new(server: &ServerProcess, token: Option<String>) -> Self {
        Cli { server: server.url(""), token, home: tempfile::tempdir().expect("temp dir") }
    }

    fn config_file(&self) -> PathBuf {
        self.home.path().join("config").join("ota").join("config.json")
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(BIN);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join("config"))
            .env("OTA_SERVER", &self.server)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(token) = &self.token {
            command.env("OTA_TOKEN", token);
        }
        command
    }

    async fn run(&self, args: &[&str]) -> Run {
        let out = tokio::time::timeout(Duration::from_secs(60), self.command(args).output()).await;
        out.expect("the CLI ends within 60 s").expect("run ota").into()
    }

    async fn run_with(&self, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Run {
        let mut command = self.command(args);
        command.envs(env.iter().copied()).stdin(Stdio::piped());
        let mut child = command.spawn().expect("spawn ota");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.as_bytes()).await.expect("write stdin");
        drop(input);
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await;
        out.expect("the CLI ends within 60 s").expect("run ota").into()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

/// The value of a `label  value` row of a resource table.
fn field<'a>(table: &'a str, label: &str) -> &'a str {
    table
        .lines()
        .find_map(|line| line.trim_start().strip_prefix(label).filter(|rest| rest.starts_with(' ')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label} row in:\n{table}"))
}

/// Uploads `bytes` as firmware `os` `version` for model `gw` through the CLI; its id.
async fn upload(cli: &Cli, dir: &Path, version: &str, bytes: &[u8]) -> String {
    let image = dir.join(format!("os-{version}.swu"));
    std::fs::write(&image, bytes).expect("write image");
    let args =
        ["firmware", "upload", path_arg(&image), "--name", "os", "--version", version, "--model", "gw", "--json"];
    let firmware = cli.run(&args).await.json();
    firmware["id"].as_str().expect("firmware id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_stores_a_checked_key_for_its_owner_alone_and_refuses_a_wrong_one() {
    let deployment = Deployment::new(BIN).await;
    let server = deployment.start().await;
    let issue = deployment
        .http
        .post(server.url("/api/v1/api-keys"))
        .bearer_auth(deployment.token(Role::Admin))
        .json(&json!({"name": "cli test", "role": "operator"}));
    let (status, key) = json_of(issue.send().await.expect("issue a key")).await;
    assert_eq!(status, 201, "{key}");
    let key = key["key"].as_str().expect("the key").to_owned();
    let cli = Cli::new(&server, None);

    let before = cli.run(&["device", "list"]).await;
    before.refused(&["no token for", "ota login"]);

    let out = cli.run_with(&["login"], &[], &format!("{key}\n")).await.ok();
    assert!(out.contains("logged in to"), "{out}");
    let mode = std::fs::metadata(cli.config_file()).expect("the login is stored").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the stored key is its owner's alone");
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(cli.config_file()).expect("read")).expect("JSON");
    assert_eq!(stored["api_key"], key.as_str());

    let listed = cli.run(&["device", "list", "--json"]).await.json();
    assert_eq!(listed["total"], 0, "the stored key is used: {listed}");

    let wrong = cli.run_with(&["login"], &[], "ota_00000000000000000000000000000000_wrong\n").await;
    wrong.refused(&["refused this key", "unauthorized", "HTTP 401"]);
    let kept: Value = serde_json::from_str(&std::fs::read_to_string(cli.config_file()).expect("read")).expect("JSON");
    assert_eq!(kept["api_key"], key.as_str(), "a refused key replaces nothing");

    // The stored key never goes to another server than its own.
    let elsewhere = cli.run(&["device", "list", "--server", "http://127.0.0.1:9"]).await;
    elsewhere.refused(&["no token for http://127.0.0.1:9", "stored login is for"]);
    let unreachable =
        cli.run_with(&["device", "list", "--server", "http://127.0.0.1:9"], &[("OTA_TOKEN", "t")], "").await;
    unreachable.refused(&["cannot reach the server at http://127.0.0.1:9"]);
    let bad_url = cli.run_with(&["device", "list", "--server", "127.0.0.1:9"], &[("OTA_TOKEN", "t")], "").await;
    bad_url.refused(&["bad server URL"]);

    assert!(cli.run(&["logout"]).await.ok().contains("removed"));
    assert!(!cli.config_file().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_and_devices_go_in_and_come_out_through_the_cli() {
    let deployment = Deployment::new(BIN).await;
    let server = deployment.start().await;
    let cli = Cli::new(&server, Some(deployment.token(Role::Operator)));
    let files = tempfile::tempdir().expect("temp dir");

    let bytes = b"firmware image 2.0 for the gateway".repeat(100);
    let image = write(files.path(), "os-2.0.swu", "");
    std::fs::write(&image, &bytes).expect("write image");
    let args = ["firmware", "upload", path_arg(&image), "--name", "os", "--version", "2.0", "--model", "gw"];
    let shown = cli.run(&args).await.ok();
    assert_eq!(field(&shown, "sha256"), hex::encode(Sha256::digest(&bytes)), "{shown}");
    let id = field(&shown, "id").to_owned();
    assert!(cli.run(&args).await.ok().contains("already stored"), "an identical upload changes nothing");

    // Lists and reads answer from read models, which follow writes by a moment.
    deployment.all_caught_up().await;
    let listed = cli.run(&["firmware", "list"]).await.ok();
    assert!(listed.lines().next().is_some_and(|header| header.contains("VERSION")), "{listed}");
    assert!(listed.contains(&id) && listed.contains("page 1 of 1, 1 in all"), "{listed}");
    let catalog = cli.run(&["firmware", "list", "--model", "gw", "--json"]).await.json();
    assert_eq!(catalog["items"][0]["id"], id.as_str());
    let one = cli.run(&["firmware", "show", &id, "--json"]).await.json();
    assert_eq!((one["size"].as_u64(), one["filename"].as_str()), (Some(bytes.len() as u64), Some("os-2.0.swu")));

    let csv = "id,device_model,hardware_version,firmware_version,tags,attributes.site\n\
               gw-1,gw,rev-a,1.0,eu;pilot,lyon\ngw-2,gw,rev-b,1.0,eu,paris\ngw-3,gw,rev-a,1.0,,\n";
    let csv = write(files.path(), "fleet.csv", csv);
    let tokens = files.path().join("tokens.json");
    let imported = cli.run(&["device", "import", path_arg(&csv), "--tokens", path_arg(&tokens)]).await.ok();
    assert!(imported.contains("3 rows: 3 created, 0 updated, 0 unchanged, 0 failed"), "{imported}");
    let mode = std::fs::metadata(&tokens).expect("tokens written").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let issued: Value = serde_json::from_str(&std::fs::read_to_string(&tokens).expect("read")).expect("JSON");
    assert_eq!(issued.as_object().map(|t| t.len()), Some(3), "{issued}");

    let ndjson = "{\"id\":\"gw-4\",\"device_model\":\"gw\",\"firmware_version\":\"1.0\"}\n\
                  {\"id\":\"gw-1\",\"device_model\":\"gw\",\"hardware_version\":\"rev-a\",\"firmware_version\":\"1.0\",\"tags\":[\"eu\",\"pilot\"],\"attributes\":{\"site\":\"lyon\"}}\n";
    let ndjson = write(files.path(), "more.ndjson", ndjson);
    let report = cli.run(&["device", "import", path_arg(&ndjson), "--json"]).await.json();
    assert_eq!((report["created"].as_u64(), report["unchanged"].as_u64()), (Some(1), Some(1)), "{report}");

    let bad = write(files.path(), "bad.csv", "id,device_model\ngw-5,gw\ngw/6,gw\n");
    cli.run(&["device", "import", path_arg(&bad)]).await.refused(&["import.invalid_rows", "HTTP 422", "row 2 (gw/6)"]);
    let unknown = write(files.path(), "fleet.txt", "id,device_model\n");
    cli.run(&["device", "import", path_arg(&unknown)]).await.refused(&["cannot tell the format", "--format"]);

    deployment.all_caught_up().await;
    let inventory = cli.run(&["device", "list", "--tag", "eu", "--json"]).await.json();
    assert_eq!(inventory["total"], 2, "{inventory}");
    let table = cli.run(&["device", "list", "--page-size", "2"]).await.ok();
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.trim_end().ends_with("page 1 of 2, 4 in all"), "{table}");
    let device = cli.run(&["device", "show", "gw-1"]).await.ok();
    assert_eq!(field(&device, "attributes"), "site=lyon", "{device}");
    assert_eq!(field(&device, "tags"), "eu, pilot", "{device}");
    let history = cli.run(&["device", "history", "gw-1", "--json"]).await.json();
    assert_eq!(history["total"], 0, "{history}");
    cli.run(&["device", "show", "gw-404"]).await.refused(&["not_found", "HTTP 404"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_is_created_steered_and_refused_through_the_cli() {
    let deployment = Deployment::new(BIN).await;
    let server = deployment.start().await;
    let cli = Cli::new(&server, Some(deployment.token(Role::Operator)));
    let files = tempfile::tempdir().expect("temp dir");
    let fleet =
        write(files.path(), "fleet.csv", "id,device_model,firmware_version\nc-1,gw,1.0\nc-2,gw,1.0\nc-3,gw,1.0\n");
    cli.run(&["device", "import", path_arg(&fleet)]).await.ok();
    let firmware = upload(&cli, files.path(), "2.0", b"image 2.0").await;

    let create = [
        "campaign",
        "create",
        "--name",
        "spring",
        "--firmware",
        &firmware,
        "--device",
        "c-1,c-2",
        "--device",
        "c-3",
        "--waves",
        "1,100%",
        "--failure-threshold",
        "50",
        "--device-timeout",
        "1h",
        "--max-retries",
        "1",
        "--json",
    ];
    let created = cli.run(&create).await.json();
    assert_eq!(created["status"], "draft");
    assert_eq!(created["rollout"]["waves"], json!([{"count": 1}, {"percent": 100}]));
    assert_eq!(created["rollout"]["device_timeout_secs"], 3600);
    assert_eq!(created["target"]["device_ids"], json!(["c-1", "c-2", "c-3"]));
    let id = created["id"].as_str().expect("campaign id").to_owned();

    let started = cli.run(&["campaign", "start", &id]).await.ok();
    assert_eq!(field(&started, "status"), "running", "{started}");
    let paused = cli.run(&["campaign", "pause", &id, "--reason", "a look at the canary", "--json"]).await.json();
    assert_eq!(
        (paused["status"].as_str(), paused["last_reason"].as_str()),
        (Some("paused"), Some("a look at the canary"))
    );
    let resumed = cli.run(&["campaign", "resume", &id, "--json"]).await.json();
    assert_eq!(resumed["status"], "running");
    let cancelled = cli.run(&["campaign", "cancel", &id, "--reason", "wrong image"]).await.ok();
    assert_eq!(field(&cancelled, "status"), "cancelled", "{cancelled}");

    deployment.all_caught_up().await;
    let shown = cli.run(&["campaign", "show", &id, "--json"]).await.json();
    assert_eq!((shown["status"].as_str(), shown["device_count"].as_i64()), (Some("cancelled"), Some(3)), "{shown}");
    let table = cli.run(&["campaign", "show", &id]).await.ok();
    assert!(table.contains("WAVE") && table.contains("DECISION") && table.contains("wrong image"), "{table}");
    let listed = cli.run(&["campaign", "list", "--status", "cancelled", "--json"]).await.json();
    assert_eq!(listed["items"][0]["id"], id.as_str());

    // Approving needs another person (an approver); aborting is final, and a watch says so.
    let second = ["campaign", "create", "--name", "second", "--firmware", &firmware, "--device", "c-1", "--json"];
    let second = cli.run(&second).await.json()["id"].as_str().expect("campaign id").to_owned();
    cli.run(&["campaign", "start", &second]).await.ok();
    cli.run(&["campaign", "approve", &second]).await.refused(&["forbidden", "HTTP 403"]);
    let aborted = cli.run(&["campaign", "abort", &second, "--reason", "bad canary", "--json"]).await.json();
    assert_eq!(aborted["status"], "aborted");
    deployment.all_caught_up().await;
    let watched = cli.run(&["campaign", "show", &second, "--watch"]).await;
    assert_eq!(watched.code, Some(3), "a watch of an aborted campaign: {}{}", watched.stdout, watched.stderr);
    assert!(watched.stderr.contains(&format!("campaign {second} ended aborted: bad canary")), "{}", watched.stderr);
    // Its one device was cancelled at once, or is still asked to cancel: either way none succeeded.
    let last = watched.stdout.lines().last().unwrap_or_default().to_owned();
    assert!(last.starts_with(&format!("campaign {second} aborted: 0 of 1 devices succeeded, 0 failed")), "{last}");
    assert!(last.ends_with("(bad canary)"), "{last}");

    let again = cli.run(&["campaign", "pause", &id]).await;
    again.refused(&["campaign.invalid_transition", "HTTP 409", "cancelled"]);
    let unknown = "6a1f4a52-0000-4000-8000-000000000000";
    cli.run(&["campaign", "show", unknown]).await.refused(&["not found", "HTTP 404"]);
    cli.run(&["campaign", "start", unknown]).await.refused(&["HTTP 404"]);
    let no_firmware = cli.run(&["campaign", "create", "--name", "x", "--firmware", unknown, "--device", "c-1"]).await;
    no_firmware.refused(&["campaign.unknown_firmware", "HTTP 422"]);
    cli.run(&["campaign", "create", "--name", "x", "--firmware", &firmware]).await.refused(&["give a target"]);
    let bad_waves = cli.run(&["campaign", "create", "--waves", "ten"]).await;
    assert_eq!(bad_waves.code, Some(2), "a flag clap refuses: {}", bad_waves.stderr);
    assert!(bad_waves.stderr.contains("bad wave"), "{}", bad_waves.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_watched_with_the_cli_runs_to_completion_on_real_devices() {
    let deployment = Deployment::new(BIN).await;
    let server = deployment.start().await;
    let cli = Cli::new(&server, Some(deployment.token(Role::Operator)));
    let files = tempfile::tempdir().expect("temp dir");
    let ids: Vec<String> = (1..=6).map(|i| format!("w-{i}")).collect();
    let rows: Vec<String> = ids.iter().map(|id| format!("{id},gw,1.0")).collect();
    let fleet_file =
        write(files.path(), "fleet.csv", &format!("id,device_model,firmware_version\n{}\n", rows.join("\n")));
    cli.run(&["device", "import", path_arg(&fleet_file)]).await.ok();
    let nats = ota::server::connect_nats(&deployment.settings.nats()).await.expect("NATS");
    // Each report takes a moment, so the watch sees the waves in progress.
    let policy = FleetPolicy { report_delay: Duration::from_millis(300), ..FleetPolicy::default() };
    let _fleet = NatsFleet::start(nats, &deployment.names, policy).await.expect("fleet");
    // The image the devices run is in the catalog too, so updates know where they come from.
    upload(&cli, files.path(), "1.0", b"image 1.0 for the watch").await;
    let firmware = upload(&cli, files.path(), "2.0", b"image 2.0 for the watch").await;

    let create = [
        "campaign",
        "create",
        "--name",
        "watched",
        "--firmware",
        &firmware,
        "--model",
        "gw",
        "--waves",
        "2,100%",
        "--json",
    ];
    let id = cli.run(&create).await.json()["id"].as_str().expect("campaign id").to_owned();
    deployment.all_caught_up().await;
    // Watched from the draft on (the first line is read before the start), so no
    // wave can pass unseen however slow the machine.
    let mut watch = cli.command(&["campaign", "show", &id, "--watch", "--interval", "0.2"]).spawn().expect("spawn");
    let mut stdout = tokio::io::BufReader::new(watch.stdout.take().expect("stdout"));
    let mut watched = String::new();
    let first = tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut watched)).await;
    assert!(first.is_ok_and(|read| read.is_ok_and(|n| n > 0)), "the watch said nothing of the draft");
    assert!(watched.trim_end().ends_with("\"watched\": draft"), "{watched}");
    cli.run(&["campaign", "start", &id]).await.ok();
    let rest = tokio::time::timeout(Duration::from_secs(120), stdout.read_to_string(&mut watched)).await;
    assert!(rest.is_ok(), "the watch ends once the campaign completes:\n{watched}");
    let status = watch.wait().await.expect("the watch's exit");
    assert!(status.success(), "the watch of a completed campaign exits 0: {status}\n{watched}");
    let lines: Vec<&str> = watched.lines().collect();
    assert!(lines.iter().any(|l| l.contains("\"watched\": running, wave 1 of 2")), "{watched}");
    assert!(lines.iter().any(|l| l.starts_with("wave 1/2: 2/2 done (2 succeeded, 0 failed")), "{watched}");
    assert!(lines.iter().any(|l| l.starts_with("wave 2/2: 4/4 done (4 succeeded, 0 failed")), "{watched}");
    let last = lines.last().copied().unwrap_or_default();
    assert_eq!(last, format!("campaign {id} completed: 6 of 6 devices succeeded, 0 failed, 0 cancelled"), "{watched}");
    assert!(!watched.contains('\u{1b}'), "no terminal escapes when the output is no terminal:\n{watched}");

    // Watching a campaign that has ended returns at once, with its outcome.
    let again = cli.run(&["campaign", "show", &id, "--watch", "--json"]).await.json();
    assert_eq!(again["status"], "completed");
    deployment.all_caught_up().await;
    let history = cli.run(&["device", "history", "w-1", "--json"]).await.json();
    assert_eq!(history["items"][0]["state"], "succeeded", "{history}");
    assert_eq!(history["items"][0]["campaign_id"], id.as_str());
    assert_eq!(history["items"][0]["from_version"], "1.0", "{history}");
    let table = cli.run(&["device", "history", "w-1"]).await.ok();
    assert!(table.contains("succeeded") && table.contains("2.0"), "{table}");

    assert_eq!(cli.run(&["device", "rollbacks", "w-1", "--json"]).await.json()["total"], 0);
    let token = cli.token.as_deref().expect("a token");
    let rollback = deployment.http.post(server.url("/api/v1/devices/w-1/rollback")).bearer_auth(token);
    let (status, body) = json_of(rollback.send().await.expect("roll back")).await;
    assert_eq!(status, 201, "{body}");
    deployment.all_caught_up().await;
    let rollbacks = cli.run(&["device", "rollbacks", "w-1"]).await.ok();
    assert!(rollbacks.starts_with("ACTION") && rollbacks.contains("page 1 of 1, 1 in all"), "{rollbacks}");
    let row = rollbacks.lines().nth(1).unwrap_or_default();
    assert!(row.starts_with("2 ") && row.contains(" 1 ") && row.contains("2.0") && row.contains("1.0"), "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previewed_plan_started_with_its_seed_draws_the_previewed_waves() {
    let deployment = Deployment::new(BIN).await;
    let server = deployment.start().await;
    let cli = Cli::new(&server, Some(deployment.token(Role::Operator)));
    let files = tempfile::tempdir().expect("temp dir");
    let mut csv = String::from("id,device_model,firmware_version\n");
    for i in 0..12 {
        csv.push_str(&format!("p-{i:02},gw,1.0\n"));
    }
    csv.push_str("p-current,gw,2.0\n");
    cli.run(&["device", "import", path_arg(&write(files.path(), "fleet.csv", &csv))]).await.ok();
    let firmware = upload(&cli, files.path(), "2.0", b"image 2.0").await;
    let plan = ["--firmware", &firmware, "--model", "gw", "--waves", "25%,100%", "--max-per-minute", "5"];

    let mut args = vec!["campaign", "preview"];
    args.extend(plan);
    args.extend(["--assume-failure", "0", "--assume-update", "2m"]);
    let table = cli.run(&args).await.ok();
    assert!(field(&table, "devices").starts_with("12 to update, 13 drawn into waves"), "{table}");
    assert!(field(&table, "outcome").starts_with("completes at"), "{table}");
    assert!(table.contains("update.already_installed") && table.contains("p-current"), "{table}");
    args.push("--json");
    let previewed = cli.run(&args).await.json();
    let seed = previewed["seed"].as_str().expect("seed").to_owned();
    // The rate holds 5 a minute: the 9 of the second wave take two minutes to assign.
    let second = &previewed["waves"][1];
    let (first, last) = (second["first_assigned_at"].as_str(), second["last_assigned_at"].as_str());
    assert_ne!(first, last, "{second}");

    let mut create = vec!["campaign", "create", "--name", "previewed", "--json"];
    create.extend(plan);
    let id = cli.run(&create).await.json()["id"].as_str().expect("campaign id").to_owned();
    cli.run(&["campaign", "start", &id, "--seed", &seed]).await.ok();
    let drawn: Value = sqlx::query_scalar(
        "SELECT payload -> 'MembershipResolved' -> 'waves' FROM events WHERE event_type = 'MembershipResolved'",
    )
    .fetch_one(&deployment.db)
    .await
    .expect("the membership");
    let expected: Vec<Value> =
        previewed["waves"].as_array().expect("waves").iter().map(|w| w["members"].clone()).collect();
    assert_eq!(drawn, Value::Array(expected), "the start drew the previewed waves");

    let bad =
        cli.run(&["campaign", "preview", "--firmware", &firmware, "--model", "gw", "--assume-failure", "101"]).await;
    bad.refused(&["assume.failure_percent", "HTTP 422"]);
}
