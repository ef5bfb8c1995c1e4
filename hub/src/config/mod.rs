//! Hub configuration (docs/configuration.md): environment variables, optionally pre-loaded from an
//! env-file in systemd `EnvironmentFile` format. Every value is validated up front so the hub never
//! starts half-configured; a bad value yields one line naming the variable.

pub mod printers;

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How terminals prove who they are (docs/protocol.md "Authentication and identity").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Cluster JWTs and hub-issued tokens.
    Token,
    /// Odoo session ids, plus tokens.
    Odoo,
    /// Development only: any AUTH is accepted.
    Open,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Token => "token",
            AuthMode::Odoo => "odoo",
            AuthMode::Open => "open",
        }
    }
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// journald when started by systemd, plain text otherwise.
    Auto,
    Text,
    Json,
    Journald,
}

/// A configuration value that cannot be used; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: String,
    pub message: String,
}

impl ConfigError {
    fn new(var: &str, message: impl Into<String>) -> Self {
        ConfigError {
            var: var.to_string(),
            message: message.into(),
        }
    }
}

/// The whole validated configuration of one hub process.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: IpAddr,
    pub ws_port: u16,
    pub http_port: u16,
    pub db_path: PathBuf,
    pub tenant_id: String,
    pub store_id: String,
    pub auth_mode: AuthMode,
    /// PEM text of the cloud's public key, already base64-decoded.
    pub cluster_public_key_pem: Option<String>,
    pub odoo_url: Option<String>,
    pub odoo_db: Option<String>,
    pub odoo_user: Option<String>,
    pub odoo_password: Option<String>,
    pub lease_ttl: Duration,
    pub heartbeat: Duration,
    pub grace: Duration,
    pub table_lock_ttl: Duration,
    pub table_lock_tick: Duration,
    pub status_interval: Duration,
    pub auth_timeout: Duration,
    /// Silence after which a terminal is pinged; twice this without any answer closes it.
    pub idle_timeout: Duration,
    pub forward_interval: Duration,
    pub forward_batch_size: usize,
    pub forward_max_retries: u32,
    pub auth_offline_grace: Duration,
    /// Total timeout of one upstream HTTP call (`HUB_UPSTREAM_TIMEOUT_MS`, default 15 s).
    pub upstream_timeout: Duration,
    pub event_retention: Duration,
    /// How long a paid or cancelled order is kept after its last change
    /// (`HUB_ORDER_RETENTION_MS`, default 90 days, at least a day).
    pub order_retention: Duration,
    pub cloud_bridge_url: Option<String>,
    pub cloud_bridge_token: Option<String>,
    pub mdns_enabled: bool,
    pub admin_token: Option<String>,
    pub log_level: String,
    pub log_format: LogFormat,
    /// Messages per second a single connection may send before it is rate limited.
    pub rate_limit_per_sec: u32,
    /// Broadcast frames queued for one terminal before it is switched to catch-up.
    pub max_queued_broadcasts: usize,
    /// Bytes of recent events kept in memory (`HUB_EVENT_WINDOW_BYTES`, default 1 MiB): a
    /// terminal whose cursor is inside this window is caught up without reading the database.
    /// 0 turns it off (every catch-up reads the database, queues are bounded by count only).
    pub event_window_bytes: usize,
    /// redb page cache, small enough for a Raspberry Pi.
    pub db_cache_bytes: usize,
    /// Free space the hub leaves on the database's file system (`HUB_MIN_FREE_MB`, default 64,
    /// the supervisor's boot threshold): below it writes are refused with `storage_full`
    /// before the file system is full, so the box can still log, boot and update. 0 turns the
    /// reserve off (writes then stop at the first ENOSPC, and recover the same way).
    pub min_free_bytes: u64,
    /// The OS (bundle) version of the box, passed by poshub-supervisor as `POSHUB_OS_VERSION`
    /// and shown in `/health` (`osVersion`); None when the hub runs without it.
    pub os_version: Option<String>,
    /// `--demo`: open auth and a sample floor plan.
    pub demo: bool,
    /// Station printers (`HUB_PRINTERS`, e.g. `kds=192.0.2.10:9100,bds=192.0.2.11:9100`).
    pub printers: Vec<printers::PrinterConfig>,
    /// Longest wait between attempts to reach an offline printer (`HUB_PRINT_RETRY_MAX_MS`).
    pub print_retry_max: Duration,
    /// How long a printer may take to accept and acknowledge one ticket before it is reported
    /// stalled (`HUB_PRINT_TIMEOUT_MS`); connecting gives up after the same time.
    pub print_timeout: Duration,
    /// How long a stalled printer is waited for on the same connection before the connection is
    /// reset and the ticket sent again from the start (`HUB_PRINT_STALL_MAX_MS`).
    pub print_stall_max: Duration,
}

