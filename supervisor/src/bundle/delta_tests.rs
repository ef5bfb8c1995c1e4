//! Delta payloads: round trips over shifted, changed and appended content, the size of a
//! small change, and refusals of damaged ops streams and of a wrong base.

// Test data: the byte generator truncates on purpose.
#![allow(clippy::cast_possible_truncation)]

use super::delta::{encode, Bases, DeltaReader, BLOCK};
use super::*;
use std::path::Path;

/// Deterministic bytes that do not repeat (xorshift), like compressed squashfs data.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn apply(dir: &Path, base: &[u8], ops: &[u8]) -> std::io::Result<Vec<u8>> {
    let bp = dir.join("base");
    std::fs::write(&bp, base).unwrap();
    let mut out = Vec::new();
    let bases = Bases::new(File::open(&bp).unwrap(), base.len() as u64);
    DeltaReader::new(ops, bases).read_to_end(&mut out)?;
    Ok(out)
}

#[test]
fn shifted_and_changed_content_round_trips_and_a_small_change_stays_small() {
    let dir = tempfile::tempdir().unwrap();
    let base = noise(1, 1 << 20);
    // A file in the middle grows by 1,000 bytes (everything after shifts by an odd amount),
    // one byte changes near the start, new data is appended.
    let mut target = base[..300_000].to_vec();
    target.extend_from_slice(&noise(2, 1_000));
    target.extend_from_slice(&base[300_000..]);
    target[10_000] ^= 0xff;
    target.extend_from_slice(&noise(3, 5_000));
    let mut ops = Vec::new();
    let stats = encode(&base, &target, &mut ops).unwrap();
    assert_eq!(apply(dir.path(), &base, &ops).unwrap(), target);
    assert_eq!(stats.copied + stats.literal, target.len() as u64);
    assert!(
        stats.literal < (1_000 + 5_000 + 2 * BLOCK) as u64,
        "{stats:?}"
    );
    // Identical, empty and shorter-than-a-block targets.
    for t in [base.clone(), Vec::new(), base[..100].to_vec()] {
        let mut ops = Vec::new();
        encode(&base, &t, &mut ops).unwrap();
        assert_eq!(apply(dir.path(), &base, &ops).unwrap(), t);
    }
}

#[test]
fn damaged_ops_streams_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let base = noise(4, 64 * 1024);
    let mut copy_beyond = vec![b'C'];
    copy_beyond.extend_from_slice(&60_000u64.to_le_bytes());
    copy_beyond.extend_from_slice(&10_000u64.to_le_bytes());
    copy_beyond.push(b'E');
    let mut long_lit = vec![b'L'];
    long_lit.extend_from_slice(&u32::MAX.to_le_bytes());
    let mut good = Vec::new();
    encode(&base, &noise(5, 9_000), &mut good).unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (copy_beyond, "beyond the 65536-byte base"),
        (long_lit, "too long"),
        (b"X".to_vec(), "unknown delta op"),
        (Vec::new(), "without its end mark"),
        (good[..good.len() - 1].to_vec(), "without its end mark"),
        (good[..good.len() / 2].to_vec(), ""),
        ([&good[..], b"E"].concat(), "after its end mark"),
    ];
    for (ops, msg) in cases {
        let err = apply(dir.path(), &base, &ops).unwrap_err();
        assert!(err.to_string().contains(msg), "{msg}: {err}");
    }
}

/// A delta bundle made from a full bundle names that bundle's image as base, rebuilds the
/// target against it, and refuses any other base with the expected and found hashes.
#[test]
fn delta_bundle_from_a_full_bundle_rebuilds_the_target_only_on_its_base() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, public) = keygen(&d.join("k")).unwrap();
    let vk = load_verifying_key(&public).unwrap();
    let old = noise(6, 300_000);
    let mut new = old.clone();
    new[150_000..150_100].copy_from_slice(&[7u8; 100]);
    std::fs::write(d.join("old.img"), &old).unwrap();
    std::fs::write(d.join("new.img"), &new).unwrap();
    let mk = |image: &str, out: &str, delta_from: Option<&Path>| {
        create(&CreateOptions {
            image: &d.join(image),
            boot_image: None,
            key: &key,
            version: "2.0.0",
            compatible: "rpi4",
            out: &d.join(out),
            level: 3,
            created: 1,
            delta_from,
            delta_boot_from: None,
        })
    };
    mk("old.img", "old.poshub", None).unwrap();
    let m = mk("new.img", "new.poshub", Some(&d.join("old.poshub"))).unwrap();
    assert_eq!(m.format, FORMAT_DELTA);
    assert_eq!(m.delta_base_version.as_deref(), Some("2.0.0"));
    let sha = |b: &[u8]| fsutil::hex(&Sha256::digest(b));
    assert_eq!(m.delta_base(), Some((300_000, sha(&old).as_str())));
    assert!(m.payload_size < 2_000, "{m:?}");
    // From the raw image: the same manifest but for the (unknown) base version.
    let m2 = mk("new.img", "new2.poshub", Some(&d.join("old.img"))).unwrap();
    assert_eq!(m2.delta_base_sha256, m.delta_base_sha256);
    assert_eq!(m2.delta_base_version, None);

    let expect = rpi4(&vk);
    let mut vb = verify(&d.join("new.poshub"), &expect).unwrap();
    assert!(matches!(check_images(&vb), Err(BundleError::NeedsBase(_))));
    let err = vb.check_base(&d.join("new.img"), "slot A").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&sha(&old)) && msg.contains(&sha(&new)) && msg.contains("full bundle"),
        "{msg}"
    );
    assert!(vb.base.is_none());
    vb.check_base(&d.join("old.img"), "slot A").unwrap();
    check_images(&vb).unwrap();
    let mut rebuilt = Vec::new();
    vb.image_reader()
        .unwrap()
        .read_to_end(&mut rebuilt)
        .unwrap();
    assert_eq!(rebuilt, new);
    // A delta cannot be the base of another delta.
    let err = mk("new.img", "x.poshub", Some(&d.join("new.poshub"))).unwrap_err();
    assert!(err.to_string().contains("is itself a delta"), "{err}");
}

