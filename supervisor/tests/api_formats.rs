//! Issue 20: `GET /slots` (and `status --json`) says which bundle formats this supervisor
//! installs (`bundleFormats`), so a fleet run sends a box only a delta whose format it reads.
//! The list is checked against what the supervisor actually does: every format from 0 to two
//! past the newest is signed into a bundle and given to `bundle verify` and to `POST /update`;
//! exactly the listed ones pass the format check. Real supervisor, real loopback HTTP.

mod common;
use common::client::http;
use common::*;

const TOK: Option<&str> = Some("test-token");

/// Whether the supervisor's answer to a bundle of `format` (its `bundle verify` stderr, or the
/// API's error) is the refusal of an unknown format.
fn refused_as_unknown(format: u64, err: &str) -> bool {
    let unknown = err.contains(&format!("unknown format {format} "));
    assert!(
        !unknown || err.contains("update the supervisor first"),
        "{err}"
    );
    unknown
}

#[test]
fn slots_report_the_bundle_formats_that_verify_and_the_api_accept() {
    let rig = Rig::new();
    rig.power_on();
    let (_sup, port) = rig.run_api(&[]);
    let (code, slots) = http(port, "GET", "/slots", TOK, b"", None);
    assert_eq!(code, 200, "{slots}");
    println!("GET /slots bundleFormats: {}", slots["bundleFormats"]);
    let listed: Vec<u64> = slots["bundleFormats"]
        .as_array()
        .unwrap_or_else(|| panic!("no bundleFormats in /slots: {slots}"))
        .iter()
        .map(|f| f.as_u64().expect("a format number"))
        .collect();
    assert_eq!(rig.status()["bundleFormats"], slots["bundleFormats"]);
    // Fleet tooling relies on it: the newest delta format is there.
    assert!(listed.contains(&4), "{listed:?}");

    let img = image(b'N', 50_000);
    let payload = zstd(&img);
    let newest = listed.iter().copied().max().unwrap_or(0);
    let slot_b = std::fs::read(rig.path("slot-b.img")).unwrap();
    let mut read_by_verify = Vec::new();
    let mut read_by_api = Vec::new();
    for f in 0..=newest + 2 {
        let mut m = manifest_for("2.0.0", &img);
        m["format"] = f.into();
        let b = rig.signed_bundle(&format!("format{f}"), m, &payload);
        let out = rig.sup(&["bundle", "verify", b.to_str().unwrap()]);
        if f == 1 {
            // A well-formed bundle: the other formats fail on their format alone.
            assert!(out.status.success(), "{}", stderr(&out));
        }
        if !refused_as_unknown(f, &stderr(&out)) {
            read_by_verify.push(f);
        }
        if f == 1 {
            continue; // the API would install it
        }
        let (code, v) = http(
            port,
            "POST",
            "/update",
            TOK,
            &std::fs::read(&b).unwrap(),
            None,
        );
        assert_eq!(code, 400, "format {f}: {v}");
        if !refused_as_unknown(f, v["error"].as_str().unwrap_or_default()) {
            read_by_api.push(f);
        }
    }
    println!("bundle verify reads {read_by_verify:?}; POST /update reads {read_by_api:?} and 1");
    assert_eq!(read_by_verify, listed);
    read_by_api.push(1);
    read_by_api.sort_unstable();
    assert_eq!(read_by_api, listed);
    assert_eq!(std::fs::read(rig.path("slot-b.img")).unwrap(), slot_b);
}
