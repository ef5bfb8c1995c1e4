//! Command-line interface (clap derive) and dispatch. Each command is a few lines calling the
//! library; errors surface as one clear line from `main`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::bundle::{self, CreateOptions, Expect};
use crate::config::{BackendKind, Config};
use crate::install::{self, Progress, VerifyOptions};
use crate::lifecycle::Slots;
use crate::slots::{self, Slot};
use crate::{fsutil, status};

/// poshub-supervisor: keeps the hub alive and installs signed A/B updates.
#[derive(Debug, Parser)]
#[command(
    name = "poshub-supervisor",
    version,
    about,
    after_help = "Settings come from the environment and from --config FILE; a variable set in \
both takes the environment's value (as systemd's Environment= over EnvironmentFile=). poshub \
reads its --config the same way."
)]
pub struct Cli {
    /// Env file (systemd `EnvironmentFile` format) with SUPERVISOR_* variables. A variable also
    /// set in the environment takes the environment's value.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: recovery checks, the hub, the watchdog, the update API.
    Run,
    /// Show slots, the trial, the last update and the recovery checks.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Verify a bundle and install it into the inactive slot, then reboot into a trial.
    Install {
        /// Bundle file, or an https:// (or http://) URL to download it from.
        source: String,
        /// Do not reboot after installing.
        #[arg(long)]
        no_reboot: bool,
        /// Install even if the bundle is older than the running version.
        #[arg(long)]
        allow_downgrade: bool,
    },
    /// Commit the booted slot (end its trial successfully).
    MarkGood,
    /// Mark a slot bad (default: the booted one); the bootloader will not pick it again.
    MarkBad {
        /// Slot to mark bad, A or B (default: the booted slot).
        slot: Option<Slot>,
    },
    /// Make the other slot the default (or fail the running trial) and reboot.
    Rollback {
        /// Roll back even if the other slot is not known good.
        #[arg(long)]
        force: bool,
        /// Only change the default slot; the rollback happens at the next reboot.
        #[arg(long)]
        no_reboot: bool,
    },
    /// Check the settings as `run` would at start, without starting: one line per bad
    /// variable, a warning per key of --config that is no supervisor setting; exit 1 on any error.
    CheckConfig,
    /// Create an ed25519 signing key pair: PREFIX.key (secret) and PREFIX.pub.
    Keygen {
        /// Path and file name prefix of the pair (its directory must exist; existing keys are
        /// never overwritten).
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
    },
    /// Create or verify update bundles.
    #[command(subcommand)]
    Bundle(BundleCmd),
    /// Offsite copies of the hub database: list, upload now, restore.
    #[command(subcommand)]
    Offsite(crate::backup::offsite::cli::OffsiteCmd),
    /// Emulate a power-on of the `file` backend (tests, emulated boots).
    #[command(hide = true)]
    EmulateBoot,
}

/// `bundle` subcommands.
#[derive(Debug, Subcommand)]
pub enum BundleCmd {
    /// Build a signed bundle from a root filesystem image (and optionally the slot boot
    /// partition image). `created` is `SOURCE_DATE_EPOCH` when set, for reproducible bundles.
    Create {
        /// Root filesystem image.
        #[arg(long)]
        image: PathBuf,
        /// Slot boot partition image (kernel, initrd, dtbs): makes a format 2 bundle.
        #[arg(long, value_name = "BOOT")]
        boot_image: Option<PathBuf>,
        /// Secret key that signs the bundle (PREFIX.key from keygen).
        #[arg(long, value_name = "PREFIX.key")]
        key: PathBuf,
        /// Release version of the image (compared with the device's to refuse downgrades).
        #[arg(long)]
        version: String,
        /// Compatible board (`SUPERVISOR_BOARD` on the device), e.g. rpi4.
        #[arg(long)]
        board: String,
        /// Bundle file to write (replaced atomically if it exists).
        #[arg(long)]
        out: PathBuf,
        /// zstd level (1-22).
        #[arg(long, default_value_t = 9)]
        level: i32,
        /// Make a delta bundle (format 3) that installs only on a device whose booted slot
        /// holds this base: the previous release's root image, or its full .poshub bundle.
        /// With --boot-image and a full bundle that carried a boot image, the boot image is
        /// rebuilt from that one, read from the booted slot's boot partition (format 4).
        #[arg(long, value_name = "OLD.poshub|OLD.img")]
        delta_from: Option<PathBuf>,
        /// The old boot partition image the new boot image is rebuilt from (format 4), when
        /// --delta-from is a root image (a full bundle's own boot image is used without it).
        #[arg(long, value_name = "OLD_BOOT")]
        delta_boot_from: Option<PathBuf>,
    },
    /// Run every check an install runs (signature, board, payload checksum, decompression,
    /// image sizes and SHA-256) without writing anything.
    Verify {
        /// Bundle file to check.
        bundle: PathBuf,
        /// Public key (default: `SUPERVISOR_PUBLIC_KEY`).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Board to check against (default: `SUPERVISOR_BOARD`, `rpi4` when unset).
        #[arg(long)]
        board: Option<String>,
        /// For a delta bundle: the base root image (or a slot device) to rebuild the images
        /// from; without it a delta's images are not checked.
        #[arg(long, value_name = "IMAGE")]
        base: Option<PathBuf>,
        /// For a format 4 delta: the base boot partition image (or the booted slot's boot
        /// device) the boot image is rebuilt from.
        #[arg(long, value_name = "BOOT_IMAGE", requires = "base")]
        boot_base: Option<PathBuf>,
    },
}

