//! Firmware signatures: ed25519 over the image's SHA-256 digest, checked against
//! public keys the operator trusts, each known by a key id.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// What the server found when it checked an upload's signature.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SignatureCheck {
    #[default]
    Unsigned,
    Verified {
        /// The signer, or the signers comma-separated (threshold releases).
        key_id: String,
        /// The signed release's counter (absent in checks from before signed releases).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        release_counter: Option<u64>,
    },
    Invalid {
        key_id: Option<String>,
        reason: String,
    },
}

impl SignatureCheck {
    pub fn is_verified(&self) -> bool {
        matches!(self, SignatureCheck::Verified { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("trusted key {entry:?}: {problem} (expected key_id:64 hex characters)")]
pub struct KeyListError {
    pub entry: String,
    pub problem: &'static str,
}

/// The public keys uploads may be signed with.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys(BTreeMap<String, VerifyingKey>);

impl TrustedKeys {
    /// `id:hex,id2:hex` (hex of the 32-byte ed25519 public key).
    pub fn parse(list: &str) -> Result<Self, KeyListError> {
        let mut keys = BTreeMap::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = |problem| KeyListError { entry: entry.to_owned(), problem };
            let (id, key) = entry.split_once(':').ok_or_else(|| bad("no ':' between key id and key"))?;
            let bytes: [u8; 32] =
                hex::decode(key.trim()).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| bad("not 32 hex bytes"))?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad("not an ed25519 public key"))?;
            keys.insert(id.trim().to_owned(), key);
        }
        Ok(Self(keys))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, key_id: &str) -> Option<&VerifyingKey> {
        self.0.get(key_id)
    }

    /// Checks `signature` (hex, 128 characters) over the digest `sha256_hex` with the key `key_id`.
    pub fn check(&self, sha256_hex: &str, key_id: Option<&str>, signature: Option<&str>) -> SignatureCheck {
        let invalid =
            |reason: &str| SignatureCheck::Invalid { key_id: key_id.map(str::to_owned), reason: reason.to_owned() };
        let (key_id, signature) = match (key_id, signature) {
            (None, None) => return SignatureCheck::Unsigned,
            (Some(k), Some(s)) => (k, s),
            (None, Some(_)) => return invalid("a signature needs its key_id"),
            (Some(_), None) => return invalid("key_id given without a signature"),
        };
        let Some(key) = self.0.get(key_id) else { return invalid("unknown key_id") };
        let Some(signature) = hex::decode(signature.trim()).ok().and_then(|b| <[u8; 64]>::try_from(b).ok()) else {
            return invalid("signature is not 64 hex-encoded bytes");
        };
        let Some(digest) = hex::decode(sha256_hex).ok() else { return invalid("digest is not hex") };
        match key.verify(&digest, &Signature::from_bytes(&signature)) {
            // Issue 12: a signature over the digest alone lets anyone holding an
            // operator token relabel a signed image (another version, another
            // model), so it no longer verifies anything.
            Ok(()) => invalid(
                "a signature over the image digest alone binds no name, version or model: \
                 sign the release (`ota firmware sign`) and upload it as `release`",
            ),
            Err(_) => invalid("signature does not match the image's SHA-256 with this key"),
        }
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    fn keys() -> (SigningKey, TrustedKeys) {
        let signing = SigningKey::from_bytes(&[7; 32]);
        let list = format!("ci-2026:{}", hex::encode(signing.verifying_key().to_bytes()));
        (signing, TrustedKeys::parse(&list).unwrap_or_default())
    }

    #[test]
    fn a_signature_over_the_digest_alone_no_longer_verifies() {
        let (signing, trusted) = keys();
        let digest = "ab".repeat(32);
        let signature = hex::encode(signing.sign(&hex::decode(&digest).unwrap_or_default()).to_bytes());
        let check = trusted.check(&digest, Some("ci-2026"), Some(&signature));
        assert!(
            matches!(&check, SignatureCheck::Invalid { reason, .. } if reason.contains("ota firmware sign")),
            "{check:?}"
        );
        let other = "cd".repeat(32);
        assert!(matches!(trusted.check(&other, Some("ci-2026"), Some(&signature)), SignatureCheck::Invalid { .. }));
        assert!(matches!(trusted.check(&digest, Some("other"), Some(&signature)), SignatureCheck::Invalid { .. }));
        assert!(matches!(trusted.check(&digest, Some("ci-2026"), Some("zz")), SignatureCheck::Invalid { .. }));
        assert!(matches!(trusted.check(&digest, None, Some(&signature)), SignatureCheck::Invalid { .. }));
        assert_eq!(trusted.check(&digest, None, None), SignatureCheck::Unsigned);
    }

    #[test]
    fn key_lists_parse_or_say_what_is_wrong() {
        assert!(TrustedKeys::parse("").is_ok_and(|k| k.is_empty()));
        assert!(TrustedKeys::parse("nocolon").is_err());
        assert!(TrustedKeys::parse("a:1234").is_err());
    }
}
