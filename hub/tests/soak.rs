//! Soak (issue 21 point 5): a compressed busy day against the real `poshub` binary, with the
//! hub's memory (`VmRSS`) and open file descriptors sampled from /proc.
//!
//! Tills (`soak/writer.rs`) take table locks, lease orders, write several versions of each, the
//! last one paid, and send kitchen tickets to the printed station, at a busy store's peak rate
//! compressed `POSHUB_SOAK_SPEEDUP` times; they drop their socket now and then right after a
//! request and send it again on a new one (same `eventId`). Screens (`soak/reader.rs`) drop
//! theirs at random moments and come back with their cursor: every event exactly once. Odoo
//! flaps (503, dropped connections, slow and late answers, an expired session) and the kitchen
//! printer goes off and on again and stalls (`soak/faults.rs`).
//!
//! At the end, after a drain: every acknowledged order is in the hub and in Odoo at its last
//! acknowledged version, every acknowledged ticket was printed exactly once, and memory and
//! descriptors were flat after the warm-up (`soak/sample.rs`). docs/reliability.md, "Soak".
//!
//! ```sh
//! cargo test -p poshub --test soak -- --nocapture                     # 90 s, debug (CI)
//! POSHUB_SOAK_SECS=7200 cargo test --release -p poshub --test soak -- --nocapture
//! ```

mod common;
#[path = "soak/faults.rs"]
mod faults;
#[path = "soak/reader.rs"]
mod reader;
#[path = "soak/sample.rs"]
mod sample;
#[path = "soak/writer.rs"]
mod writer;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::watch;

use common::fake_printer::{ticket_id, FakePrinter};
use common::odoo_double::{admin, odoo_env, refs, wait_health, OdooDouble, ADMIN};
use common::{http_get, HubProcess};
use sample::{flatness, Counters, Sample};
use writer::{Ledger, Writer};

/// Orders in the busiest hour of a store that does about 600 a day (lunch and dinner peaks
/// carry about a third of the day, spread over two hours each side of the top one).
const PEAK_ORDERS_PER_HOUR: f64 = 100.0;
const TILLS: u32 = 8;
const SCREENS: u64 = 3;
/// Share of the run treated as warm-up for the flatness rule.
const WARMUP: f64 = 0.2;
/// Allowed growth of the maximum after the warm-up, second half over first half.
const RSS_SLACK_KB: u64 = 8 * 1024;
const FD_SLACK: u64 = 12;
/// Idle keep-alive connections to Odoo the hub may keep (`check_fds_released`).
const FD_ODOO_POOL: u64 = 8;

/// Run settings from the environment.
struct Settings {
    secs: u64,
    speedup: f64,
    seed: u64,
    sample_every: Duration,
}

impl Settings {
    fn from_env() -> Settings {
        let num = |k: &str, d: u64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        let secs = num("POSHUB_SOAK_SECS", 90).max(20);
        Settings {
            secs,
            speedup: std::env::var("POSHUB_SOAK_SPEEDUP")
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(30.0)
                .max(1.0),
            seed: num("POSHUB_SOAK_SEED", 21),
            sample_every: Duration::from_secs((secs / 60).clamp(2, 30)),
        }
    }

    /// Think time of a till between two steps of an order: each till starts an order every
    /// TILLS / (peak rate × speedup) hours, an order being about ten steps.
    fn pace(&self) -> Duration {
        let order_every = f64::from(TILLS) * 3600.0 / (PEAK_ORDERS_PER_HOUR * self.speedup);
        Duration::from_secs_f64(order_every / 10.0)
    }
}

/// The hub under test and the doubles around it.
struct World {
    dir: tempfile::TempDir,
    hub: HubProcess,
    odoo: Arc<OdooDouble>,
}

