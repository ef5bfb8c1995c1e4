//! Prometheus metrics (`GET /metrics`): connected terminals, messages in and out by type, commit
//! batch sizes and latencies, broadcast latency, upstream queue, leases and database size.
//! Counters live here and are updated where things happen; gauges read from the store are
//! filled in at scrape time.

mod batch_histogram;

use std::sync::atomic::{AtomicI64, AtomicU64};

pub use batch_histogram::BatchHistogram;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A count as the `i64` a default `Gauge` holds: a count past `i64::MAX` (never reached in
/// practice) reads as the maximum instead of wrapping negative.
pub fn gauge_value(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub r#type: String,
}

/// Where a catch-up read its events: `memory` (the event window) or `database`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: &'static str,
}

/// Every message type the hub sends or receives, so per-message counting is a lookup with no
/// allocation (this runs for every frame of every terminal).
const TYPES: &[&str] = &[
    "AUTH",
    "AUTH_OK",
    "AUTH_FAIL",
    "PING",
    "PONG",
    "ERROR",
    "LEASE_ACQUIRE",
    "LEASE_GRANTED",
    "LEASE_DENIED",
    "LEASE_HEARTBEAT",
    "LEASE_RENEWED",
    "LEASE_REVOKED",
    "LEASE_RELEASE",
    "LEASE_RELEASED",
    "ORDER_SNAPSHOT",
    "ORDER_ACK",
    "ORDER_UPDATED",
    "CONFLICT",
    "TABLE_UPDATE",
    "TABLE_UPDATED",
    "TABLE_LOCK_ACQUIRE",
    "TABLE_LOCK_GRANTED",
    "TABLE_LOCK_DENIED",
    "TABLE_LOCK_HEARTBEAT",
    "TABLE_LOCK_REVOKED",
    "TABLE_LOCK_RELEASE",
    "TABLE_LOCK_RELEASED",
    "TABLE_LOCK_FORCE_ACQUIRE",
    "TABLE_LOCKS_STATE",
    "FLOOR_PLAN_UPDATE",
    "FLOOR_PLAN_CHANGED",
    "FLOOR_PLAN_SAVED",
    "TICKET_NUMBER_REQUEST",
    "TICKET_NUMBER",
    "SYNC_REQUEST",
    "SYNC_STATUS",
    "EVENTS_BULK",
    "RESYNC_REQUIRED",
    "STATE",
    "KITCHEN_TICKET",
    "KITCHEN_TICKET_CREATED",
    "KITCHEN_TICKET_STATUS",
    "KITCHEN_TICKET_UPDATED",
    "INVENTORY_ADJUST",
    "INVENTORY_UPDATED",
    "invalid",
    "other",
];

