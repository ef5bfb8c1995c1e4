//! The real hub (`target/debug/poshub`) under the real supervisor, for tests that write orders
//! as a terminal would and look at what survives: backups, offsite copies.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use poshub_supervisor::backup::retention;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::*;

/// The real hub binary, next to the supervisor's.
pub fn hub_bin() -> PathBuf {
    let p = Path::new(SUP).with_file_name("poshub");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p poshub` (cargo test --workspace builds it)",
        p.display()
    );
    p
}

/// A rig whose supervisor runs the real hub (open auth, loopback ports, no mDNS).
pub struct RealHub {
    pub rig: Rig,
    pub ws: u16,
    pub http: u16,
}

impl RealHub {
    pub fn new(interval_s: u64) -> RealHub {
        let mut rig = Rig::new();
        let (ws, http) = (free_port(), free_port());
        rig.set("SUPERVISOR_HUB_BIN", hub_bin().to_str().unwrap());
        rig.set("SUPERVISOR_HUB_ARGS", "serve");
        rig.set(
            "SUPERVISOR_HUB_HEALTH_URL",
            &format!("http://127.0.0.1:{http}/health"),
        );
        rig.set("SUPERVISOR_BACKUP_INTERVAL_S", &interval_s.to_string());
        rig.set("SUPERVISOR_BACKUP_MIN_FREE_MB", "1");
        rig.power_on();
        RealHub { rig, ws, http }
    }

    pub fn start(&self) -> Sup {
        self.start_with(&[])
    }

    /// [`RealHub::start`] with more variables in the supervisor's (and so the hub's)
    /// environment.
    pub fn start_with(&self, extra: &[(&str, &str)]) -> Sup {
        let (ws, http) = (self.ws.to_string(), self.http.to_string());
        let mut env = vec![
            ("HUB_BIND", "127.0.0.1"),
            ("HUB_PORT", ws.as_str()),
            ("HUB_HTTP_PORT", http.as_str()),
            ("HUB_MDNS_ENABLED", "false"),
            ("HUB_AUTH_MODE", "open"),
            ("HUB_LOG_LEVEL", "warn"),
        ];
        env.extend_from_slice(extra);
        let child = self.rig.spawn(&["run"], &env);
        let mut sup = Sup(child);
        let up = wait_for(Duration::from_secs(30), || {
            self.health().is_some_and(|h| h["status"] == "ok")
        });
        if !up {
            sup.kill();
            panic!("hub not healthy: {}", self.rig.log("run"));
        }
        sup
    }

    pub fn health(&self) -> Option<Value> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.http)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let req = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        serde_json::from_str(buf.split_once("\r\n\r\n")?.1).ok()
    }

    pub fn orders(&self) -> u64 {
        self.health().expect("hub answers")["orders"]
            .as_u64()
            .unwrap()
    }

    /// Writes `n` new orders as one terminal, each acknowledged (durable) before the next.
    pub fn write_orders(&self, prefix: &str, n: usize) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = format!("ws://127.0.0.1:{}/", self.ws);
        rt.block_on(async {
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
                .await
                .unwrap();
            let auth = json!({"type": "AUTH", "terminalId": "T1", "name": "till 1"});
            ws.send(Message::Text(auth.to_string().into()))
                .await
                .unwrap();
            recv(&mut ws, "AUTH_OK").await;
            for i in 0..n {
                let p = format!("{prefix}-{i}");
                let lease = json!({"type": "LEASE_ACQUIRE", "posReference": p});
                ws.send(Message::Text(lease.to_string().into()))
                    .await
                    .unwrap();
                recv(&mut ws, "LEASE_GRANTED").await;
                let snap = json!({"posReference": p, "state": "draft", "lines": [{"id": "l1",
                    "productId": 7, "quantity": 2, "unitPrice": 4.5}], "totals": {"total": 9.0}});
                let m = json!({"type": "ORDER_SNAPSHOT", "posReference": p, "baseVersion": 0,
                    "snapshot": snap});
                ws.send(Message::Text(m.to_string().into())).await.unwrap();
                recv(&mut ws, "ORDER_ACK").await;
            }
        });
    }

    /// Names of the supervisor's backups, oldest first.
    pub fn backups(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.rig.path("data/backups"))
            .map(|rd| {
                rd.filter_map(std::result::Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| {
                        n.starts_with(retention::PREFIX)
                            && std::path::Path::new(n)
                                .extension()
                                .is_some_and(|x| x == "redb")
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The box loses power (supervisor `SIGKILLed`; the hub follows), then the card's database
    /// turns out corrupt.
    pub fn crash_and_corrupt(&self, sup: &mut Sup) {
        sup.kill();
        let down = wait_for(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", self.http)).is_err()
        });
        assert!(down, "hub still up after the supervisor died");
        std::thread::sleep(Duration::from_millis(300));
        let db = self.rig.path("data/hub.redb");
        let mut bytes = std::fs::read(&db).unwrap();
        bytes[..4096].fill(0xAB);
        std::fs::write(&db, &bytes).unwrap();
    }

    /// The recovery check of the database after the last start.
    pub fn database_check(&self) -> Value {
        let st = self.rig.status();
        st["recovery"]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "database")
            .cloned()
            .unwrap()
    }
}

pub async fn recv<S>(ws: &mut S, ty: &str) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {ty} in time"))
            .expect("socket open")
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == ty {
                return v;
            }
            assert_ne!(v["type"], "ERROR", "{v}");
        }
    }
}

/// The supervisor process; killed and reaped on drop.
pub struct Sup(pub Proc);

impl Sup {
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
    pub fn term(&mut self) {
        let status = stop(&mut self.0 .0, libc::SIGTERM);
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        self.kill();
    }
}
