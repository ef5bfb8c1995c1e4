//! Start-up recovery checks, run in-process against a temp data dir with real redb files.

use std::path::Path;

use poshub_supervisor::config::Config;
use poshub_supervisor::recovery::{self, Outcome, RecoveryReport};
use redb::{ReadableDatabase, TableDefinition};

const T: TableDefinition<&str, &str> = TableDefinition::new("orders");

fn setup() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("backups")).unwrap();
    let env = dir.path().join("s.env");
    std::fs::write(
        &env,
        format!(
            "SUPERVISOR_DATA_DIR={}\nSUPERVISOR_MIN_FREE_MB=1\nSUPERVISOR_CLOCK_SET=false\n",
            data.display()
        ),
    )
    .unwrap();
    let cfg = Config::load(Some(&env)).unwrap();
    (dir, cfg)
}

fn make_db(path: &Path, value: &str) {
    let db = redb::Database::create(path).unwrap();
    let tx = db.begin_write().unwrap();
    tx.open_table(T).unwrap().insert("order-1", value).unwrap();
    tx.commit().unwrap();
}

fn read_db(path: &Path) -> String {
    let db = redb::Database::open(path).unwrap();
    let tx = db.begin_read().unwrap();
    let t = tx.open_table(T).unwrap();
    let v = t.get("order-1").unwrap().unwrap().value().to_string();
    v
}

fn check<'a>(r: &'a RecoveryReport, name: &str) -> &'a recovery::CheckResult {
    r.checks.iter().find(|c| c.name == name).unwrap()
}

#[test]
fn checks_run_in_the_documented_order_and_a_clean_start_is_ok() {
    let (_d, cfg) = setup();
    make_db(&cfg.hub_db, "v1");
    let r = recovery::run_checks(&cfg);
    let names: Vec<_> = r.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "data-dir",
            "free-space",
            "clock",
            "database",
            "leftovers",
            "unclean-shutdown"
        ]
    );
    assert!(r.checks.iter().all(|c| c.result == Outcome::Ok), "{r:?}");
    // Saved for `status`.
    assert!(recovery::report_path(&cfg).exists());
}

#[test]
fn corrupt_database_is_moved_aside_and_the_newest_good_backup_restored() {
    let (_d, cfg) = setup();
    let backups = cfg.data_dir.join("backups");
    // An older good backup, and a newer one that is itself corrupt.
    make_db(&backups.join("hub-1.redb"), "from-backup-1");
    std::thread::sleep(std::time::Duration::from_millis(20));
    make_db(&backups.join("hub-2.redb"), "from-backup-2");
    let mut b2 = std::fs::read(backups.join("hub-2.redb")).unwrap();
    b2[..512].fill(0xAB);
    std::fs::write(backups.join("hub-2.redb"), &b2).unwrap();

    make_db(&cfg.hub_db, "live");
    let mut bytes = std::fs::read(&cfg.hub_db).unwrap();
    bytes[..512].fill(0xEE);
    std::fs::write(&cfg.hub_db, &bytes).unwrap();
    // The hub runs as its own user: the restored file must stay its own.
    let root = nix::unistd::geteuid().is_root();
    if root {
        std::os::unix::fs::chown(&cfg.hub_db, Some(4321), Some(4321)).unwrap();
    }

    let r = recovery::run_checks(&cfg);
    let c = check(&r, "database");
    assert_eq!(c.result, Outcome::Repaired, "{c:?}");
    assert!(c.detail.contains("hub-1.redb"), "{c:?}");
    assert_eq!(read_db(&cfg.hub_db), "from-backup-1");
    if root {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&cfg.hub_db).unwrap().uid(), 4321);
    }
    // Nothing deleted: the corrupt file is kept byte for byte, the backups stay as they were.
    let aside: Vec<_> = std::fs::read_dir(cfg.data_dir.join("corrupt"))
        .unwrap()
        .collect();
    assert_eq!(aside.len(), 1);
    let kept = std::fs::read(aside[0].as_ref().unwrap().path()).unwrap();
    assert_eq!(kept, bytes);
    assert_eq!(std::fs::read(backups.join("hub-2.redb")).unwrap(), b2);
}

