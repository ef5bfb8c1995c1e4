//! Offsite settings: `BACKUP_*` lines of the box's `poshub.env` (the hub's `--config` file,
//! where `poshub-provision` puts every line that is not `SUPERVISOR_`/`WIFI_`/`TS_`), or the
//! supervisor's environment, which wins as for every other setting. The realm (`TENANT_ID`,
//! `STORE_ID`) comes from the same file, so two stores never share a prefix. Without
//! `BACKUP_S3_URL` offsite copies are off; with it every other required value must be right,
//! or the supervisor logs why and runs without them (the hub must start either way).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::crypt::Key;
use crate::config::{parse_env_file, Config, ConfigError};

/// Every variable read here, for `check-config` (hub and supervisor).
pub const VARS: [&str; 12] = [
    "BACKUP_S3_URL",
    "BACKUP_S3_ENDPOINT",
    "BACKUP_S3_REGION",
    "BACKUP_S3_ACCESS_KEY_ID",
    "BACKUP_S3_SECRET_ACCESS_KEY",
    "BACKUP_KEY",
    "BACKUP_S3_INTERVAL_S",
    "BACKUP_S3_KEEP",
    "BACKUP_S3_KEEP_DAILY",
    "BACKUP_S3_MAX_KBPS",
    "BACKUP_S3_RESTORE_TIMEOUT_S",
    "BACKUP_S3_BACKOFF_MAX_S",
];

/// Everything the offsite copies need, checked.
#[derive(Clone)]
pub struct Settings {
    pub bucket: String,
    /// `<prefix>/<tenant>/<store>`: where this box's copies go.
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub key: Key,
    /// How often a changed database is uploaded.
    pub interval: Duration,
    /// The newest copies always kept.
    pub keep: usize,
    /// Besides those, the newest copy of each of this many UTC days.
    pub keep_daily: usize,
    /// Upload rate limit in KiB/s (0: none).
    pub max_kbps: u64,
    /// How long the first boot of a new card may spend restoring before the hub starts.
    pub restore_timeout: Duration,
    /// The longest wait between tries while storage is unreachable.
    pub backoff_max: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No secrets in logs.
        write!(
            f,
            "s3://{}/{} (key {:?})",
            self.bucket, self.prefix, self.key
        )
    }
}

fn invalid(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var,
        message: message.into(),
    }
}

/// The variables: the supervisor's environment over the hub's `--config` file (or `file`).
pub fn sources(cfg: &Config, file: Option<&Path>) -> Result<HashMap<String, String>, ConfigError> {
    // A file given by hand must be there; the hub's may not exist yet (a card not provisioned).
    let mut vars = match (file, hub_config_file(cfg)) {
        (Some(f), _) => parse_env_file(f)?,
        (None, Some(f)) if f.exists() => parse_env_file(&f)?,
        _ => HashMap::new(),
    };
    vars.extend(
        std::env::vars()
            .filter(|(k, _)| k.starts_with("BACKUP_") || k == "TENANT_ID" || k == "STORE_ID"),
    );
    vars.retain(|_, v| !v.trim().is_empty());
    Ok(vars)
}

/// The hub's `--config FILE` from `SUPERVISOR_HUB_ARGS`.
pub fn hub_config_file(cfg: &Config) -> Option<PathBuf> {
    super::super::hubapi::hub_config_file(&cfg.hub_args)
}

