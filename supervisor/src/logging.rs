//! Logging: journald (tracing-journald) when running under systemd, plain text on stderr
//! otherwise. Level from `SUPERVISOR_LOG_LEVEL` in the environment, else in the `--config`
//! file (the environment wins, as for every setting), else `RUST_LOG`, default `info`.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; call once, early. `config` is the `--config` file, read here
/// for `SUPERVISOR_LOG_LEVEL` alone (an unreadable file is reported later by the command).
pub fn init(config: Option<&std::path::Path>) {
    let from_file = || {
        config
            .and_then(|p| crate::config::parse_env_file(p).ok())
            .and_then(|mut vars| vars.remove("SUPERVISOR_LOG_LEVEL"))
    };
    let filter = std::env::var("SUPERVISOR_LOG_LEVEL")
        .ok()
        .or_else(from_file)
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let under_systemd =
        std::env::var_os("JOURNAL_STREAM").is_some() || std::env::var_os("INVOCATION_ID").is_some();
    if under_systemd {
        if let Ok(journald) = tracing_journald::layer() {
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(journald.with_syslog_identifier("poshub-supervisor".into()))
                .try_init();
            return;
        }
    }
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false),
        )
        .try_init();
}
