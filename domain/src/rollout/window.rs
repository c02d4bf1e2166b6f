//! `MaintenanceWindow`: a daily window, in local time at a fixed UTC offset, in which
//! devices may be assigned.
//!
//! A fixed offset rather than a time-zone name keeps the domain free of a tz
//! database, and makes the window the same length every day (no DST surprises).
//! Windows may cross midnight: `22:00` for 240 minutes is open until 02:00.
//!
//! The wire form ([`MaintenanceWindow`]) keeps its text fields, so a malformed
//! window reaches the aggregate and is refused with its own code; it is parsed in
//! one place ([`MaintenanceWindow::parse`]) into a typed [`DailyWindow`].

use chrono::{DateTime, FixedOffset, NaiveTime, TimeDelta, Timelike, Utc};
use serde::{Deserialize, Serialize};

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

/// Why a maintenance window was refused. The message names the field inside
/// `rollout.maintenance_window`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("start: must be HH:MM (00:00 to 23:59), got {value:?}")]
    Start { value: String },
    #[error("duration_minutes: must be 1..=1440, got {minutes}")]
    Duration { minutes: u32 },
    #[error("utc_offset: must be +HH:MM or -HH:MM within ±14:00, got {value:?}")]
    Offset { value: String },
}

impl WindowError {
    /// A stable code for the error body; never change one once published.
    pub fn code(&self) -> &'static str {
        match self {
            WindowError::Start { .. } => "rollout.bad_window_start",
            WindowError::Duration { .. } => "rollout.bad_window_duration",
            WindowError::Offset { .. } => "rollout.bad_window_offset",
        }
    }
}

/// A maintenance window with its text parsed: local opening time, length and UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyWindow {
    /// Local opening time, to the minute.
    pub start: NaiveTime,
    /// How long the window stays open, 1 minute to 24 hours.
    pub duration: TimeDelta,
    /// The local time's offset from UTC, at most ±14:00.
    pub offset: FixedOffset,
}

impl MaintenanceWindow {
    /// Parses the start time, the duration and the offset, in that order.
    pub fn parse(&self) -> Result<DailyWindow, WindowError> {
        let start = parse_clock(&self.start).ok_or_else(|| WindowError::Start { value: self.start.clone() })?;
        if !(1..=1440).contains(&self.duration_minutes) {
            return Err(WindowError::Duration { minutes: self.duration_minutes });
        }
        let offset =
            parse_offset(&self.utc_offset).ok_or_else(|| WindowError::Offset { value: self.utc_offset.clone() })?;
        Ok(DailyWindow { start, duration: TimeDelta::minutes(i64::from(self.duration_minutes)), offset })
    }

    /// Checks the start time, the duration and the offset.
    pub fn validate(&self) -> Result<(), WindowError> {
        self.parse().map(|_| ())
    }

    /// Whether the window is open at `now`. Opening is inclusive, closing exclusive.
    ///
    /// An invalid window (which `validate` refuses) is always closed: never updating is
    /// the safe reading of a window we cannot understand.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        self.parse().is_ok_and(|w| w.is_open(now))
    }

    /// The next instant the window is open: `now` itself when it is open, else the next opening.
    ///
    /// For an invalid window this is one day later, so a caller that sleeps until then
    /// re-checks daily instead of spinning.
    pub fn next_open(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self.parse() {
            Ok(window) => window.next_open(now),
            Err(_) => now.checked_add_signed(TimeDelta::days(1)).unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }
}

impl DailyWindow {
    /// Whether the window is open at `now`. Opening is inclusive, closing exclusive.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        self.elapsed_since_open(now) < self.duration.num_seconds()
    }

    /// The next instant the window is open: `now` itself when it is open, else the next opening.
    pub fn next_open(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let elapsed = self.elapsed_since_open(now);
        if elapsed < self.duration.num_seconds() {
            return now;
        }
        // The most recent opening was `elapsed` whole seconds ago; the next is a day after it.
        let opening = now.timestamp() - elapsed + SECS_PER_DAY;
        DateTime::<Utc>::from_timestamp(opening, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Whole seconds since the most recent local opening time, in `0..SECS_PER_DAY`.
    fn elapsed_since_open(&self, now: DateTime<Utc>) -> i64 {
        let offset_secs = i64::from(self.offset.local_minus_utc());
        let start_secs = i64::from(self.start.num_seconds_from_midnight());
        let local_secs_of_day = (now.timestamp() + offset_secs).rem_euclid(SECS_PER_DAY);
        (local_secs_of_day - start_secs).rem_euclid(SECS_PER_DAY)
    }
}

/// `HH:MM`, exactly five characters, to a time of day.
fn parse_clock(text: &str) -> Option<NaiveTime> {
    let (hours, minutes) = parse_hh_mm(text)?;
    NaiveTime::from_hms_opt(u32::try_from(hours).ok()?, u32::try_from(minutes).ok()?, 0)
}

/// `+HH:MM` or `-HH:MM` to a fixed offset, at most ±14:00.
fn parse_offset(text: &str) -> Option<FixedOffset> {
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (hours, minutes) = parse_hh_mm(text.get(1..)?)?;
    let total = hours * 60 + minutes;
    if total > MAX_OFFSET_MINUTES {
        return None;
    }
    FixedOffset::east_opt(i32::try_from(sign * total * 60).ok()?)
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
