//! Edges of the wire protocol and the HTTP side found from outside (issue 13, points 6-7):
//! JSON nested past the documented depth, WebSocket protocol violations (close 1002/1007 with
//! a close frame, not a dropped socket), a `type` written with JSON escapes, the `Bearer`
//! scheme in any case on every admin route, and CORS headers on every HTTP answer. Extreme
//! integers are in `numeric_extremes.rs`.

mod common;

use std::net::SocketAddr;

use common::*;
use poshub::protocol::inbound::MAX_DEPTH;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------
// Point 6: nesting depth.

/// A JSON value nested `depth` levels deep (`depth` = 1 is `{"v":1}`).
fn nested(depth: usize) -> String {
    let mut s = String::from("1");
    for i in 0..depth {
        s = if i % 2 == 0 {
            format!(r#"{{"v":{s}}}"#)
        } else {
            format!("[{s}]")
        };
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_deeper_than_the_limit_is_refused_and_never_stored() {
    let hub = TestHub::start(&[]).await;
    let mut a = hub.term("A").await;
    let mut b = hub.term("B").await;
    // The frame is level 1, `snapshot` level 2: a custom field at the very limit is kept and
    // reads back identical everywhere.
    let deepest_ok = nested(MAX_DEPTH - 2);
    let too_deep = nested(200);
    a.lease("D-1").await;
    let snap = format!(r#"{{"posReference":"D-1","custom":{deepest_ok}}}"#);
    let frame = format!(
        r#"{{"type":"ORDER_SNAPSHOT","posReference":"D-1","baseVersion":0,"snapshot":{snap}}}"#
    );
    a.send_raw(tokio_tungstenite::tungstenite::Message::Text(frame.into()))
        .await;
    let ack = a.recv_type_of(&["ORDER_ACK", "ERROR"]).await;
    assert_eq!(ack["type"], "ORDER_ACK", "{ack}");
    let (_, got) = http_get(hub.http, "/orders/D-1").await;
    let want: Value = serde_json::from_str(&snap).expect("valid");
    assert_eq!(got["snapshot"], want, "read back as sent");
    let updated = b.recv_type("ORDER_UPDATED").await;
    assert_eq!(updated["snapshot"], want);
    let plan = format!(r#"{{"type":"FLOOR_PLAN_UPDATE","floorId":1,"tables":[{deepest_ok}]}}"#);
    a.send_raw(tokio_tungstenite::tungstenite::Message::Text(plan.into()))
        .await;
    a.recv_type("FLOOR_PLAN_SAVED").await;
    let tables: Value = serde_json::from_str(&format!("[{deepest_ok}]")).expect("valid");
    assert_eq!(b.recv_type("FLOOR_PLAN_CHANGED").await["tables"], tables);
    // A terminal whose cursor is ahead of the hub gets the full STATE: read back intact too.
    let mut c = Term::open_with(
        hub.ws,
        json!({"type": "AUTH", "terminalId": "C", "cursor": 1_000_000}),
    )
    .await;
    let state = c.recv_type("STATE").await;
    assert_eq!(state["orders"][0]["snapshot"], want, "{state}");
    assert_eq!(state["floorPlans"][0]["tables"], tables, "{state}");

    // Deeper: refused with an ERROR naming the limit, nothing stored or broadcast.
    a.lease("D-2").await;
    let deep_frames = [
        format!(
            r#"{{"type":"ORDER_SNAPSHOT","posReference":"D-2","baseVersion":0,"requestId":"r1","snapshot":{{"posReference":"D-2","custom":{too_deep}}}}}"#
        ),
        format!(
            r#"{{"type":"FLOOR_PLAN_UPDATE","floorId":2,"requestId":"r1","tables":[{too_deep}]}}"#
        ),
        format!(
            r#"{{"type":"KITCHEN_TICKET","ticketId":"k","station":"kds","posReference":"D-2","requestId":"r1","lines":[{{"x":{too_deep}}}]}}"#
        ),
        // One level past the limit is already too deep.
        format!(
            r#"{{"type":"ORDER_SNAPSHOT","posReference":"D-2","baseVersion":0,"requestId":"r1","snapshot":{{"posReference":"D-2","custom":{}}}}}"#,
            nested(MAX_DEPTH - 1)
        ),
    ];
    for f in deep_frames {
        a.send_raw(tokio_tungstenite::tungstenite::Message::Text(f.into()))
            .await;
        let e = a
            .recv_type_of(&[
                "ORDER_ACK",
                "ERROR",
                "FLOOR_PLAN_SAVED",
                "KITCHEN_TICKET_ACK",
            ])
            .await;
        assert_eq!(
            (&e["type"], &e["code"], &e["requestId"]),
            (&json!("ERROR"), &json!("too_deep"), &json!("r1")),
            "{e}"
        );
        assert!(
            e["message"]
                .as_str()
                .unwrap_or_default()
                .contains(&MAX_DEPTH.to_string()),
            "the message names the limit: {e}"
        );
    }
    assert_eq!(http_get(hub.http, "/orders/D-2").await.0, 404);
    let plans = http_get(hub.http, "/tables").await.1["floorPlans"].clone();
    assert_eq!(
        plans.as_array().map(Vec::len),
        Some(1),
        "only floor 1: {plans}"
    );
    b.quiet_for(300).await;
    hub.stop().await;
}

/// What is forwarded upstream reads back intact too: the Odoo double (a real HTTP server that
/// parses every body with `serde_json`) receives the custom field at the limit unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_at_the_limit_reaches_odoo_intact() {
    use common::odoo_double::*;
    let odoo = OdooDouble::start().await;
    let env = odoo_env(&odoo);
    let hub = TestHub::start(&refs(&env)).await;
    let mut a = hub.term("A").await;
    a.lease("U-1").await;
    let custom = nested(MAX_DEPTH - 2);
    let frame = format!(
        r#"{{"type":"ORDER_SNAPSHOT","posReference":"U-1","baseVersion":0,"snapshot":{{"posReference":"U-1","lines":[],"custom":{custom}}}}}"#
    );
    a.send_raw(tokio_tungstenite::tungstenite::Message::Text(frame.into()))
        .await;
    assert_eq!(
        a.recv_type_of(&["ORDER_ACK", "ERROR"]).await["type"],
        "ORDER_ACK"
    );
    wait_health(hub.http, WAIT, "forwarded", |h| h["forwardedEvents"] == 1).await;
    let want: Value = serde_json::from_str(&custom).expect("valid");
    assert_eq!(odoo.orders()["U-1"][0].1["custom"], want);
    hub.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Point 7: WebSocket protocol violations, escaped types, Bearer, CORS.

/// A WebSocket client that writes frames byte by byte, to send what libraries refuse to.
struct RawWs {
    s: TcpStream,
}

impl RawWs {
    async fn connect(addr: SocketAddr) -> RawWs {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let req = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.expect("handshake");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            let n = tokio::time::timeout(WAIT, s.read(&mut b))
                .await
                .expect("handshake in time")
                .expect("read");
            assert_eq!(n, 1, "closed during handshake");
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        RawWs { s }
    }

    /// Writes one frame: `first` is the FIN/RSV/opcode byte; masked as a client must.
    async fn frame(&mut self, first: u8, payload: &[u8]) {
        let len = u8::try_from(payload.len()).expect("short payload");
        assert!(len < 126);
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        let mut f = vec![first, 0x80 | len];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.s.write_all(&f).await.expect("write frame");
    }

    /// Reads server frames until a close frame (its code) or the end of the stream (None).
    async fn close_code(&mut self) -> Option<u16> {
        loop {
            let mut h = [0u8; 2];
            let read = tokio::time::timeout(WAIT, self.s.read_exact(&mut h))
                .await
                .expect("the hub answers or closes in time");
            read.ok()?;
            let len = match h[1] & 0x7f {
                126 => {
                    let mut l = [0u8; 2];
                    self.s.read_exact(&mut l).await.ok()?;
                    u16::from_be_bytes(l) as usize
                }
                127 => {
                    let mut l = [0u8; 8];
                    self.s.read_exact(&mut l).await.ok()?;
                    usize::try_from(u64::from_be_bytes(l)).ok()?
                }
                n => n as usize,
            };
            let mut payload = vec![0u8; len];
            self.s.read_exact(&mut payload).await.ok()?;
            if h[0] & 0x0f == 0x8 {
                return Some(
                    payload
                        .get(..2)
                        .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]])),
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_protocol_violations_close_with_1002_or_1007() {
    let hub = TestHub::start(&[]).await;
    // Invalid UTF-8 in a text frame (before and after AUTH): 1007.
    let mut w = RawWs::connect(hub.ws).await;
    w.frame(0x81, &[b'{', 0xff, 0xfe, b'}']).await;
    assert_eq!(
        w.close_code().await,
        Some(1007),
        "invalid UTF-8, unauthenticated"
    );
    let mut w = RawWs::connect(hub.ws).await;
    w.frame(0x81, br#"{"type":"AUTH","terminalId":"raw"}"#)
        .await;
    w.frame(0x81, &[0xc3, 0x28]).await;
    assert_eq!(
        w.close_code().await,
        Some(1007),
        "invalid UTF-8, authenticated"
    );
    // Protocol violations: 1002.
    let violations: [(&str, u8, &[u8]); 3] = [
        ("reserved bit set", 0xC1, b"{}"),
        ("reserved opcode", 0x83, b"{}"),
        ("continuation without a start", 0x80, b"{}"),
    ];
    for (what, first, payload) in violations {
        let mut w = RawWs::connect(hub.ws).await;
        w.frame(first, payload).await;
        assert_eq!(w.close_code().await, Some(1002), "{what}");
    }
    // The hub is fine.
    let mut t = hub.term("after").await;
    t.send(json!({"type": "PING"})).await;
    assert_eq!(t.recv().await["type"], "PONG");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_written_with_json_escapes_is_the_same_type() {
    let hub = TestHub::start(&[]).await;
    let mut t = Term::connect(hub.ws).await;
    t.send_raw(tokio_tungstenite::tungstenite::Message::Text(
        r#"{"type":"\u0050ING","requestId":1}"#.into(),
    ))
    .await;
    let pong = t.recv().await;
    assert_eq!(
        (&pong["type"], &pong["requestId"]),
        (&json!("PONG"), &json!(1)),
        "{pong}"
    );
    t.send_raw(tokio_tungstenite::tungstenite::Message::Text(
        r#"{"type":"AUTH","terminalId":"esc\u0061ped"}"#.replace("AUTH", "\\u0041UTH").into(),
    ))
    .await;
    let ok = t.recv_type("AUTH_OK").await;
    assert_eq!(ok["terminalId"], "escaped");
    t.send_raw(tokio_tungstenite::tungstenite::Message::Text(
        r#"{"type":"LEASE\u005fACQUIRE","posReference":"E-1"}"#.into(),
    ))
    .await;
    assert_eq!(t.recv().await["type"], "LEASE_GRANTED");
    hub.stop().await;
}

/// The raw answer (status line, headers and body) to one request.
async fn raw_http(addr: SocketAddr, method: &str, path: &str, headers: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("in time")
        .expect("read");
    String::from_utf8_lossy(&buf).to_string()
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_is_case_insensitive_on_every_admin_route() {
    let hub = TestHub::start(&[]).await;
    let token = std::fs::read_to_string(hub.dir.path().join("admin-token"))
        .expect("generated admin token")
        .trim()
        .to_string();
    let routes = [
        ("POST", "/admin/reset-leases"),
        ("GET", "/admin/dead-letters"),
        ("GET", "/admin/registers"),
        ("POST", "/admin/dead-letters/requeue"),
    ];
    for (method, path) in routes {
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let a = raw_http(
                hub.http,
                method,
                path,
                &format!("Authorization: {scheme} {token}\r\n"),
            )
            .await;
            assert_eq!(status_of(&a), 200, "{method} {path} with {scheme}: {a}");
        }
        for bad in [
            "Basic {token}",
            "Bearer wrong",
            "Bearer{token}",
            "Token {token}",
        ] {
            let h = format!("Authorization: {}\r\n", bad.replace("{token}", &token));
            let a = raw_http(hub.http, method, path, &h).await;
            assert_eq!(status_of(&a), 401, "{method} {path} with {bad}: {a}");
        }
    }
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_answer_has_the_cors_headers() {
    let hub = TestHub::start(&[]).await;
    let requests = [
        ("GET", "/metrics"),
        ("GET", "/"),
        ("GET", "/dashboard"),
        ("GET", "/terminal"),
        ("GET", "/health"),
        ("GET", "/orders/none"),
        ("GET", "/nowhere"),
        ("DELETE", "/orders"),
        ("POST", "/reset"),
        ("GET", "/admin/dead-letters"),
        ("OPTIONS", "/metrics"),
    ];
    for (method, path) in requests {
        let a = raw_http(hub.http, method, path, "").await;
        let head = a
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        for h in [
            "access-control-allow-origin: *",
            "access-control-allow-methods:",
            "access-control-allow-headers:",
        ] {
            assert!(head.contains(h), "{method} {path} lacks {h}:\n{head}");
        }
    }
    hub.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The hub writes its frames itself (`net::ws_write`); tungstenite only reads. Its answers to
// the protocol's own frames still reach the terminal, in order with everything else.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_from_a_terminal_gets_its_pong_between_broadcasts() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let hub = TestHub::start(&[]).await;
    let mut writer = hub.term("A").await;
    let mut reader = hub.term("B").await;
    writer.lease("P-1").await;
    writer.write("P-1", 0, snapshot("P-1", "draft", None)).await;
    reader
        .send_raw(Message::Ping(b"are you there".to_vec().into()))
        .await;
    writer
        .write("P-1", 1, snapshot("P-1", "draft", Some(4)))
        .await;
    // B sees the first update, the pong with its payload, and the second update, each whole.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while seen.len() < 3 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = tokio::time::timeout(left, reader.ws.next())
            .await
            .expect("frames in time")
            .expect("socket open")
            .expect("valid frame");
        match frame {
            Message::Pong(payload) => {
                seen.push(format!("pong {}", String::from_utf8_lossy(&payload)));
            }
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
                if v["type"] == "ORDER_UPDATED" {
                    seen.push(format!("updated v{}", v["version"]));
                }
            }
            _ => {}
        }
    }
    assert!(
        seen.contains(&"pong are you there".to_string()),
        "no pong with the ping's payload: {seen:?}"
    );
    let updates: Vec<&String> = seen.iter().filter(|s| s.starts_with("updated")).collect();
    assert_eq!(updates, ["updated v1", "updated v2"], "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_of_every_length_form_arrive_whole() {
    // 7-bit, 16-bit and 64-bit payload lengths: a short reply, a ~1 KB update, and an update
    // over 64 KiB (a large note), each parsed by a standard client.
    let hub = TestHub::start(&[]).await;
    let mut writer = hub.term("A").await;
    let mut reader = hub.term("B").await;
    writer.lease("L-1").await;
    let mut snap = snapshot("L-1", "draft", None);
    snap["note"] = json!("n".repeat(100 * 1024));
    let ack = writer.write("L-1", 0, snap.clone()).await;
    assert_eq!(ack["type"], "ORDER_ACK", "{ack}");
    let got = reader.recv_type("ORDER_UPDATED").await;
    assert_eq!(got["snapshot"]["note"], snap["note"]);
    let small = snapshot("L-1", "draft", Some(2));
    writer.write("L-1", 1, small.clone()).await;
    let got = reader.recv_type("ORDER_UPDATED").await;
    assert_eq!(got["snapshot"], small);
}
