// Test data: byte generators truncate on purpose, and small fixtures live on the stack.
#![allow(
    clippy::cast_possible_truncation,
    clippy::many_single_char_names,
    clippy::large_stack_arrays
)]

use super::*;
use std::cmp::Ordering::*;
use std::path::{Path, PathBuf};

fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

fn opts<'a>(
    image: &'a Path,
    boot: Option<&'a Path>,
    key: &'a Path,
    out: &'a Path,
) -> CreateOptions<'a> {
    CreateOptions {
        image,
        boot_image: boot,
        key,
        version: "1.2.3",
        compatible: "rpi4",
        out,
        level: 3,
        created: 1_700_000_000,
        delta_from: None,
        delta_boot_from: None,
    }
}

/// Truncations and random corruptions of a valid bundle (root only and with a boot image) are
/// refused with an error, never a panic, and never accepted.
#[test]
fn corrupted_bundles_never_verify_and_never_panic() {
    corrupted_bundles(false);
    corrupted_bundles(true);
}

fn corrupted_bundles(with_boot: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(&dir.path().join("k")).unwrap();
    let image = write(
        &dir.path().join("img"),
        &(0..20_000u32).map(|i| (i % 253) as u8).collect::<Vec<_>>(),
    );
    let boot = write(
        &dir.path().join("boot"),
        &(0..5_000u32).map(|i| (i % 7) as u8).collect::<Vec<_>>(),
    );
    let good = dir.path().join("b.poshub");
    let m = create(&opts(&image, with_boot.then_some(&*boot), &key, &good)).unwrap();
    assert_eq!(m.format, if with_boot { 2 } else { 1 });
    let vk = load_verifying_key(&public).unwrap();
    let expect = Expect {
        key: &vk,
        board: "rpi4",
        board_from: BOARD_OF_DEVICE,
        current_version: Some("1.0.0"),
        allow_downgrade: false,
        downgrade_flag: CLI_DOWNGRADE_FLAG,
    };
    assert!(verify(&good, &expect).is_ok());
    let bytes = std::fs::read(&good).unwrap();
    let probe = dir.path().join("probe.poshub");
    for len in (0..bytes.len()).step_by(bytes.len() / 40 + 1) {
        std::fs::write(&probe, &bytes[..len]).unwrap();
        assert!(
            verify(&probe, &expect).is_err(),
            "truncated to {len} accepted"
        );
    }
    // xorshift: deterministic "random" corruptions, 1 to 4 bytes each.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..200 {
        let mut b = bytes.clone();
        for _ in 0..=(next() % 4) {
            let i = (next() % b.len() as u64) as usize;
            let v = (next() % 255 + 1) as u8;
            b[i] ^= v;
        }
        std::fs::write(&probe, &b).unwrap();
        assert!(
            verify(&probe, &expect).is_err(),
            "corrupted bundle accepted"
        );
    }
}

#[test]
fn versions_compare_numerically() {
    assert_eq!(version_cmp("1.10.0", "1.9.3"), Greater);
    assert_eq!(version_cmp("v2.0", "2.0"), Equal);
    assert_eq!(version_cmp("1.0", "1.0.1"), Less);
}

