//! Heads kept outside the database. A signed head (what `/audit/head` answers and
//! what a checkpoint file holds) names a position and the link the chain had
//! there; recomputing the chain from the events up to that position must give
//! the same link. A superuser who edits events and recomputes every link, or who
//! cuts the tail off, cannot also change a head kept where the server cannot write.

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};

use super::{event_from_row, link, Head, GENESIS};

/// The first line of every signed head.
const TAG: &str = "ota-event-chain-head";

/// Exactly the text that is signed.
pub fn head_message(head: &Head, at: DateTime<Utc>) -> String {
    format!(
        "{TAG}\nposition {}\nglobal_seq {}\nlink {}\nat {}",
        head.position,
        head.global_seq,
        head.link,
        at.to_rfc3339()
    )
}

/// A short name of a public key: the first 8 bytes of its SHA-256, hex.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.to_bytes())[..8])
}

/// A head signed with the audit key: a checkpoint file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead {
    pub position: i64,
    pub global_seq: i64,
    /// Hex SHA-256.
    pub link: String,
    /// Exactly the bytes signed.
    pub message: String,
    /// Hex ed25519 signature over `message`.
    pub signature: String,
    pub public_key: String,
    pub key_id: String,
    pub signed_at: DateTime<Utc>,
}

pub fn sign(head: &Head, key: &SigningKey, at: DateTime<Utc>) -> SignedHead {
    let message = head_message(head, at);
    let signature = key.sign(message.as_bytes());
    SignedHead {
        position: head.position,
        global_seq: head.global_seq,
        link: head.link.clone(),
        signature: hex::encode(signature.to_bytes()),
        public_key: hex::encode(key.verifying_key().to_bytes()),
        key_id: key_id(&key.verifying_key()),
        message,
        signed_at: at,
    }
}

/// What a signed head vouches for, read from its signed message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anchor {
    pub position: i64,
    pub global_seq: i64,
    pub link: String,
    /// When it was signed, as signed.
    pub at: String,
}

/// Why a file is not a head signed with the trusted key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForgedAnchor {
    #[error("not a signed chain head: {0}")]
    Unreadable(String),
    #[error("the head carries no signature")]
    Unsigned,
    #[error("signed with key {0}, not with the trusted audit key")]
    OtherKey(String),
    #[error("the signature does not match the signed message")]
    BadSignature,
    #[error("its {0} differs from the one the signature covers")]
    Altered(&'static str),
}

/// Checks a signed head (a checkpoint file or an `/audit/head` answer) against the
/// trusted public key. Only the signed message counts; the file's other fields
/// must agree with it.
pub fn check_signed_head(raw: &str, trusted: &VerifyingKey) -> Result<Anchor, ForgedAnchor> {
    let file: serde_json::Value = serde_json::from_str(raw).map_err(|e| ForgedAnchor::Unreadable(e.to_string()))?;
    let text = |name: &str| file.get(name).and_then(|v| v.as_str());
    let message = text("message").ok_or_else(|| ForgedAnchor::Unreadable("no `message`".into()))?;
    let signature = text("signature").ok_or(ForgedAnchor::Unsigned)?;
    if let Some(key) = text("public_key").filter(|k| !k.eq_ignore_ascii_case(&hex::encode(trusted.to_bytes()))) {
        return Err(ForgedAnchor::OtherKey(key.to_owned()));
    }
    let signature: [u8; 64] =
        hex::decode(signature).ok().and_then(|b| b.try_into().ok()).ok_or(ForgedAnchor::BadSignature)?;
    trusted
        .verify_strict(message.as_bytes(), &Signature::from_bytes(&signature))
        .map_err(|_| ForgedAnchor::BadSignature)?;
    let anchor = parse_message(message).ok_or_else(|| ForgedAnchor::Unreadable("malformed message".into()))?;
    if file.get("position").is_some_and(|p| p.as_i64() != Some(anchor.position)) {
        return Err(ForgedAnchor::Altered("position"));
    }
    if file.get("global_seq").is_some_and(|p| p.as_i64() != Some(anchor.global_seq)) {
        return Err(ForgedAnchor::Altered("global_seq"));
    }
    if text("link").is_some_and(|l| l != anchor.link) || (file.get("link").is_some() && text("link").is_none()) {
        return Err(ForgedAnchor::Altered("link"));
    }
    Ok(anchor)
}

fn parse_message(message: &str) -> Option<Anchor> {
    let mut lines = message.split('\n');
    if lines.next()? != TAG {
        return None;
    }
    let mut field = |name: &str| lines.next()?.strip_prefix(name)?.strip_prefix(' ').map(str::to_owned);
    let position = field("position")?.parse().ok()?;
    let global_seq = field("global_seq")?.parse().ok()?;
    let link = field("link")?;
    let at = field("at")?;
    DateTime::parse_from_rfc3339(&at).ok()?;
    let well_formed = link.len() == 64 && link.bytes().all(|b| b.is_ascii_hexdigit());
    (well_formed && lines.next().is_none()).then_some(Anchor { position, global_seq, link, at })
}