/// Runs the parsed command.
pub fn dispatch(cli: Cli) -> Result<()> {
    if let Command::CheckConfig = cli.command {
        return check_config(cli.config.as_deref());
    }
    let cfg = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Run => cmd_run(cfg),
        Command::Offsite(cmd) => crate::backup::offsite::cli::run(&cfg, cmd),
        Command::Status { json } => {
            let v = status::full(&cfg, &slots_of(&cfg))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", status::render(&v));
            }
            Ok(())
        }
        Command::Install {
            source,
            no_reboot,
            allow_downgrade,
        } => cmd_install(&cfg, &source, no_reboot, allow_downgrade),
        Command::MarkGood => {
            let slots = slots_of(&cfg);
            let booted = slots.backend.booted()?.slot;
            slots.commit(booted, "marked good by hand")?;
            println!("slot {booted} committed");
            Ok(())
        }
        Command::MarkBad { slot } => cmd_mark_bad(&cfg, slot),
        Command::Rollback { force, no_reboot } => {
            let slots = slots_of(&cfg);
            let next = slots.rollback(force)?;
            println!("slot {next} is the default now");
            if !no_reboot {
                println!("rebooting");
                slots.backend.reboot(false)?;
            }
            Ok(())
        }
        // Answered above, before a bad setting could stop it.
        Command::CheckConfig => bail!("check-config runs before the configuration is loaded"),
        Command::Keygen { out } => {
            let (secret, public) = bundle::keygen(&out)?;
            println!("secret key: {} (keep it off devices)", secret.display());
            println!(
                "public key: {} (SUPERVISOR_PUBLIC_KEY on devices)",
                public.display()
            );
            Ok(())
        }
        Command::Bundle(cmd) => cmd_bundle(&cfg, cmd),
        Command::EmulateBoot => cmd_emulate_boot(&cfg),
    }
}

/// `run`: the service, on a two-thread runtime.
fn cmd_run(cfg: Config) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("unable to start the async runtime")?;
    let r = rt.block_on(crate::run::run(cfg));
    // An install still running in a blocking thread must not hold up the stop: it is
    // abandoned like a power cut, which the next start cleans up.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    r
}

/// `mark-bad [SLOT]`.
fn cmd_mark_bad(cfg: &Config, slot: Option<Slot>) -> Result<()> {
    let slots = slots_of(cfg);
    let booted = slots.backend.booted()?.slot;
    let slot = slot.unwrap_or(booted);
    slots.mark_bad(slot, "marked bad by hand")?;
    println!("slot {slot} marked bad");
    if slot == booted {
        println!("the next boot uses slot {}", slot.other());
    }
    Ok(())
}

