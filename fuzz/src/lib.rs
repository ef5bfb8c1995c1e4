//! What the fuzz targets share: one real hub per fuzzing process (in-process, on a temporary
//! database in memory where possible, bound to 127.0.0.1 on ephemeral ports), reached over a
//! real WebSocket and real HTTP, and a check that it still answers after each input.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The admin token of the fuzzed hub (sent on admin routes so their parsing is reached).
pub const ADMIN_TOKEN: &str = "fuzz-admin-token-0123456789";
/// How long the hub may take to answer; longer is a hang, reported as a crash.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// The running hub and the runtime it runs on.
pub struct Harness {
    pub rt: tokio::runtime::Runtime,
    pub ws: SocketAddr,
    pub http: SocketAddr,
}

/// The hub of this process, started on first use and never stopped (libFuzzer exits the process).
pub fn hub() -> &'static Harness {
    static HUB: OnceLock<Harness> = OnceLock::new();
    HUB.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let base = std::path::Path::new("/dev/shm");
        let dir = if base.is_dir() {
            tempfile::tempdir_in(base)
        } else {
            tempfile::tempdir()
        }
        .expect("tempdir");
        let dir = dir.keep();
        let vars = [
            ("HUB_BIND", "127.0.0.1".to_string()),
            ("HUB_PORT", "0".into()),
            ("HUB_HTTP_PORT", "0".into()),
            ("HUB_DB_PATH", dir.join("hub.redb").display().to_string()),
            ("HUB_MDNS_ENABLED", "false".into()),
            ("HUB_AUTH_MODE", "open".into()),
            ("HUB_ADMIN_TOKEN", ADMIN_TOKEN.into()),
            ("TENANT_ID", "t1".into()),
            ("STORE_ID", "s1".into()),
        ];
        let vars = poshub::config::Vars::from_map(vars.iter().map(|(k, v)| (*k, v.clone())));
        let cfg = poshub::config::Config::from_vars(&vars, false).expect("fuzz hub config");
        let running = rt
            .block_on(poshub::server::start(cfg))
            .expect("fuzz hub starts");
        let (ws, http) = (running.ws_addr, running.http_addr);
        std::mem::forget(running);
        Harness { rt, ws, http }
    })
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A terminal connection, authenticated in open mode as `terminal`.
pub async fn terminal(ws: SocketAddr, terminal: &str) -> Ws {
    let (mut s, _) = tokio::time::timeout(
        ANSWER_WITHIN,
        tokio_tungstenite::connect_async(format!("ws://{ws}/")),
    )
    .await
    .expect("hub accepts a connection in time")
    .expect("websocket connects");
    let auth = serde_json::json!({"type": "AUTH", "terminalId": terminal, "name": terminal});
    s.send(Message::Text(auth.to_string().into()))
        .await
        .expect("send AUTH");
    wait_for(&mut s, "AUTH_OK")
        .await
        .expect("the hub answers AUTH");
    s
}

/// Reads until a text frame of type `ty`; `None` if the hub closed the socket.
pub async fn wait_for(s: &mut Ws, ty: &str) -> Option<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + ANSWER_WITHIN;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, s.next()).await {
            Err(_) => panic!("the hub did not answer {ty} within {ANSWER_WITHIN:?}: hung"),
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return None,
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: serde_json::Value =
                    serde_json::from_str(&t).expect("the hub sends JSON text frames");
                if v["type"] == ty {
                    return Some(v);
                }
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// The hub still serves: a fresh terminal authenticates and gets its `PONG`.
pub async fn still_alive(ws: SocketAddr) {
    let mut s = terminal(ws, "fuzz-probe").await;
    s.send(Message::Text(r#"{"type":"PING"}"#.into()))
        .await
        .expect("send PING");
    wait_for(&mut s, "PONG")
        .await
        .expect("the hub answers PING");
}
