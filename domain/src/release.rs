//! Signed release metadata a device can check before it installs (TUF/Uptane
//! style): what an image is (name, version, device model, hardware versions),
//! its SHA-256 and size, and a monotonic release counter, signed by keys the
//! operator trusts.
//!
//! The signature covers the metadata, not only the image bytes: a signed image
//! relabelled as another version or model no longer verifies. It is a DSSE
//! envelope (the in-toto / Sigstore format): each signature is over
//! `PAE(payloadType, payload)`, and the payload type is the domain-separation
//! tag, so a signature made for anything else (an image digest, a chain head)
//! never verifies as a release. Devices get the envelope verbatim and verify the
//! exact payload bytes; no canonical JSON is needed.

use std::collections::BTreeSet;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
use serde::{Deserialize, Serialize};

use crate::signature::TrustedKeys;

/// The DSSE payload type of a release: the domain-separation tag.
pub const PAYLOAD_TYPE: &str = "application/vnd.ota.release.v1+json";

/// What the release signers vouch for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Release {
    pub name: String,
    pub version: String,
    pub device_model: String,
    #[serde(default)]
    pub hardware_versions: Vec<String>,
    /// Hex SHA-256 of the image.
    pub sha256: String,
    pub size: u64,
    /// Grows with every release of this name and model; a campaign that lowers
    /// it for a device is a downgrade.
    pub release_counter: u64,
}

/// A DSSE envelope holding a [`Release`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Base64 of the release's JSON bytes, exactly as signed.
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnvelopeSignature {
    /// The id the key is trusted under (`OTA_FIRMWARE_KEYS`).
    pub keyid: String,
    /// Base64 ed25519 signature over `PAE(payloadType, payload)`.
    pub sig: String,
}

/// A release as the server verified it at upload, with the envelope devices get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedRelease {
    pub release: Release,
    pub envelope: Envelope,
    /// The trusted keys whose signatures verified.
    pub signed_by: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    #[error("payloadType is {0:?}, not {PAYLOAD_TYPE:?}")]
    PayloadType(String),
    #[error("payload is not base64")]
    PayloadEncoding,
    #[error("payload is not a release: {0}")]
    Payload(String),
    #[error("{found} trusted signature(s) verify; {needed} are required")]
    TooFewSignatures { found: usize, needed: usize },
}

