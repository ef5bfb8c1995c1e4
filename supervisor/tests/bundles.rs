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

/// `bundle verify` of `b`: fails, says `expect`, never "bundle OK" or a raw zstd error.
fn verify_refuses(rig: &Rig, b: &std::path::Path, expect: &str) {
    let out = rig.sup(&["bundle", "verify", b.to_str().unwrap()]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    println!("bundle verify {}: {}", b.display(), text.trim());
    assert!(!out.status.success(), "bundle verify accepted it: {text}");
    assert!(!text.contains("bundle OK"), "{text}");
    assert!(text.contains(expect), "expected {expect:?} in: {text}");
    assert!(!text.contains("Unknown frame descriptor"), "{text}");
}

/// Issue 14.5: bundles every device refuses are refused by `bundle verify` too, which runs
/// decompression and the image hashes without writing anything.
#[test]
fn bundle_verify_runs_every_check_an_install_runs() {
    let rig = Rig::new();
    rig.power_on();
    let img = image(b'V', 150_000);
    let before = snapshot(&rig);

    // Payload not zstd (the raw image, checksummed and signed).
    let raw = rig.signed_bundle("raw", manifest_for("2.0.0", &img), &img);
    verify_refuses(&rig, &raw, "not zstd-compressed");
    refused(&rig, &raw, &[], "not zstd-compressed");

    // Image hash in the signed manifest is not the image's.
    let mut m = manifest_for("2.0.0", &img);
    m["image_sha256"] = sha256_hex(b"another image").into();
    let wrong_hash = rig.signed_bundle("wrong-hash", m, &zstd(&img));
    verify_refuses(&rig, &wrong_hash, "root image does not match the manifest");

    // The payload decompresses to more than the manifest's image.
    let short = &img[..100_000];
    let longer = rig.signed_bundle("longer", manifest_for("2.0.0", short), &zstd(&img));
    verify_refuses(&rig, &longer, "holds more than the manifest's images");

    // A zstd stream cut short.
    let z = zstd(&img);
    let cut = rig.signed_bundle("cut", manifest_for("2.0.0", &img), &z[..z.len() / 2]);
    verify_refuses(&rig, &cut, "cannot be decompressed");

    // Nothing was written by any verify.
    assert_eq!(before, snapshot(&rig), "bundle verify wrote something");
    // And a good bundle still verifies.
    let good = rig.signed_bundle("good", manifest_for("2.0.0", &img), &zstd(&img));
    let out = rig.sup(&["bundle", "verify", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Installs `b`, which must fail after the target slot was opened: slot B ends `bad` with a
/// reason containing `expect` (the real error), and the update status says the same.
fn fails_after_open(rig: &Rig, b: &std::path::Path, expect: &str) {
    let out = rig.sup(&["install", b.to_str().unwrap(), "--no-reboot"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "install succeeded");
    assert!(err.contains(expect), "expected {expect:?} in: {err}");
    let st = rig.status();
    println!(
        "slot B after {}: state {} reason {}",
        b.display(),
        st["slots"]["B"]["state"],
        st["slots"]["B"]["reason"]
    );
    assert_eq!(slot_state(&st, "B"), "bad", "{st}");
    let reason = st["slots"]["B"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(expect), "reason {reason:?}");
    assert_eq!(st["update"]["state"], "failed", "{st}");
    let error = st["update"]["error"].as_str().unwrap_or_default();
    assert!(error.contains(expect), "update error {error:?}");
    assert_eq!(slot_state(&st, "A"), "good", "{st}");
    assert_eq!(rig.boot_state()["primary"], "A");
}

/// Issue 14.4: a decompression or write failure after the slot was opened marks it bad with
/// the real reason (it used to stay `installing`, later "install interrupted").
#[test]
fn failures_after_the_slot_is_opened_mark_it_bad_with_the_reason() {
    let mut rig = Rig::new();
    rig.power_on();
    let img = image(b'F', 150_000);
    let z = zstd(&img);
    // A zstd stream cut in the middle: the decoder fails during `write`.
    let cut = rig.signed_bundle("cut", manifest_for("2.0.0", &img), &z[..z.len() / 2]);
    fails_after_open(&rig, &cut, "incomplete frame");
    // The medium refuses writes: ENOSPC from /dev/full.
    rig.set("SUPERVISOR_SLOT_B_DEVICE", "/dev/full");
    let good = rig.bundle("v2", "2.0.0", "rpi4", &img);
    fails_after_open(&rig, &good, "No space left on device");
    // The medium cannot be synced: fsync(2) of /dev/null is EINVAL.
    rig.set("SUPERVISOR_SLOT_B_DEVICE", "/dev/null");
    fails_after_open(&rig, &good, "unable to fsync slot B");
    let st = rig.status();
    let journal = st["journal"].to_string();
    assert!(!journal.contains("install-interrupted"), "{journal}");
}

/// Issue 14.7: bytes after the payload, and `bundle verify --board` on a build machine, are
/// worded for what they are.
#[test]
fn trailing_bytes_and_verify_board_are_named_for_what_they_are() {
    let rig = Rig::new();
    rig.power_on();
    let good = rig.bundle("v2", "2.0.0", "rpi4", &image(b'T', 50_000));
    let mut bytes = std::fs::read(&good).unwrap();
    bytes.extend_from_slice(b"junk");
    let padded = rig.path("padded.poshub");
    std::fs::write(&padded, &bytes).unwrap();
    refused(&rig, &padded, &[], "4 unexpected bytes after its payload");
    let err = stderr(&rig.sup(&["install", padded.to_str().unwrap(), "--no-reboot"]));
    println!("padded: {err}");
    assert!(!err.contains("manifest is invalid"), "{err}");

    let out = rig.sup(&[
        "bundle",
        "verify",
        good.to_str().unwrap(),
        "--board",
        "rpi5",
    ]);
    let err = stderr(&out);
    println!("verify --board rpi5: {err}");
    assert!(!out.status.success());
    assert!(err.contains("--board asks for \"rpi5\""), "{err}");
    assert!(!err.contains("this device"), "{err}");
}

/// The new release of a delta test: slot A's factory image with a changed region and more data.
fn changed(base: &[u8]) -> Vec<u8> {
    let mut new = base.to_vec();
    new[100_000..100_500].copy_from_slice(&[0x5a; 500]);
    new.extend_from_slice(&image(b'z', 20_000));
    new
}

/// A delta whose base is not what the booted slot holds (another release, or the slot changed
/// by one byte since) is refused before anything is written, naming both hashes and the way
/// out (the full bundle); the slots, store and bootloader are untouched.
#[test]
fn delta_for_another_base_is_refused_and_nothing_is_touched() {
    let rig = Rig::new();
    assert_eq!(rig.power_on(), "booted slot A");
    let slot_a = std::fs::read(rig.path("slot-a.img")).unwrap();
    let other = image(b'Q', slot_a.len());
    let b = rig.delta_bundle("d1", "2.0.0", &changed(&other), None, &other);
    let expect = format!(
        "applies only to base image sha256 {} ({} bytes), but booted slot A",
        sha256_hex(&other),
        other.len()
    );
    refused(&rig, &b, &[], &expect);
    refused(
        &rig,
        &b,
        &[],
        &format!("holds sha256 {}", sha256_hex(&slot_a)),
    );
    refused(&rig, &b, &[], "install the full bundle of 2.0.0 instead");
    // Made from the right base, but the slot no longer holds it (one byte flipped).
    let b = rig.delta_bundle("d2", "2.0.0", &changed(&slot_a), None, &slot_a);
    let mut flipped = slot_a.clone();
    flipped[7] ^= 1;
    std::fs::write(rig.path("slot-a.img"), &flipped).unwrap();
    refused(&rig, &b, &[], "nothing was written");
    let st = rig.status();
    assert_ne!(slot_state(&st, "B"), "bad", "{st}");
    assert_ne!(st["update"]["state"], "installing", "{st}");
}

/// A delta made from the booted slot's image installs like a full bundle: slot B holds the new
/// image, the trial is armed and the next power-on boots it. (Sizes: the unit tests and
/// `scripts/bench-delta`; these periodic test images compress to almost nothing either way.)
#[test]
fn delta_installs_the_new_image_and_boots_its_trial() {
    let rig = Rig::new();
    assert_eq!(rig.power_on(), "booted slot A");
    let slot_a = std::fs::read(rig.path("slot-a.img")).unwrap();
    let new = changed(&slot_a);
    let b = rig.delta_bundle("d", "2.0.0", &new, None, &slot_a);
    let out = rig.sup(&["install", b.to_str().unwrap(), "--no-reboot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let slot_b = std::fs::read(rig.path("slot-b.img")).unwrap();
    assert_eq!(
        &slot_b[..new.len()],
        &new[..],
        "slot B does not hold the target"
    );
    let st = rig.status();
    assert_eq!(slot_state(&st, "B"), "trying", "{st}");
    assert_eq!(st["slots"]["B"]["sha256"], sha256_hex(&new));
    assert!(
        st["journal"]
            .to_string()
            .contains("rebuilt from a delta against slot A"),
        "{st}"
    );
    assert_eq!(std::fs::read(rig.path("slot-a.img")).unwrap(), slot_a);
    assert_eq!(rig.power_on(), "booted slot B (trial)");
}

/// `bundle verify` rebuilds a delta against `--base` and checks the images; without a base it
/// says it did not, and with the wrong base it refuses.
#[test]
fn bundle_verify_rebuilds_a_delta_against_its_base() {
    let rig = Rig::new();
    let slot_a = std::fs::read(rig.path("slot-a.img")).unwrap();
    let b = rig.delta_bundle("d", "2.0.0", &changed(&slot_a), None, &slot_a);
    let verify = |extra: &[&str]| {
        let mut args = vec!["bundle", "verify", b.to_str().unwrap()];
        args.extend_from_slice(extra);
        rig.sup(&args)
    };
    let base = rig.path("slot-a.img");
    let out = verify(&["--base", base.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("bundle OK"),
        "{text}{}",
        stderr(&out)
    );
    assert!(text.contains("\"format\": 3"), "{text}");
    let out = verify(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("images not rebuilt"),
        "{text}"
    );
    let wrong = rig.path("d.img");
    let out = verify(&["--base", wrong.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("applies only to base image"),
        "{}",
        stderr(&out)
    );
}
