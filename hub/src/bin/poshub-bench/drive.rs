//! Drives the load: N authenticated terminals, W of them writing orders they hold the lease on
//! (pipelined up to a window, or paced at a rate), every terminal recording when each
//! `ORDER_UPDATED` arrives. Times are microseconds since the start of the run.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::Args;

/// Orders each writer keeps leased and cycles through. Each `ORDER_UPDATED` of these orders is
/// about 1.1 KB of JSON (seven lines with notes), like a real order.
const ORDERS_PER_WRITER: usize = 16;

/// One acknowledged write: its seq, when it was sent and when its ack arrived.
#[derive(Clone, Copy)]
pub struct Write {
    pub seq: u64,
    pub sent_us: u64,
    pub acked_us: u64,
}

pub struct RunResult {
    pub writes: Vec<Write>,
    /// Per terminal: (seq, `received_us`) of every `ORDER_UPDATED`.
    pub received: Vec<Vec<(u64, u64)>>,
    /// Per terminal: the seq of the newest `STATE` it was sent (0: none). A terminal that fell
    /// far behind may be sent the state instead of the events it missed (`RESYNC_REQUIRED`
    /// `state_smaller_than_replay`): those events are covered, not lost.
    pub state_seqs: Vec<u64>,
    /// Per terminal: the seqs of its own acknowledged writes (never broadcast back to it).
    pub own_writes: Vec<Vec<u64>>,
    pub measure_from_us: u64,
    pub measure_to_us: u64,
    pub errors: u64,
}

