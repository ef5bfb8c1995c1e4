//! Issue 16: `POST /update` tells a bad bundle (400, with its reason) from a fault of the box
//! (500, logged): a device with no public key configured, or whose key file cannot be read, is
//! not the uploader's fault, and retrying another bundle would not help. Real supervisor, real
//! loopback HTTP; slot B is checked untouched after every refusal.

mod common;
use common::client::http;
use common::*;

const TOK: Option<&str> = Some("test-token");

/// Uploads a good 2.0.0 bundle to a supervisor started with `key` as `SUPERVISOR_PUBLIC_KEY`
/// (empty: not set); returns the answer, `GET /update/status` after it, and the run log.
fn upload_with_key(key: Option<&str>) -> (u16, serde_json::Value, serde_json::Value, String) {
    let mut rig = Rig::new();
    let bundle = std::fs::read(rig.bundle("v2", "2.0.0", "rpi4", &image(b'N', 100_000))).unwrap();
    if let Some(k) = key {
        let k = k.replace("$RIG", rig.dir.path().to_str().unwrap());
        rig.set("SUPERVISOR_PUBLIC_KEY", &k);
    }
    rig.power_on();
    let slot_b = std::fs::read(rig.path("slot-b.img")).unwrap();
    let (_sup, port) = rig.run_api(&[]);
    let (code, v) = http(port, "POST", "/update", TOK, &bundle, None);
    let (_, status) = http(port, "GET", "/update/status", TOK, b"", None);
    assert_eq!(std::fs::read(rig.path("slot-b.img")).unwrap(), slot_b);
    (code, v, status, rig.log("run"))
}

#[test]
fn no_public_key_configured_is_a_500_that_says_so() {
    let (code, v, status, log) = upload_with_key(Some(""));
    println!("no key: {code} {v}");
    assert_eq!(code, 500, "{v}");
    let err = v["error"].as_str().unwrap_or_default();
    assert!(err.contains("SUPERVISOR_PUBLIC_KEY is not set"), "{err}");
    assert!(!err.contains("bundle refused"), "{err}");
    assert_eq!(status["state"], "failed", "{status}");
    assert!(
        log.contains("SUPERVISOR_PUBLIC_KEY is not set"),
        "not logged:\n{log}"
    );
}

#[test]
fn unreadable_key_file_is_a_500_that_names_it() {
    // A directory where the key file should be: reading it fails (as a damaged file would).
    let (code, v, _, log) = upload_with_key(Some("$RIG/keys"));
    println!("unreadable key: {code} {v}");
    assert_eq!(code, 500, "{v}");
    let err = v["error"].as_str().unwrap_or_default();
    assert!(err.contains("public key") && err.contains("keys"), "{err}");
    assert!(log.contains("public key"), "not logged:\n{log}");
}

#[test]
fn a_tampered_bundle_is_still_a_400_with_its_reason() {
    let rig = Rig::new();
    let mut bundle =
        std::fs::read(rig.bundle("v2", "2.0.0", "rpi4", &image(b'N', 100_000))).unwrap();
    let last = bundle.len() - 1;
    bundle[last] ^= 0xff; // one payload byte changed after signing
    rig.power_on();
    let slot_b = std::fs::read(rig.path("slot-b.img")).unwrap();
    let (_sup, port) = rig.run_api(&[]);
    let (code, v) = http(port, "POST", "/update", TOK, &bundle, None);
    println!("tampered: {code} {v}");
    assert_eq!(code, 400, "{v}");
    let err = v["error"].as_str().unwrap_or_default();
    assert!(err.contains("does not match its signed checksum"), "{err}");
    assert_eq!(std::fs::read(rig.path("slot-b.img")).unwrap(), slot_b);
}