#[test]
fn corrupt_database_without_backup_fails_clearly_but_keeps_the_file() {
    let (_d, cfg) = setup();
    std::fs::write(&cfg.hub_db, vec![0x42u8; 8192]).unwrap();
    let r = recovery::run_checks(&cfg);
    let c = check(&r, "database");
    assert_eq!(c.result, Outcome::Failed, "{c:?}");
    assert!(c.detail.contains("no valid backup"), "{c:?}");
    assert!(!cfg.hub_db.exists());
    assert_eq!(
        std::fs::read_dir(cfg.data_dir.join("corrupt"))
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn clock_behind_the_persisted_timestamp_is_reported() {
    let (_d, cfg) = setup();
    std::fs::create_dir_all(cfg.state_dir()).unwrap();
    let future = poshub_supervisor::fsutil::now_unix() + 3600;
    std::fs::write(cfg.state_dir().join("clock"), future.to_string()).unwrap();
    let r = recovery::run_checks(&cfg);
    let c = check(&r, "clock");
    // Setting the clock is disabled in tests (it would change this machine's clock).
    assert_eq!(c.result, Outcome::Failed, "{c:?}");
    assert!(c.detail.contains("behind"), "{c:?}");
    // The persisted timestamp never moves backwards.
    let kept: u64 = std::fs::read_to_string(cfg.state_dir().join("clock"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(kept, future);
}

#[test]
fn leftovers_are_cleaned_and_unclean_shutdowns_counted() {
    let (_d, cfg) = setup();
    let incoming = cfg.state_dir().join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let tmp = cfg.data_dir.join(".hub.redb.poshub-tmp");
    let partial = incoming.join("upload-1.partial");
    std::fs::write(&tmp, "x").unwrap();
    std::fs::write(&partial, "x").unwrap();
    let keep = cfg.data_dir.join("hub-signing.key");
    std::fs::write(&keep, "secret").unwrap();
    // Not ours: a hub file that merely looks partial stays.
    let hubs = cfg.data_dir.join("backups/hub-3.redb.partial");
    std::fs::write(&hubs, "x").unwrap();

    let r = recovery::run_checks(&cfg);
    assert_eq!(check(&r, "leftovers").result, Outcome::Repaired);
    assert!(!tmp.exists() && !partial.exists() && keep.exists() && hubs.exists());
    assert_eq!(check(&r, "unclean-shutdown").result, Outcome::Ok);

    // No clean stop recorded: the next start counts an unclean shutdown.
    let r = recovery::run_checks(&cfg);
    assert_eq!(check(&r, "unclean-shutdown").result, Outcome::Repaired);
    assert_eq!(r.unclean_shutdowns, 1);
    recovery::mark_clean_stop(&cfg);
    let r = recovery::run_checks(&cfg);
    assert_eq!(check(&r, "unclean-shutdown").result, Outcome::Ok);
    assert_eq!(r.unclean_shutdowns, 1);
}

/// Issue 14.7: two corrupt databases moved aside in the same second are both kept.
#[test]
fn corrupt_files_moved_in_the_same_second_are_both_kept() {
    let (_d, cfg) = setup();
    let corrupt = cfg.data_dir.join("corrupt");
    for round in 0..2 {
        std::fs::write(&cfg.hub_db, format!("not a redb file, round {round}")).unwrap();
        let r = recovery::run_checks(&cfg);
        assert_ne!(check(&r, "database").result, Outcome::Ok);
    }
    let mut kept: Vec<String> = std::fs::read_dir(&corrupt)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    kept.sort();
    println!("corrupt/ holds {} file(s): {kept:?}", kept.len());
    assert_eq!(
        kept,
        ["not a redb file, round 0", "not a redb file, round 1"],
        "a corrupt file was overwritten"
    );
}
