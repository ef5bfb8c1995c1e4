//! Supervisor configuration: `SUPERVISOR_*` variables from the process environment and an env
//! file (systemd `EnvironmentFile` format, given with `--config`). A variable set in the
//! environment wins over the file, as systemd's `Environment=` over `EnvironmentFile=` and as
//! the hub reads its `--config`; then the default. Every variable is listed in
//! `supervisor/README.md`.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration problem, always naming the variable (or file line) at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The env-file could not be read or has a bad line (`poshub-envfile`, shared with the hub).
    #[error(transparent)]
    File(#[from] poshub_envfile::Error),
    #[error("{var}: {message}")]
    Invalid { var: &'static str, message: String },
}

/// Which bootloader mechanism selects the A/B slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// A JSON state file that emulates a bootloader (tests, emulated boots).
    File,
    /// U-Boot with RAUC-style `BOOT_ORDER`/`BOOT_x_LEFT`.
    Uboot,
    /// Raspberry Pi firmware `autoboot.txt` + `tryboot`.
    RpiTryboot,
}

/// Where the update API listens by default: loopback and the tailnet, never the store's LAN.
pub const DEFAULT_API_BIND: &str = "127.0.0.1,tailscale0";

/// One entry of `SUPERVISOR_API_BIND`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindEntry {
    /// A literal address (`127.0.0.1`, `::1`, or `0.0.0.0` for every address, LAN included).
    Addr(std::net::IpAddr),
    /// An interface whose addresses are followed while the supervisor runs (`tailscale0`).
    Interface(String),
}

/// Parses a comma-separated list of addresses and interface names.
fn parse_bind(text: &str) -> Result<Vec<BindEntry>, ConfigError> {
    let bad = |message: String| ConfigError::Invalid {
        var: "SUPERVISOR_API_BIND",
        message,
    };
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let item = item.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = item.parse() {
            out.push(BindEntry::Addr(ip));
        } else if item.len() <= 15
            && item
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        {
            out.push(BindEntry::Interface(item.to_string()));
        } else {
            return Err(bad(format!(
                "{item:?} is neither an IP address nor an interface name"
            )));
        }
    }
    if out.is_empty() {
        return Err(bad("lists no address or interface".into()));
    }
    Ok(out)
}

/// Everything the supervisor needs to know, resolved once at start.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub hub_bin: PathBuf,
    pub hub_args: Vec<String>,
    pub hub_health_url: String,
    pub hub_db: PathBuf,
    pub hub_user: Option<String>,
    pub slot_backend: BackendKind,
    pub slot_a_device: PathBuf,
    pub slot_b_device: PathBuf,
    /// Per-slot boot partitions (kernel, initrd, dtbs) that format 2 bundles write; both or none.
    pub slot_a_boot_device: Option<PathBuf>,
    pub slot_b_boot_device: Option<PathBuf>,
    pub boot_dir: PathBuf,
    pub tryboot_dt_dir: PathBuf,
    pub tryboot_part_a: u32,
    pub tryboot_part_b: u32,
    pub tryboot_mailbox_cmd: String,
    pub tryboot_firmware_driver: PathBuf,
    pub cmdline_path: PathBuf,
    pub fw_printenv: String,
    pub fw_setenv: String,
    pub uboot_attempts: u32,
    pub reboot_cmd: Option<String>,
    pub api_port: u16,
    /// Where the update API listens: addresses and interface names (see `api::listen`).
    pub api_bind: Vec<BindEntry>,
    /// An upload whose body sends nothing for this long is dropped (408) and the box freed.
    pub api_body_timeout: Duration,
    pub api_token: Option<String>,
    pub max_bundle_bytes: u64,
    pub health_window: Duration,
    pub health_interval: Duration,
    pub health_timeout: Duration,
    pub trial_timeout: Duration,
    pub trial_max_restarts: u32,
    pub trial_max_boots: u32,
    pub restart_backoff_min: Duration,
    pub restart_backoff_max: Duration,
    pub board: String,
    pub public_key: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted for `install https://...`, besides the system's.
    pub ca_file: Option<PathBuf>,
    pub os_version_file: PathBuf,
    pub boot_id_path: PathBuf,
    pub min_free_bytes: u64,
    pub clock_set: bool,
    /// Backups of the hub database (`backup` module): schedule (zero: none), retention, and
    /// the free space a backup must leave.
    pub backup_interval: Duration,
    pub backup_keep_hourly: usize,
    pub backup_keep_daily: usize,
    pub backup_min_free_bytes: u64,
    /// Test hook: pause (sleep forever) when an install reaches this phase.
    pub test_pause_at: Option<String>,
    /// What `poshub-provision` did at this boot (`/run/poshub/provision.status`), shown by
    /// `status`.
    pub provision_status: PathBuf,
}

