//! The `poshub` command line (SPEC §4).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::auth::{self, Claims, HubKey, Role};
use crate::config::{Config, Vars};

#[derive(Parser)]
#[command(
    name = "poshub",
    version,
    about = "POS hub: keeps the store's terminals in sync over the LAN, online or not"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args, Clone, Default)]
struct ConfigArg {
    /// Env-file with HUB_* settings (systemd EnvironmentFile format); the environment wins over it.
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
    /// Terminal tokens signed by this hub's own key.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
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
        /// Requeue every dead letter (and every register push in sync_error).
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

fn load_config(arg: &ConfigArg, demo: bool) -> Result<Config, String> {
    let mut vars = Vars::from_env();
    if let Some(path) = &arg.config {
        vars = vars.with_env_file(path).map_err(|e| e.to_string())?;
    }
    Config::from_vars(&vars, demo).map_err(|e| e.to_string())
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve {
        config: ConfigArg::default(),
        demo: false,
    });
    let result = match command {
        Command::Serve { config, demo } => serve(&config, demo),
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("poshub: {msg}");
            ExitCode::from(2)
        }
    }
}

fn serve(arg: &ConfigArg, demo: bool) -> Result<(), String> {
    let cfg = load_config(arg, demo)?;
    crate::logging::init(&cfg.log_level, cfg.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("poshub")
        .build()
        .map_err(|e| format!("unable to start the runtime: {e}"))?;
    rt.block_on(crate::server::run(cfg))
        .map_err(|e| format!("{e:#}"))
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
