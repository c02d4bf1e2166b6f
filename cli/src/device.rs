//! `ota device list|show|history|rollbacks|import`: the inventory and each device's updates.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::error::{CliError, Result};
use crate::output::{self, print};
use crate::resources::{Device, DeviceUpdate, ImportReport, Page, Rollback};
use crate::{Paging, Remote};

#[derive(Debug, clap::Subcommand)]
pub enum DeviceCommand {
    /// List the inventory, filtered by any of model, hardware, firmware version and tag.
    List {
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        hardware_version: Option<String>,
        #[arg(long)]
        firmware_version: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        #[command(flatten)]
        paging: Paging,
        #[command(flatten)]
        remote: Remote,
    },
    /// One device: its profile and last poll.
    Show {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Every update and rollback of a device, newest first.
    History {
        id: String,
        #[command(flatten)]
        paging: Paging,
        #[command(flatten)]
        remote: Remote,
    },
    /// A device's rollbacks, newest first: from and to which version, who asked, outcome.
    Rollbacks {
        id: String,
        #[command(flatten)]
        paging: Paging,
        #[command(flatten)]
        remote: Remote,
    },
    /// Register or update devices in bulk from a CSV, JSON array or NDJSON file.
    Import(Import),
}

#[derive(Debug, clap::Args)]
pub struct Import {
    /// `.csv`, `.json` (an array) or `.ndjson` / `.jsonl` (one device a line).
    pub file: PathBuf,
    /// The file's format, when its extension does not say.
    #[arg(long, value_enum)]
    pub format: Option<ImportFormat>,
    /// Import the valid rows even if others are invalid (default: all or nothing).
    #[arg(long)]
    pub partial: bool,
    /// Write each new device's DDI token (shown this once) to this new file, mode 0600.
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFormat {
    Csv,
    Json,
    Ndjson,
}

impl ImportFormat {
    /// By the file's extension.
    pub fn of(path: &Path) -> Result<Self> {
        let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("csv") => Ok(ImportFormat::Csv),
            Some("json") => Ok(ImportFormat::Json),
            Some("ndjson" | "jsonl") => Ok(ImportFormat::Ndjson),
            _ => Err(CliError::invalid(format!(
                "cannot tell the format of {}: name it .csv, .json, .ndjson or .jsonl, or give --format",
                path.display()
            ))),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ImportFormat::Csv => "text/csv",
            ImportFormat::Json => "application/json",
            ImportFormat::Ndjson => "application/x-ndjson",
        }
    }
}

pub async fn run(command: DeviceCommand) -> Result<ExitCode> {
    match command {
        DeviceCommand::List { model, hardware_version, firmware_version, tag, paging, remote } => {
            let client = remote.connect()?;
            let mut query = paging.query();
            let filters = [
                ("device_model", model),
                ("hardware_version", hardware_version),
                ("firmware_version", firmware_version),
                ("tag", tag),
            ];
            query.extend(filters.into_iter().filter_map(|(name, value)| Some((name, value?))));
            let page = client.get(&["devices"], &query).await?;
            print(remote.format(), client.server(), page, |page: Page<Device>| Ok(list_table(&page)))
        }
        DeviceCommand::Show { id, remote } => {
            let client = remote.connect()?;
            let device = client.get(&["devices", &id], &[]).await?;
            print(remote.format(), client.server(), device, |d: Device| Ok(output::trimmed(&fields(&d))))
        }
        DeviceCommand::History { id, paging, remote } => {
            let client = remote.connect()?;
            let page = client.get(&["devices", &id, "history"], &paging.query()).await?;
            print(remote.format(), client.server(), page, |page: Page<DeviceUpdate>| Ok(history_table(&page)))
        }
        DeviceCommand::Rollbacks { id, paging, remote } => {
            let client = remote.connect()?;
            let page = client.get(&["devices", &id, "rollbacks"], &paging.query()).await?;
            print(remote.format(), client.server(), page, |page: Page<Rollback>| Ok(rollbacks_table(&page)))
        }
        DeviceCommand::Import(import) => self::import(import).await,
    }
}

async fn import(import: Import) -> Result<ExitCode> {
    let format = match import.format {
        Some(format) => format,
        None => ImportFormat::of(&import.file)?,
    };
    if let Some(path) = import.tokens.as_ref().filter(|p| p.exists()) {
        // Checked before importing: the tokens of new devices are shown only once.
        return Err(CliError::invalid(format!("{} exists; --tokens writes a new file", path.display())));
    }
    let client = import.remote.connect()?;
    let answer = client.import_devices(&import.file, format.content_type(), import.partial).await?;
    let report: ImportReport = answer.parse(client.server())?;
    if let Some(path) = &import.tokens {
        let text = serde_json::to_string_pretty(&report.target_tokens).map_err(|e| CliError::invalid(e.to_string()))?;
        crate::config::write_private(path, text.as_bytes()).map_err(|source| CliError::File {
            what: "writing",
            path: path.clone(),
            source,
        })?;
    }
    let tokens_kept = import.tokens.is_some();
    print(import.remote.format(), client.server(), answer.body, |r: ImportReport| Ok(import_summary(&r, tokens_kept)))
}

fn import_summary(report: &ImportReport, tokens_kept: bool) -> String {
    let mut text = format!(
        "{} rows: {} created, {} updated, {} unchanged, {} failed",
        report.rows,
        report.created,
        report.updated,
        report.unchanged,
        report.failed.len()
    );
    if !report.failed.is_empty() {
        let mut table = output::table(&["ROW", "ID", "ERROR"]);
        for row in &report.failed {
            table.add_row(vec![row.row.to_string(), output::or_dash(row.id.as_deref()), row.error.clone()]);
        }
        text = format!("{text}\n{}", output::trimmed(&table));
    }
    if !report.target_tokens.is_empty() && !tokens_kept {
        text.push_str(&format!(
            "\n{} new devices got a DDI token, shown only once: use --tokens FILE or --json to keep them",
            report.target_tokens.len()
        ));
    }
    text
}

fn list_table(page: &Page<Device>) -> String {
    let mut table = output::table(&["ID", "MODEL", "HARDWARE", "FIRMWARE", "TAGS", "LAST SEEN"]);
    for d in &page.items {
        table.add_row(vec![
            d.id.clone(),
            d.device_model.clone(),
            output::or_dash(d.hardware_version.as_deref()),
            output::or_dash(d.firmware_version.as_deref()),
            d.tags.iter().cloned().collect::<Vec<_>>().join(","),
            output::when(d.last_seen),
        ]);
    }
    output::with_footer(&table, &page.footer())
}

fn fields(d: &Device) -> comfy_table::Table {
    let attributes: Vec<String> = d.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    output::fields(vec![
        ("id", d.id.clone()),
        ("model", d.device_model.clone()),
        ("hardware", output::or_dash(d.hardware_version.as_deref())),
        ("firmware", output::or_dash(d.firmware_version.as_deref())),
        ("tags", output::or_dash(Some(&d.tags.iter().cloned().collect::<Vec<_>>().join(", ")))),
        ("attributes", output::or_dash(Some(&attributes.join(", ")))),
        ("registered", output::when(Some(d.registered_at))),
        ("updated", output::when(Some(d.updated_at))),
        ("last seen", output::when(d.last_seen)),
    ])
}

fn history_table(page: &Page<DeviceUpdate>) -> String {
    let header = ["ACTION", "KIND", "CAMPAIGN", "WAVE", "FROM", "TO", "STATE", "PROGRESS", "ASSIGNED", "FINISHED"];
    let mut table = output::table(&header);
    for u in &page.items {
        let kind = match u.rolls_back_action {
            Some(of) => format!("{} of {of}", u.kind),
            None if u.retry > 0 => format!("{} (retry {})", u.kind, u.retry),
            None => u.kind.clone(),
        };
        table.add_row(vec![
            u.action.to_string(),
            kind,
            u.campaign_id.map_or_else(|| "-".to_owned(), |c| c.to_string()),
            u.wave.map_or_else(|| "-".to_owned(), |w| w.to_string()),
            output::or_dash(u.from_version.as_deref()),
            u.firmware_version.clone(),
            u.state.as_str().to_owned(),
            u.progress.map_or_else(|| "-".to_owned(), |p| format!("{p}%")),
            format!("{} by {}", output::when(Some(u.assigned_at)), output::or_dash(u.assigned_by.as_deref())),
            output::when(u.finished_at),
        ]);
    }
    output::with_footer(&table, &page.footer())
}

fn rollbacks_table(page: &Page<Rollback>) -> String {
    let mut table = output::table(&["ACTION", "UNDOES", "FROM", "TO", "CAMPAIGN", "STATE", "REQUESTED", "FINISHED"]);
    for r in &page.items {
        table.add_row(vec![
            r.action.to_string(),
            r.of_action.to_string(),
            output::or_dash(r.from_version.as_deref()),
            r.to_version.clone(),
            r.campaign_id.map_or_else(|| "-".to_owned(), |c| c.to_string()),
            r.state.clone(),
            format!("{} by {}", output::when(Some(r.requested_at)), output::or_dash(r.requested_by.as_deref())),
            output::when(r.finished_at),
        ]);
    }
    output::with_footer(&table, &page.footer())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_import_format_follows_the_extension() {
        assert_eq!(ImportFormat::of(Path::new("fleet.CSV")).expect("csv"), ImportFormat::Csv);
        assert_eq!(
            ImportFormat::of(Path::new("a/fleet.jsonl")).expect("ndjson").content_type(),
            "application/x-ndjson"
        );
        assert!(ImportFormat::of(Path::new("fleet.txt")).is_err());
    }
}
