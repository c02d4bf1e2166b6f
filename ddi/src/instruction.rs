//! What a poll tells a device: how long to sleep, and how hard to update.

use chrono::{DateTime, Utc};
use ota_domain::rollout::{ActionType, MaintenanceWindow, RolloutPlan};
use sha2::{Digest, Sha256};

/// The longest sleep DDI clients parse: `HH:MM:SS` must stay below one day
/// (hawkBit switches to ISO-8601 beyond, which breaks SWUpdate and RAUC).
pub const MAX_SLEEP_SECS: u64 = 24 * 3600 - 1;

/// `deployment.download` / `deployment.update` / `deployment.maintenanceWindow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryMode {
    pub download: &'static str,
    pub update: &'static str,
    pub maintenance_window: Option<&'static str>,
}

/// hawkBit's table (hawkbit.md 1.5): the action type sets `attempt` or `forced`; a
/// closed window turns `update` into `skip` only when the campaign asks for it.
pub fn download_and_update(plan: Option<&RolloutPlan>, now: DateTime<Utc>) -> DeliveryMode {
    let strength = match plan.map(|p| p.action_type).unwrap_or_default() {
        ActionType::Forced => "forced",
        ActionType::Soft => "attempt",
    };
    let window: Option<&MaintenanceWindow> = plan.and_then(|p| p.maintenance_window.as_ref());
    let open = window.map(|w| w.is_open(now));
    let defer = plan.is_some_and(|p| p.defer_install_outside_window);
    DeliveryMode {
        download: strength,
        update: match (open, defer) {
            (Some(false), true) => "skip",
            _ => strength,
        },
        maintenance_window: match (open, defer) {
            (Some(true), true) => Some("available"),
            (Some(false), true) => Some("unavailable"),
            _ => None,
        },
    }
}

/// The `?c=` of a deploymentBase link: changes whenever what the device should do
/// changes (another action, a window opening), so clients that cache re-fetch.
pub fn change_token(action: u32, mode: &DeliveryMode) -> String {
    let digest = Sha256::digest(format!("{action}|{}|{}|{:?}", mode.download, mode.update, mode.maintenance_window));
    let mut first = [0u8; 4];
    first.copy_from_slice(&digest[..4]);
    i32::from_be_bytes(first).to_string()
}

/// `HH:MM:SS` around `base_secs`, spread by up to `jitter_percent` per device so a
/// fleet that rebooted together does not keep polling together. The spread is
/// stable within a minute, so repeated polls see the same body.
pub fn polling_sleep(base_secs: u64, jitter_percent: u8, device: &str, now: DateTime<Utc>) -> String {
    let base = base_secs.clamp(1, MAX_SLEEP_SECS);
    let spread = base * u64::from(jitter_percent.min(100)) / 100;
    let secs = if spread == 0 {
        base
    } else {
        let digest = Sha256::digest(format!("{device}|{}", now.timestamp() / 60));
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let offset = u64::from_be_bytes(first) % (2 * spread + 1);
        (base + offset).saturating_sub(spread).clamp(1, MAX_SLEEP_SECS)
    };
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, hour, 0, 0).single().unwrap_or_default()
    }

    fn plan(json: serde_json::Value) -> RolloutPlan {
        serde_json::from_value(json).unwrap_or_else(|e| panic!("plan: {e}"))
    }

    #[test]
    fn action_type_and_window_decide_download_and_update() {
        let forced = download_and_update(None, at(3));
        assert_eq!((forced.download, forced.update, forced.maintenance_window), ("forced", "forced", None));
        let soft = plan(serde_json::json!({"action_type": "soft"}));
        assert_eq!(download_and_update(Some(&soft), at(3)).update, "attempt");
        let window = serde_json::json!({"start": "02:00", "duration_minutes": 60, "utc_offset": "+00:00"});
        // A window that only gates assignment says nothing to the device.
        let gating = plan(serde_json::json!({"maintenance_window": window}));
        assert_eq!(download_and_update(Some(&gating), at(5)).update, "forced");
        let deferring = plan(serde_json::json!({"maintenance_window": window, "defer_install_outside_window": true}));
        let closed = download_and_update(Some(&deferring), at(5));
        assert_eq!(
            (closed.download, closed.update, closed.maintenance_window),
            ("forced", "skip", Some("unavailable"))
        );
        let open = download_and_update(Some(&deferring), at(2));
        assert_eq!((open.update, open.maintenance_window), ("forced", Some("available")));
        assert_ne!(change_token(1, &closed), change_token(1, &open), "a window opening changes the link");
        assert_ne!(change_token(1, &open), change_token(2, &open));
        assert_eq!(change_token(1, &open), change_token(1, &open));
    }

    #[test]
    fn sleep_is_hh_mm_ss() {
        assert_eq!(polling_sleep(300, 0, "d", at(1)), "00:05:00");
        assert_eq!(polling_sleep(10 * 86_400, 0, "d", at(1)), "23:59:59");
        assert_eq!(polling_sleep(0, 0, "d", at(1)), "00:00:01");
    }

    proptest! {
        #[test]
        fn jittered_sleep_stays_in_its_band_and_below_a_day(base in 1u64..200_000, jitter in 0u8..=100, device in "[a-z0-9]{1,12}") {
            let text = polling_sleep(base, jitter, &device, at(1));
            let parts: Vec<u64> = text.split(':').filter_map(|p| p.parse().ok()).collect();
            prop_assert_eq!(parts.len(), 3);
            prop_assert_eq!(text.len(), 8);
            let secs = parts[0] * 3600 + parts[1] * 60 + parts[2];
            prop_assert!((1..=MAX_SLEEP_SECS).contains(&secs));
            let base = base.min(MAX_SLEEP_SECS);
            let spread = base * u64::from(jitter) / 100;
            prop_assert!(secs + spread + 1 >= base && secs <= base + spread);
        }
    }
}
