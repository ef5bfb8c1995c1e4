//! Signed update bundles (`.poshub`): key generation, creation ([`create`]) and verification.
//! Layout (all integers little-endian; see `docs/updates.md` §2):
//!
//! ```text
//! "POSHUBB1" | u32 manifest length | manifest JSON | 64-byte ed25519 signature | zstd payload
//! ```
//!
//! The signature covers `"poshub-bundle-v1\0" || manifest JSON`; the manifest carries the size and
//! SHA-256 of both the compressed payload and the uncompressed root image, so a bundle is fully
//! verified (signature, board, version, payload checksum, length) before a byte goes to a slot.
//! Format 2 adds an optional slot boot partition image: the decompressed payload is the root image
//! immediately followed by the boot image, whose size and SHA-256 are also in the manifest.
//! Format 3 is a delta ([`delta`]): the payload rebuilds those same images from a base image
//! (the booted slot's content), named by its size and SHA-256 in the manifest. Format 4 is a
//! delta with a second base, the booted slot's boot partition, that the boot image is rebuilt
//! from too ([`base`] checks both against the device).

mod base;
mod create;
pub mod delta;
#[cfg(test)]
mod delta_tests;
#[cfg(test)]
mod tests;

pub use create::{create, created_time, CreateOptions};

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fsutil;

/// First bytes of every bundle.
pub const MAGIC: &[u8; 8] = b"POSHUBB1";
/// Domain separation prefix of the signed message.
pub const SIGN_CONTEXT: &[u8] = b"poshub-bundle-v1\0";
/// Largest manifest accepted (it is a few hundred bytes in practice).
pub const MAX_MANIFEST: u32 = 64 * 1024;
const HEADER_LEN: usize = 8 + 4;
const HEADER: u64 = HEADER_LEN as u64;
/// Manifest format of a root-only bundle.
pub const FORMAT_ROOT: u32 = 1;
/// Manifest format of a bundle that also carries the slot boot partition image.
pub const FORMAT_BOOT: u32 = 2;
/// Manifest format of a delta bundle: the images are rebuilt from a named base image.
pub const FORMAT_DELTA: u32 = 3;
/// Manifest format of a delta bundle that also copies from the booted slot's boot partition
/// (a supervisor that reads only formats 1 to 3 refuses it before writing anything).
pub const FORMAT_DELTA_BOOT: u32 = 4;
/// Every manifest format this supervisor installs, oldest first: `GET /slots` reports it as
/// `bundleFormats` so fleet tooling sends a box only a delta whose format it reads.
pub const FORMATS: [u32; 4] = [FORMAT_ROOT, FORMAT_BOOT, FORMAT_DELTA, FORMAT_DELTA_BOOT];
/// First four bytes of a zstd frame (`bundle create` writes exactly one).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// How the command line allows a downgrade (the refusal's hint).
pub const CLI_DOWNGRADE_FLAG: &str = "--allow-downgrade";
/// How the update API allows a downgrade (the refusal's hint).
pub const API_DOWNGRADE_FLAG: &str = "?allow_downgrade=1 on POST /update";
/// [`Expect::board_from`] on a device: the board is `SUPERVISOR_BOARD`.
pub const BOARD_OF_DEVICE: &str = "this device is";

/// What a bundle says about itself; signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub version: String,
    pub compatible: String,
    pub created: u64,
    pub image_size: u64,
    pub image_sha256: String,
    pub payload_size: u64,
    pub payload_sha256: String,
    /// Format 2: size of the slot boot partition image that follows the root image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_image_size: Option<u64>,
    /// Format 2: SHA-256 (lowercase hex) of the slot boot partition image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_image_sha256: Option<String>,
    /// Format 3: size of the base image (the start of the booted slot) the delta applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_base_size: Option<u64>,
    /// Format 3: SHA-256 (lowercase hex) of the base image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_base_sha256: Option<String>,
    /// Format 3, informational: the release version of the base image (fleet tooling picks a
    /// delta when a box runs it; the device checks the SHA-256, not this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_base_version: Option<String>,
    /// Format 4: size of the boot base image (the start of the booted slot's boot partition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_boot_base_size: Option<u64>,
    /// Format 4: SHA-256 (lowercase hex) of the boot base image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_boot_base_sha256: Option<String>,
}

