//! The newest backup of the database, for `/health`: the supervisor (or `poshub backup`) keeps
//! checked copies in `backups/` beside the database; a stale newest copy means a long loss
//! window if the card's database is lost, and an operator should see it at a glance.

use std::path::Path;
use std::time::SystemTime;

use serde_json::{json, Value};

/// `{"newest": NAME, "ageS": N, "count": N}` of the `*.redb` files in `dir`, or null if there
/// are none. Reading a directory of a few dozen entries is cheap enough for every probe.
pub fn newest_json(dir: &Path) -> Value {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Value::Null;
    };
    let files: Vec<(SystemTime, String)> = rd
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "redb"))
        .filter_map(|e| {
            let m = e.metadata().ok().filter(|m| m.is_file())?;
            Some((
                m.modified().ok()?,
                e.file_name().to_string_lossy().into_owned(),
            ))
        })
        .collect();
    let count = files.len();
    match files.into_iter().max() {
        Some((at, name)) => json!({
            "newest": name,
            "ageS": SystemTime::now().duration_since(at).map(|d| d.as_secs()).unwrap_or(0),
            "count": count,
        }),
        None => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_redb_file_and_its_age() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(newest_json(&d.path().join("missing")), Value::Null);
        assert_eq!(newest_json(d.path()), Value::Null);
        std::fs::write(d.path().join("hub-1.partial"), "x").unwrap();
        std::fs::write(d.path().join("backup-a.redb"), "x").unwrap();
        let old = SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(d.path().join("backup-a.redb"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::fs::write(d.path().join("backup-b.redb"), "x").unwrap();
        let v = newest_json(d.path());
        assert_eq!(v["newest"], "backup-b.redb");
        assert_eq!(v["count"], 2);
        assert!(v["ageS"].as_u64().unwrap() < 60, "{v}");
    }
}
