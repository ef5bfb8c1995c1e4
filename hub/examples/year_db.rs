//! `cargo run --release -p poshub --example year_db -- OUT.redb [DAYS] [ORDERS_PER_DAY]`:
//! writes the database a busy store leaves after `DAYS` days (default 365) of
//! `ORDERS_PER_DAY` orders (default 600), for backup and restore figures (docs/backups.md).
//!
//! Bounded stand-in until the data-set generator of the issue "Cost that follows the state, not
//! the history" exists. It writes with the hub's own tables and record types what the hub keeps
//! after that time: every order's final state (the orders table is never compacted), and for
//! the last `HUB_EVENT_RETENTION_MS` (7 days) the event log of 15 writes per order with their
//! applied eventIds (older events are compacted by the hub). One transaction per day. It does
//! not go through the engine (no leases, kitchen tickets or upstream queue), so it is fast; the
//! file has the shape and size of the real one, which is what a backup copies and checks.

use std::path::PathBuf;

use poshub::store::records::{enc, AppliedRec, EventRec, OrderRec};
use poshub::store::{
    Store, EVENTS, EVENT_IDS, META, META_COMPACTED_THROUGH, META_HEAD_SEQ, META_LAST_TS, ORDERS,
};

const WRITES_PER_ORDER: u64 = 15;
const EVENT_DAYS: u64 = 7;
const DAY_MS: u64 = 86_400_000;

fn snapshot(p: &str, lines: usize, state: &str) -> String {
    let lines: Vec<String> = (0..lines)
        .map(|i| format!(r#"{{"id":"l{i}","productId":{},"quantity":{},"unitPrice":4.5,"taxIds":[1],"note":"no onions, extra sauce"}}"#, 100 + i, 1 + i % 3))
        .collect();
    format!(
        r#"{{"posReference":"{p}","state":"{state}","orderType":"dine_in","tableId":12,"partnerId":7,"lines":[{}],"totals":{{"subtotal":67.5,"tax":6.75,"total":74.25}},"paymentLines":[{{"method":"card","amount":74.25}}],"note":"window seat, birthday"}}"#,
        lines.join(",")
    )
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("usage: year_db OUT.redb [DAYS] [ORDERS_PER_DAY]"))?,
    );
    let days: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(365);
    let per_day: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(600);
    anyhow::ensure!(!out.exists(), "{} exists already", out.display());
    let store = Store::open(&out, 64 * 1024 * 1024)?;
    let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    let start_ms = now_ms - days * DAY_MS;
    let mut seq = 0u64;
    let started = std::time::Instant::now();
    for day in 0..days {
        let tx = store.db()?.begin_write()?;
        {
            let mut orders = tx.open_table(ORDERS)?;
            let mut events = tx.open_table(EVENTS)?;
            let mut ids = tx.open_table(EVENT_IDS)?;
            let with_events = day + EVENT_DAYS >= days;
            for n in 0..per_day {
                let p = format!("Order {:05}-{:03}-{:04}", day, n % 7, n);
                let t0 = start_ms + day * DAY_MS + n * (DAY_MS / 2 / per_day.max(1));
                for w in 0..WRITES_PER_ORDER {
                    seq += 1;
                    if !with_events {
                        continue;
                    }
                    let ts = t0 + w * 60_000;
                    let snap = snapshot(&p, 1 + usize::try_from(w)? / 2, "draft");
                    let msg = format!(
                        r#"{{"type":"ORDER_UPDATED","seq":{seq},"posReference":"{p}","version":{},"snapshot":{snap}}}"#,
                        w + 1
                    );
                    let ev = EventRec {
                        ts_ms: ts,
                        kind: "order_snapshot".into(),
                        pos_reference: Some(p.clone()),
                        terminal_id: format!("T{}", n % 6),
                        message: msg,
                        scope: None,
                    };
                    events.insert(seq, enc(&ev).as_slice())?;
                    let applied = AppliedRec {
                        pos_reference: p.clone(),
                        version: w + 1,
                        seq,
                        ts_ms: ts,
                    };
                    ids.insert(format!("ev-{seq:012}").as_str(), enc(&applied).as_slice())?;
                }
                let rec = OrderRec {
                    version: WRITES_PER_ORDER,
                    seq,
                    state: "paid".into(),
                    table_key: Some(format!("{}", n % 40)),
                    terminal_id: format!("T{}", n % 6),
                    updated_ms: t0 + WRITES_PER_ORDER * 60_000,
                    snapshot_json: snapshot(&p, 7, "paid"),
                };
                orders.insert(p.as_str(), enc(&rec).as_slice())?;
            }
            let mut meta = tx.open_table(META)?;
            meta.insert(META_HEAD_SEQ, seq)?;
            if !with_events {
                meta.insert(META_COMPACTED_THROUGH, seq)?;
            }
            meta.insert(META_LAST_TS, start_ms + (day + 1) * DAY_MS)?;
        }
        tx.commit()?;
    }
    drop(store);
    // A file size in MiB for people: exact below 2^52 bytes.
    #[allow(clippy::cast_precision_loss)]
    let mib = std::fs::metadata(&out)?.len() as f64 / 1_048_576.0;
    println!(
        "{}: {days} days x {per_day} orders x {WRITES_PER_ORDER} writes (head seq {seq}), \
         {} orders, events of the last {EVENT_DAYS} days; {:.1} MiB; written in {:.1} s",
        out.display(),
        days * per_day,
        mib,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
