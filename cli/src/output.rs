//! What the CLI prints: tables for people, the server's JSON for scripts.

use std::io::Write;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use comfy_table::{presets, Table};
use serde_json::Value;

use crate::error::{CliError, Result};

/// How a command prints its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    /// The server's answer, as it came, pretty-printed.
    Json,
}

impl Format {
    pub fn of(json: bool) -> Self {
        if json {
            Format::Json
        } else {
            Format::Table
        }
    }
}

/// Writes text to stdout. A closed pipe (`ota device list | head`) ends the
/// output quietly instead of failing the command.
pub fn emit(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    let written =
        stdout.write_all(text.as_bytes()).and_then(
            |()| {
                if text.ends_with('\n') {
                    Ok(())
                } else {
                    stdout.write_all(b"\n")
                }
            },
        );
    match written.and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::File { what: "writing", path: "stdout".into(), source: e })
        }
        _ => Ok(()),
    }
}

/// Prints an answer: as it came with `--json`, else rendered for people.
pub fn print<T: serde::de::DeserializeOwned>(
    format: Format,
    server: &str,
    answer: Value,
    render: impl FnOnce(T) -> Result<String>,
) -> Result<ExitCode> {
    let text = match format {
        Format::Json => json(&answer),
        Format::Table => render(crate::client::parse(server, 200, answer)?)?,
    };
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// A JSON value, pretty-printed.
pub fn json(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// A table without borders, columns aligned: readable, and easy to cut or grep.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(header.iter().copied());
    table
}

/// Label / value rows for one resource.
pub fn fields(rows: Vec<(&str, String)>) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    for (label, value) in rows {
        table.add_row(vec![label.to_owned(), value]);
    }
    table
}

/// A table followed by the line that says which page it is.
pub fn with_footer(table: &Table, footer: &str) -> String {
    format!("{}\n{footer}", trimmed(table))
}

/// A table's text without the padding outside its columns.
pub fn trimmed(table: &Table) -> String {
    let lines: Vec<String> = table.lines().map(|line| line.trim_end().to_owned()).collect();
    // Every cell is padded by one space on each side; the first column's starts each line.
    let flush_left = lines.iter().all(|l| l.is_empty() || l.starts_with(' '));
    let lines: Vec<&str> =
        lines.iter().map(|l| if flush_left { l.strip_prefix(' ').unwrap_or(l) } else { l.as_str() }).collect();
    lines.join("\n")
}

pub fn when(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

pub fn or_dash(value: Option<&str>) -> String {
    value.filter(|v| !v.is_empty()).unwrap_or("-").to_owned()
}

/// Bytes for people: 512 B, 1.5 KiB, 2.0 MiB.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn tables_align_columns_without_borders() {
        let mut t = table(&["ID", "NAME"]);
        t.add_row(vec!["1", "gateway"]);
        let text = trimmed(&t);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0].find("NAME"), lines[1].find("gateway"), "{text}");
        assert!(text.starts_with("ID"), "{text}");
    }
}