impl Manifest {
    /// The boot image's size and SHA-256, if the bundle carries one (checked by
    /// [`read_manifest`]: present exactly when `format` is 2).
    pub fn boot_image(&self) -> Option<(u64, &str)> {
        match (self.boot_image_size, self.boot_image_sha256.as_deref()) {
            (Some(n), Some(h)) => Some((n, h)),
            _ => None,
        }
    }

    /// The base image's size and SHA-256 of a delta bundle (format 3), checked like
    /// [`Manifest::boot_image`].
    pub fn delta_base(&self) -> Option<(u64, &str)> {
        match (self.delta_base_size, self.delta_base_sha256.as_deref()) {
            (Some(n), Some(h)) => Some((n, h)),
            _ => None,
        }
    }

    /// The boot base image's size and SHA-256 of a format 4 delta, checked like
    /// [`Manifest::boot_image`].
    pub fn delta_boot_base(&self) -> Option<(u64, &str)> {
        match (
            self.delta_boot_base_size,
            self.delta_boot_base_sha256.as_deref(),
        ) {
            (Some(n), Some(h)) => Some((n, h)),
            _ => None,
        }
    }

    /// Checks the format and the fields it requires; returns why not.
    fn check(&self) -> Result<(), String> {
        if !is_sha256_hex(&self.image_sha256) || !is_sha256_hex(&self.payload_sha256) {
            return Err("image_sha256/payload_sha256 must be 64 lowercase hex digits".into());
        }
        let has_boot = self.boot_image_size.is_some() || self.boot_image_sha256.is_some();
        let has_base = self.delta_base_size.is_some() || self.delta_base_sha256.is_some();
        let has_boot_base =
            self.delta_boot_base_size.is_some() || self.delta_boot_base_sha256.is_some();
        let boot = |f| {
            check_pair(
                f,
                "boot_image",
                self.boot_image_size,
                self.boot_image_sha256.as_deref(),
            )
        };
        let base = |f| {
            check_pair(
                f,
                "delta_base",
                self.delta_base_size,
                self.delta_base_sha256.as_deref(),
            )
        };
        match self.format {
            FORMAT_ROOT | FORMAT_BOOT | FORMAT_DELTA if has_boot_base => Err(format!(
                "format {} cannot carry delta_boot_base_* fields",
                self.format
            )),
            FORMAT_ROOT | FORMAT_BOOT if has_base => {
                Err(format!("format {} cannot carry delta_base_* fields", self.format))
            }
            FORMAT_ROOT if has_boot => Err("format 1 cannot carry boot_image_* fields".into()),
            FORMAT_ROOT => Ok(()),
            FORMAT_BOOT => boot(FORMAT_BOOT),
            FORMAT_DELTA if has_boot => base(FORMAT_DELTA).and_then(|()| boot(FORMAT_DELTA)),
            FORMAT_DELTA => base(FORMAT_DELTA),
            FORMAT_DELTA_BOOT => {
                base(FORMAT_DELTA_BOOT)?;
                boot(FORMAT_DELTA_BOOT)?;
                check_pair(
                    FORMAT_DELTA_BOOT,
                    "delta_boot_base",
                    self.delta_boot_base_size,
                    self.delta_boot_base_sha256.as_deref(),
                )
            }
            other => Err(format!(
                "unknown format {other} (this supervisor reads formats {} to {}): update the supervisor first",
                FORMATS[0],
                FORMATS[FORMATS.len() - 1]
            )),
        }
    }
}

