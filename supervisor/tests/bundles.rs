//! Bundles: create/verify, and every kind of bad bundle refused by `install` with a clear
//! message while the slots, the slot store and the bootloader stay untouched.

mod common;
use common::*;

/// Slot A, slot B, slot store, bootloader state.
type Snapshot = (Vec<u8>, Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);

fn snapshot(rig: &Rig) -> Snapshot {
    (
        std::fs::read(rig.path("slot-a.img")).unwrap(),
        std::fs::read(rig.path("slot-b.img")).unwrap(),
        std::fs::read(rig.path("data/supervisor/slots.json")).ok(),
        std::fs::read(rig.path("boot/boot-state.json")).ok(),
    )
}

fn refused(rig: &Rig, bundle: &std::path::Path, extra: &[&str], expect: &str) {
    let before = snapshot(rig);
    let mut args = vec!["install", bundle.to_str().unwrap(), "--no-reboot"];
    args.extend_from_slice(extra);
    let out = rig.sup(&args);
    let err = stderr(&out);
    assert!(!out.status.success(), "install of a bad bundle succeeded");
    assert!(err.contains(expect), "expected {expect:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let after = snapshot(rig);
    assert!(
        before.0 == after.0 && before.1 == after.1,
        "a slot image changed"
    );
    assert_eq!(before.3, after.3, "the bootloader state changed");
    if let (Some(b), Some(a)) = (&before.2, &after.2) {
        assert_eq!(b, a, "the slot store changed");
    }
}

#[test]
fn good_bundle_verifies_and_shows_its_manifest() {
    let rig = Rig::new();
    let b = rig.bundle("v2", "2.0.0", "rpi4", &image(b'B', 200_000));
    let out = rig.sup(&["bundle", "verify", b.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\"version\": \"2.0.0\"") && text.contains("bundle OK"),
        "{text}"
    );
    // Compressed: the payload is smaller than the image.
    assert!(std::fs::metadata(&b).unwrap().len() < 200_000);
}

#[test]
fn bad_bundles_are_refused_and_nothing_is_touched() {
    let rig = Rig::new();
    rig.power_on();
    let good = rig.bundle("v2", "2.0.0", "rpi4", &image(b'B', 200_000));
    let bytes = std::fs::read(&good).unwrap();

    // Tampered payload (one byte flipped near the end).
    let tampered = rig.path("tampered.poshub");
    let mut t = bytes.clone();
    let n = t.len();
    t[n - 10] ^= 0xff;
    std::fs::write(&tampered, &t).unwrap();
    refused(&rig, &tampered, &[], "tampered");

    // Tampered manifest (version edited): the signature no longer verifies.
    let edited = rig.path("edited.poshub");
    let mut s = bytes.clone();
    let at = s.windows(5).position(|w| w == b"2.0.0").unwrap();
    s[at] = b'9';
    std::fs::write(&edited, &s).unwrap();
    refused(&rig, &edited, &[], "signature");

    // Truncated.
    let truncated = rig.path("truncated.poshub");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    refused(&rig, &truncated, &[], "truncated");

    // Unsigned (zeroed signature).
    let unsigned = rig.path("unsigned.poshub");
    let mlen = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let mut u = bytes.clone();
    for b in &mut u[12 + mlen..12 + mlen + 64] {
        *b = 0;
    }
    std::fs::write(&unsigned, &u).unwrap();
    refused(&rig, &unsigned, &[], "signature");

    // Not a bundle at all.
    let junk = rig.path("junk.poshub");
    std::fs::write(&junk, b"hello, I am not a bundle").unwrap();
    refused(&rig, &junk, &[], "not a poshub bundle");

    // Wrong board.
    let other = rig.bundle("pi5", "2.0.0", "rpi5", &image(b'B', 1000));
    refused(&rig, &other, &[], "board");

    // Wrong key: signed by a key the device does not trust.
    let out = rig.sup(&["keygen", "--out", rig.path("keys/rogue").to_str().unwrap()]);
    assert!(out.status.success());
    let img = rig.path("rogue.img");
    std::fs::write(&img, image(b'R', 1000)).unwrap();
    let rogue = rig.path("rogue.poshub");
    let out = rig.sup(&[
        "bundle",
        "create",
        "--image",
        img.to_str().unwrap(),
        "--key",
        rig.path("keys/rogue.key").to_str().unwrap(),
        "--version",
        "3.0.0",
        "--board",
        "rpi4",
        "--out",
        rogue.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    refused(&rig, &rogue, &[], "signature");

    // Downgrade: refused unless told.
    let old = rig.bundle("old", "0.9.0", "rpi4", &image(b'O', 1000));
    refused(&rig, &old, &[], "older than the running 1.0.0");
    let out = rig.sup(&[
        "install",
        old.to_str().unwrap(),
        "--no-reboot",
        "--allow-downgrade",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}
