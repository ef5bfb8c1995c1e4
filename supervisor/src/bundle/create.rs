//! Building bundles (`bundle create`): compress the root image (and the optional slot boot
//! partition image, right after it in the same zstd stream), sign the manifest, write the file.
//! Reproducible: the same inputs and the same `created` time give a byte-identical bundle
//! (single-threaded zstd is deterministic, ed25519 signatures are deterministic).
//! With `--delta-from` the payload is a delta ([`super::delta`]) against an older root image
//! or the full bundle that carried it (format 3); when the new bundle has a boot image and the
//! old bundle had one too (or `--delta-boot-from` names it), the boot image is rebuilt from it
//! as well (format 4).

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use ed25519_dalek::Signer;
use sha2::{Digest, Sha256};

use super::{
    delta, hash_file, io_err, load_signing_key, read_manifest, signed_message, BundleError,
    Manifest, FORMAT_BOOT, FORMAT_DELTA, FORMAT_DELTA_BOOT, FORMAT_ROOT, MAGIC,
};
use crate::fsutil;

/// Options of [`create`].
pub struct CreateOptions<'a> {
    pub image: &'a Path,
    /// Slot boot partition image (kernel, initrd, dtbs); makes a format 2 bundle.
    pub boot_image: Option<&'a Path>,
    pub key: &'a Path,
    pub version: &'a str,
    pub compatible: &'a str,
    pub out: &'a Path,
    pub level: i32,
    /// Unix time recorded as `created` (see [`created_time`]).
    pub created: u64,
    /// Makes a delta bundle (format 3) against this base: a root image, or a full bundle
    /// (signed with the same key) whose root image is the base.
    pub delta_from: Option<&'a Path>,
    /// The boot base of a format 4 delta: the old boot partition image, for a `delta_from` that
    /// is a root image (a full bundle's own boot image is used without it).
    pub delta_boot_from: Option<&'a Path>,
}

/// The base of a delta: the root base image followed by the boot base image (if any), and the
/// version it came from (a bundle's), if known.
struct Base {
    image: Vec<u8>,
    root_len: usize,
    version: Option<String>,
}

impl Base {
    /// Size and SHA-256 of the root base, and of the boot base if there is one.
    fn hashes(&self) -> ((u64, String), Option<(u64, String)>) {
        let part = |b: &[u8]| (b.len() as u64, fsutil::hex(&Sha256::digest(b)));
        let (root, boot) = self.image.split_at(self.root_len);
        (part(root), (!boot.is_empty()).then(|| part(boot)))
    }
}

/// Reads `--delta-from` (a root image, or the root image inside a full bundle) and the boot
/// base when the new bundle has a boot image: `--delta-boot-from`, else the full bundle's.
fn read_base(
    o: &CreateOptions<'_>,
    path: &Path,
    key: &ed25519_dalek::VerifyingKey,
) -> Result<Base, BundleError> {
    let mut base = read_root_base(o, path, key)?;
    if let Some(b) = o.delta_boot_from {
        base.image.truncate(base.root_len);
        let mut f = File::open(b).map_err(io_err(b))?;
        f.read_to_end(&mut base.image).map_err(io_err(b))?;
    }
    Ok(base)
}

/// The root base of `--delta-from`, followed by a full bundle's boot image when the new bundle
/// has one too.
fn read_root_base(
    o: &CreateOptions<'_>,
    path: &Path,
    key: &ed25519_dalek::VerifyingKey,
) -> Result<Base, BundleError> {
    let mut head = [0u8; 8];
    let is_bundle = File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == MAGIC;
    if !is_bundle {
        let image = std::fs::read(path).map_err(io_err(path))?;
        return Ok(Base {
            root_len: image.len(),
            image,
            version: None,
        });
    }
    let bad = |m: String| BundleError::BadDeltaBase(path.to_path_buf(), m);
    let (m, payload_offset) =
        read_manifest(path, key).map_err(|e| bad(format!("{e} (it must be signed with --key)")))?;
    if m.delta_base().is_some() {
        return Err(bad(
            "is itself a delta: use the full bundle or the root image".into(),
        ));
    }
    let vb = super::VerifiedBundle {
        path: path.to_path_buf(),
        manifest: m.clone(),
        payload_offset,
        base: None,
        boot_base: None,
    };
    let mut reader = vb.image_reader()?;
    let mut image = Vec::with_capacity(usize::try_from(m.image_size).unwrap_or(0));
    read_checked(&mut reader, (m.image_size, &m.image_sha256), &mut image)
        .map_err(|e| bad(format!("its root image {e}")))?;
    let root_len = image.len();
    if let (Some(boot), Some(_), None) = (m.boot_image(), o.boot_image, o.delta_boot_from) {
        read_checked(&mut reader, boot, &mut image)
            .map_err(|e| bad(format!("its boot image {e}")))?;
    }
    Ok(Base {
        image,
        root_len,
        version: Some(m.version),
    })
}