/// Writes `files` into `d`.
fn write_all(d: &Path, files: &[(&str, &[u8])]) {
    for (name, bytes) in files {
        std::fs::write(d.join(name), bytes).unwrap();
    }
}

/// Makes bundles in `d` signed with `key`: (root image, boot image, out, delta from, boot base).
fn maker<'a>(
    d: &'a Path,
    key: &'a Path,
) -> impl Fn(&str, &str, &str, Option<&str>, Option<&str>) -> Result<Manifest, BundleError> + 'a {
    move |image, boot, out, delta_from, delta_boot_from| {
        let (from, boot_from) = (
            delta_from.map(|f| d.join(f)),
            delta_boot_from.map(|f| d.join(f)),
        );
        create(&CreateOptions {
            image: &d.join(image),
            boot_image: Some(&d.join(boot)),
            key,
            version: "2.0.0",
            compatible: "rpi4",
            out: &d.join(out),
            level: 3,
            created: 1,
            delta_from: from.as_deref(),
            delta_boot_from: boot_from.as_deref(),
        })
    }
}

/// What a device of board rpi4 expects, without a version check.
fn rpi4(vk: &ed25519_dalek::VerifyingKey) -> Expect<'_> {
    Expect {
        key: vk,
        board: "rpi4",
        board_from: BOARD_OF_DEVICE,
        current_version: None,
        allow_downgrade: false,
        downgrade_flag: CLI_DOWNGRADE_FLAG,
    }
}

/// `bundle verify`'s checks of a delta against `base` and `boot_base`, then the rebuilt images.
fn rebuild(
    bundle: &Path,
    public: &Path,
    base: &Path,
    boot_base: &Path,
) -> Result<Vec<u8>, BundleError> {
    let vk = load_verifying_key(public).unwrap();
    let mut vb = verify(bundle, &rpi4(&vk))?;
    vb.check_base(base, "slot A")?;
    vb.check_boot_base(Some(boot_base), "slot A's boot partition")?;
    check_images(&vb)?;
    let mut out = Vec::new();
    vb.image_reader()?
        .read_to_end(&mut out)
        .map_err(payload_error)?;
    Ok(out)
}

/// An unchanged boot image costs (almost) nothing in a delta made from a full bundle that
/// carried it: it is copied from the booted slot's boot partition (format 4, the boot base
/// named and signed), and rebuilt only on that boot base.
#[test]
fn an_unchanged_boot_image_is_not_shipped_in_a_delta() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, public) = keygen(&d.join("k")).unwrap();
    let root_old = noise(11, 300_000);
    let mut root_new = root_old.clone();
    root_new[1_000..1_100].copy_from_slice(&[9u8; 100]);
    let boot = noise(12, 400_000);
    let other_boot = noise(14, 400_000); // (seeds are ORed with 1: 12 and 13 are the same)
    write_all(
        d,
        &[
            ("old.img", &root_old),
            ("new.img", &root_new),
            ("boot.img", &boot),
            ("other-boot.img", &other_boot),
        ],
    );
    let mk = maker(d, &key);
    mk("old.img", "boot.img", "old.poshub", None, None).unwrap();
    let m = mk(
        "new.img",
        "boot.img",
        "new.poshub",
        Some("old.poshub"),
        None,
    )
    .unwrap();
    assert!(
        m.payload_size < 2_000,
        "format {}, payload {} bytes for a 100-byte change and an unchanged 400,000-byte boot image",
        m.format,
        m.payload_size
    );
    let sha = |b: &[u8]| fsutil::hex(&Sha256::digest(b));
    assert_eq!(m.format, FORMAT_DELTA_BOOT);
    assert_eq!(m.delta_base(), Some((300_000, sha(&root_old).as_str())));
    assert_eq!(m.delta_boot_base(), Some((400_000, sha(&boot).as_str())));
    // Rebuilt on both bases: root then boot image.
    let (nb, old, bi, ob) = (
        d.join("new.poshub"),
        d.join("old.img"),
        d.join("boot.img"),
        d.join("other-boot.img"),
    );
    assert_eq!(
        rebuild(&nb, &public, &old, &bi).unwrap(),
        [&root_new[..], &boot].concat()
    );
    // Another boot partition: refused, naming both hashes and the way out.
    let err = rebuild(&nb, &public, &old, &ob)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    for part in [
        format!(
            "applies only to boot base image sha256 {} (400000 bytes, version 2.0.0)",
            sha(&boot)
        ),
        format!(
            "slot A's boot partition ({}) holds sha256 {}",
            ob.display(),
            sha(&other_boot)
        ),
        "nothing was written; install the full bundle of 2.0.0 instead".to_string(),
    ] {
        assert!(err.contains(&part), "{part}\n{err}");
    }
}