/// Parses an env file (`poshub-envfile`: the hub reads it the same way): each key once, at
/// its last value.
pub fn parse_env_file(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    parse_env_file_ordered(path).map(|(vars, _)| vars)
}

/// [`parse_env_file`] plus the keys in file order.
fn parse_env_file_ordered(
    path: &Path,
) -> Result<(HashMap<String, String>, Vec<String>), ConfigError> {
    let entries = poshub_envfile::last_values(poshub_envfile::read(path)?);
    let keys = entries.iter().map(|e| e.key.clone()).collect();
    Ok((
        entries.into_iter().map(|e| (e.key, e.value)).collect(),
        keys,
    ))
}

/// Where the settings come from: the environment over the env file.
#[derive(Debug, Default, Clone)]
pub struct Source {
    vars: HashMap<String, String>,
    /// Keys the env file set, in file order.
    file_keys: Vec<String>,
    /// Every variable [`Config::from_source`] asked for: the supervisor's settings.
    read: RefCell<BTreeSet<String>>,
}

impl Source {
    /// The process environment over `file` (if any).
    pub fn load(file: Option<&Path>) -> Result<Source, ConfigError> {
        let mut src = Source::default();
        if let Some(p) = file {
            let (vars, keys) = parse_env_file_ordered(p)?;
            src.vars = vars;
            src.file_keys = keys;
        }
        src.vars.extend(std::env::vars());
        Ok(src)
    }

    /// Keys set by the env file, in file order, each once.
    /// (`poshub_envfile::last_values` gives each key once.)
    pub fn file_keys(&self) -> Vec<String> {
        self.file_keys.clone()
    }

    /// Sets `var` to empty (its default), so validation can go on past a bad value; false if it
    /// was empty already (nothing left to try).
    pub fn blank(&mut self, var: &str) -> bool {
        let had_value = self.get(var).is_some();
        self.vars.insert(var.to_string(), String::new());
        had_value
    }

    /// The variables read so far by [`Config::from_source`].
    pub fn vars_read(&self) -> BTreeSet<String> {
        self.read.borrow().clone()
    }

    fn get(&self, var: &str) -> Option<String> {
        self.read.borrow_mut().insert(var.to_string());
        self.vars.get(var).cloned().filter(|v| !v.trim().is_empty())
    }
    fn path(&self, var: &str, default: &str) -> PathBuf {
        self.str(var, default).into()
    }
    fn opt_path(&self, var: &str) -> Option<PathBuf> {
        self.get(var).map(PathBuf::from)
    }
    /// A size given in MiB, in bytes.
    fn mib(&self, var: &'static str, default: u64) -> Result<u64, ConfigError> {
        self.num::<u64>(var, default)?
            .checked_mul(1024 * 1024)
            .ok_or_else(|| ConfigError::Invalid {
                var,
                message: "is too large".into(),
            })
    }
    fn str(&self, var: &str, default: &str) -> String {
        self.get(var).unwrap_or_else(|| default.to_string())
    }
    fn num<T: std::str::FromStr>(&self, var: &'static str, default: T) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| ConfigError::Invalid {
                var,
                message: format!("{v:?} is not a valid number"),
            }),
        }
    }
    fn bool(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var).as_deref().map(str::trim) {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(v) => Err(ConfigError::Invalid {
                var,
                message: format!("{v:?} is not true/false"),
            }),
        }
    }
}

impl BackendKind {
    /// `SUPERVISOR_SLOT_BACKEND`.
    fn from_source(src: &Source) -> Result<BackendKind, ConfigError> {
        match src.str("SUPERVISOR_SLOT_BACKEND", "file").as_str() {
            "file" => Ok(BackendKind::File),
            "uboot" => Ok(BackendKind::Uboot),
            "rpi-tryboot" => Ok(BackendKind::RpiTryboot),
            other => Err(ConfigError::Invalid {
                var: "SUPERVISOR_SLOT_BACKEND",
                message: format!("{other:?} is not one of file, uboot, rpi-tryboot"),
            }),
        }
    }
}