fn snapshot(p: &str) -> String {
    let lines: Vec<String> = (0..7)
        .map(|i| format!(r#"{{"id":"l{i}","productId":{},"quantity":{},"unitPrice":4.5,"taxIds":[1],"note":"no onions, extra sauce"}}"#, 100 + i, 1 + i))
        .collect();
    format!(
        r#"{{"posReference":"{p}","state":"draft","orderType":"dine_in","tableId":12,"partnerId":7,"lines":[{}],"totals":{{"subtotal":67.5,"tax":6.75,"total":74.25}},"paymentLines":[],"note":"window seat, birthday"}}"#,
        lines.join(",")
    )
}

fn seq_of(text: &str) -> Option<u64> {
    let i = text.rfind("\"seq\":")? + 6;
    let digits: String = text[i..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// What one terminal's reader and writer share.
#[derive(Clone)]
struct Shared {
    /// (seq, `received_us`) of every `ORDER_UPDATED` from others.
    received: Arc<Mutex<Vec<(u64, u64)>>>,
    /// When each write still waiting for its ack was sent, oldest first.
    sent_times: Arc<Mutex<VecDeque<u64>>>,
    writes: Arc<Mutex<Vec<Write>>>,
    /// The seq of the newest `STATE` received (0: none).
    state_seq: Arc<AtomicU64>,
    /// Writes the writer may still have in flight (and lease grants before the start).
    window: Arc<Semaphore>,
    errors: Arc<AtomicU64>,
}

/// The run's switches: go (every terminal connected), stop writing, close the sockets.
#[derive(Clone)]
struct Control {
    start: Instant,
    go: tokio::sync::watch::Receiver<bool>,
    stop: Arc<AtomicBool>,
    /// Set once every owed broadcast has arrived (or the drain deadline passed).
    closing: Arc<AtomicBool>,
}

impl Control {
    fn us(&self) -> u64 {
        poshub::clock::micros(self.start.elapsed())
    }

    /// Waits until the drain is over.
    async fn closed(&self) {
        while !self.closing.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What the run keeps of each terminal's reader.
struct Reader {
    received: Arc<Mutex<Vec<(u64, u64)>>>,
    writes: Arc<Mutex<Vec<Write>>>,
    state_seq: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// Writes per second each writer aims at (0: flat out).
// A handful of writers: exact as f64.
#[allow(clippy::cast_precision_loss)]
fn per_writer_rate(args: &Args) -> f64 {
    if args.rate == 0 {
        0.0
    } else {
        f64::from(args.rate) / args.writers as f64
    }
}

pub async fn drive(args: &Args, url: &str, duration: Duration) -> anyhow::Result<RunResult> {
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let ctl = Control {
        start: Instant::now(),
        go: go_rx,
        stop: Arc::new(AtomicBool::new(false)),
        closing: Arc::new(AtomicBool::new(false)),
    };
    let errors = Arc::new(AtomicU64::new(0));
    let mut readers: Vec<Reader> = Vec::new();
    let mut writer_tasks = Vec::new();
    let warmup = Duration::from_secs(1);
    let per_writer_rate = per_writer_rate(args);

    for t in 0..args.terminals {
        let id = format!("bench-{t}");
        let ws = connect(url, &id).await?;
        let (mut sink, stream) = ws.split();
        let is_writer = t < args.writers;
        let sh = Shared {
            received: Arc::new(Mutex::new(Vec::with_capacity(1 << 16))),
            sent_times: Arc::new(Mutex::new(VecDeque::new())),
            writes: Arc::new(Mutex::new(Vec::new())),
            state_seq: Arc::new(AtomicU64::new(0)),
            window: Arc::new(Semaphore::new(usize::from(!is_writer))),
            errors: errors.clone(),
        };
        // Reader: broadcasts from others, and for writers the acks of their own writes.
        let task = tokio::spawn(read_frames(stream, id.clone(), ctl.clone(), sh.clone()));
        readers.push(Reader {
            received: sh.received.clone(),
            writes: sh.writes.clone(),
            state_seq: sh.state_seq.clone(),
            task,
        });
        if is_writer {
            let (ctl, window) = (ctl.clone(), args.window);
            writer_tasks.push(tokio::spawn(async move {
                write_orders(&mut sink, &id, &ctl, &sh, window, per_writer_rate).await?;
                // A writer is a terminal too: keep receiving until the drain is over.
                ctl.closed().await;
                let _ = sink.close().await;
                anyhow::Ok(())
            }));
        } else {
            // Keep the sink alive until the drain is over so the socket stays open.
            let ctl = ctl.clone();
            tokio::spawn(async move {
                ctl.closed().await;
                let _ = sink.close().await;
            });
        }
    }
    // Every terminal is connected: start the writers, warm up, then measure.
    let load_started = ctl.us();
    let _ = go_tx.send(true);
    let measure_from_us = load_started + poshub::clock::micros(warmup);
    let measure_to_us = measure_from_us + poshub::clock::micros(duration);
    tokio::time::sleep(warmup + duration).await;
    ctl.stop.store(true, Ordering::Relaxed);
    wait_for_broadcasts(&readers).await;
    ctl.closing.store(true, Ordering::Relaxed);
    for w in writer_tasks {
        w.await.context("writer task")??;
    }
    let mut run = collect(readers);
    run.measure_from_us = measure_from_us;
    run.measure_to_us = measure_to_us;
    run.errors = errors.load(Ordering::Relaxed);
    Ok(run)
}

/// What the terminals' readers recorded, once the run is over (the readers are stopped).
fn collect(readers: Vec<Reader>) -> RunResult {
    let mut run = RunResult {
        writes: Vec::new(),
        received: Vec::new(),
        state_seqs: Vec::new(),
        own_writes: Vec::new(),
        measure_from_us: 0,
        measure_to_us: 0,
        errors: 0,
    };
    for r in readers {
        r.task.abort();
        let own = r.writes.lock().map(|w| w.clone()).unwrap_or_default();
        run.own_writes.push(own.iter().map(|w| w.seq).collect());
        run.writes.extend(own);
        run.received
            .push(r.received.lock().map(|r| r.clone()).unwrap_or_default());
        run.state_seqs.push(r.state_seq.load(Ordering::Relaxed));
    }
    run
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects one terminal and authenticates it (the hub must be in open auth mode).
async fn connect(url: &str, id: &str) -> anyhow::Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .with_context(|| format!("connect {url}"))?;
    ws.send(Message::Text(
        format!(r#"{{"type":"AUTH","terminalId":"{id}","name":"{id}"}}"#).into(),
    ))
    .await?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.as_str().contains("AUTH_OK") => Ok(ws),
        other => bail!("{id}: no AUTH_OK (is the hub in open auth mode?): {other:?}"),
    }
}

/// One terminal's reader: records every broadcast, and for a writer its acks (which open the
/// window for the next write).
async fn read_frames<St>(mut stream: St, own_id: String, ctl: Control, sh: Shared)
where
    St: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(Ok(m)) = stream.next().await {
        let Message::Text(text) = m else { continue };
        let s = text.as_str();
        if s.starts_with(r#"{"type":"ORDER_UPDATED""#) {
            if let Some(seq) = seq_of(s) {
                sh.received.lock().map(|mut r| r.push((seq, ctl.us()))).ok();
            }
        } else if s.starts_with(r#"{"type":"EVENTS_BULK""#) {
            // A terminal that fell behind is caught up in bulk: those events are delivered
            // too (late, and the latency figures show it).
            let now = ctl.us();
            let seqs = bulk_order_seqs(s, &own_id);
            sh.received
                .lock()
                .map(|mut r| r.extend(seqs.into_iter().map(|q| (q, now))))
                .ok();
        } else if s.starts_with(r#"{"type":"STATE""#) {
            let seq = serde_json::from_str::<serde_json::Value>(s)
                .ok()
                .and_then(|v| v["seq"].as_u64())
                .unwrap_or(0);
            sh.state_seq.fetch_max(seq, Ordering::Relaxed);
        } else if s.starts_with(r#"{"type":"ORDER_ACK""#) {
            let now = ctl.us();
            let sent = sh
                .sent_times
                .lock()
                .ok()
                .and_then(|mut q| q.pop_front())
                .unwrap_or(now);
            if let Some(seq) = seq_of(s) {
                let w = Write {
                    seq,
                    sent_us: sent,
                    acked_us: now,
                };
                sh.writes.lock().map(|mut ws| ws.push(w)).ok();
            }
            sh.window.add_permits(1);
        } else if s.starts_with(r#"{"type":"LEASE_GRANTED""#) {
            sh.window.add_permits(1);
        } else if s.starts_with(r#"{"type":"ERROR""#) || s.starts_with(r#"{"type":"CONFLICT""#) {
            sh.errors.fetch_add(1, Ordering::Relaxed);
            sh.sent_times.lock().map(|mut q| q.pop_front()).ok();
            sh.window.add_permits(1);
        }
    }
}

/// One writer: leases its orders, then writes them in turn until told to stop, pipelined up
/// to `window_size` unacknowledged writes (or paced at `rate` writes per second).
async fn write_orders<Si>(
    sink: &mut Si,
    id: &str,
    ctl: &Control,
    sh: &Shared,
    window_size: usize,
    rate: f64,
) -> anyhow::Result<()>
where
    Si: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    let mut go = ctl.go.clone();
    go.wait_for(|g| *g).await?;
    let refs: Vec<String> = (0..ORDERS_PER_WRITER)
        .map(|i| format!("{id}-order-{i}"))
        .collect();
    let snaps: Vec<String> = refs.iter().map(|p| snapshot(p)).collect();
    for p in &refs {
        sink.send(Message::Text(
            format!(r#"{{"type":"LEASE_ACQUIRE","posReference":"{p}"}}"#).into(),
        ))
        .await?;
    }
    // All leases granted before the clock starts.
    let granted = sh
        .window
        .acquire_many(u32::try_from(ORDERS_PER_WRITER)?)
        .await?;
    granted.forget();
    sh.window.add_permits(window_size);
    let mut versions = [0u64; ORDERS_PER_WRITER];
    let mut tick = (rate > 0.0).then(|| {
        let mut i = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        i
    });
    let mut k = 0usize;
    while !ctl.stop.load(Ordering::Relaxed) {
        if let Some(t) = tick.as_mut() {
            t.tick().await;
        }
        let permit = sh.window.acquire().await?;
        permit.forget();
        let i = k % ORDERS_PER_WRITER;
        k += 1;
        let msg = format!(
            r#"{{"type":"ORDER_SNAPSHOT","posReference":"{}","baseVersion":{},"snapshot":{}}}"#,
            refs[i], versions[i], snaps[i]
        );
        versions[i] += 1;
        sh.sent_times.lock().map(|mut q| q.push_back(ctl.us())).ok();
        sink.feed(Message::Text(msg.into())).await?;
        if sh.window.available_permits() == 0 || tick.is_some() {
            sink.flush().await?;
        }
    }
    sink.flush().await?;
    Ok(())
}

/// Every acknowledged write is owed to every other terminal (after the newest `STATE` it was
/// sent, if any): waits (bounded, 10 s) until the broadcasts still queued or being caught up
/// have arrived, so "delivered" counts broadcasts that never arrive, not ones that were late at
/// the cut-off.
async fn wait_for_broadcasts(readers: &[Reader]) {
    let owed = || -> (usize, usize) {
        let seqs: Vec<Vec<u64>> = readers
            .iter()
            .map(|r| {
                r.writes
                    .lock()
                    .map_or(Vec::new(), |w| w.iter().map(|w| w.seq).collect())
            })
            .collect();
        let total: usize = seqs.iter().map(Vec::len).sum();
        let (mut want, mut got) = (0, 0);
        for (t, r) in readers.iter().enumerate() {
            let after = r.state_seq.load(Ordering::Relaxed);
            if after == 0 {
                want += total - seqs[t].len();
            } else {
                for (u, own) in seqs.iter().enumerate() {
                    if u != t {
                        want += own.iter().filter(|q| **q > after).count();
                    }
                }
            }
            got += r
                .received
                .lock()
                .map_or(0, |r| r.iter().filter(|(q, _)| *q > after).count());
        }
        (want, got)
    };
    let drain_deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let drain_started = tokio::time::Instant::now();
    loop {
        let (want, got) = owed();
        if got >= want {
            break;
        }
        if tokio::time::Instant::now() >= drain_deadline {
            eprintln!(
                "bench: {} broadcasts still missing {:.1} s after the load ended",
                want - got,
                drain_started.elapsed().as_secs_f64() + 0.5
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The seqs of the `ORDER_UPDATED` events inside an `EVENTS_BULK` frame, except the terminal's own
/// writes (catch-up replays those too; live fan-out skips the author, and so does the count).
fn bulk_order_seqs(frame: &str, own_id: &str) -> Vec<u64> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(frame) else {
        return Vec::new();
    };
    v["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["type"] == "ORDER_UPDATED" && e["terminalId"] != own_id)
                .filter_map(|e| e["seq"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}