/// The hub process with Odoo and the `kds` printer configured; the printer is returned apart
/// because the fault schedule takes it over.
async fn start_world() -> (World, FakePrinter) {
    let odoo = Arc::new(OdooDouble::start().await);
    let printer = FakePrinter::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = odoo_env(&odoo);
    env.extend([
        ("HUB_PRINTERS", printer.env("kds")),
        ("HUB_PRINT_TIMEOUT_MS", "1000".into()),
        ("HUB_PRINT_RETRY_MAX_MS", "1000".into()),
        ("HUB_PRINT_STALL_MAX_MS", "600000".into()),
        ("HUB_GRACE_MS", "60000".into()),
        // A tick of a second (5 s by default): the retry backoff is compressed with the day.
        ("HUB_FORWARD_INTERVAL_MS", "1000".into()),
        ("HUB_STATUS_INTERVAL_MS", "1000".into()),
    ]);
    let hub = HubProcess::spawn(dir.path(), &refs(&env)).await;
    (World { dir, hub, odoo }, printer)
}

/// What the load left behind.
struct Outcome {
    ledger: Ledger,
    screens: Vec<reader::Reader>,
    samples: Vec<Sample>,
    printer: faults::PrinterLog,
    odoo_faults: u64,
    reconnects: u64,
    hub_closed: u64,
    /// Dead letters requeued after the load.
    requeued: u64,
    head: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_busy_day_loses_nothing_prints_once_and_stays_flat() {
    let s = Settings::from_env();
    let (w, printer) = start_world().await;
    let fds_at_start = sample::fds_except_to(w.hub.child.id(), w.odoo.addr.port()).0;
    println!(
        "soak: {} s, {TILLS} tills + {SCREENS} screens, {PEAK_ORDERS_PER_HOUR} orders/h x {} \
         = {:.0} orders/h, till pace {:?}, seed {}",
        s.secs,
        s.speedup,
        PEAK_ORDERS_PER_HOUR * s.speedup,
        s.pace(),
        s.seed
    );
    let started = Instant::now();
    let out = run_load(&s, &w, printer).await;
    println!("{}", sample::table(&out.samples));
    report(&out, started.elapsed());
    check_hub_and_odoo(&w, &out.ledger).await;
    check_prints(&w, &out).await;
    check_screens(&out);
    check_flat(&out.samples);
    check_fds_released(&w, fds_at_start).await;
}

/// Runs tills, screens, faults and the sampler for the configured time, stops the load, drains
/// the upstream queue and lets the screens catch up to the final head seq.
async fn run_load(s: &Settings, w: &World, printer: FakePrinter) -> Outcome {
    let (ws, http, pid) = (w.hub.ws, w.hub.http, w.hub.child.id());
    let c = Arc::new(Counters::default());
    let (head_tx, head_rx) = watch::channel(0u64);
    let screens: Vec<_> = (0..SCREENS)
        .map(|i| {
            let r =
                reader::Reader::new(i, ws, StdRng::seed_from_u64(s.seed ^ (100 + i)), c.clone());
            tokio::spawn(r.run(head_rx.clone()))
        })
        .collect();
    let mut tills = Vec::new();
    for i in 0..u64::from(TILLS) {
        let rng = StdRng::seed_from_u64(s.seed ^ i);
        let t = Writer::start(i, ws, rng, c.clone(), s.pace()).await;
        tills.push(tokio::spawn(t.run()));
    }
    let sampler = tokio::spawn(sample::sample(pid, s.sample_every, c.clone()));
    let odoo = tokio::spawn(faults::flap_odoo(w.odoo.clone(), c.clone()));
    let printer_task = tokio::spawn(faults::flap_printer(printer, c.clone()));
    tokio::time::sleep(Duration::from_secs(s.secs)).await;
    c.stop.store(true, Ordering::Relaxed);
    let mut ledger = Ledger::default();
    for t in tills {
        let l = t.await.expect("till");
        ledger.orders.extend(l.orders);
        ledger.tickets.extend(l.tickets);
    }
    let odoo_faults = odoo.await.expect("odoo flapper");
    let printer = printer_task.await.expect("printer flapper");
    let requeued = drain(http).await;
    let (_, h) = http_get(http, "/health").await;
    let head = h["seq"].as_u64().expect("health seq");
    head_tx.send(head).expect("screens listen");
    let mut done = Vec::new();
    for r in screens {
        done.push(r.await.expect("screen"));
    }
    Outcome {
        ledger,
        screens: done,
        samples: sampler.await.expect("sampler"),
        printer,
        odoo_faults,
        reconnects: c.reconnects.load(Ordering::Relaxed),
        hub_closed: c.hub_closed.load(Ordering::Relaxed),
        requeued,
        head,
    }
}

/// Asks for drain rounds until the upstream queue is empty (some orders sit in a long backoff
/// after the faults; a drain round ignores it). Orders the flapping Odoo failed
/// `HUB_FORWARD_MAX_RETRIES` times are dead letters: an operator requeues them (`poshub
/// dead-letters --requeue`), and so does this. Returns how many were requeued.
async fn drain(http: std::net::SocketAddr) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut requeued = 0;
    loop {
        let (_, h) = http_get(http, "/health").await;
        if h["deadLetters"].as_u64().unwrap_or(0) > 0 {
            let (_, dl) = admin(http, "GET", "/admin/dead-letters", Some(ADMIN), "").await;
            let errors: std::collections::BTreeSet<&str> = dl["deadLetters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d["lastError"].as_str())
                .collect();
            println!("soak: dead letters {}: {errors:?}", dl["count"]);
            let (st, r) = admin(http, "POST", "/admin/dead-letters/requeue", Some(ADMIN), "").await;
            assert_eq!(st, 200, "requeue: {r}");
            requeued += r["requeued"].as_u64().unwrap_or(0);
        } else if h["pendingEvents"] == 0 {
            return requeued;
        }
        let (st, d) = admin(http, "POST", "/admin/drain", Some(ADMIN), "").await;
        assert_eq!(st, 200, "drain: {d}");
        assert!(Instant::now() < deadline, "upstream queue not drained: {h}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn report(out: &Outcome, took: Duration) {
    let tickets_printed = out.printer.tickets().len();
    println!(
        "soak: {} orders, {} acknowledged versions in the ledger, {} tickets acknowledged, {} \
         printed; head seq {}; Odoo fault periods {}, dead letters requeued {}; printer off {} times, stalled {} times; \
         took {:.0} s (printer {})",
        out.ledger.orders.len(),
        out.ledger.orders.values().sum::<u64>(),
        out.ledger.tickets.len(),
        tickets_printed,
        out.head,
        out.odoo_faults,
        out.requeued,
        out.printer.offs,
        out.printer.stalls,
        took.as_secs_f64(),
        out.printer.printer.addr
    );
    println!(
        "soak: tills and screens reconnected {} times on purpose; the hub closed a socket {} \
         times",
        out.reconnects, out.hub_closed
    );
    for r in &out.screens {
        println!(
            "soak: {}: {} events exactly once, {} reconnects (away up to {:?})",
            r.id, r.events, r.reconnects, r.longest_away
        );
    }
}

/// Every acknowledged order is in the hub and in Odoo at its last acknowledged version.
async fn check_hub_and_odoo(w: &World, ledger: &Ledger) {
    assert!(!ledger.orders.is_empty(), "the load wrote nothing");
    let sent = w.odoo.orders();
    for (p, v) in &ledger.orders {
        let (st, o) = http_get(w.hub.http, &format!("/orders/{p}")).await;
        assert_eq!(st, 200, "{p}: {o}");
        assert_eq!(o["version"].as_u64(), Some(*v), "{p} in the hub: {o}");
        let revs: Vec<u64> = sent
            .get(p)
            .unwrap_or_else(|| panic!("{p} never reached Odoo"))
            .iter()
            .map(|(_, b)| b["rev"].as_u64().unwrap_or(0))
            .collect();
        assert_eq!(
            revs.last(),
            Some(v),
            "{p}: Odoo ends at version {v}: {revs:?}"
        );
        assert!(revs.windows(2).all(|x| x[0] <= x[1]), "{p}: {revs:?}");
    }
}

/// Every acknowledged ticket printed exactly once, nothing else printed.
async fn check_prints(w: &World, out: &Outcome) {
    wait_health(
        w.hub.http,
        Duration::from_secs(60),
        "print queue empty",
        |h| h["printers"][0]["queueDepth"] == 0,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.printer.tickets().len() < out.ledger.tickets.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tickets = out.printer.tickets();
    let mut printed: BTreeMap<String, u32> = BTreeMap::new();
    for t in &tickets {
        *printed.entry(ticket_id(t)).or_default() += 1;
    }
    let twice: Vec<_> = printed.iter().filter(|(_, n)| **n > 1).collect();
    // A piece of paper with no ticket id on it is shown whole: it tells a torn ticket from a
    // foreign one.
    let no_id: Vec<String> = tickets
        .iter()
        .filter(|t| ticket_id(t) == "?")
        .map(|t| t.chars().take(300).collect())
        .collect();
    assert!(
        twice.is_empty(),
        "printed more than once: {twice:?}; paper without a ticket id: {no_id:?}"
    );
    let missing: Vec<_> = out
        .ledger
        .tickets
        .iter()
        .filter(|t| !printed.contains_key(*t))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged, never printed: {missing:?}"
    );
    let unknown: Vec<_> = printed
        .keys()
        .filter(|t| !out.ledger.tickets.contains(*t))
        .collect();
    assert!(
        unknown.is_empty(),
        "printed, never acknowledged: {unknown:?}"
    );
    // What the hub saw of it, from its log.
    let log = common::log(w.dir.path());
    let offline = log.matches("printer unavailable").count();
    let stalled = log.matches("printer is not taking the ticket").count();
    println!(
        "soak: the hub found the printer offline {offline} times and stalled {stalled} times; \
         {} tickets printed once each",
        printed.len()
    );
    assert!(
        out.printer.offs > 0 && offline > 0,
        "the printer never went away"
    );
}

/// Every screen ended at the head seq (each event checked on arrival: no gap, no duplicate).
fn check_screens(out: &Outcome) {
    for r in &out.screens {
        assert_eq!(r.events, out.head, "{}: events received", r.id);
        assert!(r.reconnects > 0, "{} never reconnected", r.id);
    }
}

/// Memory and descriptors flat after the warm-up.
fn check_flat(samples: &[Sample]) {
    let rss = flatness(samples, WARMUP, |s| s.rss_kb);
    let fds = flatness(samples, WARMUP, |s| s.fds);
    println!(
        "soak: after {:.0} % warm-up ({} samples): RSS max {:.1} -> {:.1} MiB ({:+} kB, slack \
         {} MiB); fds max {} -> {} ({:+}, slack {FD_SLACK})",
        WARMUP * 100.0,
        rss.samples,
        sample::mib(rss.first_max),
        sample::mib(rss.second_max),
        rss.growth(),
        RSS_SLACK_KB / 1024,
        fds.first_max,
        fds.second_max,
        fds.growth()
    );
    assert!(rss.samples >= 4, "too few samples: {}", rss.samples);
    assert!(
        rss.second_max <= rss.first_max + RSS_SLACK_KB,
        "memory grew after the warm-up: {rss:?}"
    );
    assert!(
        fds.second_max <= fds.first_max + FD_SLACK,
        "file descriptors grew after the warm-up: {fds:?}"
    );
}

/// With every terminal gone, the hub holds the descriptors it started with, plus its HTTP
/// client's idle keep-alive connections to Odoo (the forwarder sends up to four orders at a
/// time, and logs in: a handful, which the pool closes after 90 s idle).
async fn check_fds_released(w: &World, at_start: u64) {
    let pid = w.hub.child.id();
    let odoo = w.odoo.addr.port();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Sockets the terminals dropped last may still be closing.
    let mut now = sample::fds_except_to(pid, odoo);
    while now.0 > at_start && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        now = sample::fds_except_to(pid, odoo);
    }
    let targets = sample::fd_targets(pid);
    println!(
        "soak: fds at start {at_start}; after every terminal left {} and {} to Odoo: {targets}",
        now.0, now.1
    );
    assert!(
        now.0 <= at_start,
        "descriptors not released: {at_start} at start, {} at the end: {targets}",
        now.0
    );
    assert!(now.1 <= FD_ODOO_POOL, "idle Odoo connections: {targets}");
}
