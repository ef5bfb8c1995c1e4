//! Writes a year of a busy store into a real hub: the hub's own server and engine, in this
//! process, on a `ManualClock` that starts `days` ago and is stepped a quarter of an hour at a
//! time through each day's 12 trading hours, while terminals connected over WebSocket send what
//! `orders` says. Compaction runs every simulated hour, as the hub's hourly tick does in
//! production (same engine command, on the simulated clock). Each day has a 24 h block that
//! ends at the real time the run started, so the database looks to a hub started afterwards
//! like a store that just closed its year.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use poshub::clock::{Clock, ManualClock, SystemClock};
use poshub::config::{Config, Vars};
use poshub::engine::Cmd;
use poshub::server::{self, RunningHub};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::orders::{Order, STAGES};
use crate::Plan;

const STEP_MS: u64 = 15 * 60 * 1000;
const DAY_MS: u64 = 86_400_000;
/// Steps of trading per day (12 h) and the last step that takes new orders (so they are paid
/// before closing).
const STEPS: u32 = 48;
const LAST_OPEN: u32 = STEPS - STAGES;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What the generation saw, for the report.
#[derive(Debug, Default)]
pub struct Year {
    /// (simulated time, head seq) after every step.
    pub marks: Vec<(u64, u64)>,
    /// (day, database bytes, head seq, real seconds so far): after days 1 and 7 (nothing is old
    /// enough to compact yet: the growth of a day with nothing removed), every 30 days, at the end.
    pub samples: Vec<(u32, u64, u64, f64)>,
    /// How long each hourly compaction took (compaction command to a committed probe).
    pub compactions: Vec<Duration>,
    /// Replies by type that were not the expected success (table-lock conflicts are normal).
    pub refusals: std::collections::BTreeMap<String, u64>,
    pub messages: u64,
    pub end_ms: u64,
}

struct Term {
    ws: Ws,
    next_id: u64,
}

/// The settings the generating hub runs with (the defaults of a store, on loopback).
pub fn config(dir: &Path) -> anyhow::Result<Config> {
    let db = dir.join("hub.redb").display().to_string();
    let vars = Vars::from_map([
        ("HUB_BIND", "127.0.0.1"),
        ("HUB_PORT", "0"),
        ("HUB_HTTP_PORT", "0"),
        ("HUB_DB_PATH", db.as_str()),
        ("HUB_MDNS_ENABLED", "false"),
        ("HUB_AUTH_MODE", "open"),
        // Twelve hours of a store's traffic go by in seconds: the per-terminal flood limit
        // (5000 messages/s by default) would refuse what the year's terminals send.
        ("HUB_RATE_LIMIT_PER_SEC", "4000000000"),
    ]);
    Config::from_vars(&vars, false).map_err(|e| anyhow::anyhow!("{e}"))
}

pub async fn generate(dir: &Path, plan: &Plan) -> anyhow::Result<Year> {
    let end = SystemClock.now_ms();
    let start = end - u64::from(plan.days) * DAY_MS;
    let clock = Arc::new(ManualClock::at(start));
    let hub = server::start_with_clock(config(dir)?, clock.clone()).await?;
    let url = format!("ws://{}/", hub.ws_addr);
    let mut terms = Vec::new();
    for i in 0..plan.terminals {
        terms.push(connect(&url, &format!("till-{i}")).await?);
    }
    let mut year = Year {
        end_ms: end,
        ..Year::default()
    };
    let began = Instant::now();
    let mut n = 0u64;
    for day in 0..plan.days {
        let trading = start + u64::from(day) * DAY_MS + DAY_MS / 2;
        let last = day + 1 == plan.days;
        let mut open: Vec<Order> = Vec::new();
        for step in 0..STEPS {
            clock.advance_to(trading + u64::from(step) * STEP_MS);
            let new = new_orders(plan, step, last);
            open.extend((0..new).map(|_| {
                n += 1;
                Order {
                    n,
                    day,
                    opened: step,
                }
            }));
            run_step(&mut terms, &open, step, plan.writes_per_order, &mut year).await?;
            open.retain(|o| step - o.opened + 1 < STAGES);
            year.marks.push((clock.now_ms(), head(&hub)));
            if step % 4 == 3 {
                year.compactions.push(compact(&hub).await?);
            }
        }
        if day == 0 || day == 6 || day % 30 == 29 || last {
            let bytes = std::fs::metadata(dir.join("hub.redb")).map_or(0, |m| m.len());
            year.samples
                .push((day + 1, bytes, head(&hub), began.elapsed().as_secs_f64()));
            // A file size in MB for people: exact below 2^52 bytes.
            #[allow(clippy::cast_precision_loss)]
            let mb = bytes as f64 / 1e6;
            eprintln!(
                "day {:>3}: {:>6.1} MB, seq {}, {:.0} s",
                day + 1,
                mb,
                head(&hub),
                began.elapsed().as_secs_f64()
            );
        }
    }
    clock.advance_to(end);
    year.compactions.push(compact(&hub).await?);
    for mut t in terms {
        let _ = t.ws.close(None).await;
    }
    hub.shutdown(Duration::from_secs(10)).await;
    Ok(year)
}