/// Appends the next `size` bytes of `reader` to `out`, checked against `sha`.
fn read_checked(
    reader: &mut impl Read,
    (size, sha): (u64, &str),
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let start = out.len();
    reader
        .take(size)
        .read_to_end(out)
        .map_err(|e| format!("cannot be decompressed: {e}"))?;
    if fsutil::hex(&Sha256::digest(&out[start..])) != sha {
        return Err("does not match its manifest".into());
    }
    Ok(())
}

/// Writes the delta payload of `o` to `payload`; returns the images' sizes and hashes and the
/// base's.
fn write_delta_payload(
    o: &CreateOptions<'_>,
    base_path: &Path,
    key: &ed25519_dalek::VerifyingKey,
    payload: &Path,
) -> Result<(Images, Base), BundleError> {
    let base = read_base(o, base_path, key)?;
    let mut target = std::fs::read(o.image).map_err(io_err(o.image))?;
    let root = (target.len() as u64, fsutil::hex(&Sha256::digest(&target)));
    let boot = match o.boot_image {
        Some(b) => {
            let bytes = std::fs::read(b).map_err(io_err(b))?;
            let r = (bytes.len() as u64, fsutil::hex(&Sha256::digest(&bytes)));
            target.extend_from_slice(&bytes);
            Some(r)
        }
        None => None,
    };
    let f = File::create(payload).map_err(io_err(payload))?;
    let mut enc = zstd::Encoder::new(f, o.level).map_err(io_err(payload))?;
    enc.window_log(delta::WINDOW_LOG).map_err(io_err(payload))?;
    let mut w = io::BufWriter::with_capacity(1 << 20, enc);
    delta::encode(&base.image, &target, &mut w).map_err(io_err(payload))?;
    w.into_inner()
        .map_err(|e| io_err(payload)(e.into_error()))?
        .finish()
        .and_then(|f| f.sync_all())
        .map_err(io_err(payload))?;
    Ok(((root, boot), base))
}

/// Size and SHA-256 of the root image and of the optional boot image.
type Images = ((u64, String), Option<(u64, String)>);

/// Writes the full (zstd) payload of `o` to `payload`.
fn write_full_payload(o: &CreateOptions<'_>, payload: &Path) -> Result<Images, BundleError> {
    let f = File::create(payload).map_err(io_err(payload))?;
    let mut enc = zstd::Encoder::new(f, o.level).map_err(io_err(payload))?;
    let root = compress_into(o.image, &mut enc, payload)?;
    let boot = match o.boot_image {
        Some(b) => Some(compress_into(b, &mut enc, payload)?),
        None => None,
    };
    enc.finish()
        .and_then(|f| f.sync_all())
        .map_err(io_err(payload))?;
    Ok((root, boot))
}

/// The `created` time of a new bundle: `SOURCE_DATE_EPOCH` when given (reproducible builds,
/// <https://reproducible-builds.org/specs/source-date-epoch/>), else now. `source_date_epoch` is
/// the variable's value; an empty or non-numeric value is an error, not silently "now".
pub fn created_time(source_date_epoch: Option<&str>) -> Result<u64, BundleError> {
    match source_date_epoch {
        None => Ok(fsutil::now_unix()),
        Some(v) => {
            let t = v.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(BundleError::BadSourceDateEpoch(v.to_string()));
            }
            t.parse()
                .map_err(|_| BundleError::BadSourceDateEpoch(v.to_string()))
        }
    }
}

/// Streams `path` into `enc`, returning its size and SHA-256.
fn compress_into<W: Write>(
    path: &Path,
    enc: &mut zstd::Encoder<'_, W>,
    payload: &Path,
) -> Result<(u64, String), BundleError> {
    let mut input = BufReader::new(File::open(path).map_err(io_err(path))?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        enc.write_all(&buf[..n]).map_err(io_err(payload))?;
        total += n as u64;
    }
    Ok((total, fsutil::hex(&hasher.finalize())))
}

