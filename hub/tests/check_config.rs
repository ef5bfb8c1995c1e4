//! `poshub check-config` run as a process, the way `scripts/provision` runs it: every setting the
//! hub would refuse at start is one line naming its variable, unknown keys are warned about, and
//! the exit status says whether `poshub serve` would start. Also: the environment wins over
//! `--config`, as `--help` says.

use std::process::{Command, Output};

fn poshub(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_poshub"));
    c.env_clear().args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run poshub")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn check_config_names_every_bad_variable_and_warns_about_unknown_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("poshub.env");
    std::fs::write(
        &f,
        "TENANT_ID=acme\nSTORE_ID=store 7\nHUB_PORT=87650\nHUB_HEARTBEAT_MS=5\nHUB_TENANT_ID=acme\n",
    )
    .expect("write");
    let path = f.to_str().expect("utf-8 path");
    let out = poshub(&["check-config", "--config", path], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("HUB_PORT: "), "{t}");
    assert!(lines[1].starts_with("STORE_ID: "), "{t}");
    assert!(lines[2].starts_with("HUB_HEARTBEAT_MS: "), "{t}");
    assert!(
        lines[3].starts_with("warning: HUB_TENANT_ID: not a poshub setting"),
        "{t}"
    );
    assert!(
        t.contains("3 setting(s) the hub would refuse at start"),
        "{t}"
    );
    // `serve` refuses the same file, naming the first of them, and creates nothing.
    let db = dir.path().join("hub.redb");
    let serve = poshub(
        &["serve", "--config", path],
        &[("HUB_DB_PATH", db.to_str().expect("utf-8"))],
    );
    assert_eq!(serve.status.code(), Some(2));
    assert!(text(&serve).contains("HUB_PORT: "), "{}", text(&serve));
    assert!(!db.exists());

    std::fs::write(&f, "TENANT_ID=acme\nSTORE_ID=store-7\nHUB_PORT=8765\n").expect("write");
    let out = poshub(&["check-config", "--config", path], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("the hub would start with these settings"));
}

#[test]
fn the_environment_wins_over_the_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("poshub.env");
    std::fs::write(&f, "HUB_PORT=8765\n").expect("write");
    let path = f.to_str().expect("utf-8 path");
    let out = poshub(&["check-config", "--config", path], &[("HUB_PORT", "x")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).starts_with("HUB_PORT: \"x\""), "{}", text(&out));
    let help = poshub(&["serve", "--help"], &[]);
    assert!(
        text(&help).contains("takes the environment's value"),
        "{}",
        text(&help)
    );
}