/// A source of variables: the process environment, overlaid on an optional env-file.
#[derive(Debug, Default, Clone)]
pub struct Vars {
    map: HashMap<String, String>,
    /// Keys the env-file set, in file order (for `check-config`'s unknown-key warnings).
    file_keys: Vec<String>,
    /// Every key [`Config::from_vars`] asked for: the hub's settings.
    read: RefCell<BTreeSet<String>>,
}

impl Vars {
    /// Variables from the process environment only.
    pub fn from_env() -> Self {
        Vars {
            map: std::env::vars().collect(),
            ..Vars::default()
        }
    }

    /// Variables from an explicit map (tests, embedding).
    pub fn from_map<I, K, V>(iter: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Vars {
            map: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            ..Vars::default()
        }
    }

    /// Loads an env-file underneath these variables: values already set (the real environment,
    /// even when empty) win, as with systemd's `Environment=` over `EnvironmentFile=`. The
    /// supervisor reads the file with the same crate (`poshub-envfile`) and in the same order.
    pub fn with_env_file(mut self, path: &Path) -> Result<Self, ConfigError> {
        let entries =
            poshub_envfile::read(path).map_err(|e| ConfigError::new("--config", e.to_string()))?;
        for e in poshub_envfile::last_values(entries) {
            self.file_keys.push(e.key.clone());
            self.map.entry(e.key).or_insert(e.value);
        }
        Ok(self)
    }

    /// Keys set by the env-file, in file order, each once.
    /// (`poshub_envfile::last_values` gives each key once.)
    pub fn file_keys(&self) -> Vec<String> {
        self.file_keys.clone()
    }

    /// Sets `key` to empty (its default), so validation can go on past a bad value; false if
    /// it was empty already (nothing left to try).
    pub fn blank(&mut self, key: &str) -> bool {
        let had_value = self.get(key).is_some();
        self.map.insert(key.to_string(), String::new());
        had_value
    }

    /// The keys read so far by [`Config::from_vars`].
    pub fn keys_read(&self) -> BTreeSet<String> {
        self.read.borrow().clone()
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.read.borrow_mut().insert(key.to_string());
        self.map
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn string(&self, key: &str, default: &str) -> String {
        self.get(key).unwrap_or(default).to_string()
    }

    fn opt(&self, key: &str) -> Option<String> {
        self.get(key).map(str::to_string)
    }

    fn parse<T: std::str::FromStr>(
        &self,
        key: &str,
        default: T,
        what: &str,
    ) -> Result<T, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| ConfigError::new(key, format!("{v:?} is not {what}"))),
        }
    }

    fn millis(&self, key: &str, default_ms: u64, min_ms: u64) -> Result<Duration, ConfigError> {
        let ms: u64 = self.parse(key, default_ms, "a number of milliseconds")?;
        if ms < min_ms {
            return Err(ConfigError::new(
                key,
                format!("{ms} ms is below the minimum of {min_ms} ms"),
            ));
        }
        Ok(Duration::from_millis(ms))
    }

    fn port(&self, key: &str, default: u16) -> Result<u16, ConfigError> {
        self.parse(key, default, "a TCP port (0-65535)")
    }

    fn boolean(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::new(key, format!("{v:?} is not true or false"))),
            },
        }
    }
}