/// `<what>_size` and `<what>_sha256`, both required by `format`.
fn check_pair(format: u32, what: &str, size: Option<u64>, sha: Option<&str>) -> Result<(), String> {
    let Some(sha) = sha else {
        return Err(format!("format {format} requires {what}_sha256"));
    };
    if size.is_none() {
        return Err(format!("format {format} requires {what}_size"));
    }
    if !is_sha256_hex(sha) {
        return Err(format!("{what}_sha256 must be 64 lowercase hex digits"));
    }
    Ok(())
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Why a bundle or key was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: io::Error },
    #[error("not a poshub bundle (bad magic)")]
    NotABundle,
    #[error("bundle is truncated: {0}")]
    Truncated(String),
    #[error("bundle manifest is invalid: {0}")]
    BadManifest(String),
    #[error(
        "bundle has {0} unexpected bytes after its payload (appended to, or damaged in transfer)"
    )]
    TrailingBytes(u64),
    #[error("bundle signature does not verify with the configured public key (unsigned, tampered or signed with another key)")]
    BadSignature,
    #[error("bundle is for board {bundle:?}, but {from} {expected:?}")]
    WrongBoard {
        bundle: String,
        expected: String,
        from: String,
    },
    #[error("bundle version {bundle} is older than the running {current}; use {flag} to install it anyway")]
    Downgrade {
        bundle: String,
        current: String,
        flag: String,
    },
    #[error("bundle payload does not match its signed checksum (tampered or corrupted)")]
    PayloadMismatch,
    #[error("bundle payload is not zstd-compressed: it was not made by `bundle create`")]
    NotZstd,
    #[error("bundle payload cannot be decompressed: it was not made by `bundle create`, or it is damaged (zstd: {0})")]
    BadPayload(String),
    #[error("bundle {0}: it was built wrongly, and no device will install it")]
    ImageMismatch(String),
    #[error("{0}")]
    BaseMismatch(Box<BaseMismatch>),
    #[error("bundle {0} is a delta: it can only be rebuilt against its base image (bundle verify --base IMAGE, and --boot-base BOOT_IMAGE for format 4)")]
    NeedsBase(String),
    #[error(
        "delta bundle {0} rebuilds its boot image from the booted slot's boot partition, but \
         this device has no slot boot devices configured (SUPERVISOR_SLOT_A_BOOT_DEVICE, \
         SUPERVISOR_SLOT_B_BOOT_DEVICE): nothing was written"
    )]
    NoBootBase(String),
    #[error("--delta-from {0}: {1}")]
    BadDeltaBase(PathBuf, String),
    #[error("SOURCE_DATE_EPOCH={0:?} is not a Unix time (whole seconds since 1970)")]
    BadSourceDateEpoch(String),
    #[error("key file {path}: {message}")]
    BadKey { path: PathBuf, message: String },
    #[error(
        "{0} already exists: keygen never overwrites a key (remove it, or choose another --out)"
    )]
    KeyExists(PathBuf),
    #[error("directory {0} does not exist: create it first, or choose another --out")]
    NoSuchDir(PathBuf),
}

pub use base::BaseMismatch;

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BundleError + '_ {
    move |err| BundleError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// Writes a new key pair: `<out>.key` (secret seed, hex, mode 0600) and `<out>.pub` (hex).
pub fn keygen(out: &Path) -> Result<(PathBuf, PathBuf), BundleError> {
    let secret = out.with_extension("key");
    let public = out.with_extension("pub");
    // Checked first, so a refusal writes nothing (and says why in words, not an OS error).
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(BundleError::NoSuchDir(dir.to_path_buf()));
    }
    if let Some(existing) = [&secret, &public].into_iter().find(|p| p.exists()) {
        return Err(BundleError::KeyExists(existing.clone()));
    }
    let seed = fsutil::random_hex(32).map_err(io_err(out))?;
    let bytes: [u8; 32] = fsutil::unhex(&seed)
        .and_then(|v| v.try_into().ok())
        .ok_or(BundleError::BadManifest("random seed".into()))?;
    let sk = SigningKey::from_bytes(&bytes);
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&secret)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => BundleError::KeyExists(secret.clone()),
                _ => io_err(&secret)(e),
            })?;
        writeln!(f, "{seed}").map_err(io_err(&secret))?;
        f.sync_all().map_err(io_err(&secret))?;
    }
    let pub_hex = fsutil::hex(sk.verifying_key().as_bytes());
    fsutil::atomic_write(&public, format!("{pub_hex}\n").as_bytes()).map_err(io_err(&public))?;
    Ok((secret, public))
}

fn read_key32(path: &Path) -> Result<[u8; 32], BundleError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    fsutil::unhex(&text)
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| BundleError::BadKey {
            path: path.to_path_buf(),
            message: "expected 64 hex digits".into(),
        })
}

/// Loads a secret key written by [`keygen`].
pub fn load_signing_key(path: &Path) -> Result<SigningKey, BundleError> {
    Ok(SigningKey::from_bytes(&read_key32(path)?))
}

