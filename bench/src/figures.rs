//! The figures a run measured, collected where they are printed, so that one
//! command can end with a table of all of them and write them as JSON.

use std::sync::Mutex;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// The benchmark that measured it (`rollout`, `ddi`, ...).
    pub bench: String,
    pub name: String,
    pub value: f64,
    pub unit: String,
}

/// What the figures were measured on.
#[derive(Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: Option<String>,
    pub memory_gib: Option<f64>,
    pub postgres: Option<String>,
    pub nats_server: Option<String>,
    pub commit: Option<String>,
}

#[derive(Debug, Serialize)]
struct Results<'a> {
    measured_at: String,
    command: String,
    machine: &'a Machine,
    figures: &'a [Figure],
}

static FIGURES: Mutex<Vec<Figure>> = Mutex::new(Vec::new());
static SECTION: Mutex<String> = Mutex::new(String::new());

/// Names the benchmark whose figures follow.
pub fn section(bench: &str) {
    if let Ok(mut current) = SECTION.lock() {
        bench.clone_into(&mut current);
    }
}

/// Records one figure under the current benchmark.
pub fn record(name: impl Into<String>, value: f64, unit: &str) {
    let bench = SECTION.lock().map(|s| s.clone()).unwrap_or_default();
    if let Ok(mut figures) = FIGURES.lock() {
        figures.push(Figure { bench, name: name.into(), value, unit: unit.to_owned() });
    }
}

pub fn all() -> Vec<Figure> {
    FIGURES.lock().map(|f| f.clone()).unwrap_or_default()
}

/// The figures as a Markdown table, in the order they were measured.
pub fn table(figures: &[Figure]) -> String {
    let mut out = String::from("| bench | figure | value | unit |\n|---|---|---|---|\n");
    for f in figures {
        let value = if f.value.abs() >= 100.0 { format!("{:.0}", f.value) } else { format!("{:.2}", f.value) };
        out.push_str(&format!("| {} | {} | {value} | {} |\n", f.bench, f.name, f.unit));
    }
    out
}

pub fn write_json(path: &std::path::Path, machine: &Machine, figures: &[Figure]) -> std::io::Result<()> {
    let results = Results {
        measured_at: chrono::Utc::now().to_rfc3339(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine,
        figures,
    };
    let json = serde_json::to_vec_pretty(&results).map_err(std::io::Error::other)?;
    std::fs::write(path, json)
}

impl Machine {
    pub async fn describe(db: &sqlx::PgPool) -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        });
        let memory_gib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|info| {
            let kib: f64 =
                info.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse().ok()?;
            Some((kib / 1024.0 / 1024.0 * 10.0).round() / 10.0)
        });
        let postgres = sqlx::query_scalar::<_, String>("SHOW server_version").fetch_one(db).await.ok();
        Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            memory_gib,
            postgres,
            nats_server: output_of("nats-server", &["--version"]),
            commit: output_of("git", &["rev-parse", "--short", "HEAD"]),
        }
    }
}

fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
