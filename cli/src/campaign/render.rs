//! A campaign for people: its fields, its waves and its decisions.

use crate::output;
use crate::resources::{Campaign, Page};

pub(super) fn list_table(page: &Page<Campaign>) -> String {
    let mut table = output::table(&["ID", "NAME", "STATUS", "FIRMWARE", "DEVICES", "WAVE", "CREATED"]);
    for c in &page.items {
        table.add_row(vec![
            c.id.to_string(),
            c.name.clone(),
            c.status.as_str().to_owned(),
            format!("{} {}", c.firmware.name, c.firmware.version),
            c.device_count.to_string(),
            wave_of(c),
            output::when(Some(c.created_at)),
        ]);
    }
    output::with_footer(&table, &page.footer())
}

/// "2 of 3", "-" before the first wave.
fn wave_of(c: &Campaign) -> String {
    match c.current_wave {
        Some(w) => format!("{} of {}", w + 1, c.waves.len().max(c.rollout.waves.len())),
        None => "-".to_owned(),
    }
}

/// One campaign for people: what it is, its waves, and its last decisions.
pub fn show(c: &Campaign) -> String {
    let mut status = c.status.as_str().to_owned();
    if c.awaiting_approval {
        status.push_str(", awaiting approval of the next wave");
    }
    let mut rows = vec![
        ("id", c.id.to_string()),
        ("name", c.name.clone()),
        ("status", status),
        (
            "firmware",
            format!("{} {} ({}) {}", c.firmware.name, c.firmware.version, c.firmware.device_model, c.firmware.id),
        ),
        (
            "devices",
            format!(
                "{} ({} excluded, {} unassigned, {} in flight)",
                c.device_count, c.excluded, c.unassigned, c.in_flight
            ),
        ),
        ("wave", wave_of(c)),
        ("created", format!("{} by {}", output::when(Some(c.created_at)), output::or_dash(c.created_by.as_deref()))),
        ("started", output::when(c.started_at.or(c.scheduled_for))),
        ("ended", output::when(c.ended_at)),
    ];
    if let Some(reason) = &c.last_reason {
        rows.push(("reason", reason.clone()));
    }
    if let Some(of) = c.rollback_of {
        rows.push(("rolls back", of.to_string()));
    }
    let mut text = output::trimmed(&output::fields(rows));
    if !c.waves.is_empty() {
        text = format!("{text}\n\n{}", output::trimmed(&waves_table(c)));
    }
    if !c.decisions.is_empty() {
        text = format!("{text}\n\n{}", output::trimmed(&decisions_table(c)));
    }
    text
}

fn waves_table(c: &Campaign) -> comfy_table::Table {
    let header = [
        "WAVE",
        "SIZE",
        "ASSIGNED",
        "IN PROGRESS",
        "SUCCEEDED",
        "FAILED",
        "REJECTED",
        "TIMED OUT",
        "CANCELLED",
        "STARTED",
    ];
    let mut table = output::table(&header);
    for w in &c.waves {
        let n = |v: i64| v.to_string();
        table.add_row(vec![
            n(w.wave + 1),
            n(w.size),
            n(w.assigned),
            n(w.in_progress),
            n(w.succeeded),
            n(w.failed),
            n(w.rejected),
            n(w.timed_out),
            n(w.cancelled),
            output::when(w.started_at),
        ]);
    }
    table
}

/// Decisions shown under a campaign; `--json` has them all.
const DECISIONS_SHOWN: usize = 10;

fn decisions_table(c: &Campaign) -> comfy_table::Table {
    let mut table = output::table(&["#", "DECISION", "WAVE", "BY", "REASON", "AT"]);
    let skip = c.decisions.len().saturating_sub(DECISIONS_SHOWN);
    for d in c.decisions.iter().skip(skip) {
        table.add_row(vec![
            d.sequence.to_string(),
            d.decision.clone(),
            d.wave.map_or_else(|| "-".to_owned(), |w| (w + 1).to_string()),
            output::or_dash(d.actor.as_deref()),
            output::or_dash(d.reason.as_deref()),
            output::when(Some(d.decided_at)),
        ]);
    }
    table
}
