//! `ota audit verify [--anchor FILE]`: the chain as stored, and against a signed
//! head kept outside the database, with one exit code per kind of failure.

use ed25519_dalek::{SigningKey, VerifyingKey};
use ota_orchestrator::chain::{self, AnchorCheck, AnchorProblem, Verification};
use serde::Serialize;
use sqlx::PgPool;

/// The outcome, worst first, each with its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The anchor is not a head signed with the trusted key.
    Forged,
    /// The database's chain ends before the anchored position.
    Cut,
    /// Recomputed from the events, the chain differs at the anchored position.
    Rewritten,
    /// A stored link does not match its event (edited, missing or inserted).
    Broken,
    Holds,
}

impl Verdict {
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Holds => 0,
            Verdict::Broken => 1,
            Verdict::Forged => 3,
            Verdict::Rewritten => 4,
            Verdict::Cut => 5,
        }
    }

    pub fn explain(self, report: &Report) -> String {
        let anchored = report.anchor.as_ref().map_or(0, |a| a.anchor.position);
        match self {
            Verdict::Holds => "the event chain holds".into(),
            Verdict::Broken => "the event chain is broken (see first_broken)".into(),
            Verdict::Forged => format!("the anchor is forged: {}", report.forged.as_deref().unwrap_or("?")),
            Verdict::Cut => format!(
                "the chain's tail was cut: the database's chain ends at position {} before the anchored position {anchored}",
                report.anchor.as_ref().map_or(0, |a| a.chain_reaches)
            ),
            Verdict::Rewritten => format!(
                "the chain was rewritten: recomputed from the events, position {anchored} does not have the anchored link"
            ),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    pub chain: Verification,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor: Option<AnchorCheck>,
    /// Why the anchor file was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forged: Option<String>,
}

/// The key anchors must be signed with: `--public-key` (OTA_AUDIT_PUBLIC_KEY), else the
/// public half of OTA_AUDIT_SIGNING_KEY.
pub fn trusted_key(public_key: Option<&str>, signing_key: Option<&str>) -> anyhow::Result<VerifyingKey> {
    let bytes = |raw: &str| -> Option<[u8; 32]> { hex::decode(raw.trim()).ok()?.try_into().ok() };
    match (public_key, signing_key) {
        (Some(public), _) => bytes(public)
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            .ok_or_else(|| anyhow::anyhow!("--public-key must be 64 hex characters (an ed25519 public key)")),
        (None, Some(seed)) => bytes(seed)
            .map(|b| SigningKey::from_bytes(&b).verifying_key())
            .ok_or_else(|| anyhow::anyhow!("OTA_AUDIT_SIGNING_KEY must be 64 hex characters")),
        (None, None) => anyhow::bail!("--anchor needs the audit public key: --public-key or OTA_AUDIT_PUBLIC_KEY"),
    }
}

/// Verifies the stored chain, and with an anchor (a signed head's JSON and the key
/// it must be signed with), the chain recomputed up to the anchored position.
pub async fn verify(pool: &PgPool, anchor: Option<(&str, &VerifyingKey)>) -> Result<Report, sqlx::Error> {
    let chain = chain::verify(pool).await?;
    let broken = if chain.ok { Verdict::Holds } else { Verdict::Broken };
    let Some((raw, key)) = anchor else {
        return Ok(Report { verdict: broken, chain, anchor: None, forged: None });
    };
    let anchor = match chain::check_signed_head(raw, key) {
        Ok(anchor) => anchor,
        Err(forged) => {
            return Ok(Report { verdict: Verdict::Forged, chain, anchor: None, forged: Some(forged.to_string()) })
        }
    };
    let check = chain::verify_anchor(pool, &anchor).await?;
    let verdict = match check.problem {
        Some(AnchorProblem::Cut) => Verdict::Cut,
        Some(AnchorProblem::Rewritten) => Verdict::Rewritten,
        None => broken,
    };
    Ok(Report { verdict, chain, anchor: Some(check), forged: None })
}
