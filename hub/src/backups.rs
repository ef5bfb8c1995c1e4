//! The newest backup of the database, for `/health`: the supervisor (or `poshub backup`) keeps
//! checked copies in `backups/` beside the database; a stale newest copy means a long loss
//! window if the card's database is lost, and an operator should see it at a glance.
//! The same for the offsite copies, which the supervisor uploads (`poshub-supervisor`'s
//! `backup::offsite`) and describes in `backups/offsite.json`: a dead card loses what came
//! after the newest of those.

use std::fmt::Write as _; // `write!` into a String cannot fail: its Result is dropped.
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
            let m = e.metadata().ok().filter(std::fs::Metadata::is_file)?;
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
            "ageS": SystemTime::now().duration_since(at).map_or(0, |d| d.as_secs()),
            "count": count,
        }),
        None => Value::Null,
    }
}

/// The prefix of the offsite settings of `poshub.env` (`BACKUP_S3_URL`, `BACKUP_KEY`, ...): read
/// and validated by `poshub-supervisor` (`check-config` there names each one; `docs/backups.md`),
/// not by the hub, so the hub's `check-config` leaves them to it instead of keeping a copy of the
/// supervisor's list.
pub const OFFSITE_PREFIX: &str = "BACKUP_";

/// `/health`'s `offsite`: `{"newest", "ageS", "failures", "lastError", "firstBoot"}` from the
/// supervisor's `offsite.json` in `dir`, or null when offsite copies were never set up. `ageS`
/// is the age of the snapshot in the newest copy (uploaded, or restored by a replacement
/// card's first boot), null before there is one; `firstBoot` what that first boot did.
pub fn offsite_json(dir: &Path) -> Value {
    let Ok(text) = std::fs::read_to_string(dir.join("offsite.json")) else {
        return Value::Null;
    };
    let Ok(v) = serde_json::from_str::<Value>(&text) else {
        return json!({"error": "offsite.json does not parse"});
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let age = v["snapshotAt"].as_u64().map(|t| now.saturating_sub(t));
    json!({
        "target": v["target"],
        "newest": v["newest"],
        "ageS": age,
        "failures": v["failures"].as_u64().unwrap_or(0),
        "lastError": v["lastError"],
        "firstBoot": v["firstBoot"],
    })
}

/// Runs `poshub-supervisor offsite ARGS` for `poshub backups list` and `poshub restore
/// --from-offsite`: the storage client lives in the supervisor only (the hub binary stays
/// small and has no storage credentials to use). The supervisor is found through
/// `POSHUB_SUPERVISOR_BIN`, beside this binary, or on `PATH`; its settings file through
/// `POSHUB_SUPERVISOR_CONFIG` or `/etc/poshub/supervisor.env` when that exists.
pub fn offsite_cli(
    hub_config: Option<&Path>,
    args: &[&str],
    flag: Option<&str>,
) -> Result<(), String> {
    let bin = std::env::var_os("POSHUB_SUPERVISOR_BIN")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let me = std::env::current_exe().ok()?;
            let sibling = me.parent()?.join("poshub-supervisor");
            sibling.is_file().then_some(sibling)
        })
        .unwrap_or_else(|| "poshub-supervisor".into());
    let mut cmd = std::process::Command::new(&bin);
    let sup_cfg = std::env::var_os("POSHUB_SUPERVISOR_CONFIG").map_or_else(
        || "/etc/poshub/supervisor.env".into(),
        std::path::PathBuf::from,
    );
    if sup_cfg.is_file() {
        cmd.arg("--config").arg(sup_cfg);
    }
    cmd.arg("offsite").args(args).args(flag);
    if let Some(f) = hub_config {
        cmd.arg("--hub-config").arg(f);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("unable to run {}: {e}", bin.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} offsite {} failed", bin.display(), args[0]))
    }
}

/// `OpenMetrics` lines for the offsite copies (nothing when they are not set up).
pub fn offsite_metrics(offsite: &Value) -> String {
    if offsite.is_null() {
        return String::new();
    }
    let mut out = String::new();
    if let Some(age) = offsite["ageS"].as_u64() {
        let _ = write!(
            out,
            "# TYPE poshub_offsite_copy_age_seconds gauge\n# HELP poshub_offsite_copy_age_seconds \
             Age of the snapshot in the newest offsite copy.\nposhub_offsite_copy_age_seconds {age}\n"
        );
    }
    let failures = offsite["failures"].as_u64().unwrap_or(0);
    let _ = write!(
        out,
        "# TYPE poshub_offsite_upload_failures gauge\n# HELP poshub_offsite_upload_failures \
         Failed offsite uploads since the last success.\nposhub_offsite_upload_failures {failures}\n"
    );
    out
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

    #[test]
    fn offsite_age_comes_from_the_supervisors_status_file() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(offsite_json(d.path()), Value::Null);
        assert_eq!(offsite_metrics(&Value::Null), "");
        let at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 600;
        let status = json!({"target": "s3://b/acme/s-1", "newest": "poshub-x.redb.zst.enc",
            "snapshotAt": at, "failures": 2, "lastError": "storage: down"});
        std::fs::write(d.path().join("offsite.json"), status.to_string()).unwrap();
        let v = offsite_json(d.path());
        let age = v["ageS"].as_u64().unwrap();
        assert!((600..660).contains(&age), "{v}");
        assert_eq!(v["failures"], 2);
        let m = offsite_metrics(&v);
        assert!(
            m.contains(&format!("poshub_offsite_copy_age_seconds {age}\n")),
            "{m}"
        );
        assert!(m.contains("poshub_offsite_upload_failures 2\n"), "{m}");
    }
}