fn head(hub: &RunningHub) -> u64 {
    hub.hub
        .engine
        .stats
        .head_seq
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// Orders taken at `step`: the day's orders spread evenly over the steps that take orders; on
/// the last day, `open_at_end` more in its last steps, still open when the year ends.
fn new_orders(plan: &Plan, step: u32, last_day: bool) -> u64 {
    let per_day = u64::from(plan.orders_per_day);
    let mut n = if step <= LAST_OPEN {
        let slots = u64::from(LAST_OPEN + 1);
        per_day * u64::from(step + 1) / slots - per_day * u64::from(step) / slots
    } else {
        0
    };
    // Taken after the last step whose orders are paid by closing time: still open at the end.
    if last_day && step > LAST_OPEN {
        let extra = u64::from(plan.open_at_end);
        let (k, steps) = (
            u64::from(step - LAST_OPEN - 1),
            u64::from(STEPS - LAST_OPEN - 1),
        );
        n += extra * (k + 1) / steps - extra * k / steps;
    }
    n
}

/// Sends every open order's messages for this step (orders spread over the terminals), then
/// waits for every answer.
async fn run_step(
    terms: &mut [Term],
    open: &[Order],
    step: u32,
    writes: u32,
    year: &mut Year,
) -> anyhow::Result<()> {
    let count = terms.len() as u64;
    let mut expected = vec![0u64; terms.len()];
    for o in open {
        let i = usize::try_from(o.n % count)?;
        let t = &mut terms[i];
        for (msg, answered) in o.stage(step - o.opened, writes, &mut t.next_id) {
            t.ws.feed(Message::Text(msg.to_string().into())).await?;
            expected[i] += u64::from(answered);
            year.messages += 1;
        }
    }
    for (t, want) in terms.iter_mut().zip(expected) {
        tokio::time::timeout(Duration::from_secs(60), t.ws.flush())
            .await
            .context("the hub stopped reading for 60 s")??;
        answers(t, want, year).await?;
    }
    Ok(())
}

/// Reads until `want` answers (frames with a `requestId`) came, within 60 s in all (the hub's
/// periodic broadcasts keep arriving when an answer does not); broadcasts are skipped.
async fn answers(t: &mut Term, want: u64, year: &mut Year) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut got = 0;
    while got < want {
        let frame = tokio::time::timeout_at(deadline, t.ws.next())
            .await
            .with_context(|| format!("{got} of {want} answers from the hub within 60 s"))?;
        let Some(Ok(Message::Text(text))) = frame else {
            match frame {
                Some(Ok(_)) => continue,
                _ => bail!("the hub closed the connection"),
            }
        };
        if !text.contains("\"requestId\"") {
            continue;
        }
        got += 1;
        let v: Value = serde_json::from_str(&text)?;
        let ty = v["type"].as_str().unwrap_or("");
        if !matches!(
            ty,
            "LEASE_GRANTED"
                | "LEASE_RELEASED"
                | "ORDER_ACK"
                | "TABLE_LOCK_GRANTED"
                | "TICKET_NUMBER"
                | "KITCHEN_TICKET_ACK"
                | "INVENTORY_ACK"
        ) {
            let key = format!("{ty} {}", v["code"].as_str().unwrap_or(""));
            *year.refusals.entry(key).or_default() += 1;
        }
    }
    Ok(())
}

/// The hourly compaction, timed until it is committed.
async fn compact(hub: &RunningHub) -> anyhow::Result<Duration> {
    let t = Instant::now();
    if !hub.hub.engine.send(Cmd::Compact) {
        bail!("the engine stopped");
    }
    tokio::time::timeout(Duration::from_secs(120), hub.hub.engine.probe())
        .await
        .context("compaction did not commit within 120 s")?
        .map_err(|e| anyhow::anyhow!("probe after compaction: {e}"))?;
    Ok(t.elapsed())
}

async fn connect(url: &str, id: &str) -> anyhow::Result<Term> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    ws.send(Message::Text(
        json!({"type": "AUTH", "terminalId": id, "name": id})
            .to_string()
            .into(),
    ))
    .await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("AUTH_OK") => break,
            Some(Ok(_)) => {}
            _ => bail!("{id}: no AUTH_OK"),
        }
    }
    Ok(Term { ws, next_id: 0 })
}
