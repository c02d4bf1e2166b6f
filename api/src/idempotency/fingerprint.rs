//! The pure parts of idempotency: what a valid key is, where a key's scope ends,
//! and the fingerprint that tells a retry from another request under the same key.

use axum::http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

/// The longest key accepted; UUIDs (36) and ULIDs (26) fit with room to spare.
pub const MAX_KEY_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("Idempotency-Key must not be empty")]
    Empty,
    #[error("Idempotency-Key is longer than {MAX_KEY_LEN} characters")]
    TooLong,
    #[error("Idempotency-Key must be visible ASCII (no spaces or control characters)")]
    NotVisibleAscii,
}

/// A checked `Idempotency-Key` value: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &HeaderValue) -> Result<Self, KeyError> {
        let bytes = raw.as_bytes();
        if bytes.is_empty() {
            return Err(KeyError::Empty);
        }
        if bytes.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong);
        }
        if !bytes.iter().all(|b| b.is_ascii_graphic()) {
            return Err(KeyError::NotVisibleAscii);
        }
        // Visible ASCII is valid UTF-8 byte for byte.
        Ok(Self(String::from_utf8_lossy(bytes).into_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The row id of a key: one caller's key on one method and path. Length-prefixed,
/// so no choice of subject or key can make two different scopes hash alike.
pub fn scope_id(caller: &str, method: &str, path: &str, key: &IdempotencyKey) -> [u8; 32] {
    let mut sha = Sha256::new();
    for part in [caller, method, path, key.as_str()] {
        sha.update((part.len() as u64).to_be_bytes());
        sha.update(part.as_bytes());
    }
    sha.finalize().into()
}

/// What makes two requests "the same": method, path with query, and the body's digest.
pub fn fingerprint(method: &str, path_and_query: &str, body_digest: &[u8; 32]) -> [u8; 32] {
    let mut sha = Sha256::new();
    for part in [method.as_bytes(), path_and_query.as_bytes(), body_digest] {
        sha.update((part.len() as u64).to_be_bytes());
        sha.update(part);
    }
    sha.finalize().into()
}

pub fn body_digest(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// The boundary of a `multipart/form-data` body, if the request has one.
pub fn multipart_boundary(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(axum::http::header::CONTENT_TYPE)?.to_str().ok()?;
    let mut params = value.split(';');
    let essence = params.next()?.trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|param| {
        let (name, value) = param.split_once('=')?;
        let value = value.trim().trim_matches('"');
        (name.trim().eq_ignore_ascii_case("boundary") && !value.is_empty()).then(|| value.to_owned())
    })
}

/// A streaming digest of a multipart body that ignores what a client may change
/// between two sends of the same form: the boundary (reqwest, curl and browsers draw
/// a new one each time) and anything after the closing delimiter (the epilogue).
/// Parts, their headers and their content are all hashed, in order.
pub struct MultipartDigest {
    delimiter: Vec<u8>,
    /// Bytes not yet known to be outside a delimiter.
    pending: Vec<u8>,
    sha: Sha256,
    closed: bool,
}

impl MultipartDigest {
    pub fn new(boundary: &str) -> Self {
        Self { delimiter: format!("--{boundary}").into_bytes(), pending: Vec::new(), sha: Sha256::new(), closed: false }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        if self.closed {
            return;
        }
        self.pending.extend_from_slice(chunk);
        let len = self.delimiter.len();
        while let Some(at) = find(&self.pending, &self.delimiter) {
            // A delimiter followed by "--" closes the body; wait for the two bytes that tell.
            let Some(after) = self.pending.get(at + len..at + len + 2) else { break };
            let closing = after == b"--";
            self.sha.update(&self.pending[..at]);
            self.sha.update(b"\0delimiter\0");
            if closing {
                self.closed = true;
                self.pending = Vec::new();
                return;
            }
            self.pending.drain(..at + len);
        }
        // Keep a tail long enough to hold a delimiter split across chunks, and the two bytes after it.
        let keep = len + 2;
        let start = find(&self.pending, &self.delimiter).unwrap_or(self.pending.len().saturating_sub(keep));
        self.sha.update(&self.pending[..start]);
        self.pending.drain(..start);
    }

    /// Whether the closing delimiter has been seen: the body's meaningful part is complete.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The digest, if the body was read up to its closing delimiter.
    pub fn finish(&self) -> Option<[u8; 32]> {
        self.closed.then(|| self.sha.clone().finalize().into())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(raw: &str) -> Result<IdempotencyKey, KeyError> {
        IdempotencyKey::parse(&HeaderValue::from_str(raw).expect("header value"))
    }

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        assert_eq!(key("5f0c7e2a-3b1d-4c8e-9f00-0123456789ab").map(|k| k.as_str().len()), Ok(36));
        assert!(key("a").is_ok());
        assert!(key(&"k".repeat(255)).is_ok());
        assert_eq!(key(""), Err(KeyError::Empty));
        assert_eq!(key(&"k".repeat(256)), Err(KeyError::TooLong));
        assert_eq!(key("two words"), Err(KeyError::NotVisibleAscii));
        assert_eq!(key("tab\there"), Err(KeyError::NotVisibleAscii));
        let latin1 = HeaderValue::from_bytes(b"caf\xe9").expect("obs-text is a valid header value");
        assert_eq!(IdempotencyKey::parse(&latin1), Err(KeyError::NotVisibleAscii));
    }

    #[test]
    fn scopes_differ_by_caller_method_path_and_key() {
        let k = key("k").expect("key");
        let base = scope_id("alice", "POST", "/api/v1/campaigns", &k);
        assert_eq!(base, scope_id("alice", "POST", "/api/v1/campaigns", &k));
        assert_ne!(base, scope_id("bob", "POST", "/api/v1/campaigns", &k));
        assert_ne!(base, scope_id("alice", "POST", "/api/v1/devices", &k));
        assert_ne!(base, scope_id("alice", "POST", "/api/v1/campaigns", &key("k2").expect("key")));
        // Length prefixes: moving a character from one part to the next is another scope.
        assert_ne!(scope_id("ab", "POST", "/p", &k), scope_id("a", "bPOST", "/p", &k));
    }

    #[test]
    fn the_fingerprint_covers_method_path_query_and_body() {
        let body = body_digest(br#"{"name":"a"}"#);
        let base = fingerprint("POST", "/api/v1/campaigns", &body);
        assert_eq!(base, fingerprint("POST", "/api/v1/campaigns", &body_digest(br#"{"name":"a"}"#)));
        assert_ne!(base, fingerprint("POST", "/api/v1/campaigns", &body_digest(br#"{"name":"b"}"#)));
        assert_ne!(base, fingerprint("POST", "/api/v1/campaigns?x=1", &body));
        assert_ne!(base, fingerprint("PUT", "/api/v1/campaigns", &body));
    }

    #[test]
    fn the_boundary_is_read_from_the_content_type() {
        let mut headers = HeaderMap::new();
        assert_eq!(multipart_boundary(&headers), None);
        headers.insert("content-type", HeaderValue::from_static("multipart/form-data; boundary=abc123"));
        assert_eq!(multipart_boundary(&headers).as_deref(), Some("abc123"));
        headers.insert("content-type", HeaderValue::from_static("Multipart/Form-Data; charset=x; Boundary=\"q r\""));
        assert_eq!(multipart_boundary(&headers).as_deref(), Some("q r"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        assert_eq!(multipart_boundary(&headers), None);
    }

    fn form(boundary: &str, content: &str, epilogue: &str) -> Vec<u8> {
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{{\"v\":1}}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\r\n{content}\r\n\
             --{boundary}--\r\n{epilogue}"
        )
        .into_bytes()
    }

    fn digest_in_chunks(boundary: &str, body: &[u8], chunk: usize) -> Option<[u8; 32]> {
        let mut digest = MultipartDigest::new(boundary);
        body.chunks(chunk).for_each(|c| digest.update(c));
        digest.finish()
    }

    #[test]
    fn a_form_resent_with_another_boundary_has_the_same_digest() {
        let first = digest_in_chunks("aaaa1111", &form("aaaa1111", "image bytes", ""), 7);
        let again = digest_in_chunks("bbbbbbbb2222", &form("bbbbbbbb2222", "image bytes", "ignored epilogue"), 3);
        assert!(first.is_some());
        assert_eq!(first, again);
        let other = digest_in_chunks("aaaa1111", &form("aaaa1111", "other bytes", ""), 7);
        assert_ne!(first, other);
    }

    #[test]
    fn any_chunking_gives_the_same_digest() {
        let body = form("xyz", "a longer image that spans many small chunks --xy -- xyz-", "");
        let whole = digest_in_chunks("xyz", &body, body.len());
        for size in 1..16 {
            assert_eq!(digest_in_chunks("xyz", &body, size), whole, "chunks of {size}");
        }
    }

    #[test]
    fn a_form_cut_before_its_closing_delimiter_has_no_digest() {
        let body = form("xyz", "content", "");
        let cut = &body[..body.len() - 8];
        assert_eq!(digest_in_chunks("xyz", cut, 5), None);
    }
}
