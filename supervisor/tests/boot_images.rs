//! Format 2 bundles: the slot boot partition image (kernel, initrd, dtbs) travels with the root
//! image, is written to the target slot's boot device and verified before the trial is armed.
//! Reproducible bundle creation (`SOURCE_DATE_EPOCH`).

mod common;
use common::*;

/// Slot A, slot B, boot A, boot B, slot store, bootloader state.
fn snapshot(rig: &Rig) -> Vec<Option<Vec<u8>>> {
    [
        "slot-a.img",
        "slot-b.img",
        "boot-a.img",
        "boot-b.img",
        "data/supervisor/slots.json",
        "boot/boot-state.json",
    ]
    .iter()
    .map(|p| std::fs::read(rig.path(p)).ok())
    .collect()
}

/// Version 2.0.0 with a 100 kB root and a 10 kB boot image: the bundle the refusal tests use.
fn v2_root_and_boot(rig: &Rig) -> std::path::PathBuf {
    rig.bundle_with_boot(
        "v2",
        "2.0.0",
        "rpi4",
        &image(b'N', 100_000),
        Some(&image(b'k', 10_000)),
    )
}

fn refused(rig: &Rig, bundle: &std::path::Path, expect: &str) {
    let before = snapshot(rig);
    let out = rig.sup(&["install", bundle.to_str().unwrap(), "--no-reboot"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "install of a bad bundle succeeded");
    assert!(err.contains(expect), "expected {expect:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        before,
        snapshot(rig),
        "a slot, boot device or state changed"
    );
}

#[test]
fn bundle_with_boot_image_verifies_and_shows_it() {
    let rig = Rig::new();
    let boot = image(b'k', 30_000);
    let b = rig.bundle_with_boot("v2", "2.0.0", "rpi4", &image(b'B', 200_000), Some(&boot));
    let out = rig.sup(&["bundle", "verify", b.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = format!("boot image: 30000 bytes, sha256 {}", sha256_hex(&boot));
    assert!(text.contains("\"format\": 2"), "{text}");
    assert!(text.contains(&line) && text.contains("bundle OK"), "{text}");
    // A root-only bundle says so.
    let b1 = rig.bundle("v1", "2.0.0", "rpi4", &image(b'B', 1000));
    let out = rig.sup(&["bundle", "verify", b1.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\"format\": 1") && text.contains("boot image: none"),
        "{text}"
    );
}

#[test]
fn install_writes_root_and_boot_devices_byte_exact() {
    let mut rig = Rig::new();
    rig.with_boot_devices();
    assert_eq!(rig.power_on(), "booted slot A");
    let (slot_a, boot_a) = (
        std::fs::read(rig.path("slot-a.img")).unwrap(),
        std::fs::read(rig.path("boot-a.img")).unwrap(),
    );
    let (root, boot) = (image(b'N', 400_000), image(b'k', 60_000));
    let b = rig.bundle_with_boot("v2", "2.0.0", "rpi4", &root, Some(&boot));
    installs_into_b(
        &rig,
        b.to_str().unwrap(),
        (&root, &boot),
        (&slot_a, &boot_a),
    );
    assert_eq!(rig.power_on(), "booted slot B (trial)");
}

/// Installs `bundle` (no reboot): slot B and its boot device hold `new` byte-exact, slot A and
/// its boot device still hold `old`, B is on trial. Returns the status.
fn installs_into_b(
    rig: &Rig,
    bundle: &str,
    new: (&[u8], &[u8]),
    old: (&[u8], &[u8]),
) -> serde_json::Value {
    let out = rig.sup(&["install", bundle, "--no-reboot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let read = |f: &str| std::fs::read(rig.path(f)).unwrap();
    assert_eq!(
        (read("slot-b.img"), read("boot-b.img")),
        (new.0.to_vec(), new.1.to_vec())
    );
    assert_eq!(
        (read("slot-a.img"), read("boot-a.img")),
        (old.0.to_vec(), old.1.to_vec())
    );
    let st = rig.status();
    assert_eq!(slot_state(&st, "B"), "trying", "{st}");
    st
}

#[test]
fn tampered_boot_part_is_refused_and_nothing_is_touched() {
    let mut rig = Rig::new();
    rig.with_boot_devices();
    rig.power_on();
    let b = rig.bundle_with_boot(
        "v2",
        "2.0.0",
        "rpi4",
        &image(b'N', 100_000),
        Some(&image(b'k', 100_000)),
    );
    // The boot image is the end of the zstd stream: flip a byte near the end of the file.
    let mut bytes = std::fs::read(&b).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 0x5a;
    let t = rig.path("tampered.poshub");
    std::fs::write(&t, &bytes).unwrap();
    refused(&rig, &t, "tampered");
}

#[test]
fn boot_image_without_boot_devices_is_refused_before_writing() {
    let rig = Rig::new();
    rig.power_on();
    let b = v2_root_and_boot(&rig);
    refused(&rig, &b, "no slot boot devices configured");
    // A missing boot device file is refused just as early.
    let mut rig = Rig::new();
    rig.with_boot_devices();
    rig.power_on();
    std::fs::remove_file(rig.path("boot-b.img")).unwrap();
    let b = v2_root_and_boot(&rig);
    refused(&rig, &b, "unable to open slot B boot device");
}

#[test]
fn root_only_bundle_installs_on_a_device_with_boot_devices() {
    let mut rig = Rig::new();
    rig.with_boot_devices();
    rig.power_on();
    let boot_b = std::fs::read(rig.path("boot-b.img")).unwrap();
    let root = image(b'N', 100_000);
    let b = rig.bundle("v2", "2.0.0", "rpi4", &root);
    let out = rig.sup(&["install", b.to_str().unwrap(), "--no-reboot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("keeps its current boot partition"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(rig.path("slot-b.img")).unwrap(), root);
    assert_eq!(std::fs::read(rig.path("boot-b.img")).unwrap(), boot_b);
    assert_eq!(rig.power_on(), "booted slot B (trial)");
}

#[test]
fn bundles_are_reproducible_with_source_date_epoch() {
    let rig = Rig::new();
    std::fs::write(rig.path("root.img"), image(b'R', 300_000)).unwrap();
    std::fs::write(rig.path("boot.img"), image(b'k', 40_000)).unwrap();
    let create = |out: &str, epoch: &str| {
        rig.command(&[
            "bundle",
            "create",
            "--image",
            rig.path("root.img").to_str().unwrap(),
            "--boot-image",
            rig.path("boot.img").to_str().unwrap(),
            "--key",
            rig.path("keys/release.key").to_str().unwrap(),
            "--version",
            "2.0.0",
            "--board",
            "rpi4",
            "--out",
            rig.path(out).to_str().unwrap(),
        ])
        .env("SOURCE_DATE_EPOCH", epoch)
        .output()
        .unwrap()
    };
    for name in ["one.poshub", "two.poshub"] {
        let out = create(name, "1700000000");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let one = std::fs::read(rig.path("one.poshub")).unwrap();
    assert_eq!(one, std::fs::read(rig.path("two.poshub")).unwrap());
    assert!(String::from_utf8_lossy(&one).contains("\"created\":1700000000"));
    // A bad value is an error naming the variable, not a silent "now".
    let out = create("bad.poshub", "last tuesday");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("SOURCE_DATE_EPOCH"),
        "{}",
        stderr(&out)
    );
    assert!(!rig.path("bad.poshub").exists());
}

/// Re-signs `bundle` with the rig's key after `edit` changed its manifest.
fn resign(rig: &Rig, bundle: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(bundle).unwrap();
    let mlen = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let mut m: serde_json::Value = serde_json::from_slice(&bytes[12..12 + mlen]).unwrap();
    edit(&mut m);
    rig.write_signed_bundle(bundle, &m, &bytes[12 + mlen + 64..]);
}

/// A correctly signed bundle whose boot image does not match its own manifest (a broken build):
/// the root is written, the boot image check fails, the slot is `bad`, never armed, and the
/// next boot keeps the old slot.
#[test]
fn boot_image_not_matching_the_signed_manifest_leaves_the_slot_bad() {
    let mut rig = Rig::new();
    rig.with_boot_devices();
    rig.power_on();
    let (slot_a, boot_a) = (
        std::fs::read(rig.path("slot-a.img")).unwrap(),
        std::fs::read(rig.path("boot-a.img")).unwrap(),
    );
    let b = v2_root_and_boot(&rig);
    resign(&rig, &b, |m| {
        m["boot_image_sha256"] = sha256_hex(b"another kernel").into();
    });
    // `bundle verify` decompresses and finds it (issue 14.5); the install finds it while writing.
    let out = rig.sup(&["bundle", "verify", b.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("boot image does not match the manifest"),
        "{}",
        stderr(&out)
    );
    let out = rig.sup(&["install", b.to_str().unwrap(), "--no-reboot"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("boot image does not match the manifest"),
        "{}",
        stderr(&out)
    );
    let st = rig.status();
    assert_eq!(slot_state(&st, "B"), "bad", "{st}");
    assert!(st["trial"].is_null(), "{st}");
    assert_eq!(std::fs::read(rig.path("slot-a.img")).unwrap(), slot_a);
    assert_eq!(std::fs::read(rig.path("boot-a.img")).unwrap(), boot_a);
    assert_eq!(rig.power_on(), "booted slot A");

    // A signed format 2 manifest without its boot fields is refused before anything is written.
    let c = rig.bundle_with_boot("v3", "3.0.0", "rpi4", &image(b'M', 1000), Some(b"k"));
    resign(&rig, &c, |m| {
        m.as_object_mut().unwrap().remove("boot_image_size");
    });
    refused(&rig, &c, "format 2 requires boot_image_size");
}

/// The image's boot partitions are built per slot (label `boot<s>`, `root=PARTLABEL=root<s>` in
/// `cmdline.env`): slot A's boot image is not written to slot B.
#[test]
fn boot_image_built_for_the_other_slot_is_refused() {
    let mut rig = Rig::new();
    rig.with_boot_devices();
    rig.power_on();
    let ext4 = |label: &[u8]| {
        let mut b = image(b'k', 20_000);
        b[1024 + 56..1024 + 58].copy_from_slice(&[0x53, 0xef]);
        b[1024 + 120..1024 + 136].fill(0);
        b[1024 + 120..1024 + 120 + label.len()].copy_from_slice(label);
        b
    };
    let boot_b = std::fs::read(rig.path("boot-b.img")).unwrap();
    let b = rig.bundle_with_boot(
        "v2",
        "2.0.0",
        "rpi4",
        &image(b'N', 50_000),
        Some(&ext4(b"bootA")),
    );
    let out = rig.sup(&["install", b.to_str().unwrap(), "--no-reboot"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("labelled bootA"), "{}", stderr(&out));
    assert_eq!(std::fs::read(rig.path("boot-b.img")).unwrap(), boot_b);
    let st = rig.status();
    assert_eq!(slot_state(&st, "B"), "bad", "{st}");
    assert_eq!(rig.power_on(), "booted slot A");
    // The one built for slot B installs.
    let boot = ext4(b"bootB");
    let b = rig.bundle_with_boot("v3", "3.0.0", "rpi4", &image(b'M', 50_000), Some(&boot));
    let out = rig.sup(&["install", b.to_str().unwrap(), "--no-reboot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(rig.path("boot-b.img")).unwrap(), boot);
}

/// A root image and a boot image.
type RootAndBoot = (Vec<u8>, Vec<u8>);

/// A device with boot devices booted into slot A, slot A's (root, boot) images, and the (root,
/// boot) images of a 2.0.0 release made from them: the root with a changed region, the boot
/// image with a new file in the middle (everything after it shifts).
fn booted_a_and_a_delta_release() -> (Rig, RootAndBoot, RootAndBoot) {
    let mut rig = Rig::new();
    rig.with_boot_devices();
    assert_eq!(rig.power_on(), "booted slot A");
    let slot_a = std::fs::read(rig.path("slot-a.img")).unwrap();
    let boot_a = std::fs::read(rig.path("boot-a.img")).unwrap();
    let mut root = slot_a.clone();
    root[5_000..6_000].copy_from_slice(&image(b'z', 1_000));
    let boot = [&boot_a[..10_000], &image(b'q', 3_000), &boot_a[10_000..]].concat();
    (rig, (slot_a, boot_a), (root, boot))
}

/// A format 4 delta rebuilds the boot image from the booted slot's boot partition: slot B's
/// boot device gets the new boot image byte-exact, slot A's is only read; `bundle verify`
/// rebuilds it with `--boot-base` and asks for it without.
#[test]
fn delta_with_a_boot_base_rebuilds_the_boot_image_from_the_booted_boot_partition() {
    let (rig, (slot_a, boot_a), (root, boot)) = booted_a_and_a_delta_release();
    let b = rig.delta_bundle_with_boot_base("d", "2.0.0", (&root, &boot), (&slot_a, &boot_a));
    let (sa, ba) = (rig.path("slot-a.img"), rig.path("boot-a.img"));
    let (b, sa, ba) = (
        b.to_str().unwrap(),
        sa.to_str().unwrap(),
        ba.to_str().unwrap(),
    );
    let out = rig.sup(&["bundle", "verify", b, "--base", sa, "--boot-base", ba]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("\"format\": 4"),
        "{text}{}",
        stderr(&out)
    );
    let out = rig.sup(&["bundle", "verify", b, "--base", sa]);
    assert!(
        stderr(&out).contains("pass --boot-base"),
        "{}",
        stderr(&out)
    );

    let st = installs_into_b(&rig, b, (&root, &boot), (&slot_a, &boot_a));
    assert!(
        st["journal"]
            .to_string()
            .contains("rebuilt from a delta against slot A and its boot partition"),
        "{st}"
    );
    assert_eq!(rig.power_on(), "booted slot B (trial)");
}

/// A format 4 delta whose boot base is not what the booted slot's boot partition holds (made
/// against another kernel, or the partition changed since) is refused before anything is
/// written, naming both hashes; so is one on a device without boot devices.
#[test]
fn delta_for_another_boot_base_is_refused_and_nothing_is_touched() {
    let (rig, (slot_a, boot_a), (root, boot)) = booted_a_and_a_delta_release();
    let other = image(b'O', boot_a.len());
    let b = rig.delta_bundle_with_boot_base("d1", "2.0.0", (&root, &boot), (&slot_a, &other));
    let expect = format!(
        "delta bundle 2.0.0 applies only to boot base image sha256 {} ({} bytes), but booted \
         slot A's boot partition ({}) holds sha256 {}: nothing was written; install the full \
         bundle of 2.0.0 instead",
        sha256_hex(&other),
        other.len(),
        rig.path("boot-a.img").display(),
        sha256_hex(&boot_a)
    );
    refused(&rig, &b, &expect);
    // Made against slot A's boot partition, which has changed by one byte since.
    let b = rig.delta_bundle_with_boot_base("d2", "2.0.0", (&root, &boot), (&slot_a, &boot_a));
    let mut flipped = boot_a.clone();
    flipped[100] ^= 1;
    std::fs::write(rig.path("boot-a.img"), &flipped).unwrap();
    refused(&rig, &b, "applies only to boot base image");
    let st = rig.status();
    assert_ne!(slot_state(&st, "B"), "bad", "{st}");
    assert_ne!(st["update"]["state"], "installing", "{st}");
    // No boot devices to read the boot base from.
    let rig = Rig::new();
    rig.power_on();
    let slot_a = std::fs::read(rig.path("slot-a.img")).unwrap();
    let b = rig.delta_bundle_with_boot_base("d3", "2.0.0", (&root, &boot), (&slot_a, &boot_a));
    refused(&rig, &b, "no slot boot devices configured");
}
