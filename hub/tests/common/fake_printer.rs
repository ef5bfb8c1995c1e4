//! A fake ESC/POS network printer: a TCP listener on loopback that records every byte it reads,
//! like a raw port-9100 printer. It can be switched off (the port then refuses connections),
//! started again on the same port, or stalled (it accepts but stops reading, like a printer out
//! of paper; a small receive buffer makes the stall reach the sender quickly).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// `GS V 66 0`, the cut that ends every ticket the hub prints.
pub const CUT: [u8; 4] = [0x1d, b'V', 66, 0];

pub struct FakePrinter {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
    stalled: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl FakePrinter {
    /// A printer on a new loopback port.
    pub async fn start() -> FakePrinter {
        Self::start_on(0).await
    }

    /// A printer on `port` (0 = any), e.g. the port of a printer that was off. Async although it
    /// awaits nothing: it spawns its accept loop, which needs the caller's tokio runtime.
    #[allow(clippy::unused_async)]
    pub async fn start_on(port: u16) -> FakePrinter {
        let sock = TcpSocket::new_v4().expect("socket");
        sock.set_reuseaddr(true).expect("reuseaddr");
        // Small, so a stalled printer stops acknowledging after a few KiB.
        sock.set_recv_buffer_size(4096).expect("rcvbuf");
        sock.bind(([127, 0, 0, 1], port).into())
            .expect("bind printer port");
        let listener = sock.listen(16).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let (stalled, stalled_rx) = watch::channel(false);
        // Like a raw port-9100 printer, it prints one connection at a time, in the order they
        // came: every connection is accepted at once (its bytes wait in the kernel), and one
        // reader takes them in turn, each to its end. (Reading them all at once interleaved
        // two tickets on the tape when a stall ended with several connections waiting.)
        let (queue, mut waiting) = tokio::sync::mpsc::unbounded_channel::<tokio::net::TcpStream>();
        let rec = received.clone();
        let mut stall = stalled_rx;
        tokio::spawn(async move {
            while let Some(mut s) = waiting.recv().await {
                let mut buf = [0u8; 1024];
                loop {
                    while *stall.borrow() {
                        if stall.changed().await.is_err() {
                            return;
                        }
                    }
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break, // the hub ended the stream: drop = close
                        Ok(n) => rec.lock().expect("lock").extend_from_slice(&buf[..n]),
                    }
                }
            }
        });
        let accept = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                if queue.send(s).is_err() {
                    return;
                }
            }
        });
        FakePrinter {
            addr,
            received,
            stalled,
            accept,
        }
    }

    /// `kds=127.0.0.1:PORT`
    pub fn env(&self, station: &str) -> String {
        format!("{station}={}", self.addr)
    }

    /// Stops reading (true) or resumes (false).
    pub fn stall(&self, on: bool) {
        let _ = self.stalled.send(on);
    }

    /// Switches the printer off: the port refuses connections from now on.
    pub fn stop(self) -> Vec<u8> {
        self.accept.abort();
        let _ = self.stalled.send(false);
        self.bytes()
    }

    /// The buffer this printer records into. It outlives `stop`: connections the printer had
    /// accepted before it was switched off are still read, in turn, and recorded.
    pub fn tape(&self) -> Arc<Mutex<Vec<u8>>> {
        self.received.clone()
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.received.lock().expect("lock").clone()
    }

    /// Every complete ticket received so far (text up to and including each cut).
    pub fn tickets(&self) -> Vec<String> {
        tickets_in(&self.bytes())
    }

    /// Waits until at least `n` tickets arrived; returns them.
    pub async fn wait_tickets(&self, n: usize, within: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let t = self.tickets();
            if t.len() >= n {
                return t;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "printer got {} of {n} tickets: {t:?}",
                t.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Splits a byte stream into tickets at each cut.
pub fn tickets_in(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + CUT.len() <= bytes.len() {
        if bytes[i..i + CUT.len()] == CUT {
            out.push(String::from_utf8_lossy(&bytes[start..i + CUT.len()]).to_string());
            i += CUT.len();
            start = i;
        } else {
            i += 1;
        }
    }
    out
}

/// The ticket id printed on a ticket (`Ticket: k-1`).
pub fn ticket_id(ticket: &str) -> String {
    ticket
        .lines()
        .find_map(|l| l.strip_prefix("Ticket: "))
        .unwrap_or("?")
        .to_string()
}
