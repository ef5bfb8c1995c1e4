//! Offsite copies against a real S3-compatible server on loopback: `s3s-fs` (crates.io, built
//! with its `binary` feature; `.ci/checks/offsite.sh` installs it into target/tools/). With the
//! real hub under the real supervisor: box A uploads, a fresh box B with the same settings
//! restores before its hub serves; a wrong key and a truncated object change nothing; storage
//! down for a while, then back; retention thinning with fake snapshot times.
//!
//! Without s3s-fs the tests say so and pass, unless `POSHUB_OFFSITE_REQUIRED=1` (the CI check
//! sets it), where a missing server fails them.

mod common;
use common::realhub::{recv, RealHub};
use common::*;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::SinkExt;
use poshub_supervisor::backup::offsite::{self, settings, store};
use poshub_supervisor::config::Config;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const BUCKET: &str = "poshub-test";
const KEY_A: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const KEY_B: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

/// The s3s-fs binary, or `None` (test skipped) when it is not installed.
fn s3s_bin() -> Option<PathBuf> {
    let p = std::env::var_os("POSHUB_S3S_FS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/s3s-fs/bin/s3s-fs"),
        PathBuf::from,
    );
    if p.is_file() {
        return Some(p);
    }
    let msg = format!(
        "{} is missing: run .ci/checks/offsite.sh (cargo install s3s-fs --features binary)",
        p.display()
    );
    assert!(
        std::env::var_os("POSHUB_OFFSITE_REQUIRED").is_none(),
        "{msg}"
    );
    eprintln!("SKIPPED: {msg}");
    None
}

/// An s3s-fs server on 127.0.0.1:`port` storing into `root`; killed on drop.
struct S3 {
    proc: Option<Proc>,
    bin: PathBuf,
    root: PathBuf,
    port: u16,
}

impl S3 {
    fn new(bin: PathBuf, root: &Path) -> S3 {
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        S3 {
            proc: None,
            bin,
            root: root.to_path_buf(),
            port: free_port(),
        }
    }

