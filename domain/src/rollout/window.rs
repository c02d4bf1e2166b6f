//! `MaintenanceWindow`: a daily window, in local time at a fixed UTC offset, in which
//! devices may be assigned.
//!
//! A fixed offset rather than a time-zone name keeps the domain free of a tz
//! database, and makes the window the same length every day (no DST surprises).
//! Windows may cross midnight: `22:00` for 240 minutes is open until 02:00.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::plan::PlanError;

const SECS_PER_DAY: i64 = 24 * 3600;
/// The widest real-world UTC offset (Line Islands, +14:00).
const MAX_OFFSET_MINUTES: i64 = 14 * 60;

/// A daily maintenance window: `{"start": "HH:MM", "duration_minutes", "utc_offset": "+HH:MM"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MaintenanceWindow {
    /// Local opening time, `HH:MM`.
    pub start: String,
    /// How long the window stays open, 1..=1440 minutes; 1440 means always open.
    pub duration_minutes: u32,
    /// The local time's offset from UTC, `+HH:MM` or `-HH:MM`.
    pub utc_offset: String,
}

impl Default for MaintenanceWindow {
    /// One hour from midnight UTC.
    fn default() -> Self {
        Self { start: "00:00".to_owned(), duration_minutes: 60, utc_offset: "+00:00".to_owned() }
    }
}

/// A window with its text parsed into seconds.
#[derive(Debug, Clone, Copy)]
struct Parsed {
    start_secs: i64,
    duration_secs: i64,
    offset_secs: i64,
}

impl MaintenanceWindow {
    /// Checks the start time, the duration and the offset.
    pub fn validate(&self) -> Result<(), PlanError> {
        if parse_clock(&self.start).is_none() {
            return Err(PlanError::WindowStart { value: self.start.clone() });
        }
        if !(1..=1440).contains(&self.duration_minutes) {
            return Err(PlanError::WindowDuration { minutes: self.duration_minutes });
        }
        if parse_offset(&self.utc_offset).is_none() {
            return Err(PlanError::WindowOffset { value: self.utc_offset.clone() });
        }
        Ok(())
    }

    /// Whether the window is open at `now`. Opening is inclusive, closing exclusive.
    ///
    /// An invalid window (which `validate` refuses) is always closed: never updating is
    /// the safe reading of a window we cannot understand.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        self.parsed().is_some_and(|w| w.elapsed_since_open(now) < w.duration_secs)
    }

    /// The next instant the window is open: `now` itself when it is open, else the next opening.
    ///
    /// For an invalid window this is one day later, so a caller that sleeps until then
    /// re-checks daily instead of spinning.
    pub fn next_open(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let Some(window) = self.parsed() else {
            return now.checked_add_signed(TimeDelta::days(1)).unwrap_or(DateTime::<Utc>::MAX_UTC);
        };
        let elapsed = window.elapsed_since_open(now);
        if elapsed < window.duration_secs {
            return now;
        }
        // The most recent opening was `elapsed` whole seconds ago; the next is a day after it.
        let opening = now.timestamp() - elapsed + SECS_PER_DAY;
        DateTime::<Utc>::from_timestamp(opening, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    fn parsed(&self) -> Option<Parsed> {
        let start_minutes = parse_clock(&self.start)?;
        let offset_minutes = parse_offset(&self.utc_offset)?;
        let duration = i64::from(self.duration_minutes);
        (1..=1440).contains(&duration).then_some(Parsed {
            start_secs: start_minutes * 60,
            duration_secs: duration * 60,
            offset_secs: offset_minutes * 60,
        })
    }
}

impl Parsed {
    /// Whole seconds since the most recent local opening time, in `0..SECS_PER_DAY`.
    fn elapsed_since_open(&self, now: DateTime<Utc>) -> i64 {
        let local_secs_of_day = (now.timestamp() + self.offset_secs).rem_euclid(SECS_PER_DAY);
        (local_secs_of_day - self.start_secs).rem_euclid(SECS_PER_DAY)
    }
}

/// `HH:MM`, exactly five characters, to minutes after midnight.
fn parse_clock(text: &str) -> Option<i64> {
    let (hours, minutes) = parse_hh_mm(text)?;
    (hours < 24).then_some(hours * 60 + minutes)
}

/// `+HH:MM` or `-HH:MM` to signed minutes, at most ±14:00.
fn parse_offset(text: &str) -> Option<i64> {
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (hours, minutes) = parse_hh_mm(text.get(1..)?)?;
    let total = hours * 60 + minutes;
    (total <= MAX_OFFSET_MINUTES).then_some(sign * total)
}

fn parse_hh_mm(text: &str) -> Option<(i64, i64)> {
    let bytes = text.as_bytes();
    if bytes.len() != 5 || bytes[2] != b':' {
        return None;
    }
    let digit = |i: usize| bytes[i].is_ascii_digit().then(|| i64::from(bytes[i] - b'0'));
    let hours = digit(0)? * 10 + digit(1)?;
    let minutes = digit(3)? * 10 + digit(4)?;
    (minutes < 60).then_some((hours, minutes))
}
