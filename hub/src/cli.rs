//! The `poshub` command line (`poshub --help`; its HTTP calls: docs/http-api.md).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::auth::{self, Claims, HubKey, Role};
use crate::config::{Config, Vars};
use crate::ops;

const AFTER_HELP: &str = "Examples:
  poshub serve --config /data/poshub/poshub.env   run the hub (what the appliance does)
  poshub serve --demo                             first look: no tokens, sample floor plan
  poshub check-config --config poshub.env         would the hub start with these settings?
  poshub stats                                    is the hub up, who is connected, what is queued
  poshub token issue --terminal till-1 --role cashier
  poshub backup --out /media/usb/hub.redb         copy the data while the hub runs
  poshub backups list                             the offsite copies of this box
  poshub restore --from-offsite [--at TIME]       bring one back (the hub stopped)
  poshub drain                                    send what waits for Odoo now (Odoo is back)
  poshub dead-letters --requeue                   retry what Odoo refused, after fixing it
  poshub registers add \"Terrace\"                  create a register, pushed to Odoo

Commands that act on a running hub call its HTTP API on 127.0.0.1:HUB_HTTP_PORT with the admin
token (HUB_ADMIN_TOKEN, or the admin-token file beside the database). Give them the same
--config as the hub so they find it.

Settings come from the environment and from --config FILE; a variable set in both takes the
environment's value (as systemd's Environment= over EnvironmentFile=). poshub-supervisor
reads its --config the same way.";

#[derive(Parser)]
#[command(
    name = "poshub",
    version,
    about = "POS hub: keeps the store's terminals in sync over the LAN, online or not",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args, Clone, Default)]