/// A boot base the device cannot provide in full is refused before a rebuild is tried: a boot
/// partition shorter than the base, or none configured.
#[test]
fn a_boot_base_the_device_cannot_provide_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, public) = keygen(&d.join("k")).unwrap();
    let (root, boot) = (noise(15, 100_000), noise(16, 200_000));
    write_all(
        d,
        &[
            ("old.img", &root),
            ("boot.img", &boot),
            ("short.img", &boot[..1_000]),
        ],
    );
    let mk = maker(d, &key);
    mk("old.img", "boot.img", "old.poshub", None, None).unwrap();
    mk(
        "old.img",
        "boot.img",
        "new.poshub",
        Some("old.poshub"),
        None,
    )
    .unwrap();
    let (nb, old) = (d.join("new.poshub"), d.join("old.img"));
    // A boot partition shorter than the base says so.
    let err = rebuild(&nb, &public, &old, &d.join("short.img"))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds only 1000 bytes"), "{err}");
    // No boot device to read it from: refused too, before a rebuild is tried.
    let vk = load_verifying_key(&public).unwrap();
    let expect = rpi4(&vk);
    let mut vb = verify(&nb, &expect).unwrap();
    vb.check_base(&old, "slot A").unwrap();
    assert!(matches!(check_images(&vb), Err(BundleError::NeedsBase(_))));
    let err = vb
        .check_boot_base(None, "slot A's boot partition")
        .unwrap_err();
    assert!(
        err.to_string().contains("no slot boot devices configured"),
        "{err}"
    );
}

/// A new kernel (every byte of the boot image changed) still makes a working format 4 delta:
/// the boot image travels as literal data; `--delta-boot-from` names the boot base when the
/// root base is a raw image; a root-only full bundle as base gives format 3 (boot image literal).
#[test]
fn a_changed_boot_image_travels_as_literal_data_and_raw_boot_bases_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, public) = keygen(&d.join("k")).unwrap();
    let root = noise(21, 200_000);
    let (boot_old, boot_new) = (noise(22, 300_000), noise(24, 350_000));
    write_all(
        d,
        &[
            ("root.img", &root),
            ("boot-old.img", &boot_old),
            ("boot-new.img", &boot_new),
        ],
    );
    let mk = maker(d, &key);
    let m = mk(
        "root.img",
        "boot-new.img",
        "k.poshub",
        Some("root.img"),
        Some("boot-old.img"),
    )
    .unwrap();
    assert_eq!(m.format, FORMAT_DELTA_BOOT);
    assert!(m.payload_size > 350_000, "{m:?}");
    let (root_p, old_p) = (d.join("root.img"), d.join("boot-old.img"));
    let got = rebuild(&d.join("k.poshub"), &public, &root_p, &old_p).unwrap();
    assert_eq!(got, [&root[..], &boot_new].concat());
    // Unchanged root and boot: one copy runs from the root base into the boot base.
    let m = mk(
        "root.img",
        "boot-old.img",
        "same.poshub",
        Some("root.img"),
        Some("boot-old.img"),
    )
    .unwrap();
    assert!(m.payload_size < 200, "{m:?}");
    let got = rebuild(&d.join("same.poshub"), &public, &root_p, &old_p).unwrap();
    assert_eq!(got, [&root[..], &boot_old].concat());
    // Without a boot base: format 3, as before.
    let m = mk(
        "root.img",
        "boot-old.img",
        "f3.poshub",
        Some("root.img"),
        None,
    )
    .unwrap();
    assert_eq!((m.format, m.delta_boot_base()), (FORMAT_DELTA, None));
    // --delta-boot-from needs a delta with a boot image.
    let err = create(&CreateOptions {
        image: &root_p,
        boot_image: None,
        key: &key,
        version: "2.0.0",
        compatible: "rpi4",
        out: &d.join("x.poshub"),
        level: 3,
        created: 1,
        delta_from: Some(&root_p),
        delta_boot_from: Some(&old_p),
    })
    .unwrap_err();
    assert!(err.to_string().contains("needs --boot-image"), "{err}");
}
