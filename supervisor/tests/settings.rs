//! Settings, from the field tech's side: `check-config` names every variable the supervisor
//! would refuse, the environment wins over `--config` (the same order as the hub), and a
//! provisioning that could not import the card's settings shows in `status` (the real
//! `systemd/libexec/poshub-provision` writes the status file the supervisor reads).

mod common;
use common::*;
use std::process::Command;

#[test]
fn check_config_names_every_bad_variable_and_warns_about_unknown_keys() {
    let mut rig = Rig::new();
    rig.set("SUPERVISOR_API_PORT", "eighty");
    rig.set("SUPERVISOR_SLOT_BACKEND", "grub");
    rig.set("SUPERVISOR_HEALTH_WINDOW", "5");
    let out = rig.sup(&["check-config"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", stderr(&out));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("SUPERVISOR_SLOT_BACKEND: "),
        "{stdout}"
    );
    assert!(lines[1].starts_with("SUPERVISOR_API_PORT: "), "{stdout}");
    assert!(
        lines[2].starts_with("warning: SUPERVISOR_HEALTH_WINDOW: not a poshub-supervisor setting"),
        "{stdout}"
    );
    assert!(
        stderr(&out).contains("2 setting(s) the supervisor would refuse at start"),
        "{}",
        stderr(&out)
    );
    rig.set("SUPERVISOR_API_PORT", "0");
    rig.set("SUPERVISOR_SLOT_BACKEND", "file");
    let out = rig.sup(&["check-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn the_environment_wins_over_the_config_file() {
    let rig = Rig::new();
    // The file says 1 s (valid); the environment says something else, which must count.
    let out = rig
        .command(&["check-config"])
        .env("SUPERVISOR_HEALTH_WINDOW_S", "soon")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.starts_with("SUPERVISOR_HEALTH_WINDOW_S: \"soon\""),
        "{stdout}"
    );
    let help = rig.sup(&["--help"]);
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("takes the environment's value"),
        "{}",
        String::from_utf8_lossy(&help.stdout)
    );
}

#[test]
fn a_provisioning_that_could_not_import_shows_in_status() {
    let mut rig = Rig::new();
    let (fat, run) = (rig.path("fat"), rig.path("run"));
    std::fs::create_dir_all(&fat).unwrap();
    let settings = "STORE_ID=store-9\nODOO_PASSWORD=hunter2\n";
    std::fs::write(fat.join("poshub.env"), settings).unwrap();
    // A data "partition" that cannot take the settings: a plain file where the directory goes.
    let not_a_dir = rig.path("data-file");
    std::fs::write(&not_a_dir, "").unwrap();
    let provision = |data_root: &std::path::Path| {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../systemd/libexec/poshub-provision"
        );
        let out = Command::new("sh")
            .arg(script)
            .env("POSHUB_FAT_DIR", &fat)
            .env("POSHUB_DATA_ROOT", data_root)
            .env("POSHUB_RUN_DIR", &run)
            .env("POSHUB_SUPERVISOR_DEFAULTS", "/nonexistent")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    provision(&not_a_dir);
    rig.set(
        "SUPERVISOR_PROVISION_STATUS",
        run.join("provision.status").to_str().unwrap(),
    );
    let out = rig.sup(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.contains("provisioning: FAILED"), "{text}");
    assert!(
        text.contains("poshub.env: not imported, left unchanged on the config partition"),
        "{text}"
    );
    assert_eq!(rig.status()["provisioning"]["ok"], false);
    assert_eq!(
        std::fs::read_to_string(fat.join("poshub.env")).unwrap(),
        settings
    );

    // Once the data partition is there, the next boot imports and status says so.
    provision(&rig.path("data"));
    let v = rig.status();
    assert_eq!(v["provisioning"]["ok"], true, "{v}");
    let text = String::from_utf8_lossy(&rig.sup(&["status"]).stdout).to_string();
    assert!(text.contains("provisioning: ok"), "{text}");
    assert!(!fat.join("poshub.env").exists());
}