/// `--delta-boot-from` only makes sense for a delta with a boot image.
fn check_delta_options(o: &CreateOptions<'_>) -> Result<(), BundleError> {
    let Some(b) = o.delta_boot_from else {
        return Ok(());
    };
    let why = match (o.delta_from, o.boot_image) {
        (None, _) => "--delta-boot-from needs --delta-from (the root base)",
        (_, None) => "--delta-boot-from needs --boot-image (the boot image it is the base of)",
        _ => return Ok(()),
    };
    Err(BundleError::BadDeltaBase(b.to_path_buf(), why.into()))
}

/// Builds a bundle from a root filesystem image and, optionally, a slot boot partition image.
pub fn create(o: &CreateOptions<'_>) -> Result<Manifest, BundleError> {
    let sk = load_signing_key(o.key)?;
    // 1. Compress root then boot image (or the delta that rebuilds them) into one temporary
    //    payload, hashing both sides.
    let payload_tmp = o.out.with_extension("payload.poshub-tmp");
    check_delta_options(o)?;
    let r = match o.delta_from {
        None => write_full_payload(o, &payload_tmp).map(|i| (i, None)),
        Some(b) => write_delta_payload(o, b, &sk.verifying_key(), &payload_tmp)
            .map(|(i, base)| (i, Some(base))),
    };
    let (((image_size, image_sha), boot), base) = match r {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&payload_tmp);
            return Err(e);
        }
    };
    let (payload_size, payload_sha) = hash_file(&payload_tmp, 0)?;
    // 2. Sign the manifest. Without a boot image the bundle stays format 1, so devices whose
    //    supervisor predates format 2 still install it; a delta is format 4 only when it
    //    copies from a boot base.
    let (delta_base, delta_boot_base) = match base.as_ref().map(Base::hashes) {
        Some((root, boot)) => (Some(root), boot),
        None => (None, None),
    };
    let manifest = Manifest {
        format: match (&base, &boot) {
            (Some(_), _) if delta_boot_base.is_some() => FORMAT_DELTA_BOOT,
            (Some(_), _) => FORMAT_DELTA,
            (None, Some(_)) => FORMAT_BOOT,
            (None, None) => FORMAT_ROOT,
        },
        version: o.version.to_string(),
        compatible: o.compatible.to_string(),
        created: o.created,
        image_size,
        image_sha256: image_sha,
        payload_size,
        payload_sha256: payload_sha,
        boot_image_size: boot.as_ref().map(|b| b.0),
        boot_image_sha256: boot.map(|b| b.1),
        delta_base_size: delta_base.as_ref().map(|b| b.0),
        delta_base_sha256: delta_base.map(|b| b.1),
        delta_base_version: base.and_then(|b| b.version),
        delta_boot_base_size: delta_boot_base.as_ref().map(|b| b.0),
        delta_boot_base_sha256: delta_boot_base.map(|b| b.1),
    };
    let mjson =
        serde_json::to_vec(&manifest).map_err(|e| BundleError::BadManifest(e.to_string()))?;
    let sig = sk.sign(&signed_message(&mjson));
    // 3. Header, manifest, signature, payload; then rename into place.
    let out_tmp = fsutil::tmp_path(o.out);
    {
        let mut out = File::create(&out_tmp).map_err(io_err(&out_tmp))?;
        out.write_all(MAGIC).map_err(io_err(&out_tmp))?;
        let mlen = u32::try_from(mjson.len())
            .map_err(|_| BundleError::BadManifest("manifest too large".into()))?;
        out.write_all(&mlen.to_le_bytes())
            .map_err(io_err(&out_tmp))?;
        out.write_all(&mjson).map_err(io_err(&out_tmp))?;
        out.write_all(&sig.to_bytes()).map_err(io_err(&out_tmp))?;
        let mut p = File::open(&payload_tmp).map_err(io_err(&payload_tmp))?;
        io::copy(&mut p, &mut out).map_err(io_err(&out_tmp))?;
        out.sync_all().map_err(io_err(&out_tmp))?;
    }
    let _ = std::fs::remove_file(&payload_tmp);
    std::fs::rename(&out_tmp, o.out).map_err(io_err(o.out))?;
    Ok(manifest)
}
