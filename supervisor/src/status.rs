//! `poshub-supervisor status [--json]` and `GET /slots`: everything read from the files the
//! supervisor keeps (slot store, recovery report, update status) plus the bootloader, so it
//! works whether or not the service is running.

use std::fmt::Write as _;

use anyhow::Result;
use serde_json::{json, Value};

use crate::config::Config;
use crate::fsutil;
use crate::install::Progress;
use crate::lifecycle::Slots;
use crate::recovery::{self, RecoveryReport};

/// Booted slot, OS (bundle) version, bootloader default, the slot store and the last 20
/// journal entries (so a fleet operator sees from `GET /slots` why a trial was rolled back),
/// and the bundle formats this supervisor installs (so fleet tooling sends a delta only to a
/// box that reads its format).
pub fn slots_view(slots: &Slots) -> Result<Value> {
    let booted = slots.backend.booted();
    let primary = slots.backend.primary();
    let st = slots.store.load()?;
    let tail = st.journal.len().saturating_sub(20);
    Ok(json!({
        "backend": slots.backend.name(),
        "booted": booted.as_ref().ok().map(|b| b.slot),
        "osVersion": slots.os_version(),
        "bundleFormats": crate::bundle::FORMATS,
        "bootloaderTrialFlag": booted.as_ref().ok().map(|b| b.trial_flag),
        "bootloaderError": booted.as_ref().err().map(std::string::ToString::to_string)
            .or_else(|| primary.as_ref().err().map(std::string::ToString::to_string)),
        "default": primary.ok().flatten(),
        "slots": {"A": st.a, "B": st.b},
        "trial": st.trial,
        "bootId": slots.boot_id,
        "journal": st.journal[tail..],
    }))
}

/// The whole status document.
pub fn full(cfg: &Config, slots: &Slots) -> Result<Value> {
    let mut v = slots_view(slots)?;
    let report: Option<RecoveryReport> = fsutil::read_json(&recovery::report_path(cfg))
        .ok()
        .flatten();
    let update_file = cfg.state_dir().join("update-status.json");
    let update = update_file
        .exists()
        .then(|| Progress::new(&cfg.state_dir()).get());
    v["recovery"] = json!(report);
    v["update"] = json!(update);
    v["provisioning"] = provisioning(&cfg.provision_status);
    v["backup"] = crate::backup::status_json(cfg);
    v["offsite"] = crate::backup::offsite::status_json(cfg);
    Ok(v)
}

/// What `poshub-provision` did at this boot, from its status file: one line per settings file
/// (`imported ...` or `failed ...`) and Wi-Fi. Null when it did not run (no such file).
fn provisioning(path: &std::path::Path) -> Value {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Value::Null;
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let failed = lines.iter().any(|l| l.starts_with("failed "));
    json!({"ok": !failed, "lines": lines})
}

/// `backup: newest NAME, AGE old (N kept, SIZE)` and the last attempt when it did not succeed.
#[allow(clippy::cast_precision_loss)] // sizes shown in MiB to one decimal
fn render_backup(out: &mut String, b: &Value) {
    let mib = |v: &Value| v.as_u64().unwrap_or(0) as f64 / 1_048_576.0;
    match b["newest"].as_object() {
        Some(n) => {
            let name = n["path"].as_str().unwrap_or("-");
            let name = name.rsplit('/').next().unwrap_or(name);
            let _ = writeln!(
                out,
                "backup: newest {name}, {} old ({} kept, {:.1} MiB in all)",
                fsutil::age(n["ageS"].as_u64().unwrap_or(0)),
                b["count"],
                mib(&b["totalBytes"])
            );
        }
        None => {
            let _ = writeln!(
                out,
                "backup: none yet in {}",
                b["dir"].as_str().unwrap_or("-")
            );
        }
    }
    if let Some(l) = b["last"].as_object() {
        if l["result"] != "ok" {
            let _ = writeln!(
                out,
                "  last attempt ({}, {}s ago): {}: {}",
                l["trigger"].as_str().unwrap_or("-"),
                crate::fsutil::now_unix().saturating_sub(l["at"].as_u64().unwrap_or(0)),
                l["result"].as_str().unwrap_or("-"),
                l["detail"].as_str().unwrap_or("-")
            );
        }
    }
}