/// `None` when offsite copies are off (no `BACKUP_S3_URL`).
#[allow(clippy::implicit_hasher)] // always the config's own map
pub fn parse(vars: &HashMap<String, String>) -> Result<Option<Settings>, ConfigError> {
    let get = |k: &str| vars.get(k).map(|v| v.trim().to_string());
    let Some(url) = get("BACKUP_S3_URL") else {
        return Ok(None);
    };
    let (bucket, base) = parse_url(&url).map_err(|m| invalid("BACKUP_S3_URL", m))?;
    let need = |var: &'static str| {
        get(var).ok_or_else(|| invalid(var, "must be set when BACKUP_S3_URL is"))
    };
    let num = |var: &'static str, d: u64| -> Result<u64, ConfigError> {
        match get(var) {
            None => Ok(d),
            Some(v) => v
                .parse()
                .map_err(|_| invalid(var, format!("{v:?} is not a whole number"))),
        }
    };
    let key = Key::from_hex(&need("BACKUP_KEY")?).map_err(|m| invalid("BACKUP_KEY", m))?;
    let endpoint = get("BACKUP_S3_ENDPOINT");
    if let Some(e) = &endpoint {
        if !(e.starts_with("https://") || e.starts_with("http://")) {
            return Err(invalid(
                "BACKUP_S3_ENDPOINT",
                format!("{e:?} must start with https:// (or http:// for a local server)"),
            ));
        }
    }
    let realm = |var: &'static str, d: &str| -> Result<String, ConfigError> {
        let v = get(var).unwrap_or_else(|| d.to_string());
        let ok = v.len() <= 128
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        ok.then_some(v)
            .ok_or_else(|| invalid(var, "must be letters, digits, '-', '_' or '.'"))
    };
    let realm_path = format!(
        "{}/{}",
        realm("TENANT_ID", "demo")?,
        realm("STORE_ID", "store-001")?
    );
    let s = Settings {
        bucket,
        prefix: if base.is_empty() {
            realm_path
        } else {
            format!("{base}/{realm_path}")
        },
        endpoint,
        region: get("BACKUP_S3_REGION").unwrap_or_else(|| "us-east-1".into()),
        access_key_id: need("BACKUP_S3_ACCESS_KEY_ID")?,
        secret_access_key: need("BACKUP_S3_SECRET_ACCESS_KEY")?,
        key,
        interval: Duration::from_secs(num("BACKUP_S3_INTERVAL_S", 900)?),
        keep: usize::try_from(num("BACKUP_S3_KEEP", 48)?).unwrap_or(usize::MAX),
        keep_daily: usize::try_from(num("BACKUP_S3_KEEP_DAILY", 30)?).unwrap_or(usize::MAX),
        max_kbps: num("BACKUP_S3_MAX_KBPS", 1024)?,
        restore_timeout: Duration::from_secs(num("BACKUP_S3_RESTORE_TIMEOUT_S", 600)?),
        backoff_max: Duration::from_secs(num("BACKUP_S3_BACKOFF_MAX_S", 900)?.max(1)),
    };
    if s.interval.is_zero() {
        return Err(invalid("BACKUP_S3_INTERVAL_S", "must be above 0"));
    }
    if s.keep == 0 {
        return Err(invalid(
            "BACKUP_S3_KEEP",
            "must be at least 1 (the newest copy)",
        ));
    }
    Ok(Some(s))
}

/// Loads and checks the settings of this box.
pub fn load(cfg: &Config, file: Option<&Path>) -> Result<Option<Settings>, ConfigError> {
    parse(&sources(cfg, file)?)
}

/// `s3://bucket[/prefix]` into the bucket and the prefix (no slashes at either end).
fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{url:?} must look like s3://BUCKET/PREFIX"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c));
    if !valid_bucket {
        return Err(format!(
            "bucket {bucket:?} must be 3-63 lower-case letters, digits, '-' or '.'"
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p == "." || p == "..") {
        return Err(format!("prefix {prefix:?} must not contain . or .."));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str) -> HashMap<String, String> {
        text.split_whitespace()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn off_without_url_and_every_bad_value_named() {
        assert!(parse(&vars("")).expect("empty").is_none());
        let key = "ab".repeat(32);
        let good = format!(
            "BACKUP_S3_URL=s3://poshub-backups/boxes BACKUP_S3_ACCESS_KEY_ID=a \
             BACKUP_S3_SECRET_ACCESS_KEY=s BACKUP_KEY={key} TENANT_ID=acme STORE_ID=s-1"
        );
        let s = parse(&vars(&good)).expect("good").expect("on");
        assert_eq!(
            (s.bucket.as_str(), s.prefix.as_str()),
            ("poshub-backups", "boxes/acme/s-1")
        );
        assert_eq!((s.interval.as_secs(), s.keep, s.keep_daily), (900, 48, 30));
        let bad = |extra: &str| {
            let v = vars(&format!("{good} {extra}"));
            parse(&v).expect_err(extra).to_string()
        };
        assert!(bad("BACKUP_S3_URL=https://x").starts_with("BACKUP_S3_URL:"));
        assert!(bad("BACKUP_S3_URL=s3://UPPER/x").contains("bucket"));
        assert!(bad("BACKUP_KEY=hunter2").starts_with("BACKUP_KEY: must be 64 hex"));
        assert!(bad("BACKUP_S3_ENDPOINT=minio:9000").starts_with("BACKUP_S3_ENDPOINT:"));
        assert!(bad("BACKUP_S3_INTERVAL_S=0").starts_with("BACKUP_S3_INTERVAL_S:"));
        assert!(bad("BACKUP_S3_KEEP=ten").starts_with("BACKUP_S3_KEEP:"));
        let mut v = vars(&good);
        v.remove("BACKUP_S3_SECRET_ACCESS_KEY");
        let e = parse(&v).expect_err("no secret").to_string();
        assert_eq!(
            e,
            "BACKUP_S3_SECRET_ACCESS_KEY: must be set when BACKUP_S3_URL is"
        );
        // Secrets never show in Debug output.
        let shown = format!("{s:?}");
        assert!(!shown.contains(&key) && !shown.contains("=s "), "{shown}");
    }
}