/// Loads a public key written by [`keygen`].
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, BundleError> {
    VerifyingKey::from_bytes(&read_key32(path)?).map_err(|e| BundleError::BadKey {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

pub(crate) fn signed_message(manifest_json: &[u8]) -> Vec<u8> {
    let mut m = SIGN_CONTEXT.to_vec();
    m.extend_from_slice(manifest_json);
    m
}

pub(crate) fn hash_file(path: &Path, offset: u64) -> Result<(u64, String), BundleError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    f.seek(SeekFrom::Start(offset)).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let n = io::copy(&mut f, &mut hasher).map_err(io_err(path))?;
    Ok((n, fsutil::hex(&hasher.finalize())))
}

/// A bundle whose signature, board, version and payload checksum have all been checked.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    pub path: PathBuf,
    pub manifest: Manifest,
    pub payload_offset: u64,
    /// A delta's base image, once [`VerifiedBundle::check_base`] has found it matches.
    pub base: Option<PathBuf>,
    /// A format 4 delta's boot base image, once [`VerifiedBundle::check_boot_base`] has found
    /// it matches.
    pub boot_base: Option<PathBuf>,
}

impl VerifiedBundle {
    /// A reader of the images: the root image, then (format 2, or 3 with one) the boot image.
    /// A delta needs its base checked first ([`VerifiedBundle::check_base`]).
    pub fn image_reader(&self) -> Result<Box<dyn Read + Send>, BundleError> {
        let mut f = File::open(&self.path).map_err(io_err(&self.path))?;
        f.seek(SeekFrom::Start(self.payload_offset))
            .map_err(io_err(&self.path))?;
        let limited = BufReader::new(f).take(self.manifest.payload_size);
        let payload = zstd::Decoder::new(limited).map_err(io_err(&self.path))?;
        let Some((base_size, _)) = self.manifest.delta_base() else {
            return Ok(Box::new(payload));
        };
        let base_path = self
            .base
            .as_deref()
            .ok_or_else(|| BundleError::NeedsBase(self.manifest.version.clone()))?;
        let mut bases =
            delta::Bases::new(File::open(base_path).map_err(io_err(base_path))?, base_size);
        if let Some((boot_size, _)) = self.manifest.delta_boot_base() {
            let boot_path = self
                .boot_base
                .as_deref()
                .ok_or_else(|| BundleError::NeedsBase(self.manifest.version.clone()))?;
            bases = bases.with_boot(File::open(boot_path).map_err(io_err(boot_path))?, boot_size);
        }
        Ok(Box::new(delta::DeltaReader::new(payload, bases)))
    }
}

/// What the device expects of a bundle.
pub struct Expect<'a> {
    pub key: &'a VerifyingKey,
    pub board: &'a str,
    /// Where `board` comes from, as the refusal words it: [`BOARD_OF_DEVICE`] on a device,
    /// "--board asks for" for `bundle verify --board` on a build machine.
    pub board_from: &'a str,
    /// Version of the running slot; `None` skips the downgrade check.
    pub current_version: Option<&'a str>,
    pub allow_downgrade: bool,
    /// How the refused operator allows a downgrade: [`CLI_DOWNGRADE_FLAG`] or
    /// [`API_DOWNGRADE_FLAG`].
    pub downgrade_flag: &'a str,
}

/// Reads and checks the manifest and signature only (cheap; `bundle verify` and install both
/// then check the payload with [`verify`]).
pub fn read_manifest(path: &Path, key: &VerifyingKey) -> Result<(Manifest, u64), BundleError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let len = f.metadata().map_err(io_err(path))?.len();
    let mut head = [0u8; HEADER_LEN];
    f.read_exact(&mut head).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => BundleError::Truncated("no header".into()),
        _ => BundleError::Io {
            path: path.to_path_buf(),
            err: e,
        },
    })?;
    if &head[..8] != MAGIC {
        return Err(BundleError::NotABundle);
    }
    let mlen = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if mlen > MAX_MANIFEST {
        return Err(BundleError::BadManifest(format!(
            "manifest length {mlen} is too large"
        )));
    }
    let payload_offset = HEADER + u64::from(mlen) + 64;
    if len < payload_offset {
        return Err(BundleError::Truncated(
            "manifest or signature cut off".into(),
        ));
    }
    let mut mjson = vec![0u8; mlen as usize];
    f.read_exact(&mut mjson).map_err(io_err(path))?;
    let mut sig = [0u8; 64];
    f.read_exact(&mut sig).map_err(io_err(path))?;
    key.verify_strict(&signed_message(&mjson), &Signature::from_bytes(&sig))
        .map_err(|_| BundleError::BadSignature)?;
    let manifest: Manifest =
        serde_json::from_slice(&mjson).map_err(|e| BundleError::BadManifest(e.to_string()))?;
    manifest.check().map_err(BundleError::BadManifest)?;
    let expected = payload_offset + manifest.payload_size;
    if len < expected {
        return Err(BundleError::Truncated(format!(
            "{len} bytes, the manifest promises {expected}"
        )));
    }
    if len > expected {
        return Err(BundleError::TrailingBytes(len - expected));
    }
    Ok((manifest, payload_offset))
}