    fn up(&mut self) {
        let mut c = std::process::Command::new(&self.bin);
        c.args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", "AKPOSHUB", "--secret-key", "sk-poshub-test"])
            .arg(&self.root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        die_with_parent(&mut c);
        self.proc = Some(Proc(c.spawn().unwrap()));
        let port = self.port;
        let up = wait_for(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "s3s-fs did not listen on {port}");
    }

    /// Storage goes away (kill -9).
    fn down(&mut self) {
        self.proc = None;
    }

    /// The settings a box gets in its poshub.env.
    fn env(&self, key: &str) -> Vec<(String, String)> {
        [
            ("BACKUP_S3_URL", format!("s3://{BUCKET}/boxes")),
            (
                "BACKUP_S3_ENDPOINT",
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("BACKUP_S3_ACCESS_KEY_ID", "AKPOSHUB".into()),
            ("BACKUP_S3_SECRET_ACCESS_KEY", "sk-poshub-test".into()),
            ("BACKUP_KEY", key.into()),
            ("BACKUP_S3_INTERVAL_S", "8".into()),
            ("BACKUP_S3_BACKOFF_MAX_S", "4".into()),
            ("TENANT_ID", "acme".into()),
            ("STORE_ID", "s-1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The objects of the box's prefix on the server's disk.
    fn objects(&self) -> Vec<PathBuf> {
        let dir = self.root.join(BUCKET).join("boxes/acme/s-1");
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(std::result::Result::ok)
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        v.retain(|p| p.to_string_lossy().ends_with(".redb.zst.enc"));
        v.sort();
        v
    }
}

fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn offsite_status(h: &RealHub) -> Value {
    std::fs::read_to_string(h.rig.path("data/backups/offsite.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf
}

/// A terminal that last saw `cursor` connects: the first two messages after `AUTH_OK`.
fn connect_with_cursor(ws_port: u16, cursor: u64) -> (Value, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = format!("ws://127.0.0.1:{ws_port}/");
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        let auth = json!({"type": "AUTH", "terminalId": "T9", "name": "till 9", "cursor": cursor});
        ws.send(Message::Text(auth.to_string().into()))
            .await
            .unwrap();
        recv(&mut ws, "AUTH_OK").await;
        let rr = recv(&mut ws, "RESYNC_REQUIRED").await;
        let state = recv(&mut ws, "STATE").await;
        (rr, state)
    })
}

#[test]
fn box_b_restores_box_as_offsite_copy_before_its_hub_serves() {
    let Some(bin) = s3s_bin() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut s3 = S3::new(bin, tmp.path());
    s3.up();
    let env = s3.env(KEY_A);

    // Box A: orders, then an upload that has them.
    let a = RealHub::new(3600);
    let mut sup_a = a.start_with(&pairs(&env));
    a.write_orders("A", 5);
    let seq5 = a.health().unwrap()["seq"].as_u64().unwrap();
    let uploaded = wait_for(Duration::from_secs(40), || {
        offsite_status(&a)["seq"].as_u64() == Some(seq5)
    });
    assert!(uploaded, "{}\n{}", offsite_status(&a), a.rig.log("run"));
    let health = a.health().unwrap();
    println!("box A /health offsite: {}", health["offsite"]);
    assert!(health["offsite"]["ageS"].as_u64().unwrap() < 30, "{health}");
    assert_eq!(health["offsite"]["failures"], 0);
    let metrics = http_get(a.http, "/metrics");
    assert!(
        metrics.contains("poshub_offsite_copy_age_seconds "),
        "{metrics}"
    );
    let text = String::from_utf8(a.rig.sup(&["status"]).stdout).unwrap();
    assert!(text.contains("offsite: newest poshub-"), "{text}");
    // Encrypted: no order reference in the clear on the server.
    let obj = std::fs::read(s3.objects().last().unwrap()).unwrap();
    assert!(obj.starts_with(b"POSHUB-OFFSITE1\n"));
    assert!(
        !obj.windows(3).any(|w| w == b"A-0"),
        "plaintext in the object"
    );

    // Two more orders a terminal has seen, then the card dies before the next upload.
    a.write_orders("C", 2);
    let seq_a = a.health().unwrap()["seq"].as_u64().unwrap();
    sup_a.kill();

    // Box B: a new card with the same settings. Its hub serves the copy from the start.
    let b = RealHub::new(3600);
    let _sup_b = b.start_with(&pairs(&env));
    let log = b.rig.log("run");
    println!(
        "{}",
        log.lines()
            .filter(|l| l.contains("offsite"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(log.contains("restored offsite copy poshub-"), "{log}");
    assert_eq!(
        b.orders(),
        5,
        "box B serves box A's orders of the last upload"
    );
    assert_eq!(b.health().unwrap()["seq"].as_u64(), Some(seq5));
    assert_first_boot_reported(&a, &b);

    // The terminal that saw the two lost orders is ahead of box B: never a silent gap.
    let (rr, state) = connect_with_cursor(b.ws, seq_a);
    println!("cursor {seq_a} on box B (seq {seq5}): {rr}");
    assert_eq!(rr["reason"], "cursor_ahead_of_hub", "{rr}");
    let refs: BTreeSet<&str> = state["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["posReference"].as_str())
        .collect();
    assert_eq!(
        refs,
        (0..5)
            .map(|i| format!("A-{i}"))
            .collect::<BTreeSet<_>>()
            .iter()
            .map(String::as_str)
            .collect()
    );
}

/// Box B's own account of its first boot: `status` says it restored a copy, and its hub's
/// /health shows that copy (box A's newest) as its newest offsite copy, with an age, at once.
fn assert_first_boot_reported(a: &RealHub, b: &RealHub) {
    let st = b.rig.status();
    assert!(
        st["offsite"]["firstBoot"]
            .as_str()
            .unwrap()
            .starts_with("restored"),
        "{st}"
    );
    // Box B's /health shows the copy it restored as its newest, with its age, at once.
    let restored = &b.health().unwrap()["offsite"];
    println!("box B /health offsite: {restored}");
    assert_eq!(
        restored["newest"],
        offsite_status(a)["newest"],
        "{restored}"
    );
    assert!(restored["ageS"].as_u64().is_some(), "{restored}");
    assert!(
        restored["firstBoot"]
            .as_str()
            .is_some_and(|l| l.starts_with("restored offsite copy")),
        "{restored}"
    );
}

/// A rig with a closed database (no hub), for the CLI.
fn cli_rig() -> Rig {
    let mut rig = Rig::new();
    rig.set("SUPERVISOR_HUB_ARGS", "serve");
    rig.set("SUPERVISOR_BACKUP_MIN_FREE_MB", "1");
    rig.set(
        "SUPERVISOR_HUB_HEALTH_URL",
        &format!("http://127.0.0.1:{}/health", free_port()),
    );
    make_db(&rig.path("data/hub.redb"), "ORDER-MARKER-4711");
    rig
}

fn make_db(path: &Path, marker: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let db = redb::Database::create(path).unwrap();
    let t: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("orders");
    let tx = db.begin_write().unwrap();
    {
        let mut table = tx.open_table(t).unwrap();
        for i in 0..2000 {
            table
                .insert(format!("{marker}-{i}").as_str(), "a line of an order")
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// Whether the redb file at `path` has `key` in its orders table.
fn has_row(path: &Path, key: &str) -> bool {
    let db = redb::Database::open(path).unwrap();
    let t: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("orders");
    let rtx = redb::ReadableDatabase::begin_read(&db).unwrap();
    let found = rtx.open_table(t).unwrap().get(key).unwrap().is_some();
    // The read transaction ends before the database closes.
    drop(rtx);
    found
}

fn run_cli(rig: &Rig, env: &[(String, String)], args: &[&str]) -> std::process::Output {
    let mut c = rig.command(args);
    c.envs(env.iter().map(|(k, v)| (k, v)));
    c.output().unwrap()
}

fn file_list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(std::result::Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn wrong_key_and_truncated_copy_are_refused_and_nothing_is_overwritten() {
    let Some(bin) = s3s_bin() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut s3 = S3::new(bin, tmp.path());
    s3.up();
    let rig = cli_rig();
    let out = run_cli(&rig, &s3.env(KEY_A), &["offsite", "upload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    println!("{}", String::from_utf8_lossy(&out.stdout));
    let out = run_cli(&rig, &s3.env(KEY_A), &["offsite", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("1 copies in s3://poshub-test/boxes/acme/s-1"));

    // The database a restore would replace, and what must stay exactly as it is.
    let target_dir = tmp.path().join("card");
    let target = target_dir.join("hub.redb");
    make_db(&target, "LOCAL-ONLY");
    let before = file_sha(&target);
    let files = file_list(&target_dir);
    let restore = |key: &str| {
        let db = target.to_str().unwrap();
        run_cli(&rig, &s3.env(key), &["offsite", "restore", "--db", db])
    };

    let out = restore(KEY_B);
    let err = stderr(&out);
    println!("wrong key: {err}");
    assert!(!out.status.success());
    assert!(err.contains("encrypted with another BACKUP_KEY"), "{err}");
    assert!(file_sha(&target) == before, "the database was touched");
    assert_eq!(file_list(&target_dir), files, "files left behind");

    // The object loses its end (an upload cut short by a broken storage gateway, say).
    let obj = s3.objects().pop().unwrap();
    let len = std::fs::metadata(&obj).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&obj)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let out = restore(KEY_A);
    let err = stderr(&out);
    println!("truncated: {err}");
    assert!(!out.status.success());
    assert!(err.contains("truncated"), "{err}");
    assert!(file_sha(&target) == before, "the database was touched");
    assert_eq!(file_list(&target_dir), files, "files left behind");

    // A good copy restores, and the replaced database is kept aside.
    let out = run_cli(&rig, &s3.env(KEY_A), &["offsite", "upload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = restore(KEY_A);
    assert!(out.status.success(), "{}", stderr(&out));
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(file_sha(&target) != before);
    assert_eq!(
        std::fs::read_dir(target_dir.join("replaced"))
            .unwrap()
            .count(),
        1
    );
    assert!(has_row(&target, "ORDER-MARKER-4711-1999"));

    // --at before any copy names the problem.
    let db = target.to_str().unwrap();
    let out = run_cli(
        &rig,
        &s3.env(KEY_A),
        &[
            "offsite",
            "restore",
            "--db",
            db,
            "--at",
            "2001-01-01T00:00:00Z",
        ],
    );
    assert!(stderr(&out).contains("no offsite copy in s3://poshub-test/boxes/acme/s-1 taken at or before 20010101T000000Z"), "{}", stderr(&out));
}

#[test]
fn storage_down_for_a_while_then_back_uploads_resume_after_backoff() {
    let Some(bin) = s3s_bin() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut s3 = S3::new(bin, tmp.path());
    let h = RealHub::new(3600);
    // A new card whose storage does not answer: the hub starts anyway after the bound.
    let mut env = s3.env(KEY_A);
    env.push(("BACKUP_S3_RESTORE_TIMEOUT_S".into(), "3".into()));
    let _sup = h.start_with(&pairs(&env));
    let log = h.rig.log("run");
    assert!(log.contains("offsite restore gave up after"), "{log}");
    assert!(log.contains("the hub starts WITHOUT it"), "{log}");
    h.write_orders("A", 2);
    // Nothing listens on the storage port: tries back off 1, 2, 4, 4 s (BACKUP_S3_BACKOFF_MAX_S=4).
    let failing = wait_for(Duration::from_secs(60), || {
        offsite_status(&h)["failures"].as_u64() >= Some(5)
    });
    assert!(failing, "{}\n{}", offsite_status(&h), h.rig.log("run"));
    let health = h.health().unwrap();
    assert!(
        health["offsite"]["failures"].as_u64() >= Some(5),
        "{health}"
    );
    assert!(
        health["offsite"]["lastError"]
            .as_str()
            .unwrap()
            .starts_with("storage:"),
        "{health}"
    );
    let log = h.rig.log("run");
    let waits: Vec<u64> = log
        .lines()
        .filter_map(|l| l.split("next try in ").nth(1))
        .filter_map(|r| r.split(' ').next()?.parse().ok())
        .collect();
    println!("waits between tries while storage was down: {waits:?}");
    assert_eq!(waits[..5], [1, 2, 4, 4, 4], "{log}");

    s3.up();
    let resumed = wait_for(Duration::from_secs(30), || {
        offsite_status(&h)["failures"] == 0 && offsite_status(&h)["newest"].is_string()
    });
    assert!(resumed, "{}\n{}", offsite_status(&h), h.rig.log("run"));
    assert_eq!(s3.objects().len(), 1);
    let health = h.health().unwrap();
    assert!(health["offsite"]["lastError"].is_null(), "{health}");
    s3.down();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_and_one_copy_a_day() {
    let Some(bin) = s3s_bin() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut s3 = S3::new(bin, tmp.path());
    s3.up();
    let sup_env = tmp.path().join("s.env");
    std::fs::write(
        &sup_env,
        format!(
            "SUPERVISOR_DATA_DIR={}\n",
            tmp.path().join("data").display()
        ),
    )
    .unwrap();
    let cfg = Config::load(Some(&sup_env)).unwrap();
    let mut vars: HashMap<String, String> = s3.env(KEY_A).into_iter().collect();
    vars.insert("BACKUP_S3_KEEP".into(), "3".into());
    vars.insert("BACKUP_S3_KEEP_DAILY".into(), "3".into());
    vars.insert("BACKUP_S3_MAX_KBPS".into(), "0".into());
    let s = settings::parse(&vars).unwrap().unwrap();
    let remote = store::Remote::new(&s).unwrap();
    let db = tmp.path().join("snap.redb");
    make_db(&db, "R");
    // Fake snapshot times: day 0 to day 4 (UTC), several a day.
    let day = |d: u64, h: u64| 1_796_428_800 + d * 86_400 + h * 3600;
    let times = [
        day(0, 9),
        day(0, 17),
        day(1, 8),
        day(2, 10),
        day(2, 20),
        day(3, 7),
        day(4, 6),
        day(4, 12),
        day(4, 18),
    ];
    for t in times {
        offsite::upload_file(&cfg, &s, &remote, &db, t)
            .await
            .unwrap();
    }
    let listed: Vec<u64> = remote.list().await.unwrap().iter().map(|c| c.at).collect();
    println!(
        "kept: {:?}",
        listed
            .iter()
            .map(|t| poshub_supervisor::backup::retention::stamp(*t))
            .collect::<Vec<_>>()
    );
    // The 3 newest (day 4), plus the newest of day 3 and day 2 (three days in all).
    assert_eq!(
        listed,
        [day(4, 18), day(4, 12), day(4, 6), day(3, 7), day(2, 20)]
    );
    assert_eq!(s3.objects().len(), 5);
}

#[test]
fn poshub_backups_list_and_restore_from_offsite_read_poshub_env() {
    let Some(bin) = s3s_bin() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut s3 = S3::new(bin, tmp.path());
    s3.up();
    let rig = cli_rig();
    let out = run_cli(&rig, &s3.env(KEY_A), &["offsite", "upload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The settings as the box has them: in the hub's poshub.env, not in the environment.
    let card = tmp.path().join("card");
    std::fs::create_dir_all(&card).unwrap();
    let env_file = card.join("poshub.env");
    let text = s3.env(KEY_A).into_iter().fold(
        format!("HUB_DB_PATH={}\n", card.join("hub.redb").display()),
        |t, (k, v)| t + &format!("{k}={v}\n"),
    );
    std::fs::write(&env_file, text).unwrap();
    let poshub = |args: &[&str]| {
        std::process::Command::new(common::realhub::hub_bin())
            .args(args)
            .arg("--config")
            .arg(&env_file)
            .env("POSHUB_SUPERVISOR_BIN", SUP)
            .env("POSHUB_SUPERVISOR_CONFIG", rig.path("supervisor.env"))
            .output()
            .unwrap()
    };
    let out = poshub(&["backups", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("1 copies in s3://poshub-test/boxes/acme/s-1"),
        "{text}"
    );
    assert!(
        text.contains("poshub-") && text.contains(".redb.zst.enc"),
        "{text}"
    );

    let out = poshub(&["restore", "--from-offsite"]);
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(has_row(&card.join("hub.redb"), "ORDER-MARKER-4711-1999"));
    // A bad setting is named by check-config, without its value.
    let mut c = rig.command(&["check-config"]);
    c.env(
        "SUPERVISOR_HUB_ARGS",
        format!("serve --config {}", env_file.display()),
    )
    .env("BACKUP_KEY", "not-hex-secret");
    let out = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(text.contains("BACKUP_KEY: must be 64 hex digits"), "{text}");
    assert!(!text.contains("not-hex-secret"), "{text}");
}
