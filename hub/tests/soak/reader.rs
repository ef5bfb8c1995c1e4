//! A screen that only watches (a manager's tablet, a kitchen display): it checks that it gets
//! every event exactly once, in order, across its own reconnects. It drops its socket at random
//! moments, stays away a little, and comes back with `cursor` = the last `seq` it has; the
//! catch-up (`EVENTS_BULK`) and then the live events must continue at `cursor + 1`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::common::Term;
use crate::sample::Counters;

pub struct Reader {
    pub id: String,
    hub: SocketAddr,
    rng: StdRng,
    c: Arc<Counters>,
    /// The next `seq` it must receive.
    next: u64,
    /// Events received (bulk and live).
    pub events: u64,
    pub reconnects: u64,
    /// Longest time spent away.
    pub longest_away: Duration,
}

impl Reader {
    pub fn new(index: u64, hub: SocketAddr, rng: StdRng, c: Arc<Counters>) -> Reader {
        Reader {
            id: format!("screen-{index}"),
            hub,
            rng,
            c,
            next: 1,
            events: 0,
            reconnects: 0,
            longest_away: Duration::ZERO,
        }
    }

    /// Watches until the load stops, reconnecting every 2-12 s after 0-2 s away; then reads
    /// until it has everything up to the `seq` the test sends on `head`.
    pub async fn run(mut self, mut head: watch::Receiver<u64>) -> Reader {
        let mut term = self.open().await;
        while !self.c.stopped() {
            let stay = Duration::from_millis(self.rng.gen_range(2000..12_000));
            if !self.watch(&mut term, Instant::now() + stay).await {
                Counters::bump(&self.c.hub_closed);
            } else if self.c.stopped() {
                break;
            }
            drop(term);
            let away = Duration::from_millis(self.rng.gen_range(0..2000));
            self.longest_away = self.longest_away.max(away);
            tokio::time::sleep(away).await;
            term = self.open().await;
            self.reconnects += 1;
            Counters::bump(&self.c.reconnects);
        }
        let want = *head.wait_for(|h| *h > 0).await.expect("head seq");
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.next <= want {
            assert!(
                Instant::now() < deadline,
                "{}: at seq {} of {want} after 60 s",
                self.id,
                self.next - 1
            );
            assert!(self.watch(&mut term, deadline).await, "{}: closed", self.id);
        }
        self
    }

    /// Connects with the cursor it has: 0 at first, so what the tills wrote before this screen
    /// was up comes as catch-up too.
    async fn open(&mut self) -> Term {
        let auth = json!({"type": "AUTH", "terminalId": self.id, "name": self.id,
            "cursor": self.next - 1});
        Term::open_with(self.hub, auth).await
    }

    /// Reads until `until` (or, once the load stopped, until caught up to nothing new for a
    /// second); false if the hub closed the socket.
    async fn watch(&mut self, term: &mut Term, until: Instant) -> bool {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, term.ws.next()).await {
                Err(_) => return true,
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("hub sends JSON");
                    self.take(&v);
                }
                Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) => return false,
                Ok(Some(Ok(_))) => {}
            }
            if self.c.stopped() && left > Duration::from_secs(1) {
                return true;
            }
        }
    }

    /// Checks one message against the seq it expects.
    fn take(&mut self, v: &Value) {
        match v["type"].as_str() {
            Some("EVENTS_BULK") => {
                let from = v["fromSeq"].as_u64().expect("fromSeq");
                let to = v["toSeq"].as_u64().expect("toSeq");
                assert_eq!(from, self.next, "{}: EVENTS_BULK {from}..{to}", self.id);
                for e in v["events"].as_array().expect("events") {
                    self.event(e);
                }
                assert_eq!(
                    self.next,
                    to + 1,
                    "{}: bulk {from}..{to} incomplete",
                    self.id
                );
            }
            Some("RESYNC_REQUIRED" | "STATE") => panic!(
                "{}: {} at cursor {} (away at most {:?}): the soak keeps screens within a \
                 replayable distance",
                self.id,
                v["type"],
                self.next - 1,
                self.longest_away
            ),
            _ if v.get("seq").is_some() && v.get("ts").is_some() => self.event(v),
            _ => {}
        }
    }

    fn event(&mut self, e: &Value) {
        let seq = e["seq"].as_u64().expect("event seq");
        assert!(seq >= self.next, "{}: duplicate seq {seq}: {e}", self.id);
        assert_eq!(seq, self.next, "{}: gap before seq {seq}: {e}", self.id);
        self.next += 1;
        self.events += 1;
    }
}
