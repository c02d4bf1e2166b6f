//! `ota campaign show --watch`: a campaign followed until it ends.
//!
//! On a terminal, one progress bar per wave (indicatif, on stderr); otherwise a
//! line each time a wave's numbers change, so a log or CI output stays
//! readable; with `--json`, the campaign as one JSON line each time it changes.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use ota_domain::campaign::CampaignStatus;
use serde_json::Value;
use uuid::Uuid;

use crate::client::{parse, Client};
use crate::error::{CliError, Result};
use crate::output::{self, Format};
use crate::resources::{Campaign, Wave};

/// Failed looks in a row (server restarting, overloaded) before giving up.
const MAX_FAILED_LOOKS: u32 = 10;
/// How long a campaign may be missing before the watch takes its id for unknown.
const MISSING_GRACE: Duration = Duration::from_secs(5);
/// Looks after a campaign completed, for its device counts to catch up.
const MAX_SETTLING_LOOKS: u32 = 20;

/// Follows the campaign until it completes (exit 0), or is cancelled or aborted (an error).
pub async fn follow(client: &Client, id: Uuid, every: Duration, format: Format) -> Result<ExitCode> {
    let mut view = match format {
        Format::Json => View::Json(None),
        Format::Table if std::io::stderr().is_terminal() => View::Bars(Bars::new()),
        Format::Table => View::Lines(Lines::default()),
    };
    let id = id.to_string();
    let mut failed_looks = 0;
    let mut settling = 0;
    let mut seen = false;
    let started = std::time::Instant::now();
    loop {
        match look(client, &id).await {
            Ok((raw, campaign)) => {
                failed_looks = 0;
                seen = true;
                view.show(&raw, &campaign)?;
                if campaign.status.is_terminal() && (settled(&campaign) || settling >= MAX_SETTLING_LOOKS) {
                    view.finish(&campaign)?;
                    return outcome(&campaign);
                }
                settling += u32::from(campaign.status.is_terminal());
            }
            Err(e) if !seen && missing(&e) && started.elapsed() < MISSING_GRACE => {}
            Err(e) if failed_looks < MAX_FAILED_LOOKS && passing(&e) => failed_looks += 1,
            Err(e) => {
                view.abandon();
                return Err(e);
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// The campaign's status and its devices' counts come from two read models;
/// the counts may trail the status by a moment.
fn settled(campaign: &Campaign) -> bool {
    campaign.status != CampaignStatus::Completed || campaign.in_flight == 0
}

async fn look(client: &Client, id: &str) -> Result<(Value, Campaign)> {
    let raw = client.get(&["campaigns", id], &[]).await?;
    let campaign = parse(client.server(), 200, raw.clone())?;
    Ok((raw, campaign))
}

/// Worth another look: the server is briefly away or busy.
fn passing(e: &CliError) -> bool {
    match e {
        CliError::Unreachable { .. } => true,
        CliError::Api(failure) => matches!(failure.status, 429 | 502 | 503 | 504),
        CliError::UnexpectedAnswer { status, .. } => matches!(status, 502..=504),
        _ => false,
    }
}

/// No such campaign: an unknown id, or one just created that the read model
/// does not show yet.
fn missing(e: &CliError) -> bool {
    matches!(e, CliError::Api(failure) if failure.status == 404)
}

fn outcome(campaign: &Campaign) -> Result<ExitCode> {
    match campaign.status {
        CampaignStatus::Completed => Ok(ExitCode::SUCCESS),
        status => Err(CliError::CampaignEnded {
            id: campaign.id,
            status: status.as_str().to_owned(),
            reason: campaign.last_reason.clone(),
        }),
    }
}

enum View {
    Bars(Bars),
    Lines(Lines),
    /// The last campaign printed.
    Json(Option<Value>),
}

impl View {
    fn show(&mut self, raw: &Value, campaign: &Campaign) -> Result<()> {
        match self {
            View::Bars(bars) => {
                bars.show(campaign);
                Ok(())
            }
            View::Lines(lines) => lines.show(campaign),
            View::Json(last) if last.as_ref() != Some(raw) => {
                *last = Some(raw.clone());
                output::emit(&raw.to_string())
            }
            View::Json(_) => Ok(()),
        }
    }

    fn finish(&mut self, campaign: &Campaign) -> Result<()> {
        match self {
            View::Bars(bars) => {
                bars.finish();
                output::emit(&summary(campaign))
            }
            View::Lines(_) => output::emit(&summary(campaign)),
            View::Json(_) => Ok(()),
        }
    }

    fn abandon(&mut self) {
        if let View::Bars(bars) = self {
            bars.finish();
        }
    }
}

/// The last line: how the campaign ended and what its devices did.
pub fn summary(c: &Campaign) -> String {
    let sum = |f: fn(&Wave) -> i64| c.waves.iter().map(f).sum::<i64>();
    let mut text = format!(
        "campaign {} {}: {} of {} devices succeeded, {} failed, {} cancelled",
        c.id,
        c.status.as_str(),
        sum(|w| w.succeeded),
        c.device_count,
        sum(Wave::failures),
        sum(|w| w.cancelled),
    );
    if let Some(reason) = &c.last_reason {
        text.push_str(&format!(" ({reason})"));
    }
    text
}

/// One wave's progress in words.
pub fn wave_line(w: &Wave, waves: usize) -> String {
    format!(
        "wave {}/{waves}: {}/{} done ({} succeeded, {} failed, {} in progress)",
        w.wave + 1,
        w.finished(),
        w.size,
        w.succeeded,
        w.failures(),
        w.in_progress
    )
}

fn headline(c: &Campaign) -> String {
    let mut line = format!("campaign {} \"{}\": {}", c.id, c.name, c.status.as_str());
    if let Some(w) = c.current_wave {
        line.push_str(&format!(", wave {} of {}", w + 1, c.waves.len().max(c.rollout.waves.len())));
    }
    if c.awaiting_approval {
        line.push_str(", awaiting approval");
    }
    line
}

/// Line by line: the headline when it changes, a wave's line when its numbers do.
#[derive(Default)]
struct Lines {
    headline: String,
    waves: Vec<Wave>,
}

impl Lines {
    fn show(&mut self, c: &Campaign) -> Result<()> {
        let headline = headline(c);
        if headline != self.headline {
            output::emit(&headline)?;
            self.headline = headline;
        }
        for wave in &c.waves {
            let index = usize::try_from(wave.wave).unwrap_or(usize::MAX);
            if self.waves.get(index) != Some(wave) && (wave.assigned > 0 || wave.started_at.is_some()) {
                output::emit(&wave_line(wave, c.waves.len().max(c.rollout.waves.len())))?;
            }
        }
        self.waves = c.waves.clone();
        Ok(())
    }
}

/// A status line and one bar per wave, on stderr.
struct Bars {
    multi: MultiProgress,
    status: ProgressBar,
    waves: Vec<ProgressBar>,
}

impl Bars {
    fn new() -> Self {
        let multi = MultiProgress::new();
        let status = multi.add(ProgressBar::new_spinner());
        status.enable_steady_tick(Duration::from_millis(120));
        Self { multi, status, waves: Vec::new() }
    }

    fn show(&mut self, c: &Campaign) {
        self.status.set_message(headline(c));
        let style = ProgressStyle::with_template("{prefix:>8} [{bar:40.green/red}] {pos}/{len} {msg}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        while self.waves.len() < c.waves.len() {
            let bar = self.multi.add(ProgressBar::new(0).with_style(style.clone()));
            bar.set_prefix(format!("wave {}", self.waves.len() + 1));
            self.waves.push(bar);
        }
        for (bar, wave) in self.waves.iter().zip(&c.waves) {
            bar.set_length(u64::try_from(wave.size).unwrap_or(0));
            bar.set_position(u64::try_from(wave.finished()).unwrap_or(0));
            bar.set_message(format!(
                "{} succeeded, {} failed, {} in progress",
                wave.succeeded,
                wave.failures(),
                wave.in_progress
            ));
        }
    }

    fn finish(&mut self) {
        for bar in &self.waves {
            bar.finish();
        }
        self.status.finish();
    }
}