/// A JSON value as `status` prints it: `-` for null, strings without quotes.
fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Human-readable rendering of [`full`].
pub fn render(v: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "backend: {}   booted: {}   default: {}   os version: {}",
        s(&v["backend"]),
        s(&v["booted"]),
        s(&v["default"]),
        s(&v["osVersion"])
    );
    if !v["bootloaderError"].is_null() {
        let _ = writeln!(out, "bootloader error: {}", s(&v["bootloaderError"]));
    }
    render_slots(&mut out, v);
    if let Some(u) = v["update"].as_object() {
        let _ = writeln!(out, "{}", update_line(u, &s));
    }
    if let Some(lines) = v["provisioning"]["lines"].as_array() {
        let ok = v["provisioning"]["ok"].as_bool().unwrap_or(false);
        let _ = writeln!(
            out,
            "provisioning: {}",
            if ok { "ok" } else { "FAILED (see below)" }
        );
        for l in lines {
            let _ = writeln!(out, "  {}", s(l));
        }
    }
    render_backup(&mut out, &v["backup"]);
    crate::backup::offsite::render(&mut out, &v["offsite"]);
    render_recovery_and_journal(&mut out, v);
    out
}

/// The slots and the trial.
fn render_slots(out: &mut String, v: &Value) {
    for slot in ["A", "B"] {
        let i = &v["slots"][slot];
        let _ = writeln!(
            out,
            "slot {slot}: {:<10} version {:<12} installs {}  sha256 {}{}",
            s(&i["state"]),
            s(&i["version"]),
            s(&i["install_count"]),
            s(&i["sha256"]).chars().take(16).collect::<String>(),
            if i["reason"].is_null() {
                String::new()
            } else {
                format!("  ({})", s(&i["reason"]))
            }
        );
    }
    if !v["trial"].is_null() {
        let t = &v["trial"];
        let _ = writeln!(
            out,
            "trial: slot {} version {} attempts {}",
            s(&t["slot"]),
            s(&t["version"]),
            s(&t["attempts"])
        );
    }
}

/// The recovery checks of this start, then the slot journal.
fn render_recovery_and_journal(out: &mut String, v: &Value) {
    let _ = writeln!(out, "recovery checks:");
    if let Some(checks) = v["recovery"]["checks"].as_array() {
        for c in checks {
            let _ = writeln!(
                out,
                "  {:<17} {:<9} {}",
                s(&c["name"]),
                s(&c["result"]),
                s(&c["detail"])
            );
        }
    } else {
        let _ = writeln!(out, "  (not run yet)");
    }
    let _ = writeln!(out, "journal (latest last):");
    if let Some(j) = v["journal"].as_array() {
        for e in j {
            let _ = writeln!(
                out,
                "  {} {} slot {} {}: {}",
                s(&e["at"]),
                s(&e["boot_id"]).chars().take(8).collect::<String>(),
                s(&e["slot"]),
                s(&e["event"]),
                s(&e["detail"])
            );
        }
    }
}

/// One line for the last update: its state and version, the phase and percentage only while
/// it runs (or where it stopped), and the error or rollback reason.
fn update_line(u: &serde_json::Map<String, Value>, s: &dyn Fn(&Value) -> String) -> String {
    let field = |k: &str| u.get(k).map_or_else(|| "-".into(), s);
    let state = field("state");
    let mut line = format!("update: {state}");
    if state != "idle" {
        let _ = write!(
            line,
            "  version {}  slot {}",
            field("version"),
            field("target")
        );
    }
    if matches!(
        state.as_str(),
        "receiving" | "installing" | "failed" | "interrupted"
    ) {
        let _ = write!(line, "  phase {} {}%", field("phase"), field("percent"));
    }
    let error = field("error");
    if error != "-" {
        let _ = write!(line, "  ({error})");
    }
    line
}
