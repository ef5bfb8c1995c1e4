//! Delta payloads: round trips over shifted, changed and appended content, the size of a
//! small change, and refusals of damaged ops streams and of a wrong base.

// Test data: the byte generator truncates on purpose.
#![allow(clippy::cast_possible_truncation)]

use super::delta::{encode, DeltaReader, BLOCK};
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
    DeltaReader::new(ops, File::open(&bp).unwrap(), base.len() as u64).read_to_end(&mut out)?;
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

    let expect = Expect {
        key: &vk,
        board: "rpi4",
        board_from: BOARD_OF_DEVICE,
        current_version: None,
        allow_downgrade: false,
        downgrade_flag: CLI_DOWNGRADE_FLAG,
    };
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

/// An unchanged boot image costs (almost) nothing in a delta made from a full bundle that
/// carried it: it is copied from the booted slot's boot partition, not shipped as literal data.
#[test]
fn an_unchanged_boot_image_is_not_shipped_in_a_delta() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, _) = keygen(&d.join("k")).unwrap();
    let root_old = noise(11, 300_000);
    let mut root_new = root_old.clone();
    root_new[1_000..1_100].copy_from_slice(&[9u8; 100]);
    let boot = noise(12, 400_000);
    for (name, bytes) in [
        ("old.img", &root_old),
        ("new.img", &root_new),
        ("boot.img", &boot),
    ] {
        std::fs::write(d.join(name), bytes).unwrap();
    }
    let mk = |image: &str, out: &str, delta_from: Option<&Path>| {
        create(&CreateOptions {
            image: &d.join(image),
            boot_image: Some(&d.join("boot.img")),
            key: &key,
            version: "2.0.0",
            compatible: "rpi4",
            out: &d.join(out),
            level: 3,
            created: 1,
            delta_from,
        })
    };
    mk("old.img", "old.poshub", None).unwrap();
    let m = mk("new.img", "new.poshub", Some(&d.join("old.poshub"))).unwrap();
    assert!(
        m.payload_size < 2_000,
        "format {}, payload {} bytes for a 100-byte change and an unchanged 400,000-byte boot image",
        m.format,
        m.payload_size
    );
}
