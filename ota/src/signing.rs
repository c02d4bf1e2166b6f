//! What `ota keygen` and `ota firmware sign` do, as functions release pipelines and tests share.

use std::path::Path;

use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("the key must be 64 hex characters (an ed25519 seed from `ota keygen`)")]
    BadKey,
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// A new key pair: (private seed hex, public key hex).
pub fn keygen() -> (String, String) {
    let seed: [u8; 32] = rand::random();
    let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    (hex::encode(seed), hex::encode(public))
}

/// The image's SHA-256 and the ed25519 signature over it, both hex.
pub fn sign_file(file: &Path, seed_hex: &str) -> Result<(String, String), SigningError> {
    let seed: [u8; 32] =
        hex::decode(seed_hex.trim()).ok().and_then(|b| b.try_into().ok()).ok_or(SigningError::BadKey)?;
    let io = |source| SigningError::Io { path: file.display().to_string(), source };
    let mut digest = Sha256::new();
    let mut reader = std::fs::File::open(file).map_err(io)?;
    std::io::copy(&mut reader, &mut digest).map_err(io)?;
    let digest = digest.finalize();
    let signature = SigningKey::from_bytes(&seed).sign(&digest);
    Ok((hex::encode(digest), hex::encode(signature.to_bytes())))
}
