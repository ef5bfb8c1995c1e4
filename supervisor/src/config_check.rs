//! `poshub-supervisor check-config`: validates settings with the very code the supervisor runs
//! at start ([`Config::from_source`]), but reports every bad variable instead of the first one,
//! and warns about keys of the env file that are no supervisor setting (a typo would be ignored
//! silently). `scripts/provision` runs it before it writes a card.

use std::collections::BTreeSet;
use std::path::Path;

use crate::config::{Config, ConfigError, Source};

/// Read by `logging` straight from the environment, before any config file.
const LOGGING_VARS: [&str; 1] = ["SUPERVISOR_LOG_LEVEL"];

/// What `check-config` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Values the supervisor would refuse at start, one per variable.
    pub errors: Vec<ConfigError>,
    /// Keys of the env file the supervisor does not read.
    pub unknown: Vec<String>,
}

/// Every variable the supervisor reads: those asked for while validating the defaults (which
/// are valid, so every variable is visited), plus the logging ones.
pub fn known_vars() -> BTreeSet<String> {
    let src = Source::default();
    // Ok or not, every read was recorded; the defaults are valid (a unit test says so).
    let _ = Config::from_source(&src);
    let mut known = src.vars_read();
    known.extend(LOGGING_VARS.map(String::from));
    known
}

/// Validates the environment and `file` as `run` would. After each error the variable at fault
/// is blanked (its default) and validation runs again, until it passes or an error repeats.
/// An unreadable or malformed file is the only error then.
pub fn check(file: Option<&Path>) -> CheckReport {
    let mut report = CheckReport::default();
    let mut src = match Source::load(file) {
        Ok(src) => src,
        Err(e) => {
            report.errors.push(e);
            return report;
        }
    };
    while let Err(e) = Config::from_source(&src) {
        let progress = match &e {
            ConfigError::Invalid { var, .. } => src.blank(var),
            _ => false,
        };
        report.errors.push(e);
        if !progress {
            break;
        }
    }
    // The offsite settings (BACKUP_*) live in the hub's poshub.env; checked the same way.
    if let Ok(cfg) = Config::from_source(&src) {
        if let Err(e) = crate::backup::offsite::settings::load(&cfg, None) {
            report.errors.push(e);
        }
    }
    let known = known_vars();
    report.unknown = src
        .file_keys()
        .into_iter()
        .filter(|k| !known.contains(k))
        .collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_variable_is_reported_and_unknown_keys_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.env");
        std::fs::write(
            &p,
            "SUPERVISOR_API_PORT=eighty\nSUPERVISOR_SLOT_BACKEND=grub\n\
             SUPERVISOR_HEALTH_WINDOW=5\nSUPERVISOR_LOG_LEVEL=debug\n",
        )
        .unwrap();
        let r = check(Some(&p));
        let vars: Vec<String> = r
            .errors
            .iter()
            .map(|e| match e {
                ConfigError::Invalid { var, .. } => var.to_string(),
                other => other.to_string(),
            })
            .collect();
        assert_eq!(vars, ["SUPERVISOR_SLOT_BACKEND", "SUPERVISOR_API_PORT"]);
        assert_eq!(r.unknown, ["SUPERVISOR_HEALTH_WINDOW"]);
    }

    #[test]
    fn the_defaults_are_valid_and_every_variable_is_known() {
        assert!(Config::from_source(&Source::default()).is_ok());
        let known = known_vars();
        for k in [
            "SUPERVISOR_DATA_DIR",
            "SUPERVISOR_HUB_DB",
            "SUPERVISOR_SLOT_B_BOOT_DEVICE",
            "SUPERVISOR_PROVISION_STATUS",
            "SUPERVISOR_LOG_LEVEL",
        ] {
            assert!(known.contains(k), "{k} missing from {known:?}");
        }
    }
}