impl Config {
    /// Loads the configuration from the environment and `file` (if any).
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::from_source(&Source::load(file)?)
    }

    /// Validates every variable; the first bad one is the error.
    pub fn from_source(src: &Source) -> Result<Config, ConfigError> {
        let data_dir = PathBuf::from(src.str("SUPERVISOR_DATA_DIR", "/data/poshub"));
        let slot_backend = BackendKind::from_source(src)?;
        let secs = |var: &'static str, d: u64| src.num(var, d).map(Duration::from_secs);
        let millis = |var: &'static str, d: u64| src.num(var, d).map(Duration::from_millis);
        let cfg = Config {
            hub_bin: src.path("SUPERVISOR_HUB_BIN", "/usr/bin/poshub"),
            hub_args: src
                .str(
                    "SUPERVISOR_HUB_ARGS",
                    "serve --config /data/poshub/poshub.env",
                )
                .split_whitespace()
                .map(String::from)
                .collect(),
            hub_health_url: src.str("SUPERVISOR_HUB_HEALTH_URL", "http://127.0.0.1:8766/health"),
            hub_db: src
                .opt_path("SUPERVISOR_HUB_DB")
                .unwrap_or_else(|| data_dir.join("hub.redb")),
            hub_user: src.get("SUPERVISOR_HUB_USER"),
            slot_backend,
            slot_a_device: src.path("SUPERVISOR_SLOT_A_DEVICE", "/dev/mmcblk0p2"),
            slot_b_device: src.path("SUPERVISOR_SLOT_B_DEVICE", "/dev/mmcblk0p3"),
            slot_a_boot_device: src.opt_path("SUPERVISOR_SLOT_A_BOOT_DEVICE"),
            slot_b_boot_device: src.opt_path("SUPERVISOR_SLOT_B_BOOT_DEVICE"),
            boot_dir: src.path("SUPERVISOR_BOOT_DIR", "/boot/firmware"),
            tryboot_dt_dir: src.path(
                "SUPERVISOR_TRYBOOT_DT_DIR",
                "/proc/device-tree/chosen/bootloader",
            ),
            tryboot_part_a: src.num("SUPERVISOR_TRYBOOT_PART_A", 2)?,
            tryboot_part_b: src.num("SUPERVISOR_TRYBOOT_PART_B", 3)?,
            tryboot_mailbox_cmd: src.str(
                "SUPERVISOR_TRYBOOT_MAILBOX_CMD",
                "vcmailbox 0x00038064 4 0 1",
            ),
            tryboot_firmware_driver: src.path(
                "SUPERVISOR_TRYBOOT_FIRMWARE_DRIVER",
                "/sys/bus/platform/drivers/raspberrypi-firmware",
            ),
            cmdline_path: src.path("SUPERVISOR_CMDLINE", "/proc/cmdline"),
            fw_printenv: src.str("SUPERVISOR_FW_PRINTENV", "fw_printenv"),
            fw_setenv: src.str("SUPERVISOR_FW_SETENV", "fw_setenv"),
            uboot_attempts: src.num("SUPERVISOR_UBOOT_ATTEMPTS", 3)?,
            reboot_cmd: src.get("SUPERVISOR_REBOOT_CMD"),
            api_port: src.num("SUPERVISOR_API_PORT", 8767)?,
            api_bind: parse_bind(&src.str("SUPERVISOR_API_BIND", DEFAULT_API_BIND))?,
            api_body_timeout: secs("SUPERVISOR_API_BODY_TIMEOUT_S", 60)?,
            api_token: src.get("SUPERVISOR_API_TOKEN"),
            max_bundle_bytes: src.mib("SUPERVISOR_MAX_BUNDLE_MB", 2048)?,
            health_window: secs("SUPERVISOR_HEALTH_WINDOW_S", 60)?,
            health_interval: millis("SUPERVISOR_HEALTH_INTERVAL_MS", 2000)?,
            health_timeout: millis("SUPERVISOR_HEALTH_TIMEOUT_MS", 2000)?,
            trial_timeout: secs("SUPERVISOR_TRIAL_TIMEOUT_S", 300)?,
            trial_max_restarts: src.num("SUPERVISOR_TRIAL_MAX_RESTARTS", 3)?,
            trial_max_boots: src.num("SUPERVISOR_TRIAL_MAX_BOOTS", 1)?,
            restart_backoff_min: millis("SUPERVISOR_RESTART_BACKOFF_MIN_MS", 1000)?,
            restart_backoff_max: millis("SUPERVISOR_RESTART_BACKOFF_MAX_MS", 30_000)?,
            board: src.str("SUPERVISOR_BOARD", "rpi4"),
            public_key: src.opt_path("SUPERVISOR_PUBLIC_KEY"),
            ca_file: src.opt_path("SUPERVISOR_CA_FILE"),
            os_version_file: src.path("SUPERVISOR_OS_VERSION_FILE", "/etc/poshub-version"),
            boot_id_path: src.path("SUPERVISOR_BOOT_ID_FILE", "/proc/sys/kernel/random/boot_id"),
            min_free_bytes: src.mib("SUPERVISOR_MIN_FREE_MB", 64)?,
            clock_set: src.bool("SUPERVISOR_CLOCK_SET", true)?,
            backup_interval: secs("SUPERVISOR_BACKUP_INTERVAL_S", 3600)?,
            backup_keep_hourly: src.num("SUPERVISOR_BACKUP_KEEP_HOURLY", 24)?,
            backup_keep_daily: src.num("SUPERVISOR_BACKUP_KEEP_DAILY", 7)?,
            backup_min_free_bytes: src.mib("SUPERVISOR_BACKUP_MIN_FREE_MB", 128)?,
            test_pause_at: src.get("SUPERVISOR_TEST_PAUSE_AT"),
            provision_status: src.path(
                "SUPERVISOR_PROVISION_STATUS",
                "/run/poshub/provision.status",
            ),
            data_dir,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The checks across settings (devices, health timings), after each was parsed.
    fn validate(&self) -> Result<(), ConfigError> {
        self.check_devices()?;
        if self.health_interval.is_zero() {
            return Err(ConfigError::Invalid {
                var: "SUPERVISOR_HEALTH_INTERVAL_MS",
                message: "must be above 0".into(),
            });
        }
        if self.trial_timeout <= self.health_window {
            return Err(ConfigError::Invalid {
                var: "SUPERVISOR_TRIAL_TIMEOUT_S",
                message: format!(
                    "{}s must be longer than SUPERVISOR_HEALTH_WINDOW_S ({}s), or no trial could pass",
                    self.trial_timeout.as_secs(),
                    self.health_window.as_secs()
                ),
            });
        }
        Ok(())
    }

    /// The supervisor's own state directory inside the data dir.
    pub fn state_dir(&self) -> PathBuf {
        self.data_dir.join("supervisor")
    }

    /// Slot and boot devices must be set together and be four different paths: a boot
    /// device equal to a root device would be overwritten by the other image.
    fn check_devices(&self) -> Result<(), ConfigError> {
        let (a, b) = (&self.slot_a_boot_device, &self.slot_b_boot_device);
        match (a, b) {
            (Some(_), None) => {
                return Err(ConfigError::Invalid {
                    var: "SUPERVISOR_SLOT_B_BOOT_DEVICE",
                    message: "must be set when SUPERVISOR_SLOT_A_BOOT_DEVICE is".into(),
                })
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    var: "SUPERVISOR_SLOT_A_BOOT_DEVICE",
                    message: "must be set when SUPERVISOR_SLOT_B_BOOT_DEVICE is".into(),
                })
            }
            _ => {}
        }
        let all = [
            ("SUPERVISOR_SLOT_A_DEVICE", Some(&self.slot_a_device)),
            ("SUPERVISOR_SLOT_B_DEVICE", Some(&self.slot_b_device)),
            ("SUPERVISOR_SLOT_A_BOOT_DEVICE", a.as_ref()),
            ("SUPERVISOR_SLOT_B_BOOT_DEVICE", b.as_ref()),
        ];
        for (i, (var, p)) in all.iter().enumerate() {
            let Some(p) = p else { continue };
            if let Some((other, _)) = all[..i].iter().find(|(_, q)| *q == Some(*p)) {
                return Err(ConfigError::Invalid {
                    var,
                    message: format!("{} is also {other}", p.display()),
                });
            }
        }
        Ok(())
    }

    /// The boot partition device of `slot`, if boot devices are configured.
    pub fn slot_boot_device(&self, slot: crate::types::Slot) -> Option<&Path> {
        match slot {
            crate::types::Slot::A => self.slot_a_boot_device.as_deref(),
            crate::types::Slot::B => self.slot_b_boot_device.as_deref(),
        }
    }

    /// The device (or test file) that holds `slot`.
    pub fn slot_device(&self, slot: crate::types::Slot) -> &Path {
        match slot {
            crate::types::Slot::A => &self.slot_a_device,
            crate::types::Slot::B => &self.slot_b_device,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_parses_comments_and_quotes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.env");
        std::fs::write(
            &p,
            // `export ` and a key set twice mean what they mean to the hub (poshub-envfile).
            "# c\n\nSUPERVISOR_API_PORT=1\nexport SUPERVISOR_BOARD=\"rpi5\"\nSUPERVISOR_API_PORT=9999\n",
        )
        .unwrap();
        let cfg = Config::load(Some(&p)).unwrap();
        assert_eq!(cfg.api_port, 9999);
        assert_eq!(cfg.board, "rpi5");
    }

    #[test]
    fn bad_number_names_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.env");
        std::fs::write(&p, "SUPERVISOR_API_PORT=eighty\n").unwrap();
        let err = Config::load(Some(&p)).unwrap_err().to_string();
        assert!(err.contains("SUPERVISOR_API_PORT"), "{err}");
    }

    #[test]
    fn trial_timeout_must_exceed_the_health_window() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.env");
        std::fs::write(
            &p,
            "SUPERVISOR_HEALTH_WINDOW_S=120\nSUPERVISOR_TRIAL_TIMEOUT_S=60\n",
        )
        .unwrap();
        let err = Config::load(Some(&p)).unwrap_err().to_string();
        assert!(err.starts_with("SUPERVISOR_TRIAL_TIMEOUT_S"), "{err}");
    }

    #[test]
    fn boot_devices_come_in_pairs_and_differ_from_the_root_devices() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.env");
        let load = |text: &str| {
            std::fs::write(&p, text).unwrap();
            Config::load(Some(&p))
        };
        let none = load("SUPERVISOR_SLOT_A_DEVICE=/ra\nSUPERVISOR_SLOT_B_DEVICE=/rb\n").unwrap();
        assert_eq!(none.slot_boot_device(crate::types::Slot::A), None);
        let both = load(
            "SUPERVISOR_SLOT_A_DEVICE=/ra\nSUPERVISOR_SLOT_B_DEVICE=/rb\n\
             SUPERVISOR_SLOT_A_BOOT_DEVICE=/ba\nSUPERVISOR_SLOT_B_BOOT_DEVICE=/bb\n",
        )
        .unwrap();
        assert_eq!(
            both.slot_boot_device(crate::types::Slot::B),
            Some(Path::new("/bb"))
        );
        let err = load("SUPERVISOR_SLOT_A_BOOT_DEVICE=/ba\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("SUPERVISOR_SLOT_B_BOOT_DEVICE"), "{err}");
        let err = load(
            "SUPERVISOR_SLOT_A_DEVICE=/ra\nSUPERVISOR_SLOT_B_DEVICE=/rb\n\
             SUPERVISOR_SLOT_A_BOOT_DEVICE=/ba\nSUPERVISOR_SLOT_B_BOOT_DEVICE=/rb\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("SUPERVISOR_SLOT_B_BOOT_DEVICE")
                && err.contains("SUPERVISOR_SLOT_B_DEVICE"),
            "{err}"
        );
    }

    #[test]
    fn api_bind_takes_addresses_and_interface_names() {
        let got = parse_bind(" 127.0.0.1, tailscale0,[::1] ,").unwrap();
        assert_eq!(
            got,
            vec![
                BindEntry::Addr("127.0.0.1".parse().unwrap()),
                BindEntry::Interface("tailscale0".into()),
                BindEntry::Addr("::1".parse().unwrap()),
            ]
        );
        let err = parse_bind("127.0.0.1,eth0/24").unwrap_err().to_string();
        assert!(
            err.starts_with("SUPERVISOR_API_BIND") && err.contains("eth0/24"),
            "{err}"
        );
        assert!(parse_bind(" , ").is_err());
    }

    #[test]
    fn line_without_equals_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.env");
        std::fs::write(&p, "garbage\n").unwrap();
        assert!(matches!(
            Config::load(Some(&p)),
            Err(ConfigError::File(poshub_envfile::Error::Syntax {
                line: 1,
                ..
            }))
        ));
    }
}
