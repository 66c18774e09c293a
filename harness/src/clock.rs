//! Times and durations as people read them: the one module that formats them.
//!
//! Wall-clock times are UTC: `2026-11-25 21:45:03 UTC` in reports, `20261125-214503` in folder
//! names. Durations come in two styles: [`elapsed`] for how long a test or a run took
//! (`1.2s`, `2m03s`) and [`wait_time`] for a wait or a time limit (`30m`, `1h30m`).
//!
//! No date crate: UTC needs no time-zone database, the civil date is one short function, and
//! both duration styles are the harness's own, which no crate prints as such.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A UTC date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    /// The year.
    pub year: i64,
    /// 1-12.
    pub month: i64,
    /// 1-31.
    pub day: i64,
    /// 0-23.
    pub hour: u64,
    /// 0-59.
    pub minute: u64,
    /// 0-59.
    pub second: u64,
}

/// The UTC date and time of `unix_secs`.
pub fn utc(unix_secs: u64) -> Utc {
    let (days, rem) = (unix_secs / 86_400, unix_secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    Utc {
        year: yoe + era * 400 + i64::from(month <= 2),
        month,
        day,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
    }
}

/// The UTC date and time of `t` (the epoch for a time before it).
pub fn utc_at(t: SystemTime) -> Utc {
    utc(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

impl Utc {
    /// `2026-11-25 21:45 UTC`.
    pub fn minute_text(&self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            self.year, self.month, self.day, self.hour, self.minute
        )
    }

    /// `21:45:03 UTC`.
    pub fn time_text(&self) -> String {
        format!("{:02}:{:02}:{:02} UTC", self.hour, self.minute, self.second)
    }

    /// `2026-11-25 21:45:03 UTC`.
    pub fn text(&self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `20261125-214503`, for folder names.
    pub fn stamp(&self) -> String {
        format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// How long a test or a run took, to a tenth of a second under a minute: `1.2s`, `2m03s`.
pub fn elapsed(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

/// A wait or a time limit, in whole units with the zero ones left out: `30m`, `1h30m`,
/// `2m5s`; under a second, `500ms`.
pub fn wait_time(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if s > 0 {
        out += &format!("{s}s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(utc(0).stamp(), "19700101-000000");
        // 2024-02-29 (a leap day) 12:34:56.
        assert_eq!(utc(1_709_210_096).stamp(), "20240229-123456");
        assert_eq!(utc(1_709_210_096).minute_text(), "2024-02-29 12:34 UTC");
        assert_eq!(utc(1_709_210_096).text(), "2024-02-29 12:34:56 UTC");
        assert_eq!(
            utc_at(UNIX_EPOCH + Duration::from_secs(1_709_210_096)).stamp(),
            "20240229-123456"
        );
        assert_eq!(
            utc_at(UNIX_EPOCH - Duration::from_secs(5)).stamp(),
            "19700101-000000"
        );
    }

    #[test]
    fn elapsed_times() {
        assert_eq!(elapsed(Duration::from_millis(1240)), "1.2s");
        assert_eq!(elapsed(Duration::from_millis(59_900)), "59.9s");
        assert_eq!(elapsed(Duration::from_secs(65)), "1m05s");
        assert_eq!(elapsed(Duration::from_secs(123)), "2m03s");
        assert_eq!(elapsed(Duration::from_secs(3723)), "62m03s");
    }

    #[test]
    fn wait_times() {
        assert_eq!(wait_time(Duration::from_secs(1800)), "30m");
        assert_eq!(wait_time(Duration::from_secs(5400)), "1h30m");
        assert_eq!(wait_time(Duration::from_secs(125)), "2m5s");
        assert_eq!(wait_time(Duration::from_secs(3601)), "1h1s");
        assert_eq!(wait_time(Duration::from_millis(500)), "500ms");
    }
}
