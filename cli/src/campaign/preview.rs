//! `ota campaign preview`: what starting a plan would do, before anything is created.

use std::time::Duration;

use ota_domain::rollout::{ForecastOutcome, GateKind, GateReport};
pub use ota_orchestrator::preview::{ForecastSummary, Preview};
use serde_json::Value;

use super::spec::CampaignSpec;
use crate::error::{CliError, Result};
use crate::output;

/// Exclusions listed device by device under the counts; `--json` has the server's list.
const EXCLUSIONS_SHOWN: usize = 20;

/// What the simulated rollout assumes, and the seed that draws the waves.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Assume {
    /// Percent of update attempts the simulation fails (0 to 100).
    #[arg(long = "assume-failure", value_name = "PERCENT", default_value_t = 0)]
    pub failure_percent: u32,
    /// How long one update takes from assignment to its report, e.g. 90s, 10m.
    #[arg(long = "assume-update", value_name = "DURATION", value_parser = super::spec::parse_duration)]
    pub update: Option<Duration>,
    /// Draw the waves with this seed (a preview prints the one it used).
    #[arg(long)]
    pub seed: Option<String>,
}

/// The preview request: the create body (the name may be left out) and the assumptions.
pub fn body(spec: &CampaignSpec, assume: &Assume) -> Result<Value> {
    let mut body = serde_json::to_value(spec.merged()?).map_err(|e| CliError::invalid(e.to_string()))?;
    let mut assumed = serde_json::json!({"failure_percent": assume.failure_percent});
    if let Some(update) = assume.update {
        assumed["update_secs"] = update.as_secs().into();
    }
    body["assume"] = assumed;
    if let Some(seed) = &assume.seed {
        body["seed"] = seed.clone().into();
    }
    Ok(body)
}

/// The preview for people: the summary, the waves, and who is left out and why.
pub fn render(p: &Preview) -> String {
    let f = &p.forecast;
    let rows = vec![
        ("seed", format!("{} (start with --seed {} to get these waves)", p.seed, p.seed)),
        (
            "devices",
            format!(
                "{} to update, {} drawn into waves, {} named but not members",
                p.updating, p.members, p.not_members
            ),
        ),
        ("assuming", format!("{} % of attempts fail, {} per update", f.failure_percent, span(f.update_secs as i64))),
        ("starts", output::when(Some(f.starts_at))),
        ("outcome", outcome(f)),
    ];
    let mut text = output::trimmed(&output::fields(rows));
    let mut waves = output::table(&[
        "WAVE",
        "MEMBERS",
        "SKIPPED",
        "STARTS",
        "LAST ASSIGNED",
        "GATE DECIDED",
        "SUCCEEDED",
        "FAILED",
        "APPROVAL",
    ]);
    for w in &p.waves {
        waves.add_row(vec![
            (w.wave + 1).to_string(),
            w.members.len().to_string(),
            w.skipped.to_string(),
            output::when(w.forecast.starts_at),
            output::when(w.forecast.last_assigned_at),
            output::when(w.forecast.gate_decided_at),
            w.forecast.succeeded.to_string(),
            w.forecast.failed.to_string(),
            if w.forecast.awaits_approval { "needed" } else { "-" }.to_owned(),
        ]);
    }
    text = format!("{text}\n\n{}", output::trimmed(&waves));
    if !p.excluded_by_reason.is_empty() {
        let mut reasons = output::table(&["LEFT OUT BECAUSE", "DEVICES"]);
        for (reason, count) in &p.excluded_by_reason {
            reasons.add_row(vec![reason.clone(), count.to_string()]);
        }
        let mut devices = output::table(&["DEVICE", "REASON", "WAVE", "WHY"]);
        for e in p.excluded.iter().take(EXCLUSIONS_SHOWN) {
            let wave = e.wave.map_or_else(|| "-".to_owned(), |w| (w + 1).to_string());
            devices.add_row(vec![e.device_id.clone(), e.reason.clone(), wave, e.message.clone()]);
        }
        text = format!("{text}\n\n{}\n\n{}", output::trimmed(&reasons), output::trimmed(&devices));
    }
    text
}

fn outcome(f: &ForecastSummary) -> String {
    let after = f.duration_secs.map(|d| format!(" after {}", span(d))).unwrap_or_default();
    let at = output::when(f.ended_at);
    match &f.outcome {
        ForecastOutcome::Completed => format!("completes at {at}{after}"),
        ForecastOutcome::Paused { reason } => format!("pauses at {at}{after}: {}", gate(reason)),
        ForecastOutcome::Aborted { reason } => format!("aborts at {at}{after}: {}", gate(reason)),
        ForecastOutcome::Unfinished => "still running a year after it starts".to_owned(),
    }
}

fn gate(r: &GateReport) -> String {
    match r.gate {
        GateKind::FailureThreshold => format!(
            "wave {}'s failure gate, {} of {} finished failed (more than {} %)",
            r.wave + 1,
            r.failed,
            r.finished,
            r.threshold_percent
        ),
        GateKind::SuccessThreshold => format!(
            "wave {}'s success gate, {} of {} succeeded (less than {} %)",
            r.wave + 1,
            r.succeeded,
            r.size,
            r.threshold_percent
        ),
    }
}

/// Seconds for people: 45s, 12m 5s, 3h 20m, 2d 4h.
fn span(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m, s) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_people_say_them() {
        assert_eq!(
            [span(45), span(600), span(725), span(12_000), span(187_200)],
            ["45s", "10m", "12m 5s", "3h 20m", "2d 4h"]
        );
    }

    #[test]
    fn the_body_is_the_create_body_with_assumptions_and_seed() {
        let spec = CampaignSpec { name: None, devices: vec!["d-1".into()], ..CampaignSpec::default() };
        let assume = Assume { failure_percent: 5, update: Some(Duration::from_secs(90)), seed: Some("42".into()) };
        let body = body(&spec, &assume).expect("a body");
        assert_eq!(body["assume"], serde_json::json!({"failure_percent": 5, "update_secs": 90}));
        assert_eq!((body["seed"].as_str(), body["target"]["device_ids"][0].as_str()), (Some("42"), Some("d-1")));
        assert!(body.get("name").is_none());
    }
}
