//! `ota campaign create|list|show|start|pause|resume|cancel|approve|abort`.
//!
//! A command that sends a campaign's definition takes a [`CampaignSpec`] (flags
//! and/or `--file`): `create` posts [`CampaignSpec::body`], `preview` posts
//! [`CampaignSpec::merged`] (the name may be left out) with its assumptions.

mod preview;
mod render;
mod spec;

pub use render::show;
pub use spec::{parse_duration, parse_wave, CampaignBody, CampaignSpec};

use std::process::ExitCode;
use std::time::Duration;

use ota_domain::campaign::CampaignStatus;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::error::{CliError, Result};
use crate::output::print;
use crate::resources::{Campaign, Page};
use crate::{Paging, Remote};

#[derive(Debug, clap::Subcommand)]
pub enum CampaignCommand {
    /// Create a campaign (a draft: nothing happens until `start`).
    Create {
        #[command(flatten)]
        spec: CampaignSpec,
        #[command(flatten)]
        remote: Remote,
    },
    /// What starting this plan now would do, without creating anything: who would
    /// be updated and who left out and why, the waves, when they would run, and
    /// the gates' decisions at an assumed failure rate.
    Preview {
        #[command(flatten)]
        spec: CampaignSpec,
        #[command(flatten)]
        assume: preview::Assume,
        #[command(flatten)]
        remote: Remote,
    },
    /// List campaigns, newest first.
    List {
        #[arg(long, value_parser = spec::parse_status)]
        status: Option<CampaignStatus>,
        #[command(flatten)]
        paging: Paging,
        #[command(flatten)]
        remote: Remote,
    },
    /// One campaign: status, waves and decisions; `--watch` follows it to its end.
    Show {
        id: Uuid,
        /// Show live progress per wave until the campaign completes, is cancelled or
        /// aborted (exit 0 when it completes, 3 otherwise).
        #[arg(long)]
        watch: bool,
        /// Seconds between two looks while watching.
        #[arg(long, default_value_t = 1.0, requires = "watch")]
        interval: f64,
        #[command(flatten)]
        remote: Remote,
    },
    /// Start a draft (or schedule it, with `rollout.start_at` in the future).
    Start {
        id: Uuid,
        /// Draw the waves with the seed a preview printed (an immediate start only).
        #[arg(long)]
        seed: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Pause a running campaign: no new assignments; devices in flight go on.
    Pause(WithReason),
    /// Resume a paused campaign.
    Resume(CampaignRef),
    /// Cancel: the rest is never assigned; devices in flight are asked to cancel.
    Cancel(WithReason),
    /// Approve the next wave of a campaign that waits for it (an approver, not its creator).
    Approve {
        id: Uuid,
        /// An admin approving its own campaign says why (recorded with the approval).
        #[arg(long)]
        override_reason: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Abort for good (with `rollback_on_abort`, updated devices are rolled back).
    Abort(WithReason),
}

/// A campaign named by id.
#[derive(Debug, clap::Args)]
pub struct CampaignRef {
    pub id: Uuid,
    #[command(flatten)]
    pub remote: Remote,
}

/// A campaign named by id, and why.
#[derive(Debug, clap::Args)]
pub struct WithReason {
    pub id: Uuid,
    /// Recorded with the decision (1 to 1,000 characters).
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub remote: Remote,
}

pub async fn run(command: CampaignCommand) -> Result<ExitCode> {
    match command {
        CampaignCommand::Create { spec, remote } => {
            let body = serde_json::to_value(spec.body()?).map_err(|e| CliError::invalid(e.to_string()))?;
            let client = remote.connect()?;
            let answer = client.post(&["campaigns"], Some(&body)).await?;
            print(remote.format(), client.server(), answer.body, |c: Campaign| Ok(show(&c)))
        }
        CampaignCommand::Preview { spec, assume, remote } => {
            let body = preview::body(&spec, &assume)?;
            let client = remote.connect()?;
            let answer = client.post(&["campaigns", "preview"], Some(&body)).await?;
            print(remote.format(), client.server(), answer.body, |p: preview::Preview| Ok(preview::render(&p)))
        }
        CampaignCommand::List { status, paging, remote } => {
            let client = remote.connect()?;
            let mut query = paging.query();
            query.extend(status.map(|s| ("status", s.as_str().to_owned())));
            let page = client.get(&["campaigns"], &query).await?;
            print(remote.format(), client.server(), page, |page: Page<Campaign>| Ok(render::list_table(&page)))
        }
        CampaignCommand::Show { id, watch: true, interval, remote } => {
            let client = remote.connect()?;
            let every = Duration::try_from_secs_f64(interval.max(0.1)).unwrap_or(Duration::from_secs(1));
            crate::watch::follow(&client, id, every, remote.format()).await
        }
        CampaignCommand::Show { id, remote, .. } => {
            let client = remote.connect()?;
            let campaign = client.get(&["campaigns", &id.to_string()], &[]).await?;
            print(remote.format(), client.server(), campaign, |c: Campaign| Ok(show(&c)))
        }
        CampaignCommand::Start { id, seed, remote } => {
            transition(id, "start", seed.map(|s| json!({"seed": s})), remote).await
        }
        CampaignCommand::Resume(CampaignRef { id, remote }) => transition(id, "resume", None, remote).await,
        CampaignCommand::Pause(w) => transition(w.id, "pause", w.reason.map(|r| json!({"reason": r})), w.remote).await,
        CampaignCommand::Cancel(w) => {
            transition(w.id, "cancel", w.reason.map(|r| json!({"reason": r})), w.remote).await
        }
        CampaignCommand::Abort(w) => transition(w.id, "abort", w.reason.map(|r| json!({"reason": r})), w.remote).await,
        CampaignCommand::Approve { id, override_reason, remote } => {
            let body = override_reason.map(|r| json!({"override_reason": r}));
            transition(id, "approve", body, remote).await
        }
    }
}

/// `POST /campaigns/{id}/{action}`; the answer is the campaign after it.
async fn transition(id: Uuid, action: &str, body: Option<Value>, remote: Remote) -> Result<ExitCode> {
    let client = remote.connect()?;
    let answer = client.post(&["campaigns", &id.to_string(), action], body.as_ref()).await?;
    print(remote.format(), client.server(), answer.body, |c: Campaign| Ok(show(&c)))
}
