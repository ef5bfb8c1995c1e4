//! The update bundle reader (supervisor/src/bundle): the fuzzed bytes are read twice. First as a
//! whole `.poshub` file (header, lengths, signature). Then as a manifest (up to the first NUL
//! byte) and a payload (after it), which the harness signs with its own key after setting the
//! manifest's payload size and SHA-256 to the real ones, so the input gets past the signature
//! into the manifest checks, verification and decompression (`check_images`). Any input must
//! give a bundle or a `BundleError`, never a panic.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use libfuzzer_sys::fuzz_target;
use poshub_supervisor::bundle::{self, Expect};
use sha2::{Digest, Sha256};

/// Decompressing more than this is left out (a signed bundle may be large on purpose; the
/// harness would only time out).
const MAX_IMAGES: u64 = 64 << 20;

struct Keys {
    dir: PathBuf,
    signing: SigningKey,
    verifying: VerifyingKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let (secret, public) = bundle::keygen(&dir.join("fuzz")).expect("keygen");
        Keys {
            signing: bundle::load_signing_key(&secret).expect("signing key"),
            verifying: bundle::load_verifying_key(&public).expect("verifying key"),
            dir,
        }
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn check(k: &Keys, path: &std::path::Path) {
    let _ = bundle::read_manifest(path, &k.verifying);
    let expect = Expect {
        key: &k.verifying,
        board: "rpi4",
        board_from: bundle::BOARD_OF_DEVICE,
        current_version: Some("1.0.0"),
        allow_downgrade: false,
        downgrade_flag: bundle::CLI_DOWNGRADE_FLAG,
    };
    if let Ok(vb) = bundle::verify(path, &expect) {
        let m = &vb.manifest;
        let total = m.image_size.saturating_add(m.boot_image_size.unwrap_or(0));
        if total <= MAX_IMAGES {
            let _ = bundle::check_images(&vb);
        }
    }
}

/// `manifest` with the payload's real size and hash, signed, followed by `payload`.
fn signed_bundle(k: &Keys, manifest: &[u8], payload: &[u8]) -> Option<Vec<u8>> {
    let mut m: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    let obj = m.as_object_mut()?;
    obj.insert("payload_size".into(), payload.len().into());
    obj.insert(
        "payload_sha256".into(),
        hex(&Sha256::digest(payload)).into(),
    );
    let mjson = serde_json::to_vec(&m).ok()?;
    let mut signed = bundle::SIGN_CONTEXT.to_vec();
    signed.extend_from_slice(&mjson);
    let sig = k.signing.sign(&signed);
    let mut out = bundle::MAGIC.to_vec();
    out.extend_from_slice(&(mjson.len() as u32).to_le_bytes());
    out.extend_from_slice(&mjson);
    out.extend_from_slice(&sig.to_bytes());
    out.extend_from_slice(payload);
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let k = keys();
    let path = k.dir.join("fuzz.poshub");
    std::fs::write(&path, data).expect("write the bundle");
    check(k, &path);
    let (manifest, payload) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    if let Some(b) = signed_bundle(k, manifest, payload) {
        std::fs::write(&path, b).expect("write the signed bundle");
        check(k, &path);
    }
});
