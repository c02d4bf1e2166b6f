//! Names on the message bus, and how many copies its streams keep. Every
//! stream, consumer and subject carries the configured prefix, so two
//! deployments (or two tests) on one NATS never meet.

use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("NATS prefix must be 1 to 32 characters of A-Z, a-z, 0-9, '_' or '-', got {0:?}")]
pub struct BadPrefix(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusNames {
    prefix: String,
    replicas: usize,
    events_retention: Retention,
}

/// How much of the event history the events stream keeps. The event store keeps
/// all of it; a projection that falls further behind reads the rest from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_age: std::time::Duration,
    /// Bytes, the oldest messages going first; -1: no limit. JetStream reserves
    /// a stream's limit from the server's storage up front, so it is opt-in.
    pub max_bytes: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Self { max_age: std::time::Duration::from_secs(7 * 24 * 3600), max_bytes: -1 }
    }
}

impl BusNames {
    pub fn new(prefix: &str) -> Result<Self, BadPrefix> {
        let ok = (1..=32).contains(&prefix.len())
            && prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if ok {
            Ok(Self { prefix: prefix.to_owned(), replicas: 1, events_retention: Retention::default() })
        } else {
            Err(BadPrefix(prefix.to_owned()))
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Copies of every stream in a JetStream cluster (1 on a single server, 3 to
    /// survive the loss of one of three servers). Clamped to JetStream's 1..=5.
    pub fn with_replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.clamp(1, 5);
        self
    }

    pub fn replicas(&self) -> usize {
        self.replicas
    }

    pub fn with_events_retention(mut self, retention: Retention) -> Self {
        self.events_retention = retention;
        self
    }

    pub fn events_retention(&self) -> Retention {
        self.events_retention
    }

    /// The JetStream stream holding every published event.
    pub fn events_stream(&self) -> String {
        format!("{}_events", self.prefix)
    }

    pub fn all_events(&self) -> String {
        format!("{}.events.>", self.prefix)
    }

    pub fn events_of_type(&self, aggregate_type: &str) -> String {
        format!("{}.events.{}.*", self.prefix, subject_token(aggregate_type))
    }

    pub fn event_subject(&self, aggregate_type: &str, aggregate_id: &str) -> String {
        format!("{}.events.{}.{}", self.prefix, subject_token(aggregate_type), subject_token(aggregate_id))
    }

    /// A durable consumer name, e.g. for a projection.
    pub fn consumer(&self, name: &str) -> String {
        format!("{}_{}", self.prefix, name)
    }

    pub fn device_commands(&self, device_id: &str) -> String {
        format!("{}.devices.{}.commands", self.prefix, subject_token(device_id))
    }

    pub fn device_status(&self, device_id: &str) -> String {
        format!("{}.devices.{}.status", self.prefix, subject_token(device_id))
    }

    /// Where a device reports durably: JetStream keeps the report until an
    /// instance has stored it, even while none runs.
    pub fn device_report(&self, device_id: &str) -> String {
        format!("{}.devices.{}.report", self.prefix, subject_token(device_id))
    }

    pub fn all_device_reports(&self) -> String {
        format!("{}.devices.*.report", self.prefix)
    }

    pub fn all_device_commands(&self) -> String {
        format!("{}.devices.*.commands", self.prefix)
    }

    /// Each device's last command, for a device that was offline when it went out.
    pub fn commands_stream(&self) -> String {
        format!("{}_commands", self.prefix)
    }

    pub fn reports_stream(&self) -> String {
        format!("{}_reports", self.prefix)
    }
}

/// Encodes any string as one subject token: bytes outside `[A-Za-z0-9_-]` become
/// `%XX`. Injective, so two ids never share a subject; `.`, `*`, `>` and spaces
/// (which NATS reserves) never appear raw.
pub fn subject_token(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    if out.is_empty() {
        out.push('%');
    }
    out
}

/// The device a `<prefix>.devices.<id>.<kind>` subject names (commands, status, report).
pub fn device_of_subject(subject: &str) -> Option<String> {
    let mut parts = subject.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some("devices"), Some(token)) => decode_subject_token(token),
        _ => None,
    }
}

/// Reverses `subject_token`; `None` for a token it could not have produced.
pub fn decode_subject_token(token: &str) -> Option<String> {
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_tokens_never_contain_reserved_characters_and_stay_distinct() {
        assert_eq!(subject_token("dev-1"), "dev-1");
        assert_eq!(subject_token("a.b c>*"), "a%2Eb%20c%3E%2A");
        assert_ne!(subject_token("a.b"), subject_token("a%2Eb"));
        for raw in ["dev-1", "a.b c>*", "a%2Eb", "ü/ß"] {
            assert_eq!(decode_subject_token(&subject_token(raw)).as_deref(), Some(raw));
            let names = BusNames::new("p").expect("prefix");
            assert_eq!(device_of_subject(&names.device_report(raw)).as_deref(), Some(raw));
        }
    }

    #[test]
    fn prefixes_are_validated() {
        assert!(BusNames::new("t1a2b3c4").is_ok());
        assert!(BusNames::new("a.b").is_err());
        assert!(BusNames::new("").is_err());
    }
}
