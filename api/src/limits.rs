//! Abuse limits: request rates per identity (an operator, an API key, a device)
//! and per client address, and concurrent downloads per device, answered with 429
//! and `Retry-After`; and a deadline on every request that is not a long transfer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::client::{ClientAddr, TrustedProxies};
use crate::error::ApiError;

/// Requests per second and burst; a rate of 0 turns the limit off.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// Per operator, API key or token subject.
    pub identity: Rate,
    /// Per device on the DDI and status routes (downloads excepted: RAUC streams by many ranges).
    pub device: Rate,
    /// Per client address, before authentication.
    pub address: Rate,
    /// Loopback clients that connect directly skip the address limit (local tools);
    /// a trusted proxy's clients never do, wherever the proxy runs.
    pub exempt_loopback: bool,
    /// Longest a request that is not an upload or a download may take.
    pub request_timeout: Duration,
    /// Artifact downloads one device may have running at once; 0 = no limit.
    pub downloads_per_device: u32,
    /// Event streams (`/api/v1/stream`) one identity may hold open at once; 0 = no limit.
    pub streams_per_identity: u32,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
}

pub struct Limits {
    identity: Option<DefaultKeyedRateLimiter<String>>,
    device: Option<DefaultKeyedRateLimiter<String>>,
    address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    exempt_loopback: bool,
    pub request_timeout: Duration,
    downloads: Arc<Slots>,
    streams: Arc<Slots>,
    pub trusted_proxies: TrustedProxies,
}

/// Long requests running per key (downloads per device, event streams per identity).
struct Slots {
    per_key: u32,
    running: Mutex<HashMap<String, u32>>,
}

/// One running long request; dropping it (the body ended or the client went
/// away) frees the slot.
pub struct Slot {
    slots: Arc<Slots>,
    key: String,
}

/// The slot of one running download.
pub type DownloadSlot = Slot;

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.slots.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = running.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                running.remove(&self.key);
            }
        }
    }
}

impl Slots {
    fn new(per_key: u32) -> Arc<Self> {
        Arc::new(Slots { per_key, running: Mutex::new(HashMap::new()) })
    }

    /// A slot for `key`, or 429 (counted under `limit`) while it holds all it may;
    /// `None` when unlimited.
    fn take(self: &Arc<Self>, key: &str, limit: &'static str, message: String) -> Result<Option<Slot>, ApiError> {
        if self.per_key == 0 {
            return Ok(None);
        }
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let n = running.entry(key.to_owned()).or_insert(0);
        if *n >= self.per_key {
            metrics::counter!("ota_rate_limited_total", "limit" => limit).increment(1);
            return Err(ApiError::rate_limited(message, Duration::from_secs(1)));
        }
        *n += 1;
        Ok(Some(Slot { slots: self.clone(), key: key.to_owned() }))
    }
}

fn limiter<K: std::hash::Hash + Eq + Clone>(rate: Rate) -> Option<DefaultKeyedRateLimiter<K>> {
    let per_second = NonZeroU32::new(rate.per_second)?;
    let burst = NonZeroU32::new(rate.burst.max(rate.per_second)).unwrap_or(per_second);
    Some(RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)))
}

fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: Option<&DefaultKeyedRateLimiter<K>>,
    key: &K,
    what: &str,
) -> Result<(), ApiError> {
    let Some(limiter) = limiter else { return Ok(()) };
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        metrics::counter!("ota_rate_limited_total", "limit" => what.to_owned()).increment(1);
        ApiError::rate_limited(format!("too many requests from this {what}; retry later"), wait)
    })
}

impl Limits {
    pub fn new(settings: LimitSettings) -> Self {
        Self {
            identity: limiter(settings.identity),
            device: limiter(settings.device),
            address: limiter(settings.address),
            exempt_loopback: settings.exempt_loopback,
            request_timeout: settings.request_timeout,
            downloads: Slots::new(settings.downloads_per_device),
            streams: Slots::new(settings.streams_per_identity),
            trusted_proxies: settings.trusted_proxies,
        }
    }

