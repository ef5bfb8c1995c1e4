//! Shared test rig: a temp "device" with a data dir, a boot dir for the `file` backend, slot
//! images as plain files, a signing key, the fake hub, and helpers to run the real supervisor
//! binary against it. Every wait is bounded.

#![allow(dead_code)]
// Test helpers: fixture byte patterns truncate on purpose, and request and env-file text is
// built with `format!` for readability.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::format_push_string,
    clippy::format_collect
)]

pub mod client;
pub mod realhub;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const SUP: &str = env!("CARGO_BIN_EXE_poshub-supervisor");
pub const FAKE_HUB: &str = env!("CARGO_BIN_EXE_poshub-fake-hub");

/// A child process that is killed (SIGKILL) and reaped when dropped. Derefs to the `Child`.
pub struct Proc(pub Child);

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Makes a process the test starts die (SIGKILL) when the thread that started it ends, so
/// nothing outlives a test binary that is killed midway.
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl only sets a flag on the new process; it is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub hub_port: u16,
    pub extra: Vec<(String, String)>,
}

/// A free loopback port (bind 0, read, release).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 50 ms until it is true or `timeout` passes.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

impl Rig {
    /// A fresh device: slot A holds the factory image, slot B garbage; keys generated.
    pub fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        for d in ["data", "boot", "hub", "keys", "proc"] {
            std::fs::create_dir_all(p.join(d)).unwrap();
        }
        std::fs::write(p.join("slot-a.img"), image(b'A', 300_000)).unwrap();
        std::fs::write(p.join("slot-b.img"), vec![0u8; 4096]).unwrap();
        std::fs::write(p.join("version"), "1.0.0\n").unwrap();
        std::fs::write(p.join("proc/boot_id"), "boot-0\n").unwrap();
        let rig = Rig {
            dir,
            hub_port: free_port(),
            extra: Vec::new(),
        };
        rig.write_env();
        let out = rig.sup(&[
            "keygen",
            "--out",
            rig.path("keys/release").to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        rig
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Sets a variable in the env file.
    pub fn set(&mut self, k: &str, v: &str) {
        self.extra.retain(|(x, _)| x != k);
        self.extra.push((k.into(), v.into()));
        self.write_env();
    }

    pub fn write_env(&self) {
        let mut s = String::from("# test device\n");
        let vars = [
            (
                "SUPERVISOR_DATA_DIR",
                self.path("data").display().to_string(),
            ),
            ("SUPERVISOR_HUB_BIN", FAKE_HUB.to_string()),
            ("SUPERVISOR_HUB_ARGS", format!("--port {}", self.hub_port)),
            (
                "SUPERVISOR_HUB_HEALTH_URL",
                format!("http://127.0.0.1:{}/health", self.hub_port),
            ),
            ("SUPERVISOR_SLOT_BACKEND", "file".into()),
            (
                "SUPERVISOR_BOOT_DIR",
                self.path("boot").display().to_string(),
            ),
            (
                "SUPERVISOR_SLOT_A_DEVICE",
                self.path("slot-a.img").display().to_string(),
            ),
            (
                "SUPERVISOR_SLOT_B_DEVICE",
                self.path("slot-b.img").display().to_string(),
            ),
            (
                "SUPERVISOR_PUBLIC_KEY",
                self.path("keys/release.pub").display().to_string(),
            ),
            ("SUPERVISOR_BOARD", "rpi4".into()),
            (
                "SUPERVISOR_OS_VERSION_FILE",
                self.path("version").display().to_string(),
            ),
            (
                "SUPERVISOR_BOOT_ID_FILE",
                self.path("proc/boot_id").display().to_string(),
            ),
            ("SUPERVISOR_API_PORT", "0".into()),
            ("SUPERVISOR_API_BIND", "127.0.0.1".into()),
            ("SUPERVISOR_API_TOKEN", "test-token".into()),
            ("SUPERVISOR_HEALTH_INTERVAL_MS", "100".into()),
            ("SUPERVISOR_HEALTH_TIMEOUT_MS", "300".into()),
            ("SUPERVISOR_HEALTH_WINDOW_S", "1".into()),
            ("SUPERVISOR_TRIAL_TIMEOUT_S", "4".into()),
            ("SUPERVISOR_RESTART_BACKOFF_MIN_MS", "100".into()),
            ("SUPERVISOR_RESTART_BACKOFF_MAX_MS", "200".into()),
            ("SUPERVISOR_MIN_FREE_MB", "1".into()),
            ("SUPERVISOR_CLOCK_SET", "false".into()),
        ];
        for (k, v) in vars {
            if !self.extra.iter().any(|(x, _)| x == k) {
                s.push_str(&format!("{k}={v}\n"));
            }
        }
        for (k, v) in &self.extra {
            s.push_str(&format!("{k}={v}\n"));
        }
        std::fs::write(self.path("supervisor.env"), s).unwrap();
    }

    /// Gives the slots their own boot partitions (`boot-a.img` holds the factory kernel).
    pub fn with_boot_devices(&mut self) {
        std::fs::write(self.path("boot-a.img"), image(b'K', 50_000)).unwrap();
        std::fs::write(self.path("boot-b.img"), vec![0u8; 4096]).unwrap();
        let (a, b) = (self.path("boot-a.img"), self.path("boot-b.img"));
        self.set("SUPERVISOR_SLOT_A_BOOT_DEVICE", a.to_str().unwrap());
        self.set("SUPERVISOR_SLOT_B_BOOT_DEVICE", b.to_str().unwrap());
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(SUP);
        c.arg("--config")
            .arg(self.path("supervisor.env"))
            .args(args)
            .env("FAKE_HUB_DIR", self.path("hub"))
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("INVOCATION_ID")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null());
        c
    }

    /// Runs a supervisor command to completion.
    pub fn sup(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Starts a supervisor command in the background (its stderr goes to `log-<name>`). The
    /// supervisor is killed and reaped when the returned guard drops (a failing test included)
    /// and dies with the test thread that started it; its hub follows it (the supervisor starts
    /// the hub with `PR_SET_PDEATHSIG`).
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let log = std::fs::File::create(self.path(&format!("log-{}", args[0]))).unwrap();
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        die_with_parent(&mut c);
        Proc(c.stdout(Stdio::null()).stderr(log).spawn().unwrap())
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("log-{name}"))).unwrap_or_default()
    }

    /// `status --json`.
    pub fn status(&self) -> serde_json::Value {
        let out = self.sup(&["status", "--json"]);
        assert!(out.status.success(), "status failed: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Emulated power-on of the file backend (new boot id).
    pub fn power_on(&self) -> String {
        let out = self.sup(&["emulate-boot"]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn boot_state(&self) -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(self.path("boot/boot-state.json")).unwrap_or_else(|_| b"{}".to_vec()),
        )
        .unwrap()
    }

    /// Builds a bundle of `image` signed with the rig's key.
    pub fn bundle(&self, name: &str, version: &str, board: &str, image: &[u8]) -> PathBuf {
        self.bundle_with_boot(name, version, board, image, None)
    }

    /// Builds a bundle of a root image and, if given, a slot boot partition image.
    pub fn bundle_with_boot(
        &self,
        name: &str,
        version: &str,
        board: &str,
        image: &[u8],
        boot: Option<&[u8]>,
    ) -> PathBuf {
        self.bundle_from(name, version, image, boot, board, None)
    }

    /// Builds a delta bundle (format 3) that rebuilds `image` (and `boot`) from `base`.
    pub fn delta_bundle(
        &self,
        name: &str,
        version: &str,
        image: &[u8],
        boot: Option<&[u8]>,
        base: &[u8],
    ) -> PathBuf {
        self.bundle_from(name, version, image, boot, "rpi4", Some((base, None)))
    }

    /// Builds a delta bundle (format 4) that rebuilds `image` from `base` and `boot` from
    /// `boot_base` (`--delta-boot-from`).
    pub fn delta_bundle_with_boot_base(
        &self,
        name: &str,
        version: &str,
        (image, boot): (&[u8], &[u8]),
        (base, boot_base): (&[u8], &[u8]),
    ) -> PathBuf {
        let delta = Some((base, Some(boot_base)));
        self.bundle_from(name, version, image, Some(boot), "rpi4", delta)
    }

    /// `delta`: the root base and the optional boot base of a delta bundle.
    fn bundle_from(
        &self,
        name: &str,
        version: &str,
        image: &[u8],
        boot: Option<&[u8]>,
        board: &str,
        delta: Option<(&[u8], Option<&[u8]>)>,
    ) -> PathBuf {
        let img = self.path(&format!("{name}.img"));
        std::fs::write(&img, image).unwrap();
        let out_path = self.path(&format!("{name}.poshub"));
        let key = self.path("keys/release.key");
        let mut args: Vec<String> = [
            "bundle",
            "create",
            "--image",
            img.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--version",
            version,
            "--board",
            board,
            "--out",
            out_path.to_str().unwrap(),
            "--level",
            "3",
        ]
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
        if let Some(boot) = boot {
            let bimg = self.path(&format!("{name}.boot.img"));
            std::fs::write(&bimg, boot).unwrap();
            args.push("--boot-image".into());
            args.push(bimg.display().to_string());
        }
        let bases = delta.map(|(b, boot)| {
            [
                ("--delta-from", "base", Some(b)),
                ("--delta-boot-from", "boot-base", boot),
            ]
        });
        for (flag, what, bytes) in bases.into_iter().flatten() {
            let Some(bytes) = bytes else { continue };
            let path = self.path(&format!("{name}.{what}.img"));
            std::fs::write(&path, bytes).unwrap();
            args.push(flag.into());
            args.push(path.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.sup(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        out_path
    }

    pub fn hub_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.path("hub/pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn hub_file(&self, name: &str, present: bool) {
        let p = self.path(&format!("hub/{name}"));
        if present {
            std::fs::write(p, "1").unwrap();
        } else {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A recognisable image of `len` bytes.
pub fn image(tag: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| tag.wrapping_add((i % 251) as u8))
        .collect()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Sends a signal to a child and waits (bounded) for it to exit.
pub fn stop(child: &mut Child, sig: i32) -> Option<std::process::ExitStatus> {
    unsafe { libc::kill(child.id() as i32, sig) };
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait().ok()
}

/// Waits (bounded) for a child to exit by itself.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

pub fn slot_state(status: &serde_json::Value, slot: &str) -> String {
    status["slots"][slot]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

pub fn file_sha(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// zstd-compresses `bytes` (level 3), as `bundle create` does.
pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

impl Rig {
    /// A bundle signed with the rig's key whose manifest and payload the test chooses (to make
    /// bundles that `bundle create` never would). `manifest` gets `payload_size` and
    /// `payload_sha256` of `payload`, so the signature and payload checksum are right.
    pub fn signed_bundle(
        &self,
        name: &str,
        mut manifest: serde_json::Value,
        payload: &[u8],
    ) -> PathBuf {
        manifest["payload_size"] = payload.len().into();
        manifest["payload_sha256"] = sha256_hex(payload).into();
        let path = self.path(&format!("{name}.poshub"));
        self.write_signed_bundle(&path, &manifest, payload);
        path
    }

    /// Writes a bundle of `manifest` (as given) and `payload` to `path`, signed with the rig's
    /// key.
    pub fn write_signed_bundle(&self, path: &Path, manifest: &serde_json::Value, payload: &[u8]) {
        use ed25519_dalek::Signer;
        let seed_hex = std::fs::read_to_string(self.path("keys/release.key")).unwrap();
        let seed: Vec<u8> = (0..64)
            .step_by(2)
            .map(|i| u8::from_str_radix(&seed_hex.trim()[i..i + 2], 16).unwrap())
            .collect();
        let sk = ed25519_dalek::SigningKey::from_bytes(&seed.try_into().unwrap());
        let mjson = serde_json::to_vec(manifest).unwrap();
        let mut signed = b"poshub-bundle-v1\0".to_vec();
        signed.extend_from_slice(&mjson);
        let sig = sk.sign(&signed);
        let mut out = b"POSHUBB1".to_vec();
        out.extend_from_slice(&(mjson.len() as u32).to_le_bytes());
        out.extend_from_slice(&mjson);
        out.extend_from_slice(&sig.to_bytes());
        out.extend_from_slice(payload);
        std::fs::write(path, out).unwrap();
    }
}

/// A format 1 manifest for a root image of `image` (payload fields are filled in by
/// [`Rig::signed_bundle`]).
pub fn manifest_for(version: &str, image: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "format": 1,
        "version": version,
        "compatible": "rpi4",
        "created": 1_700_000_000u64,
        "image_size": image.len(),
        "image_sha256": sha256_hex(image),
    })
}
