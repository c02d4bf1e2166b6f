//! What `ota keygen` and `ota firmware sign` do, as functions release pipelines and tests share.

use std::path::Path;

use ed25519_dalek::SigningKey;
use ota_domain::release::{Envelope, Release, ReleaseError};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("the key must be 64 hex characters (an ed25519 seed from `ota keygen`)")]
    BadKey,
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the release to cosign: {0}")]
    Release(#[from] ReleaseError),
    #[error("the release to cosign is for other bytes: {0}")]
    OtherImage(String),
}

/// A new key pair: (private seed hex, public key hex).
pub fn keygen() -> (String, String) {
    let seed: [u8; 32] = rand::random();
    let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    (hex::encode(seed), hex::encode(public))
}

/// What a release says about an image besides its bytes.
#[derive(Debug, Clone)]
pub struct ReleaseLabel {
    pub name: String,
    pub version: String,
    pub device_model: String,
    pub hardware_versions: Vec<String>,
    pub release_counter: u64,
}

fn key(seed_hex: &str) -> Result<SigningKey, SigningError> {
    let seed: [u8; 32] =
        hex::decode(seed_hex.trim()).ok().and_then(|b| b.try_into().ok()).ok_or(SigningError::BadKey)?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The image's hex SHA-256 and size, streamed.
fn digest(file: &Path) -> Result<(String, u64), SigningError> {
    let io = |source| SigningError::Io { path: file.display().to_string(), source };
    let mut digest = Sha256::new();
    let mut reader = std::fs::File::open(file).map_err(io)?;
    let size = std::io::copy(&mut reader, &mut digest).map_err(io)?;
    Ok((hex::encode(digest.finalize()), size))
}

/// The signed release of `file`: a DSSE envelope to upload as the metadata's `release`.
pub fn sign_release(file: &Path, label: ReleaseLabel, seed_hex: &str, key_id: &str) -> Result<Envelope, SigningError> {
    let key = key(seed_hex)?;
    let (sha256, size) = digest(file)?;
    let release = Release {
        name: label.name,
        version: label.version,
        device_model: label.device_model,
        hardware_versions: label.hardware_versions,
        sha256,
        size,
        release_counter: label.release_counter,
    };
    Ok(Envelope::sign(&release, key_id, &key))
}

/// Adds this key's signature to another signer's release of `file` (threshold signing),
/// after checking the release is about these bytes.
pub fn cosign_release(file: &Path, envelope: Envelope, seed_hex: &str, key_id: &str) -> Result<Envelope, SigningError> {
    let key = key(seed_hex)?;
    let (sha256, size) = digest(file)?;
    let release = envelope.payload_release()?;
    if (release.sha256.as_str(), release.size) != (sha256.as_str(), size) {
        return Err(SigningError::OtherImage(format!(
            "it names sha256 {} ({} bytes), the file is {sha256} ({size} bytes)",
            release.sha256, release.size
        )));
    }
    Ok(envelope.cosign(key_id, &key)?)
}
