//! `poshub check-config`: validates settings with the very code the hub runs at start
//! ([`Config::from_vars`]), but reports every bad variable instead of the first one, and warns
//! about keys of the env-file that are no hub setting (a typo the hub would silently ignore).
//! `scripts/provision` runs it before it writes a card.

use crate::config::{Config, ConfigError, Vars};

/// What `check-config` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Values the hub would refuse at start, one per variable.
    pub errors: Vec<ConfigError>,
    /// Keys of the env-file the hub does not read.
    pub unknown: Vec<String>,
}

/// Every key the hub reads: those asked for while validating the defaults (which are valid,
/// so every variable is visited).
pub fn known_keys() -> std::collections::BTreeSet<String> {
    let vars = Vars::default();
    // Ok or not, every `get` was recorded; the defaults are valid (a unit test says so).
    let _ = Config::from_vars(&vars, false);
    vars.keys_read()
}

/// Validates `vars` as `poshub serve` would. After each error the variable at fault is blanked
/// (its default) and validation runs again, until it passes or an error repeats.
pub fn check(vars: &Vars) -> CheckReport {
    let mut vars = vars.clone();
    let mut report = CheckReport::default();
    while let Err(e) = Config::from_vars(&vars, false) {
        let progress = vars.blank(&e.var);
        report.errors.push(e);
        if !progress {
            break;
        }
    }
    let known = known_keys();
    report.unknown = vars
        .file_keys()
        .into_iter()
        .filter(|k| !known.contains(k) && !k.starts_with(crate::backups::OFFSITE_PREFIX))
        .collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_variable_is_reported_and_unknown_keys_are_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("poshub.env");
        std::fs::write(
            &f,
            "HUB_PORT=eighty\nHUB_AUTH_MODE=odoo\nHUB_LOG_FORMAT=xml\nHUB_TENANT_ID=acme\nSTORE_ID=s1\n\
             BACKUP_S3_URL=s3://b/p\nBACKUP_KEY=00\n",
        )
        .expect("write");
        let vars = Vars::default().with_env_file(&f).expect("parse");
        let r = check(&vars);
        let vars_at_fault: Vec<&str> = r.errors.iter().map(|e| e.var.as_str()).collect();
        assert_eq!(
            vars_at_fault,
            ["HUB_AUTH_MODE", "HUB_LOG_FORMAT", "HUB_PORT"]
        );
        assert_eq!(r.unknown, ["HUB_TENANT_ID"]);
    }

    #[test]
    fn the_defaults_are_valid_and_every_spec_variable_is_known() {
        assert!(check(&Vars::default()).errors.is_empty());
        let known = known_keys();
        for k in [
            "HUB_PORT",
            "TENANT_ID",
            "ODOO_PASSWORD",
            "HUB_PRINTERS",
            "HUB_ADMIN_TOKEN",
        ] {
            assert!(known.contains(k), "{k} missing from {known:?}");
        }
    }
}
