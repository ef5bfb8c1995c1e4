//! Names of the supervisor's backups and which of them to keep.
//!
//! A backup is `backup-YYYYmmddTHHMMSSZ-<trigger>.redb` (UTC), so the time it was taken is in
//! its name (a file copied around keeps it) and `ls` sorts them in time order. Retention keeps
//! the newest backup of each of the last `hourly` hours that have one, and the newest of each
//! of the last `daily` days that have one (the union). The newest backup is always kept, and so
//! is the newest pre-update one: it is the state to go back to if an update damaged the data,
//! and later backups of the same hour would otherwise replace it. Files
//! it cannot read a time from (the hub's own `hub-*` copies, anything put there by hand) are
//! never deleted here.

use std::collections::BTreeSet;

/// Prefix of every backup the supervisor makes.
pub const PREFIX: &str = "backup-";

/// Why a backup was taken; the last part of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// The hourly (`SUPERVISOR_BACKUP_INTERVAL_S`) schedule.
    Scheduled,
    /// Just before an update is written to the other slot.
    PreUpdate,
    /// After the hub stopped cleanly with the supervisor.
    Stop,
    /// Taken for an offsite copy (`offsite`), when no recent backup was new enough.
    Offsite,
}

impl Trigger {
    /// The word used in file names and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Scheduled => "scheduled",
            Trigger::PreUpdate => "pre-update",
            Trigger::Stop => "stop",
            Trigger::Offsite => "offsite",
        }
    }
}

/// The file name of a backup taken at `unix` seconds.
pub fn file_name(unix: u64, trigger: Trigger) -> String {
    format!("{PREFIX}{}-{}.redb", stamp(unix), trigger.as_str())
}

/// `YYYYmmddTHHMMSSZ` of `unix` seconds (UTC).
pub fn stamp(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX / 2));
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The time in a supervisor backup's file name; `None` for any other name.
#[allow(clippy::many_single_char_names)] // y, mo, d, h, mi: the fields of the time stamp
pub fn parse_time(name: &str) -> Option<u64> {
    let rest = name.strip_prefix(PREFIX)?.strip_suffix(".redb")?;
    parse_stamp(rest.get(..16)?)
}

/// The time of a `YYYYmmddTHHMMSSZ` stamp (UTC); `None` if it is not one.
#[allow(clippy::many_single_char_names)] // the calendar's fields, named as in the stamp
pub fn parse_stamp(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Each field has at most 4 digits and the month and day are range-checked above.
    let days = days_from_civil(
        i64::try_from(y).ok()?,
        u32::try_from(mo).ok()?,
        u32::try_from(d).ok()?,
    );
    u64::try_from(days)
        .ok()
        .map(|d| d * 86_400 + h * 3600 + mi * 60 + se)
}

/// Of `backups` (name, time), the names retention deletes.
pub fn to_delete(backups: &[(String, u64)], hourly: usize, daily: usize) -> Vec<String> {
    let mut sorted: Vec<&(String, u64)> = backups.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let mut keep = BTreeSet::new();
    if let Some(newest) = sorted.first() {
        keep.insert(newest.0.clone());
    }
    let pre_update = format!("-{}.redb", Trigger::PreUpdate.as_str());
    if let Some(p) = sorted.iter().find(|(n, _)| n.ends_with(&pre_update)) {
        keep.insert(p.0.clone());
    }
    for (bucket, count) in [(3600u64, hourly), (86_400, daily)] {
        let mut seen = BTreeSet::new();
        for (name, t) in &sorted {
            if seen.len() >= count {
                break;
            }
            if seen.insert(t / bucket) {
                keep.insert(name.clone());
            }
        }
    }
    sorted
        .into_iter()
        .filter(|(n, _)| !keep.contains(n))
        .map(|(n, _)| n.clone())
        .collect()
}

// Howard Hinnant's civil calendar algorithms (proleptic Gregorian, days since 1970-01-01).
// The day (1..=31) and month (1..=12) are in range by construction.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_utc_time_and_read_back() {
        // 2026-12-05 13:45:21 UTC
        let t = 1_796_478_321;
        let n = file_name(t, Trigger::PreUpdate);
        assert_eq!(n, "backup-20261205T134521Z-pre-update.redb");
        assert_eq!(parse_time(&n), Some(t));
        assert_eq!(stamp(0), "19700101T000000Z");
        assert_eq!(stamp(951_782_400), "20000229T000000Z");
        for t in [0, 951_782_400, 4_102_444_799, 1_234_567_890] {
            assert_eq!(parse_time(&file_name(t, Trigger::Stop)), Some(t));
        }
        for other in [
            "hub-20261205T134521.123Z.redb",
            "backup-2026120XT134521Z-stop.redb",
            "backup-20261305T134521Z-stop.redb",
            "backup-20261205T134521Z-stop.partial",
            "backup-.redb",
        ] {
            assert_eq!(parse_time(other), None, "{other}");
        }
    }

    #[test]
    fn keeps_the_newest_of_each_recent_hour_and_day() {
        let h = 3600;
        let d = 86_400;
        let base = 100 * d;
        let mut all = Vec::new();
        // Ten days of hourly backups, plus a stop backup in the newest hour.
        for i in 0..240u64 {
            let t = base + i * h;
            all.push((file_name(t, Trigger::Scheduled), t));
        }
        let last = base + 239 * h + 1800;
        all.push((file_name(last, Trigger::Stop), last));
        let gone: BTreeSet<String> = to_delete(&all, 24, 7).into_iter().collect();
        let kept: Vec<u64> = all
            .iter()
            .filter(|(n, _)| !gone.contains(n))
            .map(|(_, t)| *t)
            .collect();
        // 24 hours (the newest hour keeps only its newest, the stop backup) + 6 earlier days.
        assert_eq!(kept.len(), 24 + 6, "{kept:?}");
        assert!(kept.contains(&last));
        assert!(
            !kept.contains(&(base + 239 * h)),
            "older one of the newest hour kept"
        );
        for day in 3..=8u64 {
            // The newest backup of each of the six days before the last one: 23:00.
            assert!(kept.contains(&(base + day * d + 23 * h)), "day {day}");
        }
        assert!(kept.iter().all(|t| *t >= base + 3 * d), "{kept:?}");
        // Nothing to delete when there is little.
        assert!(to_delete(&all[..3], 24, 7).is_empty());
        // Even with no hourly or daily slots, the newest backup stays.
        assert_eq!(to_delete(&all, 0, 0).len(), all.len() - 1);
        // The newest pre-update backup outlives later backups of its hour and day.
        let pre = base + 100 * h + 60;
        all.push((file_name(pre, Trigger::PreUpdate), pre));
        let gone = to_delete(&all, 24, 7);
        assert!(!gone.contains(&file_name(pre, Trigger::PreUpdate)));
        assert_eq!(gone.len(), all.len() - 24 - 6 - 1);
    }
}
