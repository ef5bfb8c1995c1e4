//! The year benchmark's generator and measurements (`poshub-year`, docs/benchmarks.md) on a
//! short "year": nine days, so the week's retention has compacted the first two, run as the
//! real binaries. It checks what the benchmark's figures rely on, not the figures: every
//! write was accepted, the database was sampled, compaction ran, a week-old cursor gets the
//! `STATE` and an hour-old one the events, and the backup and its check pass.

use std::process::Command;

#[test]
fn a_short_year_is_written_and_measured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_poshub-year"))
        .args([
            "--days",
            "9",
            "--orders-per-day",
            "40",
            "--open-at-end",
            "5",
            "--warm",
        ])
        .arg("--dir")
        .arg(dir.path().join("year"))
        .arg("--hub-bin")
        .arg(env!("CARGO_BIN_EXE_poshub"))
        .output()
        .expect("poshub-year runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{err}");
    println!("{text}");
    let line = |start: &str| {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line starting {start:?} in:\n{text}"))
            .to_string()
    };
    assert!(line("year: 9 days x 40 orders").contains("messages"));
    assert!(
        !text.contains("replies other than success")
            || !line("replies other than success").contains("ORDER"),
        "an order write was refused:\n{text}"
    );
    assert!(line("hourly compaction:").contains("runs"));
    assert!(line("catch-up, cursor 1 hour old").contains("EVENTS_BULK"));
    assert!(line("catch-up, cursor 1 week old").contains("STATE"));
    assert!(line("poshub check of the copy").contains("ok"));
    assert!(line("GET /orders (the dashboard's poll)").contains("MB in"));
}