#[test]
fn format_2_payload_is_root_then_boot_and_both_are_signed() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(&dir.path().join("k")).unwrap();
    let root = write(&dir.path().join("root"), &[7u8; 3000]);
    let boot = write(&dir.path().join("boot"), b"kernel and initrd");
    let out = dir.path().join("b.poshub");
    let m = create(&opts(&root, Some(&boot), &key, &out)).unwrap();
    assert_eq!(m.boot_image_size, Some(17));
    assert_eq!(
        m.boot_image(),
        Some((
            17,
            fsutil::hex(&Sha256::digest(b"kernel and initrd")).as_str()
        ))
    );
    let vk = load_verifying_key(&public).unwrap();
    let (read, _) = read_manifest(&out, &vk).unwrap();
    assert_eq!(read, m);
    let vb = verify(
        &out,
        &Expect {
            key: &vk,
            board: "rpi4",
            board_from: BOARD_OF_DEVICE,
            current_version: None,
            allow_downgrade: true,
            downgrade_flag: CLI_DOWNGRADE_FLAG,
        },
    )
    .unwrap();
    let mut all = Vec::new();
    vb.image_reader().unwrap().read_to_end(&mut all).unwrap();
    let mut expect = vec![7u8; 3000];
    expect.extend_from_slice(b"kernel and initrd");
    assert_eq!(all, expect);
    // A root-only bundle keeps format 1 and its manifest has no boot fields at all.
    let out1 = dir.path().join("b1.poshub");
    let m1 = create(&opts(&root, None, &key, &out1)).unwrap();
    assert_eq!((m1.format, m1.boot_image()), (1, None));
    assert!(!String::from_utf8_lossy(&std::fs::read(&out1).unwrap()).contains("boot_image"));
}

/// Writes a bundle whose manifest is `json`, signed with `key`, followed by `payload`.
fn signed_bundle(path: &Path, key: &Path, json: &str, payload: &[u8]) {
    use ed25519_dalek::Signer;
    let sk = load_signing_key(key).unwrap();
    let sig = sk.sign(&signed_message(json.as_bytes()));
    let mut b = MAGIC.to_vec();
    b.extend_from_slice(&(json.len() as u32).to_le_bytes());
    b.extend_from_slice(json.as_bytes());
    b.extend_from_slice(&sig.to_bytes());
    b.extend_from_slice(payload);
    std::fs::write(path, b).unwrap();
}

/// Signs manifest JSON into a bundle and reads it back: (temp dir, signer, a SHA-256 in hex,
/// the fields every manifest case shares).
#[allow(clippy::type_complexity)]
fn manifest_signer() -> (
    tempfile::TempDir,
    impl Fn(&str) -> Result<Manifest, BundleError>,
    String,
    String,
) {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(&dir.path().join("k")).unwrap();
    let vk = load_verifying_key(&public).unwrap();
    let h = "ab".repeat(32);
    let base = format!(
        r#""version":"1","compatible":"rpi4","created":1,"image_size":1,"image_sha256":"{h}","payload_size":1,"payload_sha256":"{h}""#
    );
    let p = dir.path().join("m.poshub");
    let sign = move |json: &str| {
        signed_bundle(&p, &key, json, b"x");
        read_manifest(&p, &vk).map(|(m, _)| m)
    };
    (dir, sign, h, base)
}

