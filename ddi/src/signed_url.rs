//! Expiring download URLs: an HMAC-SHA256 over the path and the expiry, so a device
//! (or a CDN in front of us) can fetch an artifact without presenting a token.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the download link expired")]
    Expired,
    #[error("the download link's signature does not match")]
    Invalid,
}

#[derive(Clone)]
pub struct UrlSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(..)")
    }
}

impl UrlSigner {
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Self { key: key.into() }
    }

    fn mac(&self, path: &str, expires: i64) -> HmacSha256 {
        // Any key length is valid for HMAC; this cannot fail.
        let mut mac = HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The query string (`expires=..&signature=..`) that makes `path` fetchable until `expires` (Unix seconds).
    pub fn query(&self, path: &str, expires: i64) -> String {
        let signature = hex::encode(self.mac(path, expires).finalize().into_bytes());
        format!("expires={expires}&signature={signature}")
    }

    /// Checks a signature in constant time.
    pub fn verify(&self, path: &str, expires: i64, signature: &str, now: i64) -> Result<(), SignatureError> {
        let bytes = hex::decode(signature).map_err(|_| SignatureError::Invalid)?;
        self.mac(path, expires).verify_slice(&bytes).map_err(|_| SignatureError::Invalid)?;
        if now > expires {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(query: &str) -> (i64, String) {
        let mut expires = 0;
        let mut signature = String::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("expires", v)) => expires = v.parse().unwrap_or_default(),
                Some(("signature", v)) => signature = v.to_owned(),
                _ => {}
            }
        }
        (expires, signature)
    }

    #[test]
    fn a_signed_path_verifies_until_it_expires() {
        let signer = UrlSigner::new(b"k".repeat(32));
        let (expires, signature) = parts(&signer.query("/a/b", 1000));
        assert_eq!(signer.verify("/a/b", expires, &signature, 999), Ok(()));
        assert_eq!(signer.verify("/a/b", expires, &signature, 1001), Err(SignatureError::Expired));
    }

    #[test]
    fn tampering_with_path_expiry_signature_or_key_fails() {
        let signer = UrlSigner::new(b"k".repeat(32));
        let (expires, signature) = parts(&signer.query("/a/b", 1000));
        assert_eq!(signer.verify("/a/c", expires, &signature, 0), Err(SignatureError::Invalid));
        assert_eq!(signer.verify("/a/b", expires + 1, &signature, 0), Err(SignatureError::Invalid));
        let mut flipped = signature.clone();
        flipped.replace_range(0..1, if signature.starts_with('0') { "1" } else { "0" });
        assert_eq!(signer.verify("/a/b", expires, &flipped, 0), Err(SignatureError::Invalid));
        assert_eq!(signer.verify("/a/b", expires, "not hex", 0), Err(SignatureError::Invalid));
        assert_eq!(
            UrlSigner::new(b"x".repeat(32)).verify("/a/b", expires, &signature, 0),
            Err(SignatureError::Invalid)
        );
    }
}