/// `bundle create` and `bundle verify`.
fn cmd_bundle(cfg: &Config, cmd: BundleCmd) -> Result<()> {
    match cmd {
        BundleCmd::Create {
            image,
            boot_image,
            key,
            version,
            board,
            out,
            level,
            delta_from,
            delta_boot_from,
        } => cmd_bundle_create(&CreateArgs {
            image: &image,
            boot_image: boot_image.as_deref(),
            key: &key,
            version: &version,
            board: &board,
            out: &out,
            level,
            delta_from: delta_from.as_deref(),
            delta_boot_from: delta_boot_from.as_deref(),
        }),
        BundleCmd::Verify {
            bundle,
            key,
            board,
            base,
            boot_base,
        } => cmd_bundle_verify(
            cfg,
            &bundle,
            (key, board),
            (base.as_deref(), boot_base.as_deref()),
        ),
    }
}

/// The arguments of `bundle create`.
struct CreateArgs<'a> {
    image: &'a Path,
    boot_image: Option<&'a Path>,
    key: &'a Path,
    version: &'a str,
    board: &'a str,
    out: &'a Path,
    level: i32,
    delta_from: Option<&'a Path>,
    delta_boot_from: Option<&'a Path>,
}

/// `bundle create`: `created` is `SOURCE_DATE_EPOCH` when set, for reproducible bundles.
fn cmd_bundle_create(a: &CreateArgs<'_>) -> Result<()> {
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => Some(v),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(v)) => {
            bail!("SOURCE_DATE_EPOCH=\"{}\" is not a Unix time", v.display())
        }
    };
    let m = bundle::create(&CreateOptions {
        image: a.image,
        boot_image: a.boot_image,
        key: a.key,
        version: a.version,
        compatible: a.board,
        out: a.out,
        level: a.level,
        created: bundle::created_time(epoch.as_deref())?,
        delta_from: a.delta_from,
        delta_boot_from: a.delta_boot_from,
    })?;
    println!(
        "{}: format {}, version {} for {}, image {} bytes, payload {} bytes",
        a.out.display(),
        m.format,
        m.version,
        m.compatible,
        m.image_size,
        m.payload_size
    );
    if let Some((size, sha)) = m.boot_image() {
        println!("boot image {size} bytes, sha256 {sha}");
    }
    if let Some((size, sha)) = m.delta_base() {
        println!("delta from base image {size} bytes, sha256 {sha}");
    }
    if let Some((size, sha)) = m.delta_boot_base() {
        println!("boot image rebuilt from boot base image {size} bytes, sha256 {sha}");
    }
    Ok(())
}

/// `bundle verify`: every check an install makes of the bundle itself, on a build machine (no
/// slots: the device-side checks are [`install::verify`]'s). `bases` are `--base` and
/// `--boot-base`.
fn cmd_bundle_verify(
    cfg: &Config,
    bundle: &Path,
    (key, board): (Option<PathBuf>, Option<String>),
    (base, boot_base): (Option<&Path>, Option<&Path>),
) -> Result<()> {
    let key_path = key
        .or(cfg.public_key.clone())
        .context("no public key: pass --key or set SUPERVISOR_PUBLIC_KEY")?;
    let vk = bundle::load_verifying_key(&key_path)?;
    let (board_from, board) = match board {
        Some(b) => ("--board asks for", b),
        None => ("SUPERVISOR_BOARD is", cfg.board.clone()),
    };
    let mut vb = bundle::verify(
        bundle,
        &Expect {
            key: &vk,
            board: &board,
            board_from,
            current_version: None,
            allow_downgrade: true,
            downgrade_flag: bundle::CLI_DOWNGRADE_FLAG,
        },
    )?;
    let delta = vb.manifest.delta_base().is_some();
    match (base, delta) {
        (Some(b), true) => {
            vb.check_base(b, "--base")?;
            match (vb.manifest.delta_boot_base().is_some(), boot_base.is_some()) {
                (true, false) => bail!(
                    "{} rebuilds its boot image from a boot base (format 4): pass --boot-base \
                     BOOT_IMAGE too",
                    bundle.display()
                ),
                (false, true) => bail!(
                    "--boot-base is only for format 4 deltas; {} has no boot base",
                    bundle.display()
                ),
                _ => {}
            }
            vb.check_boot_base(boot_base, "--boot-base")?;
        }
        (Some(_), false) => bail!(
            "--base is only for delta bundles; {} is a full bundle",
            bundle.display()
        ),
        (None, _) => {}
    }
    if !delta || base.is_some() {
        bundle::check_images(&vb)?;
    }
    println!("{}", serde_json::to_string_pretty(&vb.manifest)?);
    if delta && base.is_none() {
        println!("delta: images not rebuilt (pass --base IMAGE to check them)");
    }
    println!(
        "root image: {} bytes, sha256 {}",
        vb.manifest.image_size, vb.manifest.image_sha256
    );
    match vb.manifest.boot_image() {
        Some((size, sha)) => println!("boot image: {size} bytes, sha256 {sha}"),
        None => println!("boot image: none (root only, kernel unchanged)"),
    }
    println!("bundle OK");
    Ok(())
}

