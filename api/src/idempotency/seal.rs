//! Stored answers are sealed (ChaCha20-Poly1305) with a key derived from the
//! client's `Idempotency-Key`, which the table never holds in clear.
//!
//! Why: some answers carry a secret shown once, whose SHA-256 alone the store
//! keeps (a device's `target_token`, a new API key). A plain copy of the answer
//! would hand it to anyone who can read the database for 24 hours; sealed, only
//! a caller who presents the key can open it. A guessable key (`retry-1`) gives
//! little protection: clients should use random keys (UUIDs), as the API guide says.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use sha2::{Digest, Sha256};

use super::fingerprint::IdempotencyKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("cannot seal the answer")]
    Seal,
    #[error("the stored answer does not open with this key (tampered or corrupt)")]
    Open,
}

/// The AEAD key of one scope: the client's key and the row it belongs to.
fn aead_key(key: &IdempotencyKey, scope: &[u8; 32]) -> Result<LessSafeKey, SealError> {
    let mut sha = Sha256::new();
    sha.update(b"ota idempotency answer v1\0");
    sha.update(key.as_str().as_bytes());
    sha.update(b"\0");
    sha.update(scope);
    let bytes: [u8; 32] = sha.finalize().into();
    UnboundKey::new(&CHACHA20_POLY1305, &bytes).map(LessSafeKey::new).map_err(|_| SealError::Seal)
}

/// `nonce || ciphertext || tag`. The nonce is random: a key reused after it expired
/// seals another answer under the same AEAD key.
pub fn seal(key: &IdempotencyKey, scope: &[u8; 32], plain: &[u8]) -> Result<Vec<u8>, SealError> {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let mut sealed = plain.to_vec();
    aead_key(key, scope)?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(scope), &mut sealed)
        .map_err(|_| SealError::Seal)?;
    let mut out = nonce.to_vec();
    out.append(&mut sealed);
    Ok(out)
}

pub fn open(key: &IdempotencyKey, scope: &[u8; 32], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    if sealed.len() < NONCE_LEN {
        return Err(SealError::Open);
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
    let mut buffer = rest.to_vec();
    let plain =
        aead_key(key, scope)?.open_in_place(nonce, Aad::from(scope), &mut buffer).map_err(|_| SealError::Open)?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn key(raw: &'static str) -> IdempotencyKey {
        IdempotencyKey::parse(&HeaderValue::from_static(raw)).expect("key")
    }

    #[test]
    fn a_sealed_answer_opens_with_its_key_and_scope_only() {
        let scope = [7u8; 32];
        let answer = br#"{"id":"gw-1","target_token":"secret"}"#;
        let sealed = seal(&key("k-1"), &scope, answer).expect("seal");
        assert!(!sealed.windows(6).any(|w| w == b"secret"), "the secret is not stored in clear");
        assert_eq!(open(&key("k-1"), &scope, &sealed).as_deref(), Ok(&answer[..]));
        assert_eq!(open(&key("k-2"), &scope, &sealed), Err(SealError::Open));
        assert_eq!(open(&key("k-1"), &[8u8; 32], &sealed), Err(SealError::Open));
        assert_eq!(open(&key("k-1"), &scope, &sealed[..5]), Err(SealError::Open));
    }

    #[test]
    fn sealing_twice_gives_two_ciphertexts() {
        let scope = [1u8; 32];
        assert_ne!(seal(&key("k"), &scope, b"same").expect("seal"), seal(&key("k"), &scope, b"same").expect("seal"));
    }
}