/// Every metric the hub exports.
pub struct Metrics {
    registry: Registry,
    in_by_type: std::collections::HashMap<&'static str, Counter>,
    out_by_type: std::collections::HashMap<&'static str, Counter>,
    pub messages_in: Family<TypeLabel, Counter>,
    pub messages_out: Family<TypeLabel, Counter>,
    pub commit_batch: Histogram,
    pub commit_seconds: Histogram,
    pub broadcast_seconds: BatchHistogram,
    pub terminals: Gauge,
    pub leases: Gauge,
    pub table_locks: Gauge,
    pub pending: Gauge,
    pub forwarded: Gauge<u64, AtomicU64>,
    pub dead: Gauge,
    pub db_bytes: Gauge<i64, AtomicI64>,
    pub head_seq: Gauge<u64, AtomicU64>,
    pub lag_resyncs: Counter,
    /// Writes refused or lost to a full file system (below `HUB_MIN_FREE_MB`, or ENOSPC).
    pub storage_full: Counter,
    /// Writes refused or lost to any other storage failure.
    pub storage_errors: Counter,
    /// Free bytes on the database's file system, as the writer last saw them.
    pub db_free_bytes: Gauge<u64, AtomicU64>,
    /// Catch-ups (`EVENTS_BULK` replays) served entirely from the in-memory event window.
    pub catchups_memory: Counter,
    /// Catch-ups that had to read at least part of their range from the database.
    pub catchups_database: Counter,
    /// Catch-ups answered with `RESYNC_REQUIRED` + `STATE` because the state was smaller than
    /// the replay (a terminal that was off for days).
    pub catchups_state: Counter,
    /// Events removed by compaction (older than the retention, nothing waiting for them).
    pub events_compacted: Counter,
    /// Paid or cancelled orders deleted after `HUB_ORDER_RETENTION_MS`.
    pub orders_retired: Counter,
    /// 0 disabled, 1 idle, 2 ok, 3 failing (see `upstream::State`).
    pub upstream_state: Gauge,
    pub upstream_last_success: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Bucket bounds of the broadcast latency histogram (seconds): fine around the few
/// milliseconds a LAN terminal expects (5 ms is an edge, so "p99 under 5 ms" reads straight off
/// a dashboard), coarse beyond, up to what a stalled terminal sees.
const BROADCAST_BUCKETS: [f64; 16] = [
    0.00025, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1,
    0.25, 1.0, 5.0,
];

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("poshub");
        let messages_in = Family::<TypeLabel, Counter>::default();
        let messages_out = Family::<TypeLabel, Counter>::default();
        let commit_batch = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        let commit_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let broadcast_seconds = BatchHistogram::new(BROADCAST_BUCKETS.iter().copied());
        let m = Metrics {
            messages_in,
            messages_out,
            commit_batch,
            commit_seconds,
            broadcast_seconds,
            terminals: Gauge::default(),
            leases: Gauge::default(),
            table_locks: Gauge::default(),
            pending: Gauge::default(),
            forwarded: Gauge::default(),
            dead: Gauge::default(),
            db_bytes: Gauge::default(),
            head_seq: Gauge::default(),
            lag_resyncs: Counter::default(),
            storage_full: Counter::default(),
            storage_errors: Counter::default(),
            db_free_bytes: Gauge::default(),
            catchups_memory: Counter::default(),
            catchups_database: Counter::default(),
            catchups_state: Counter::default(),
            events_compacted: Counter::default(),
            orders_retired: Counter::default(),
            upstream_state: Gauge::default(),
            upstream_last_success: Gauge::default(),
            registry: Registry::default(),
            in_by_type: std::collections::HashMap::default(),
            out_by_type: std::collections::HashMap::default(),
        };
        let label = |t: &str| TypeLabel {
            r#type: t.to_string(),
        };
        let in_by_type = TYPES
            .iter()
            .map(|t| (*t, m.messages_in.get_or_create(&label(t)).clone()))
            .collect();
        let out_by_type = TYPES
            .iter()
            .map(|t| (*t, m.messages_out.get_or_create(&label(t)).clone()))
            .collect();
        m.register_traffic(&mut r);
        m.register_state(&mut r);
        let catchups = Family::<SourceLabel, Counter>::default();
        let catchups_memory = catchups
            .get_or_create(&SourceLabel { source: "memory" })
            .clone();
        let catchups_database = catchups
            .get_or_create(&SourceLabel { source: "database" })
            .clone();
        let catchups_state = catchups
            .get_or_create(&SourceLabel { source: "state" })
            .clone();
        r.register(
            "catchups",
            "Catch-ups by what served them: replay from the memory window or the database, or a \
             STATE sent because it was smaller than the replay",
            catchups,
        );
        m.register_retention(&mut r);
        Metrics {
            registry: r,
            catchups_memory,
            catchups_database,
            catchups_state,
            in_by_type,
            out_by_type,
            ..m
        }
    }

    /// Registers what retention removed (docs/storage.md, "Retention and compaction").
    fn register_retention(&self, r: &mut Registry) {
        r.register(
            "events_compacted",
            "Events removed by compaction (older than the retention, not waiting for an upstream)",
            self.events_compacted.clone(),
        );
        r.register(
            "orders_retired",
            "Paid or cancelled orders deleted after the order retention (HUB_ORDER_RETENTION_MS)",
            self.orders_retired.clone(),
        );
    }

    /// Registers the traffic and engine metrics (messages, commits, broadcast, holders).
    fn register_traffic(&self, r: &mut Registry) {
        r.register(
            "messages_in",
            "Messages received from terminals, by type",
            self.messages_in.clone(),
        );
        r.register(
            "messages_out",
            "Messages sent to terminals, by type",
            self.messages_out.clone(),
        );
        r.register(
            "commit_batch_size",
            "Commands applied per durable commit",
            self.commit_batch.clone(),
        );
        r.register(
            "commit_duration_seconds",
            "Time to apply and fsync one batch",
            self.commit_seconds.clone(),
        );
        r.register(
            "broadcast_latency_seconds",
            "From the durable commit of an event to its write on a terminal's socket",
            self.broadcast_seconds.clone(),
        );
        r.register(
            "terminals_connected",
            "Authenticated terminals connected now",
            self.terminals.clone(),
        );
        r.register("leases_active", "Order leases held", self.leases.clone());
        r.register(
            "table_locks_active",
            "Table locks held",
            self.table_locks.clone(),
        );
    }

    /// Registers the state metrics (upstream queue, database, sequence, resyncs).
    fn register_state(&self, r: &mut Registry) {
        r.register(
            "events_pending",
            "Events waiting to be forwarded upstream",
            self.pending.clone(),
        );
        r.register(
            "events_forwarded",
            "Events forwarded upstream since the database was created",
            self.forwarded.clone(),
        );
        r.register(
            "events_dead_lettered",
            "Events the forwarder gave up on",
            self.dead.clone(),
        );
        r.register(
            "db_size_bytes",
            "Size of the redb file",
            self.db_bytes.clone(),
        );
        r.register(
            "db_free_bytes",
            "Free bytes on the database's file system",
            self.db_free_bytes.clone(),
        );
        r.register(
        "storage_full",
        "Writes refused or discarded because the file system is full (below HUB_MIN_FREE_MB or ENOSPC)",
        self.storage_full.clone(),
    );
        r.register(
            "storage_errors",
            "Writes refused or discarded because of another storage failure",
            self.storage_errors.clone(),
        );
        r.register(
            "event_seq",
            "Sequence number of the newest event",
            self.head_seq.clone(),
        );
        r.register(
            "upstream_state",
            "Upstream forwarding: 0 disabled, 1 idle, 2 ok, 3 failing",
            self.upstream_state.clone(),
        );
        r.register(
            "upstream_last_success_timestamp_seconds",
            "When the upstream last accepted an event (Unix time; 0 = never since start)",
            self.upstream_last_success.clone(),
        );
        r.register(
            "lag_resyncs",
            "Times a terminal fell behind and was caught up from its cursor",
            self.lag_resyncs.clone(),
        );
    }

    /// The counter of outgoing frames of type `kind` (one of [`known_type`]'s answers): a
    /// writer that sends many frames adds its counts per flush instead of per frame.
    pub fn out_counter(&self, kind: &str) -> Option<&Counter> {
        self.out_by_type.get(kind)
    }

    pub fn received(&self, ty: &str) {
        if let Some(c) = self
            .in_by_type
            .get(ty)
            .or_else(|| self.in_by_type.get("other"))
        {
            c.inc();
        }
    }

    /// The exposition text; `extra` (families kept elsewhere, e.g. printers) goes before `# EOF`.
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        if !extra.is_empty() {
            let body = out.strip_suffix("# EOF\n").map(str::to_string);
            if let Some(body) = body {
                out = format!("{body}{extra}# EOF\n");
            }
        }
        out
    }
}