/// `emulate-boot`: a power-on of the `file` backend, with a new boot id.
fn cmd_emulate_boot(cfg: &Config) -> Result<()> {
    if cfg.slot_backend != BackendKind::File {
        bail!("emulate-boot only works with SUPERVISOR_SLOT_BACKEND=file");
    }
    let st = slots::file::emulate_boot(&cfg.boot_dir.join("boot-state.json"))?;
    let boot_id = fsutil::random_hex(16)?;
    if let Some(dir) = cfg.boot_id_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    fsutil::atomic_write(&cfg.boot_id_path, boot_id.as_bytes())?;
    println!(
        "booted slot {}{}",
        st.booted,
        if st.tryboot { " (trial)" } else { "" }
    );
    Ok(())
}

/// `check-config`: problems on stdout, one per line; the last line says how it went.
fn check_config(file: Option<&Path>) -> Result<()> {
    let report = crate::config_check::check(file);
    for e in &report.errors {
        println!("{e}");
    }
    for k in &report.unknown {
        println!("warning: {k}: not a poshub-supervisor setting (ignored)");
    }
    let what = file.map_or("the environment".into(), |p| p.display().to_string());
    match report.errors.len() {
        0 => {
            println!("{what}: the supervisor would start with these settings");
            Ok(())
        }
        n => bail!("{what}: {n} setting(s) the supervisor would refuse at start"),
    }
}

fn slots_of(cfg: &Config) -> Slots {
    Slots::new(cfg, slots::backend_from_config(cfg))
}

fn cmd_install(cfg: &Config, source: &str, no_reboot: bool, allow_downgrade: bool) -> Result<()> {
    let slots = slots_of(cfg);
    let progress = Progress::new(&cfg.state_dir());
    let (path, downloaded) = if source.starts_with("http://") || source.starts_with("https://") {
        let dir = cfg.state_dir().join("incoming");
        std::fs::create_dir_all(&dir)?;
        let partial = dir.join(format!("download-{}.partial", fsutil::random_hex(8)?));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let r = rt.block_on(async {
            let client = crate::download::client(cfg.ca_file.as_deref())?;
            crate::download::download(&client, source, &partial, cfg.max_bundle_bytes).await
        });
        match r {
            Ok(n) => println!("downloaded {n} bytes from {source}"),
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e.context(format!("unable to download {source}")));
            }
        }
        (partial, true)
    } else {
        (PathBuf::from(source), false)
    };
    let r = install::install(
        cfg,
        &slots,
        Path::new(&path),
        VerifyOptions {
            allow_downgrade,
            ..VerifyOptions::default()
        },
        &progress,
    );
    if downloaded {
        let _ = std::fs::remove_file(&path);
    }
    let o = r?;
    println!(
        "version {} installed into slot {}; armed for one trial boot",
        o.manifest.version, o.target
    );
    if no_reboot {
        println!("not rebooting (--no-reboot)");
    } else {
        println!("rebooting into the trial");
        slots.backend.reboot(true)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    fn without_help(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            let generated = matches!(
                a.get_action(),
                clap::ArgAction::Help | clap::ArgAction::Version
            );
            if !generated && a.get_help().is_none() {
                missing.push(format!("{path} {}", a.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            without_help(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }

    /// Issue 14.7: `--help` explains every argument of every command.
    #[test]
    fn every_argument_has_help_text() {
        let mut missing = Vec::new();
        without_help(&Cli::command(), "poshub-supervisor", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }
}