struct ConfigArg {
    /// Env-file with the hub's settings (systemd `EnvironmentFile` format). A variable also set
    /// in the environment takes the environment's value (as systemd's Environment= over
    /// `EnvironmentFile=`; poshub-supervisor reads its --config the same way).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub (the default when no command is given).
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// First look: open auth (no tokens) and a sample floor plan.
        #[arg(long)]
        demo: bool,
    },
    /// Check the settings as `serve` would at start, without starting: one line per bad
    /// variable, a warning per key of --config that is no hub setting; exit 2 on any error.
    CheckConfig {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Terminal tokens signed by this hub's own key.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Summary of the running hub: terminals, orders, leases, upstream queue.
    Stats {
        #[command(flatten)]
        config: ConfigArg,
        /// Print the raw /health and /status JSON.
        #[arg(long)]
        json: bool,
    },
    /// The newest events of the running hub, one per line.
    Events {
        #[command(flatten)]
        config: ConfigArg,
        /// How many events to show (1-1000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
    },
    /// Release every order lease on the running hub (terminals are told).
    ResetLeases {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Delete all orders, events, tables and locks on the running hub. Terminals resync.
    ResetData {
        #[command(flatten)]
        config: ConfigArg,
        /// Required: confirms that all data goes.
        #[arg(long)]
        yes: bool,
    },
    /// Check the database's integrity (a consistent copy if the hub is running).
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Check this redb file instead of `HUB_DB_PATH`.
        #[arg(long, value_name = "FILE")]
        db: Option<PathBuf>,
    },
    /// Write a consistent copy of the database, also while the hub runs.
    Backup {
        #[command(flatten)]
        config: ConfigArg,
        /// Where to write the copy (e.g. a USB stick); it is checked after writing.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Offsite copies of the database (run by poshub-supervisor, which uploads them).
    Backups {
        #[command(subcommand)]
        command: BackupsCommand,
    },
    /// Replace the database with an offsite copy: the newest, or the newest taken at or before
    /// --at. Stop the hub first (systemctl stop poshub-supervisor); the database it replaces
    /// is moved to replaced/ beside it.
    Restore {
        #[command(flatten)]
        config: ConfigArg,
        /// Restore from offsite storage (`BACKUP_S3_*` in poshub.env).
        #[arg(long, required = true)]
        from_offsite: bool,
        /// UTC time, e.g. 2026-12-05T13:45:00Z.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// Forward pending events upstream now (ignoring backoff), through the running hub.
    Drain {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List events the forwarder gave up on, or put them back in the queue.
    DeadLetters {
        #[command(flatten)]
        config: ConfigArg,
        /// Requeue every dead letter (and every register push in `sync_error`).
        #[arg(long)]
        requeue: bool,
    },
    /// Registers (Odoo pos.config) created from the hub.
    Registers {
        #[command(subcommand)]
        command: RegistersCommand,
    },
}

#[derive(Subcommand)]
enum BackupsCommand {
    /// List this box's offsite copies, newest first.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RegistersCommand {
    /// Create a register; the hub pushes it to Odoo as a clone of the first active one.
    Add {
        #[command(flatten)]
        config: ConfigArg,
        /// Name of the new register.
        name: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a token for one terminal; give it to the terminal's AUTH message.
    Issue {
        #[command(flatten)]
        config: ConfigArg,
        /// Terminal id the token is for (the JWT `sub`).
        #[arg(long, value_name = "ID")]
        terminal: String,
        /// cashier, waiter, manager or admin (managers and admins may force table locks).
        #[arg(long, value_name = "ROLE", default_value = "cashier")]
        role: String,
        /// Lifetime, e.g. 30d, 12h, 90m (default 30d).
        #[arg(long, value_name = "DURATION", default_value = "30d")]
        ttl: String,
        /// Name shown to other terminals (defaults to the terminal id).
        #[arg(long)]
        name: Option<String>,
        /// User id to embed (number or text).
        #[arg(long)]
        uid: Option<String>,
    },
}

/// Prints one answer line. Shaped for `.and_then(say)` on the `Result<String, String>` the
/// ops return (hence the owned `String` and the `Result` that is always `Ok`).
#[allow(clippy::unnecessary_wraps, clippy::needless_pass_by_value)]
fn say(line: String) -> Result<(), String> {
    println!("{line}");
    Ok(())
}

fn load_vars(arg: &ConfigArg) -> Result<Vars, String> {
    let vars = Vars::from_env();
    match &arg.config {
        Some(path) => vars.with_env_file(path).map_err(|e| e.to_string()),
        None => Ok(vars),
    }
}

fn load_config(arg: &ConfigArg, demo: bool) -> Result<Config, String> {
    Config::from_vars(&load_vars(arg)?, demo).map_err(|e| e.to_string())
}

/// `check-config`: problems on stdout, one per line; the last line says how it went.
fn check_config(arg: &ConfigArg) -> Result<(), String> {
    let report = crate::config_check::check(&load_vars(arg)?);
    for e in &report.errors {
        println!("{e}");
    }
    for k in &report.unknown {
        println!("warning: {k}: not a poshub setting (the hub ignores it)");
    }
    let what = match &arg.config {
        Some(p) => p.display().to_string(),
        None => "the environment".into(),
    };
    match report.errors.len() {
        0 => say(format!("{what}: the hub would start with these settings")),
        n => Err(format!(
            "{what}: {n} setting(s) the hub would refuse at start"
        )),
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve {
        config: ConfigArg::default(),
        demo: false,
    });
    let result =
        match command {
            Command::Serve { config, demo } => serve(&config, demo),
            Command::CheckConfig { config } => check_config(&config),
            Command::Token {
                command:
                    TokenCommand::Issue {
                        config,
                        terminal,
                        role,
                        ttl,
                        name,
                        uid,
                    },
            } => token_issue(&config, &terminal, &role, &ttl, name, uid),
            Command::Drain { config } => {
                load_config(&config, false).and_then(|c| crate::upstream::client::drain(&c))
            }
            Command::DeadLetters { config, requeue } => load_config(&config, false)
                .and_then(|c| crate::upstream::client::dead_letters(&c, requeue)),
            Command::Registers {
                command: RegistersCommand::Add { config, name },
            } => load_config(&config, false)
                .and_then(|c| crate::upstream::client::registers_add(&c, &name)),
            Command::Stats { config, json } => load_config(&config, false).and_then(|c| {
                if json {
                    let h = ops::hub_call(&c, "GET", "/health", false)?;
                    let s = ops::hub_call(&c, "GET", "/status", false)?;
                    say(serde_json::json!({"health": h, "status": s}).to_string())
                } else {
                    ops::stats(&c).and_then(say)
                }
            }),
            Command::Events { config, limit } => load_config(&config, false)
                .and_then(|c| ops::events(&c, limit.into()).and_then(say)),
            Command::ResetLeases { config } => load_config(&config, false).and_then(|c| {
                let v = ops::hub_call(&c, "POST", "/admin/reset-leases", true)?;
                say(format!("released {} lease(s)", v["leasesReset"]))
            }),
            Command::ResetData { config, yes } => {
                if yes {
                    load_config(&config, false).and_then(|c| {
                        ops::hub_call(&c, "POST", "/reset", true)?;
                        say("all data deleted; terminals will resync".into())
                    })
                } else {
                    Err(
                    "reset-data deletes every order and event on this hub; run again with --yes"
                        .into(),
                )
                }
            }
            Command::Check { config, db } => load_config(&config, false)
                .and_then(|c| ops::check(&c, db.as_deref()).and_then(say)),
            Command::Backups {
                command: BackupsCommand::List { config, json },
            } => crate::backups::offsite_cli(
                config.config.as_deref(),
                &["list"],
                json.then_some("--json"),
            ),
            Command::Restore { config, at, .. } => restore_from_offsite(&config, at.as_deref()),
            Command::Backup { config, out } => {
                load_config(&config, false).and_then(|c| ops::backup(&c, &out).and_then(say))
            }
        };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("poshub: {msg}");
            ExitCode::from(2)
        }
    }
}

/// `poshub restore --from-offsite [--at TIME]`: the supervisor's offsite restore into this
/// hub's database.
fn restore_from_offsite(config: &ConfigArg, at: Option<&str>) -> Result<(), String> {
    let c = load_config(config, false)?;
    let db = c.db_path.to_string_lossy().into_owned();
    let mut args = vec!["restore", "--db", db.as_str()];
    if let Some(t) = at {
        args.extend(["--at", t]);
    }
    crate::backups::offsite_cli(config.config.as_deref(), &args, None)
}

fn serve(arg: &ConfigArg, demo: bool) -> Result<(), String> {
    let cfg = load_config(arg, demo)?;
    limit_malloc_arenas();
    crate::logging::init(&cfg.log_level, cfg.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("poshub")
        .build()
        .map_err(|e| format!("unable to start the runtime: {e}"))?;
    let result = rt.block_on(crate::server::run(cfg));
    // A blocking task still running (a read stuck on a failing disk, the engine past the stop
    // deadline) must not keep the process alive after the stop.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    result.map_err(|e| format!("{e:#}"))
}

/// glibc gives every thread that allocates its own malloc arena; with a handful of runtime
/// threads that multiplies peak memory on a 1-2 GB Pi for nothing. (musl builds have no arenas.)
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator tuning; called before any runtime thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn token_issue(
    arg: &ConfigArg,
    terminal: &str,
    role: &str,
    ttl: &str,
    name: Option<String>,
    uid: Option<String>,
) -> Result<(), String> {
    let cfg = load_config(arg, false)?;
    let role = Role::parse(role)
        .ok_or_else(|| format!("--role: {role:?} is not one of cashier, waiter, manager, admin"))?;
    let secs = auth::parse_ttl(ttl)
        .ok_or_else(|| format!("--ttl: {ttl:?} is not a duration like 30d, 12h or 90m"))?;
    if terminal.is_empty() || terminal.len() > 128 {
        return Err("--terminal: must be 1-128 characters".into());
    }
    let key = HubKey::load_or_create(&cfg.data_dir())
        .map_err(|e| format!("unable to load the hub signing key: {e}"))?;
    let now = auth::now_secs();
    let uid = uid.map(|u| {
        u.parse::<i64>()
            .map(serde_json::Value::from)
            .unwrap_or(serde_json::Value::String(u))
    });
    let claims = Claims {
        sub: terminal.to_string(),
        aud: auth::AUDIENCE.into(),
        tenant_id: cfg.tenant_id.clone(),
        store_id: cfg.store_id.clone(),
        exp: now + secs,
        nbf: Some(now.saturating_sub(60)),
        iat: Some(now),
        uid,
        role: Some(role.as_str().into()),
        name,
    };
    let token = key
        .issue(&claims)
        .map_err(|e| format!("unable to sign the token: {e}"))?;
    println!("{token}");
    Ok(())
}