/// The type of a frame as the metrics count it: one of the known types, or `other`. Events
/// carry theirs (found once per event, not once per terminal).
pub fn known_type(text: &str) -> &'static str {
    let ty = message_type(text);
    TYPES.iter().find(|t| **t == ty).copied().unwrap_or("other")
}

/// Every message the hub builds starts with `{"type":"NAME"`; anything else counts as `other`.
pub fn message_type(text: &str) -> &str {
    text.strip_prefix("{\"type\":\"")
        .and_then(|rest| rest.split_once('"'))
        .map(|(ty, _)| ty)
        .filter(|ty| ty.len() <= 40)
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_counters_and_histograms() {
        let m = Metrics::new();
        let kind = known_type(r#"{"type":"ORDER_ACK","version":1}"#);
        m.out_counter(kind).expect("a known type").inc();
        m.received("ORDER_SNAPSHOT");
        m.commit_batch.observe(12.0);
        let text = m.render("");
        assert!(
            text.contains(r#"poshub_messages_out_total{type="ORDER_ACK"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"poshub_messages_in_total{type="ORDER_SNAPSHOT"} 1"#),
            "{text}"
        );
        assert!(text.contains("poshub_commit_batch_size_bucket"), "{text}");
        assert_eq!(message_type("[1]"), "other");
        assert_eq!(known_type(r#"{"type":"NOT_A_TYPE"}"#), "other");
    }
}
