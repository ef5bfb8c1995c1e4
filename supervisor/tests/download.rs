//! `install https://...`: a real TLS server on loopback with a certificate from a test CA
//! (rcgen), trusted through `SUPERVISOR_CA_FILE` only. The server cuts the first connection
//! half way through the bundle; the supervisor resumes with a range request and installs.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::sync::{Arc, Mutex};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA and a server config whose certificate (for 127.0.0.1) it signed.
fn test_ca() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "poshub test CA");
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    (ca_pem, Arc::new(cfg))
}

/// Serves `body` at `/b.poshub` over TLS for up to `n` connections (then the thread ends).
/// Honours `Range: bytes=N-` (206). With `cut`, the first response sends half the body and
/// closes the TCP connection without a TLS `close_notify`, like a dropped link. Returns the port
/// and the request heads received.
fn serve_tls(
    body: Vec<u8>,
    n: usize,
    cut: bool,
    cfg: Arc<rustls::ServerConfig>,
) -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    std::thread::spawn(move || {
        for i in 0..n {
            let Ok((tcp, _)) = l.accept() else { return };
            let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)));
            let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
            let mut s = rustls::StreamOwned::new(conn, tcp);
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
                match s.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let head = String::from_utf8_lossy(&head).to_lowercase();
            if head.is_empty() {
                continue; // the TLS handshake failed: no request
            }
            seen.lock().unwrap().push(head.clone());
            let from = head
                .lines()
                .find_map(|l| l.strip_prefix("range: bytes="))
                .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
            let len = body.len();
            let (status, extra, sent) = match from {
                _ if !head.starts_with("get /b.poshub ") => {
                    ("404 Not Found", String::new(), &[][..])
                }
                Some(f) if f < len => (
                    "206 Partial Content",
                    format!("content-range: bytes {f}-{}/{len}\r\n", len - 1),
                    &body[f..],
                ),
                _ => ("200 OK", String::new(), &body[..]),
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n",
                sent.len()
            );
            if cut && i == 0 {
                let _ = s.write_all(&sent[..sent.len() / 2]);
                let _ = s.flush();
                let _ = s.sock.shutdown(Shutdown::Both);
                continue;
            }
            let _ = s.write_all(sent);
            s.conn.send_close_notify();
            let _ = s.flush();
        }
    });
    (port, heads)
}

/// `install URL --no-reboot` without proxy variables from the environment.
fn install_url(rig: &Rig, url: &str) -> std::process::Output {
    let mut c = rig.command(&["install", url, "--no-reboot"]);
    for v in [
        "https_proxy",
        "HTTPS_PROXY",
        "http_proxy",
        "HTTP_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        c.env_remove(v);
    }
    c.output().unwrap()
}

/// A pseudo-random image (compresses poorly, so the bundle is large enough to cut).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// Issue 14.6: HTTPS with a private CA, a connection cut half way, resumed with a range
/// request; the slot holds the image with the signed hash.
#[test]
fn https_download_cut_half_way_resumes_with_a_range_request() {
    let mut rig = Rig::new();
    rig.power_on();
    let img = noise(600_000);
    let bundle = std::fs::read(rig.bundle("v2", "2.0.0", "rpi4", &img)).unwrap();
    let (ca_pem, cfg) = test_ca();
    std::fs::write(rig.path("test-ca.pem"), ca_pem).unwrap();
    let ca = rig.path("test-ca.pem");
    rig.set("SUPERVISOR_CA_FILE", ca.to_str().unwrap());
    let half = bundle.len() / 2;
    let (port, heads) = serve_tls(bundle.clone(), 2, true, cfg);

    let out = install_url(&rig, &format!("https://127.0.0.1:{port}/b.poshub"));
    let heads = heads.lock().unwrap().clone();
    for h in &heads {
        println!(
            "request: {}",
            h.lines().take(4).collect::<Vec<_>>().join(" | ")
        );
    }
    println!("stdout: {}", String::from_utf8_lossy(&out.stdout).trim());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(!heads[0].contains("range:"), "{}", heads[0]);
    assert!(
        heads[1].contains(&format!("range: bytes={half}-\r\n")),
        "second request: {}",
        heads[1]
    );
    let slot_b = std::fs::read(rig.path("slot-b.img")).unwrap();
    assert_eq!(sha256_hex(&slot_b[..img.len()]), sha256_hex(&img));
    let st = rig.status();
    assert_eq!(slot_state(&st, "B"), "trying", "{st}");
    assert_eq!(st["slots"]["B"]["sha256"], sha256_hex(&img));
    assert_eq!(rig.power_on(), "booted slot B (trial)");
    // Nothing left in the spool.
    let left: Vec<_> = std::fs::read_dir(rig.path("data/supervisor/incoming"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The test CA is trusted only through `SUPERVISOR_CA_FILE`: without it the same server is
/// refused (certificate verification is on), nothing is installed and no request is sent.
#[test]
fn https_download_refuses_a_server_the_device_does_not_trust() {
    let rig = Rig::new();
    rig.power_on();
    let bundle = std::fs::read(rig.bundle("v2", "2.0.0", "rpi4", &noise(50_000))).unwrap();
    let (_ca_pem, cfg) = test_ca();
    let (port, heads) = serve_tls(bundle, 1, false, cfg);
    let slot_b = std::fs::read(rig.path("slot-b.img")).unwrap();
    let out = install_url(&rig, &format!("https://127.0.0.1:{port}/b.poshub"));
    let err = stderr(&out);
    println!("untrusted: {}", err.trim());
    assert!(!out.status.success());
    assert!(err.contains("certificate"), "{err}");
    assert!(heads.lock().unwrap().is_empty(), "a request was sent");
    assert_eq!(std::fs::read(rig.path("slot-b.img")).unwrap(), slot_b);
    assert_ne!(slot_state(&rig.status(), "B"), "trying");
}