/// DSSE's pre-authentication encoding: what each signature covers.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// Signs `release` with `key`, trusted as `key_id`.
    pub fn sign(release: &Release, key_id: &str, key: &SigningKey) -> Envelope {
        let payload = serde_json::to_vec(release).unwrap_or_default();
        let sig = key.sign(&pae(PAYLOAD_TYPE, &payload));
        Envelope {
            payload_type: PAYLOAD_TYPE.to_owned(),
            payload: BASE64.encode(&payload),
            signatures: vec![EnvelopeSignature { keyid: key_id.to_owned(), sig: BASE64.encode(sig.to_bytes()) }],
        }
    }

    /// Adds another signer's signature over the same payload (threshold signing).
    pub fn cosign(mut self, key_id: &str, key: &SigningKey) -> Result<Envelope, ReleaseError> {
        let payload = BASE64.decode(&self.payload).map_err(|_| ReleaseError::PayloadEncoding)?;
        let sig = key.sign(&pae(&self.payload_type, &payload));
        self.signatures.push(EnvelopeSignature { keyid: key_id.to_owned(), sig: BASE64.encode(sig.to_bytes()) });
        Ok(self)
    }

    /// The payload, unverified: only for a signer about to add its own signature.
    pub fn payload_release(&self) -> Result<Release, ReleaseError> {
        let payload = BASE64.decode(&self.payload).map_err(|_| ReleaseError::PayloadEncoding)?;
        serde_json::from_slice(&payload).map_err(|e| ReleaseError::Payload(e.to_string()))
    }

    /// The release, if at least `threshold` distinct trusted keys signed it, with their ids.
    pub fn verify(&self, keys: &TrustedKeys, threshold: usize) -> Result<(Release, Vec<String>), ReleaseError> {
        if self.payload_type != PAYLOAD_TYPE {
            return Err(ReleaseError::PayloadType(self.payload_type.clone()));
        }
        let payload = BASE64.decode(&self.payload).map_err(|_| ReleaseError::PayloadEncoding)?;
        let signed = pae(&self.payload_type, &payload);
        let mut signers = BTreeSet::new();
        for signature in &self.signatures {
            let Some(key) = keys.get(&signature.keyid) else { continue };
            let Some(bytes) = BASE64.decode(&signature.sig).ok().and_then(|b| <[u8; 64]>::try_from(b).ok()) else {
                continue;
            };
            if key.verify(&signed, &Signature::from_bytes(&bytes)).is_ok() {
                signers.insert(signature.keyid.clone());
            }
        }
        let needed = threshold.max(1);
        if signers.len() < needed {
            return Err(ReleaseError::TooFewSignatures { found: signers.len(), needed });
        }
        let release = serde_json::from_slice(&payload).map_err(|e| ReleaseError::Payload(e.to_string()))?;
        Ok((release, signers.into_iter().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn trusted(ids: &[(&str, u8)]) -> TrustedKeys {
        let list: Vec<String> =
            ids.iter().map(|(id, n)| format!("{id}:{}", hex::encode(key(*n).verifying_key().to_bytes()))).collect();
        TrustedKeys::parse(&list.join(",")).unwrap_or_default()
    }

    fn release() -> Release {
        Release {
            name: "os".into(),
            version: "2.0".into(),
            device_model: "gw".into(),
            hardware_versions: vec!["a".into(), "b".into()],
            sha256: "ab".repeat(32),
            size: 42,
            release_counter: 7,
        }
    }

    #[test]
    fn a_signed_release_verifies_and_any_change_to_it_does_not() {
        let keys = trusted(&[("ci", 1)]);
        let envelope = Envelope::sign(&release(), "ci", &key(1));
        assert_eq!(envelope.verify(&keys, 1), Ok((release(), vec!["ci".to_owned()])));

        let mut relabelled = release();
        relabelled.version = "9.9".into();
        let mut forged = envelope.clone();
        forged.payload = BASE64.encode(serde_json::to_vec(&relabelled).unwrap_or_default());
        assert!(matches!(forged.verify(&keys, 1), Err(ReleaseError::TooFewSignatures { found: 0, .. })));
        assert!(envelope.verify(&trusted(&[("ci", 2)]), 1).is_err(), "another key under the same id");
        assert!(envelope.verify(&trusted(&[("other", 1)]), 1).is_err(), "the key under another id");
    }

    #[test]
    fn a_signature_over_the_payload_without_the_domain_tag_never_verifies() {
        let keys = trusted(&[("ci", 1)]);
        let payload = serde_json::to_vec(&release()).unwrap_or_default();
        let bare = key(1).sign(&payload);
        let envelope = Envelope {
            payload_type: PAYLOAD_TYPE.into(),
            payload: BASE64.encode(&payload),
            signatures: vec![EnvelopeSignature { keyid: "ci".into(), sig: BASE64.encode(bare.to_bytes()) }],
        };
        assert!(envelope.verify(&keys, 1).is_err());
        let mut other_type = Envelope::sign(&release(), "ci", &key(1));
        other_type.payload_type = "application/vnd.in-toto+json".into();
        assert_eq!(other_type.verify(&keys, 1), Err(ReleaseError::PayloadType("application/vnd.in-toto+json".into())));
    }

    #[test]
    fn a_threshold_counts_distinct_trusted_keys() {
        let keys = trusted(&[("ci", 1), ("qa", 2)]);
        let one = Envelope::sign(&release(), "ci", &key(1));
        assert_eq!(one.verify(&keys, 2), Err(ReleaseError::TooFewSignatures { found: 1, needed: 2 }));
        let twice = one.clone().cosign("ci", &key(1)).unwrap_or(one.clone());
        assert_eq!(twice.verify(&keys, 2), Err(ReleaseError::TooFewSignatures { found: 1, needed: 2 }));
        let both = one.clone().cosign("qa", &key(2)).unwrap_or(one);
        assert_eq!(both.verify(&keys, 2).map(|(_, ids)| ids), Ok(vec!["ci".to_owned(), "qa".to_owned()]));
    }
}
