//! The terminal protocol: any text frame goes to the parser alone (it must return a message or
//! a `ProtoError`, never panic), then to a real hub from a connected terminal; the hub must
//! still answer that terminal (or have closed it with a reason) and any new one afterwards.
#![no_main]

use std::sync::Mutex;

use futures_util::SinkExt;
use libfuzzer_sys::fuzz_target;
use poshub_fuzz::{hub, still_alive, terminal, wait_for, Ws};
use tokio_tungstenite::tungstenite::Message;

static CONN: Mutex<Option<Ws>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let _ = poshub::protocol::parse(&text);
    let h = hub();
    let prev = CONN.lock().unwrap_or_else(|e| e.into_inner()).take();
    let kept = h.rt.block_on(async {
        let mut s = match prev {
            Some(s) => s,
            None => terminal(h.ws, "fuzz-till").await,
        };
        if s.send(Message::Text(text.into())).await.is_err() {
            still_alive(h.ws).await;
            return None;
        }
        // A request the engine answers after everything this terminal sent before it.
        let barrier = r#"{"type":"TICKET_NUMBER_REQUEST","orderType":"takeout"}"#;
        let alive = s.send(Message::Text(barrier.into())).await.is_ok()
            && wait_for(&mut s, "TICKET_NUMBER").await.is_some();
        if alive {
            Some(s)
        } else {
            // The hub closed this terminal (e.g. a frame over the size limit): it must still
            // serve the others.
            still_alive(h.ws).await;
            None
        }
    });
    *CONN.lock().unwrap_or_else(|e| e.into_inner()) = kept;
});