    /// A slot for one more download of `device`, or 429 while it has as many running
    /// as it may. `None` when downloads are not limited.
    pub fn download_slot(&self, device: &str) -> Result<Option<Slot>, ApiError> {
        let message = format!("this device already has {} downloads running; retry later", self.downloads.per_key);
        self.downloads.take(device, "downloads", message)
    }

    /// A slot for one more open event stream of `identity`, or 429 while it holds
    /// as many as it may (each holds a subscription for as long as it is open).
    pub fn stream_slot(&self, identity: &str) -> Result<Option<Slot>, ApiError> {
        let message = format!("this identity already has {} event streams open; close one first", self.streams.per_key);
        self.streams.take(identity, "streams", message)
    }

    pub fn check_identity(&self, subject: &str) -> Result<(), ApiError> {
        check(self.identity.as_ref(), &subject.to_owned(), "identity")
    }

    pub fn check_device(&self, device: &str) -> Result<(), ApiError> {
        check(self.device.as_ref(), &device.to_owned(), "device")
    }

    /// A proxy on loopback (nginx beside the server) must not exempt everyone behind
    /// it: only a loopback client that connected directly is exempt.
    fn check_address(&self, client: ClientAddr) -> Result<(), ApiError> {
        if self.exempt_loopback && client.ip.is_loopback() && !client.via_proxy {
            return Ok(());
        }
        check(self.address.as_ref(), &client.ip, "address")
    }

    /// Forgets idle keys so the tables stay small; runs until aborted.
    pub async fn prune(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Some(l) = &self.identity {
                l.retain_recent();
            }
            if let Some(l) = &self.device {
                l.retain_recent();
            }
            if let Some(l) = &self.address {
                l.retain_recent();
            }
        }
    }
}

/// Long transfers have no deadline: firmware uploads and downloads, DDI artifacts.
fn is_transfer(method: &Method, path: &str) -> bool {
    (method == Method::POST && path == "/api/v1/firmware") || path.ends_with("/content") || path.contains("/artifacts/")
}

/// Middleware on every route: the address limit, then the deadline.
pub async fn guard(State(limits): State<Arc<Limits>>, request: Request, next: Next) -> Response {
    if let Some(client) = request.extensions().get::<ClientAddr>() {
        if let Err(e) = limits.check_address(*client) {
            return e.into_response();
        }
    }
    if is_transfer(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        // 503, not 408: the server was slow, not the client (and clients repeat a
        // 408 on their own). A command may still complete: see `Idempotency-Key`.
        Err(_) => {
            let mut response = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "no answer within {} s: a dependency is slow or unreachable; a command may still take effect, \
                     so retry it with the same Idempotency-Key",
                    limits.request_timeout.as_secs()
                ),
            )
            .into_response();
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(downloads_per_device: u32) -> Limits {
        let off = Rate { per_second: 0, burst: 0 };
        Limits::new(LimitSettings {
            identity: off,
            device: off,
            address: off,
            exempt_loopback: true,
            request_timeout: Duration::from_secs(1),
            downloads_per_device,
            streams_per_identity: 1,
            trusted_proxies: TrustedProxies::default(),
        })
    }

    #[test]
    fn a_device_holds_at_most_its_download_slots_and_a_dropped_one_frees() {
        let limits = limits(2);
        let first = limits.download_slot("a").expect("first");
        let _second = limits.download_slot("a").expect("second");
        assert!(limits.download_slot("a").is_err(), "a third is refused");
        assert!(limits.download_slot("b").is_ok(), "another device has its own");
        drop(first);
        assert!(limits.download_slot("a").is_ok(), "the dropped slot is free again");
        assert!(matches!(self::limits(0).download_slot("a"), Ok(None)), "0 turns the limit off");
    }

    #[test]
    fn streams_are_counted_per_identity_apart_from_downloads() {
        let limits = limits(1);
        let _download = limits.download_slot("alice").expect("a download");
        let stream = limits.stream_slot("alice").expect("a stream beside it");
        assert!(limits.stream_slot("alice").is_err(), "a second stream is refused");
        drop(stream);
        assert!(limits.stream_slot("alice").is_ok(), "the closed stream's slot is free again");
    }
}