#[test]
fn manifests_with_missing_or_bad_boot_or_delta_fields_or_unknown_formats_are_refused() {
    let (_dir, sign, h, base) = manifest_signer();
    let cases = [
        (format!(r#"{{"format":2,{base}}}"#), "requires boot_image"),
        (
            format!(r#"{{"format":2,{base},"boot_image_size":5}}"#),
            "requires boot_image_sha256",
        ),
        (
            format!(r#"{{"format":2,{base},"boot_image_sha256":"{h}"}}"#),
            "requires boot_image_size",
        ),
        (
            format!(r#"{{"format":2,{base},"boot_image_size":5,"boot_image_sha256":"xyz"}}"#),
            "64 lowercase hex",
        ),
        (
            format!(r#"{{"format":2,{base},"boot_image_size":-5,"boot_image_sha256":"{h}"}}"#),
            "invalid",
        ),
        (
            format!(r#"{{"format":1,{base},"boot_image_size":5,"boot_image_sha256":"{h}"}}"#),
            "format 1 cannot carry",
        ),
        (format!(r#"{{"format":3,{base}}}"#), "requires delta_base"),
        (
            format!(r#"{{"format":3,{base},"delta_base_sha256":"{h}"}}"#),
            "requires delta_base_size",
        ),
        (
            format!(r#"{{"format":1,{base},"delta_base_size":5,"delta_base_sha256":"{h}"}}"#),
            "format 1 cannot carry delta_base",
        ),
        (
            format!(
                r#"{{"format":3,{base},"delta_base_size":5,"delta_base_sha256":"{h}","boot_image_size":5}}"#
            ),
            "requires boot_image_sha256",
        ),
    ];
    for (json, expect) in cases {
        let err = sign(&json).unwrap_err();
        assert!(
            matches!(err, BundleError::BadManifest(_)) && err.to_string().contains(expect),
            "{json}: {err}"
        );
    }
    // The same fields, well-formed, are accepted.
    let ok = format!(r#"{{"format":2,{base},"boot_image_size":5,"boot_image_sha256":"{h}"}}"#);
    assert_eq!(sign(&ok).unwrap().boot_image(), Some((5, h.as_str())));
}

/// Format 4 needs the root base, the boot image and the boot base; no other format may name a
/// boot base; format 5 is unknown to this supervisor.
#[test]
fn format_4_manifests_need_both_bases_and_the_boot_image() {
    let (_dir, sign, h, base) = manifest_signer();
    let cases = [
        (
            format!(
                r#"{{"format":4,{base},"delta_base_size":5,"delta_base_sha256":"{h}","boot_image_size":5,"boot_image_sha256":"{h}"}}"#
            ),
            "format 4 requires delta_boot_base_sha256",
        ),
        (
            format!(
                r#"{{"format":4,{base},"delta_base_size":5,"delta_base_sha256":"{h}","delta_boot_base_size":5,"delta_boot_base_sha256":"{h}"}}"#
            ),
            "format 4 requires boot_image_sha256",
        ),
        (
            format!(
                r#"{{"format":3,{base},"delta_base_size":5,"delta_base_sha256":"{h}","delta_boot_base_size":5,"delta_boot_base_sha256":"{h}"}}"#
            ),
            "format 3 cannot carry delta_boot_base",
        ),
        (
            format!(r#"{{"format":5,{base}}}"#),
            "unknown format 5 (this supervisor reads formats 1 to 4): update the supervisor first",
        ),
    ];
    for (json, expect) in cases {
        let err = sign(&json).unwrap_err();
        assert!(err.to_string().contains(expect), "{json}: {err}");
    }
    let ok = format!(
        r#"{{"format":4,{base},"delta_base_size":5,"delta_base_sha256":"{h}","boot_image_size":5,"boot_image_sha256":"{h}","delta_boot_base_size":7,"delta_boot_base_sha256":"{h}"}}"#
    );
    assert_eq!(sign(&ok).unwrap().delta_boot_base(), Some((7, h.as_str())));
}

#[test]
fn same_inputs_and_created_time_give_identical_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(&dir.path().join("k")).unwrap();
    let root = write(
        &dir.path().join("root"),
        &(0..300_000u32)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<_>>(),
    );
    let boot = write(&dir.path().join("boot"), &[3u8; 50_000]);
    let (a, b) = (dir.path().join("a.poshub"), dir.path().join("b.poshub"));
    create(&opts(&root, Some(&boot), &key, &a)).unwrap();
    create(&opts(&root, Some(&boot), &key, &b)).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let mut later = opts(&root, Some(&boot), &key, &b);
    later.created += 1;
    create(&later).unwrap();
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn source_date_epoch_is_validated() {
    assert_eq!(created_time(Some("1700000000")).unwrap(), 1_700_000_000);
    assert_eq!(created_time(Some(" 0 ")).unwrap(), 0);
    assert!(created_time(None).unwrap() > 1_600_000_000);
    for bad in [
        "",
        "  ",
        "-1",
        "1.5",
        "yesterday",
        "99999999999999999999999",
    ] {
        let err = created_time(Some(bad)).unwrap_err();
        assert!(matches!(err, BundleError::BadSourceDateEpoch(_)), "{bad}");
        assert!(err.to_string().contains("SOURCE_DATE_EPOCH"));
    }
}
