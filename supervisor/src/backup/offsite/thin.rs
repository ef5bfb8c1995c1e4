//! Which offsite copies to keep: the `keep` newest (`BACKUP_S3_KEEP`, default 48: twelve
//! hours at one copy per 15 minutes), and besides those the newest copy of each of the
//! `daily` newest UTC days that have one (`BACKUP_S3_KEEP_DAILY`, default 30). So the recent
//! past is there at the upload interval, the last month a day at a time, and a box that went
//! wrong (e.g. started empty and kept uploading) cannot push every good copy out in a day.

use std::collections::BTreeSet;

/// Of `copies` (name, snapshot time), the names to delete.
pub fn to_delete(copies: &[(String, u64)], keep: usize, daily: usize) -> Vec<String> {
    let mut sorted: Vec<&(String, u64)> = copies.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let mut kept: BTreeSet<&str> = sorted
        .iter()
        .take(keep.max(1))
        .map(|c| c.0.as_str())
        .collect();
    let mut days = BTreeSet::new();
    for (name, t) in &sorted {
        if days.len() >= daily {
            break;
        }
        if days.insert(t / 86_400) {
            kept.insert(name);
        }
    }
    sorted
        .into_iter()
        .filter(|c| !kept.contains(c.0.as_str()))
        .map(|c| c.0.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_one_a_day() {
        // Ten days of copies every 15 minutes.
        let all: Vec<(String, u64)> = (0..960u64)
            .map(|i| (format!("c{i:04}"), 1_000 * 86_400 + i * 900))
            .collect();
        let gone: BTreeSet<String> = to_delete(&all, 48, 5).into_iter().collect();
        let kept: Vec<u64> = all
            .iter()
            .filter(|c| !gone.contains(&c.0))
            .map(|c| c.1)
            .collect();
        // 48 newest (all in the last day), plus the newest of the four days before it.
        assert_eq!(kept.len(), 48 + 4, "{kept:?}");
        for day in 5..9u64 {
            assert!(
                kept.contains(&(1_000 * 86_400 + day * 86_400 + 95 * 900)),
                "day {day}"
            );
        }
        assert!(to_delete(&all[..10], 48, 5).is_empty());
        // The newest copy always stays.
        assert_eq!(to_delete(&all, 0, 0).len(), all.len() - 1);
    }
}