/// How the database's chain stands against an anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnchorProblem {
    /// The chain ends before the anchored position: its tail was cut off.
    Cut,
    /// Recomputed from the events, the chain has another link at the anchored
    /// position: events up to it were edited, removed or reordered (and the
    /// links perhaps recomputed to hide it).
    Rewritten,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnchorCheck {
    pub ok: bool,
    pub anchor: Anchor,
    /// Events recomputed up to the anchored position.
    pub recomputed: i64,
    /// The last linked position the database has up to the anchor.
    pub chain_reaches: i64,
    /// The link recomputed at the anchored position, when the chain reaches it.
    pub recomputed_link: Option<String>,
    pub problem: Option<AnchorProblem>,
}

/// Recomputes the chain from the stored events, in its order, up to the anchored
/// position; the stored links are not trusted, only the events are.
pub async fn verify_anchor(pool: &PgPool, anchor: &Anchor) -> Result<AnchorCheck, sqlx::Error> {
    let mut walk = sqlx::query(
        "SELECT c.position, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload,
                e.metadata, e.global_seq, e.recorded_at
         FROM event_chain c LEFT JOIN events e ON e.global_seq = c.global_seq
         WHERE c.position <= $1 ORDER BY c.position",
    )
    .bind(anchor.position)
    .fetch(pool);
    let (mut previous, mut recomputed, mut reaches, mut gone) = (GENESIS, 0, 0, false);
    while let Some(row) = walk.try_next().await? {
        reaches = row.try_get("position")?;
        // A link whose event is gone: nothing recomputed can match any more.
        if row.try_get::<Option<i64>, _>("global_seq")?.is_none() {
            gone = true;
            continue;
        }
        previous = link(&previous, &event_from_row(&row)?);
        recomputed += 1;
    }
    let reached = reaches == anchor.position;
    let recomputed_link = (reached && !gone).then(|| hex::encode(previous));
    let problem = match (reached, &recomputed_link) {
        (false, _) => Some(AnchorProblem::Cut),
        (true, Some(link)) if link.eq_ignore_ascii_case(&anchor.link) => None,
        (true, _) => Some(AnchorProblem::Rewritten),
    };
    Ok(AnchorCheck {
        ok: problem.is_none(),
        anchor: anchor.clone(),
        recomputed,
        chain_reaches: reaches,
        recomputed_link,
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn signed() -> SignedHead {
        let head = Head { position: 42, global_seq: 57, link: "ab".repeat(32) };
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        sign(&head, &key(), at)
    }

    fn check(file: &SignedHead) -> Result<Anchor, ForgedAnchor> {
        let raw = serde_json::to_string(file).unwrap_or_default();
        check_signed_head(&raw, &key().verifying_key())
    }

    #[test]
    fn a_signed_head_checks_and_names_what_was_signed() {
        let anchor = check(&signed()).expect("genuine");
        assert_eq!((anchor.position, anchor.global_seq, anchor.link), (42, 57, "ab".repeat(32)));
    }

    #[test]
    fn a_changed_message_field_or_key_is_refused() {
        let mut moved = signed();
        moved.message = moved.message.replace("position 42", "position 41");
        assert_eq!(check(&moved), Err(ForgedAnchor::BadSignature));
        let mut relinked = signed();
        relinked.link = "cd".repeat(32);
        assert_eq!(check(&relinked), Err(ForgedAnchor::Altered("link")));
        let mut shifted = signed();
        shifted.position = 41;
        assert_eq!(check(&shifted), Err(ForgedAnchor::Altered("position")));
        let other = SigningKey::from_bytes(&[8; 32]);
        let head = Head { position: 42, global_seq: 57, link: "ab".repeat(32) };
        let foreign = sign(&head, &other, Utc::now());
        assert!(matches!(check(&foreign), Err(ForgedAnchor::OtherKey(_))));
        let mut unnamed = serde_json::to_value(&foreign).unwrap_or_default();
        if let Some(fields) = unnamed.as_object_mut() {
            fields.remove("public_key");
        }
        let refused = check_signed_head(&unnamed.to_string(), &key().verifying_key());
        assert_eq!(refused, Err(ForgedAnchor::BadSignature));
        assert!(matches!(check_signed_head("{}", &key().verifying_key()), Err(ForgedAnchor::Unreadable(_))));
    }

    #[test]
    fn the_message_is_the_one_audit_head_signs() {
        let head = Head { position: 3, global_seq: 9, link: "00".repeat(32) };
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let expected =
            format!("ota-event-chain-head\nposition 3\nglobal_seq 9\nlink {}\nat {}", head.link, at.to_rfc3339());
        assert_eq!(head_message(&head, at), expected);
    }
}