/// A payload that is not a zstd frame is refused before an install opens a slot.
fn check_zstd_magic(path: &Path, payload_offset: u64) -> Result<(), BundleError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    f.seek(SeekFrom::Start(payload_offset))
        .map_err(io_err(path))?;
    let mut magic = [0u8; 4];
    match f.read_exact(&mut magic) {
        Ok(()) if magic == ZSTD_MAGIC => Ok(()),
        Ok(()) => Err(BundleError::NotZstd),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(BundleError::NotZstd),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Full verification without decompressing: signature, board, version, length, payload
/// checksum and zstd magic. [`check_images`] adds what only decompression can tell.
pub fn verify(path: &Path, expect: &Expect<'_>) -> Result<VerifiedBundle, BundleError> {
    let (manifest, payload_offset) = read_manifest(path, expect.key)?;
    if manifest.compatible != expect.board {
        return Err(BundleError::WrongBoard {
            bundle: manifest.compatible,
            expected: expect.board.to_string(),
            from: expect.board_from.to_string(),
        });
    }
    if let Some(cur) = expect.current_version {
        if !expect.allow_downgrade && version_cmp(&manifest.version, cur).is_lt() {
            return Err(BundleError::Downgrade {
                bundle: manifest.version,
                current: cur.to_string(),
                flag: expect.downgrade_flag.to_string(),
            });
        }
    }
    let (n, sha) = hash_file(path, payload_offset)?;
    if n != manifest.payload_size || sha != manifest.payload_sha256 {
        return Err(BundleError::PayloadMismatch);
    }
    check_zstd_magic(path, payload_offset)?;
    Ok(VerifiedBundle {
        path: path.to_path_buf(),
        manifest,
        payload_offset,
        base: None,
        boot_base: None,
    })
}

/// What decompressing a payload failed with, in words: zstd's own errors (its data was not
/// made by `bundle create`, or is damaged) become [`BundleError::BadPayload`].
pub fn payload_error(e: io::Error) -> BundleError {
    match e.kind() {
        io::ErrorKind::Other | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
            BundleError::BadPayload(e.to_string())
        }
        _ => BundleError::Io {
            path: PathBuf::from("bundle payload"),
            err: e,
        },
    }
}

/// Every check an install makes of the payload, without writing anything: decompresses it and
/// compares the root image (and the boot image of format 2) with the manifest's sizes and
/// SHA-256, and refuses data after the images. `bundle verify` runs it after [`verify`].
pub fn check_images(vb: &VerifiedBundle) -> Result<(), BundleError> {
    let m = &vb.manifest;
    let mut reader = vb.image_reader()?;
    let mut images = vec![("root image", m.image_size, m.image_sha256.as_str())];
    if let Some((size, sha)) = m.boot_image() {
        images.push(("boot image", size, sha));
    }
    for (what, size, sha) in images {
        let mut hasher = Sha256::new();
        let n = io::copy(&mut (&mut reader).take(size), &mut hasher).map_err(payload_error)?;
        let got = fsutil::hex(&hasher.finalize());
        if n != size || got != sha {
            return Err(BundleError::ImageMismatch(format!(
                "{what} does not match the manifest ({n} bytes, sha256 {got}; the manifest \
                 says {size} bytes, sha256 {sha})"
            )));
        }
    }
    let mut extra = [0u8; 1];
    if reader.read(&mut extra).map_err(payload_error)? != 0 {
        return Err(BundleError::ImageMismatch(
            "payload holds more than the manifest's images".into(),
        ));
    }
    Ok(())
}

/// Compares dotted versions numerically where both parts are numbers ("1.10" > "1.9").
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |s: &str| -> Vec<String> {
        s.trim_start_matches('v')
            .split(['.', '-', '+'])
            .map(String::from)
            .collect()
    };
    let (pa, pb) = (split(a), split(b));
    for i in 0..pa.len().max(pb.len()) {
        let (x, y) = (pa.get(i), pb.get(i));
        let ord = match (x, y) {
            (Some(x), Some(y)) => match (x.parse::<u64>(), y.parse::<u64>()) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => x.cmp(y),
            },
            (Some(_), None) => std::cmp::Ordering::Greater,
            (None, Some(_)) => std::cmp::Ordering::Less,
            (None, None) => std::cmp::Ordering::Equal,
        };
        if ord.is_ne() {
            return ord;
        }
    }
    std::cmp::Ordering::Equal
}