fn realm_part(vars: &Vars, key: &str, default: &str) -> Result<String, ConfigError> {
    let v = vars.string(key, default);
    if v.len() > 128
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(ConfigError::new(
            key,
            format!("{v:?} must be 1-128 characters of letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(v)
}

fn url(vars: &Vars, key: &str) -> Result<Option<String>, ConfigError> {
    match vars.opt(key) {
        None => Ok(None),
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
            Ok(Some(u.trim_end_matches('/').to_string()))
        }
        Some(u) => Err(ConfigError::new(
            key,
            format!("{u:?} is not an http:// or https:// URL"),
        )),
    }
}

/// `HUB_AUTH_MODE` (`demo` forces open).
fn auth_mode_of(vars: &Vars, demo: bool) -> Result<AuthMode, ConfigError> {
    Ok(match vars.string("HUB_AUTH_MODE", "token").as_str() {
        _ if demo => AuthMode::Open,
        "token" => AuthMode::Token,
        "odoo" => AuthMode::Odoo,
        "open" => AuthMode::Open,
        other => {
            return Err(ConfigError::new(
                "HUB_AUTH_MODE",
                format!("{other:?} is not one of token, odoo, open"),
            ))
        }
    })
}

/// `CLUSTER_PUBLIC_KEY_BASE64`, decoded to PEM.
fn cluster_key_of(vars: &Vars) -> Result<Option<String>, ConfigError> {
    Ok(match vars.get("CLUSTER_PUBLIC_KEY_BASE64") {
        None => None,
        Some(b64) => Some(
            crate::auth::decode_cluster_key(b64)
                .map_err(|e| ConfigError::new("CLUSTER_PUBLIC_KEY_BASE64", e.to_string()))?,
        ),
    })
}

/// `HUB_LOG_FORMAT`.
fn log_format_of(vars: &Vars) -> Result<LogFormat, ConfigError> {
    Ok(match vars.string("HUB_LOG_FORMAT", "auto").as_str() {
        "auto" => LogFormat::Auto,
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        "journald" => LogFormat::Journald,
        other => {
            return Err(ConfigError::new(
                "HUB_LOG_FORMAT",
                format!("{other:?} is not one of auto, text, json, journald"),
            ))
        }
    })
}

/// `HUB_LOG_LEVEL`, checked as a tracing filter.
fn log_level_of(vars: &Vars) -> Result<String, ConfigError> {
    let log_level = vars.string("HUB_LOG_LEVEL", "info");
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        return Err(ConfigError::new(
            "HUB_LOG_LEVEL",
            format!("{log_level:?} is not a log level"),
        ));
    }
    Ok(log_level)
}

/// `HUB_FORWARD_BATCH_SIZE` (1-1000) and `HUB_RATE_LIMIT_PER_SEC` (at least 1).
fn batch_and_rate_of(vars: &Vars) -> Result<(usize, u32), ConfigError> {
    let forward_batch_size: usize =
        vars.parse("HUB_FORWARD_BATCH_SIZE", 20, "a positive number")?;
    if forward_batch_size == 0 || forward_batch_size > 1000 {
        return Err(ConfigError::new(
            "HUB_FORWARD_BATCH_SIZE",
            "must be between 1 and 1000",
        ));
    }
    let rate_limit_per_sec: u32 =
        vars.parse("HUB_RATE_LIMIT_PER_SEC", 5000, "a positive number")?;
    if rate_limit_per_sec == 0 {
        return Err(ConfigError::new(
            "HUB_RATE_LIMIT_PER_SEC",
            "must be at least 1",
        ));
    }
    Ok((forward_batch_size, rate_limit_per_sec))
}

impl Config {
    /// Validates every variable of docs/configuration.md; `demo` forces open auth.
    pub fn from_vars(vars: &Vars, demo: bool) -> Result<Config, ConfigError> {
        let auth_mode = auth_mode_of(vars, demo)?;
        let cluster_public_key_pem = cluster_key_of(vars)?;
        let odoo_url = url(vars, "ODOO_URL")?;
        if auth_mode == AuthMode::Odoo && odoo_url.is_none() {
            return Err(ConfigError::new(
                "HUB_AUTH_MODE",
                "\"odoo\" needs ODOO_URL (the Odoo that checks the sessions)",
            ));
        }
        let log_format = log_format_of(vars)?;
        let log_level = log_level_of(vars)?;
        let (forward_batch_size, rate_limit_per_sec) = batch_and_rate_of(vars)?;
        let db_path = PathBuf::from(vars.string("HUB_DB_PATH", "./hub.redb"));
        if db_path.file_name().is_none() {
            return Err(ConfigError::new("HUB_DB_PATH", "must name a file"));
        }
        let cache_mb: usize = vars.parse("HUB_DB_CACHE_MB", 2, "a number of MiB")?;
        let min_free_mb: u64 = vars.parse("HUB_MIN_FREE_MB", 64, "a number of MiB")?;
        if min_free_mb > 1 << 20 {
            return Err(ConfigError::new(
                "HUB_MIN_FREE_MB",
                "must be at most 1048576 (1 TiB)",
            ));
        }
        Ok(Config {
            bind: vars.parse("HUB_BIND", IpAddr::from([0, 0, 0, 0]), "an IP address")?,
            ws_port: vars.port("HUB_PORT", 8765)?,
            http_port: vars.port("HUB_HTTP_PORT", 8766)?,
            db_path,
            tenant_id: realm_part(vars, "TENANT_ID", "demo")?,
            store_id: realm_part(vars, "STORE_ID", "store-001")?,
            auth_mode,
            cluster_public_key_pem,
            odoo_url,
            odoo_db: vars.opt("ODOO_DB"),
            odoo_user: vars.opt("ODOO_USER"),
            odoo_password: vars.opt("ODOO_PASSWORD"),
            lease_ttl: vars.millis("HUB_LEASE_TTL_MS", 60_000, 100)?,
            heartbeat: vars.millis("HUB_HEARTBEAT_MS", 20_000, 10)?,
            grace: vars.millis("HUB_GRACE_MS", 10_000, 0)?,
            table_lock_ttl: vars.millis("HUB_TABLE_LOCK_TTL_MS", 45_000, 100)?,
            table_lock_tick: vars.millis("HUB_TABLE_LOCK_TICK_MS", 15_000, 10)?,
            status_interval: vars.millis("HUB_STATUS_INTERVAL_MS", 30_000, 10)?,
            auth_timeout: vars.millis("HUB_AUTH_TIMEOUT_MS", 10_000, 10)?,
            idle_timeout: vars.millis("HUB_IDLE_TIMEOUT_MS", 30_000, 50)?,
            forward_interval: vars.millis("HUB_FORWARD_INTERVAL_MS", 5_000, 10)?,
            forward_batch_size,
            forward_max_retries: vars.parse("HUB_FORWARD_MAX_RETRIES", 5, "a number")?,
            auth_offline_grace: vars.millis("HUB_AUTH_OFFLINE_GRACE_MS", 86_400_000, 0)?,
            upstream_timeout: vars.millis("HUB_UPSTREAM_TIMEOUT_MS", 15_000, 100)?,
            event_retention: vars.millis("HUB_EVENT_RETENTION_MS", 7 * 86_400_000, 1000)?,
            order_retention: vars.millis("HUB_ORDER_RETENTION_MS", 90 * 86_400_000, 86_400_000)?,
            cloud_bridge_url: url(vars, "CLOUD_BRIDGE_URL")?,
            cloud_bridge_token: vars.opt("CLOUD_BRIDGE_TOKEN"),
            mdns_enabled: vars.boolean("HUB_MDNS_ENABLED", true)?,
            admin_token: vars.opt("HUB_ADMIN_TOKEN"),
            log_level,
            log_format,
            rate_limit_per_sec,
            max_queued_broadcasts: vars
                .parse("HUB_MAX_QUEUED_BROADCASTS", 4096, "a number")?
                .max(16),
            db_cache_bytes: cache_mb.max(1) << 20,
            min_free_bytes: min_free_mb << 20,
            os_version: vars.opt("POSHUB_OS_VERSION"),
            event_window_bytes: vars.parse(
                "HUB_EVENT_WINDOW_BYTES",
                1 << 20,
                "a number of bytes",
            )?,
            demo,
            printers: printers::parse_printers("HUB_PRINTERS", vars.get("HUB_PRINTERS"))?,
            print_retry_max: vars.millis("HUB_PRINT_RETRY_MAX_MS", 5_000, 10)?,
            print_timeout: vars.millis("HUB_PRINT_TIMEOUT_MS", 10_000, 10)?,
            print_stall_max: vars.millis("HUB_PRINT_STALL_MAX_MS", 300_000, 10)?,
        })
    }

    /// Directory holding the database, the hub's signing key and its admin token.
    pub fn data_dir(&self) -> PathBuf {
        match self.db_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_spec() {
        let c = Config::from_vars(&Vars::default(), false).expect("defaults are valid");
        assert_eq!((c.ws_port, c.http_port), (8765, 8766));
        assert_eq!(c.auth_mode, AuthMode::Token);
        assert_eq!(c.lease_ttl, Duration::from_secs(60));
        assert_eq!(
            (c.tenant_id.as_str(), c.store_id.as_str()),
            ("demo", "store-001")
        );
        assert_eq!(c.event_window_bytes, 1 << 20);
        let c = Config::from_vars(&Vars::from_map([("HUB_EVENT_WINDOW_BYTES", "0")]), false)
            .expect("a window of 0 turns it off");
        assert_eq!(c.event_window_bytes, 0);
        let e = Config::from_vars(&Vars::from_map([("HUB_EVENT_WINDOW_BYTES", "2M")]), false)
            .unwrap_err();
        assert_eq!(e.var, "HUB_EVENT_WINDOW_BYTES");
        let c = Config::from_vars(&Vars::default(), false).expect("defaults");
        assert_eq!(
            c.min_free_bytes,
            64 << 20,
            "the supervisor's boot threshold"
        );
        for bad in ["-1", "64MB", "2000000"] {
            let e =
                Config::from_vars(&Vars::from_map([("HUB_MIN_FREE_MB", bad)]), false).unwrap_err();
            assert_eq!(e.var, "HUB_MIN_FREE_MB", "{bad}");
        }
        let c = Config::from_vars(&Vars::from_map([("HUB_MIN_FREE_MB", "0")]), false)
            .expect("0 turns the reserve off");
        assert_eq!(c.min_free_bytes, 0);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let e = Config::from_vars(&Vars::from_map([("HUB_PORT", "eighty")]), false).unwrap_err();
        assert_eq!(e.var, "HUB_PORT");
        assert!(e.to_string().starts_with("HUB_PORT: "), "{e}");
        let e = Config::from_vars(&Vars::from_map([("HUB_AUTH_MODE", "none")]), false).unwrap_err();
        assert_eq!(e.var, "HUB_AUTH_MODE");
        let e = Config::from_vars(
            &Vars::from_map([("CLUSTER_PUBLIC_KEY_BASE64", "%%")]),
            false,
        )
        .unwrap_err();
        assert_eq!(e.var, "CLUSTER_PUBLIC_KEY_BASE64");
    }

    #[test]
    fn env_file_fills_in_but_environment_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("poshub.env");
        std::fs::write(
            &f,
            "# comment\nHUB_PORT=9000\nSTORE_ID=\"s-42\"\nexport TENANT_ID=t1\n",
        )
        .expect("write");
        let vars = Vars::from_map([("HUB_PORT", "9100")])
            .with_env_file(&f)
            .expect("parse");
        let c = Config::from_vars(&vars, false).expect("valid");
        assert_eq!(c.ws_port, 9100);
        assert_eq!(c.store_id, "s-42");
        assert_eq!(c.tenant_id, "t1");
        std::fs::write(&f, "not a pair\n").expect("write");
        assert!(Vars::default().with_env_file(&f).is_err());
    }
}
