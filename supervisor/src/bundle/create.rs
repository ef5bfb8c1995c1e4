//! Building bundles (`bundle create`): compress the root image (and the optional slot boot
//! partition image, right after it in the same zstd stream), sign the manifest, write the file.
//! Reproducible: the same inputs and the same `created` time give a byte-identical bundle
//! (single-threaded zstd is deterministic, ed25519 signatures are deterministic).

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use ed25519_dalek::Signer;
use sha2::{Digest, Sha256};

use super::{
    hash_file, io_err, load_signing_key, signed_message, BundleError, Manifest, FORMAT_BOOT,
    FORMAT_ROOT, MAGIC,
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

/// Builds a bundle from a root filesystem image and, optionally, a slot boot partition image.
pub fn create(o: &CreateOptions<'_>) -> Result<Manifest, BundleError> {
    let sk = load_signing_key(o.key)?;
    // 1. Compress root then boot image into one temporary payload, hashing both sides.
    let payload_tmp = o.out.with_extension("payload.poshub-tmp");
    let r = (|| {
        let f = File::create(&payload_tmp).map_err(io_err(&payload_tmp))?;
        let mut enc = zstd::Encoder::new(f, o.level).map_err(io_err(&payload_tmp))?;
        let root = compress_into(o.image, &mut enc, &payload_tmp)?;
        let boot = match o.boot_image {
            Some(b) => Some(compress_into(b, &mut enc, &payload_tmp)?),
            None => None,
        };
        enc.finish()
            .and_then(|f| f.sync_all())
            .map_err(io_err(&payload_tmp))?;
        Ok((root, boot))
    })();
    let ((image_size, image_sha), boot) = match r {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&payload_tmp);
            return Err(e);
        }
    };
    let (payload_size, payload_sha) = hash_file(&payload_tmp, 0)?;
    // 2. Sign the manifest. Without a boot image the bundle stays format 1, so devices whose
    //    supervisor predates format 2 still install it.
    let manifest = Manifest {
        format: if boot.is_some() {
            FORMAT_BOOT
        } else {
            FORMAT_ROOT
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
    };
    let mjson =
        serde_json::to_vec(&manifest).map_err(|e| BundleError::BadManifest(e.to_string()))?;
    let sig = sk.sign(&signed_message(&mjson));
    // 3. Header, manifest, signature, payload; then rename into place.
    let out_tmp = fsutil::tmp_path(o.out);
    {
        let mut out = File::create(&out_tmp).map_err(io_err(&out_tmp))?;
        out.write_all(MAGIC).map_err(io_err(&out_tmp))?;
        out.write_all(&(mjson.len() as u32).to_le_bytes())
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
