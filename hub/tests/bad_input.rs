//! Bad input (docs/protocol.md "Limits"): clear errors, the socket stays open, oversize frames
//! close with 1009, floods are limited then closed with 1008, and the hub keeps serving everyone
//! else.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_get_errors_and_the_socket_stays_open() {
    let hub = TestHub::start(&[]).await;
    let mut t = hub.term("A").await;
    let cases: Vec<(Message, &str)> = vec![
        (Message::Text("{not json".into()), "invalid_json"),
        (Message::Text("42".into()), "invalid_message"),
        (Message::Text(r#"{"noType":1}"#.into()), "invalid_message"),
        (Message::Text(r#"{"type":"LAUNCH_ROCKET"}"#.into()), "unknown_type"),
        (Message::Text(r#"{"type":"LEASE_ACQUIRE","posReference":123}"#.into()), "invalid_message"),
        (Message::Text(r#"{"type":"ORDER_SNAPSHOT","posReference":"A","baseVersion":"one","snapshot":{}}"#.into()), "invalid_message"),
        (Message::Text(r#"{"type":"ORDER_SNAPSHOT","posReference":"A","baseVersion":0,"snapshot":{"state":"eaten"}}"#.into()), "invalid_message"),
        (Message::Text(r#"{"type":"TABLE_UPDATE","tableId":[1],"status":"x"}"#.into()), "invalid_message"),
        (Message::Text(r#"{"type":"AUTH","terminalId":"again"}"#.into()), "already_authenticated"),
        (Message::Binary(vec![0u8, 159, 146, 150].into()), "unsupported_frame"),
    ];
    for (m, code) in cases {
        t.send_raw(m).await;
        let e = t.recv().await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("ERROR"), Some(code)),
            "{e}"
        );
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    t.send(json!({"type": "LEASE_ACQUIRE", "requestId": "r1"}))
        .await;
    let e = t.recv().await;
    assert_eq!(e["requestId"], "r1");
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("posReference"),
        "{e}"
    );
    // Still fully usable.
    assert_eq!(t.lease("OK-1").await["type"], "LEASE_GRANTED");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frames_close_with_1009() {
    let hub = TestHub::start(&[]).await;
    let mut t = hub.term("A").await;
    let mut other = hub.term("B").await;
    let huge = format!(r#"{{"type":"PING","pad":"{}"}}"#, "x".repeat(300 * 1024));
    t.send_raw(Message::Text(huge.into())).await;
    assert_eq!(t.close_code().await, Some(1009));
    other.send(json!({"type": "PING"})).await;
    assert_eq!(other.recv().await["type"], "PONG");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_are_rate_limited_then_closed() {
    let hub = TestHub::start(&[("HUB_RATE_LIMIT_PER_SEC", "50")]).await;
    let mut flood = hub.term("F").await;
    let mut calm = hub.term("C").await;
    for _ in 0..400 {
        flood.send(json!({"type": "PING"})).await;
    }
    let mut limited = false;
    let code = loop {
        match flood.next(WAIT).await {
            Some(v) if v["code"] == "rate_limited" => limited = true,
            Some(_) => {}
            None => break true,
        }
    };
    assert!(
        code && limited,
        "flooder was told rate_limited before being closed"
    );
    // The flooder's close code is 1008; check on a fresh flood.
    let mut f2 = hub.term("F2").await;
    for _ in 0..400 {
        f2.send(json!({"type": "PING"})).await;
    }
    assert_eq!(f2.close_code().await, Some(1008));
    // Everyone else is unaffected.
    let start = std::time::Instant::now();
    calm.send(json!({"type": "PING"})).await;
    assert_eq!(calm.recv().await["type"], "PONG");
    assert!(start.elapsed() < Duration::from_secs(1));
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_on_the_http_port_and_cors() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hub = TestHub::start(&[]).await;
    let mut t = Term::connect_url(&format!("ws://{}/ws", hub.http)).await;
    t.send(json!({"type": "AUTH", "terminalId": "via-http"}))
        .await;
    assert_eq!(t.recv().await["type"], "AUTH_OK");
    let (status, _) = http(hub.http, "OPTIONS", "/orders", "").await;
    assert_eq!(status, 204);
    let mut s = tokio::net::TcpStream::connect(hub.http)
        .await
        .expect("connect");
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    assert!(
        buf.to_ascii_lowercase()
            .contains("access-control-allow-origin: *"),
        "{buf}"
    );
    // Plain HTTP on the WebSocket port is told where to go.
    assert_eq!(http(hub.ws, "GET", "/", "").await.0, 426);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_terminal_is_pinged_then_closed_and_a_live_one_is_not() {
    let hub = TestHub::start(&[("HUB_IDLE_TIMEOUT_MS", "200")]).await;
    let mut silent = hub.term("silent").await;
    let mut live = hub.term("live").await;
    // `live` keeps reading, so its client answers the hub's pings; `silent` reads nothing.
    live.quiet_for(1000).await;
    live.send(json!({"type": "PING"})).await;
    assert_eq!(live.recv().await["type"], "PONG");
    assert_eq!(silent.close_code().await, Some(1001));
    let (_, h) = http_get(hub.http, "/health").await;
    assert_eq!(h["terminals"], 1);
    hub.stop().await;
}
