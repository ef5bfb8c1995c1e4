//! Durable state in one redb file: the tables, opening with a Pi-sized cache, and the read-side
//! queries used by the HTTP API and catch-up. All writes go through the engine's single writer
//! thread (see `engine`), which commits many terminals' changes per durable transaction.

pub mod backend;
pub mod copy;
pub mod kitchen;
pub mod live;
pub mod records;
pub mod schema;
pub mod upstream;

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use records::{dec, EventRec, FloorRec, LeaseRec, LockRec, OrderRec, TableRec};

pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub const ORDERS: TableDefinition<&str, &[u8]> = TableDefinition::new("orders");
pub const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("leases");
pub const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
pub const PENDING: TableDefinition<u64, &[u8]> = TableDefinition::new("pending_upstream");
pub const DEAD: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");
pub const TABLES: TableDefinition<&str, &[u8]> = TableDefinition::new("tables");
pub const TABLE_LOCKS: TableDefinition<&str, &[u8]> = TableDefinition::new("table_locks");
pub const FLOOR_PLANS: TableDefinition<&str, &[u8]> = TableDefinition::new("floor_plans");
pub const TICKET_SEQ: TableDefinition<&str, u64> = TableDefinition::new("ticket_sequences");
pub const EVENT_IDS: TableDefinition<&str, &[u8]> = TableDefinition::new("applied_event_ids");
/// terminalId -> the JWT subject it is bound to (docs/protocol.md "Authentication and identity").
pub const TERMINAL_SUBJECTS: TableDefinition<&str, &str> =
    TableDefinition::new("terminal_subjects");

/// `META` key: sequence number of the newest event.
pub const META_HEAD_SEQ: &str = "head_seq";
/// `META` key: every event up to this seq has been compacted away.
pub const META_COMPACTED_THROUGH: &str = "compacted_through";
/// `META` key: how many events were forwarded upstream, ever.
pub const META_FORWARDED: &str = "forwarded_total";
/// `META` key: newest wall-clock time the hub committed (ms), for clock sanity after power loss.
pub const META_LAST_TS: &str = "last_ts_ms";
/// `META` key: on-disk layout version.
pub const META_SCHEMA: &str = "schema_version";
pub const SCHEMA_VERSION: u64 = 1;

/// Storage failures, typed so callers can tell a broken disk from a damaged record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] redb::Error),
    #[error("damaged record: {0}")]
    Decode(String),
    #[error("database was written by a newer poshub (schema {0})")]
    Schema(u64),
    /// Between closing and reopening the file after a storage failure (see `Store::reopen`).
    #[error("database is closed for recovery after a storage failure")]
    Closed,
    /// A backup copy that would miss data.
    #[error("{0}")]
    Incomplete(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(e.into()) }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A shared handle on the hub's database. The file can be closed and reopened under it (after
/// an I/O failure redb refuses every operation until then), so users take the current
/// `Database` for each transaction with `db()`.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    db: RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    cache_bytes: usize,
    /// Set when the database runs on a caller-supplied backend (tests), not on `path`.
    backend: Option<backend::Opener>,
}

/// One stored order as the HTTP API shows it.
#[derive(Debug, Clone)]
pub struct OrderView {
    pub pos_reference: String,
    pub rec: OrderRec,
}

/// Counts shown by `/health`.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub orders: u64,
    pub pending: u64,
    pub forwarded: u64,
    pub dead: u64,
    pub head_seq: u64,
}

/// Everything a terminal needs to rebuild its view when its cursor is too old (`STATE`).
#[derive(Debug, Clone, Default)]
pub struct StateDump {
    pub orders: Vec<(String, OrderRec)>,
    pub tables: Vec<TableRec>,
    pub locks: Vec<LockRec>,
    pub floors: Vec<FloorRec>,
}

/// A slice of the event log read for catch-up.
#[derive(Debug, Clone, Default)]
pub struct EventChunk {
    pub events: Vec<(u64, String)>,
    /// Last seq looked at (events may be absent from the range if compacted or not broadcast).
    pub through: u64,
}

impl Store {
    /// Opens (or creates) the database, repairing it after a crash, and creates every table so
    /// readers never see a missing one.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Store, StoreError> {
        Self::open_with(path, cache_bytes, None)
    }

    /// `open` on the storage `backend` makes instead of the file at `path` (which then only
    /// names the directory whose free space is watched). The power-loss tests run the engine on
    /// a backend that can drop what was not synced.
    pub fn open_on_backend(
        path: &Path,
        cache_bytes: usize,
        backend: backend::Opener,
    ) -> Result<Store, StoreError> {
        Self::open_with(path, cache_bytes, Some(backend))
    }

    fn open_with(
        path: &Path,
        cache_bytes: usize,
        backend: Option<backend::Opener>,
    ) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Db(redb::StorageError::Io(e).into()))?;
        }
        let db = open_file(path, cache_bytes, backend.as_ref())?;
        let mut txn = db.begin_write()?;
        txn.set_quick_repair(true);
        {
            let mut meta = txn.open_table(META)?;
            let schema = meta.get(META_SCHEMA)?.map(|g| g.value());
            match schema {
                Some(v) if v > SCHEMA_VERSION => return Err(StoreError::Schema(v)),
                Some(_) => {}
                None => {
                    meta.insert(META_SCHEMA, SCHEMA_VERSION)?;
                }
            }
        }
        for table in schema::all() {
            (table.create)(&txn)?;
        }
        live::create(
            &txn,
            crate::clock::Clock::now_ms(&crate::clock::SystemClock),
        )?;
        txn.commit()?;
        Ok(Store {
            shared: Arc::new(Shared {
                db: RwLock::new(Some(Arc::new(db))),
                path: path.to_path_buf(),
                cache_bytes,
                backend,
            }),
        })
    }

    /// A read transaction on the last commit: what a live backup copies
    /// ([`copy::copy_snapshot`]) while writes go on. While it is held, a reopen after a storage
    /// failure cannot take the file and is tried again later (the engine retries it).
    pub fn snapshot(&self) -> Result<redb::ReadTransaction, StoreError> {
        Ok(self.db()?.begin_read()?)
    }

    /// The database as it is now, for one transaction (do not keep it: a reopen waits for it).
    pub fn db(&self) -> Result<Arc<Database>, StoreError> {
        let slot = self
            .shared
            .db
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        slot.clone().ok_or(StoreError::Closed)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Closes the database and opens the file again, which is how redb recovers from an I/O
    /// failure (it latches the first one and refuses everything after it). Waits up to `wait`
    /// for readers to finish with the old handle; opening repairs the file from its last
    /// durable commit, so nothing acknowledged is lost. On failure the store stays closed
    /// (readers get `StoreError::Closed`) and the caller tries again later.
    pub fn reopen(&self, wait: Duration) -> Result<(), StoreError> {
        let mut slot = self
            .shared
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(mut old) = slot.take() {
            let deadline = Instant::now() + wait;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        if let Err(e) = db.close() {
                            tracing::debug!(error = %e, "closing the failed database");
                        }
                        break;
                    }
                    Err(busy) if Instant::now() < deadline => {
                        old = busy;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(busy) => {
                        *slot = Some(busy);
                        return Err(StoreError::Closed);
                    }
                }
            }
        }
        let db = open_file(
            &self.shared.path,
            self.shared.cache_bytes,
            self.shared.backend.as_ref(),
        )?;
        *slot = Some(Arc::new(db));
        Ok(())
    }

    fn meta(&self, key: &str) -> Result<u64, StoreError> {
        let r = self.db()?.begin_read()?;
        let t = r.open_table(META)?;
        Ok(t.get(key)?.map_or(0, |g| g.value()))
    }

    /// The token subject a terminal id is bound to (`terminal_subjects`), if any.
    pub fn terminal_subject(&self, terminal_id: &str) -> Result<Option<String>, StoreError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        let t = txn.open_table(TERMINAL_SUBJECTS)?;
        Ok(t.get(terminal_id)?.map(|g| g.value().to_string()))
    }

    pub fn head_seq(&self) -> Result<u64, StoreError> {
        self.meta(META_HEAD_SEQ)
    }

    pub fn compacted_through(&self) -> Result<u64, StoreError> {
        self.meta(META_COMPACTED_THROUGH)
    }

    pub fn counts(&self) -> Result<Counts, StoreError> {
        let r = self.db()?.begin_read()?;
        let meta = r.open_table(META)?;
        let get =
            |k: &str| -> Result<u64, StoreError> { Ok(meta.get(k)?.map_or(0, |g| g.value())) };
        Ok(Counts {
            orders: r.open_table(ORDERS)?.len()?,
            pending: r.open_table(PENDING)?.len()?,
            dead: r.open_table(DEAD)?.len()?,
            forwarded: get(META_FORWARDED)?,
            head_seq: get(META_HEAD_SEQ)?,
        })
    }

    pub fn order(&self, pos_reference: &str) -> Result<Option<OrderRec>, StoreError> {
        let r = self.db()?.begin_read()?;
        let t = r.open_table(ORDERS)?;
        let v = t.get(pos_reference)?;
        v.map(|g| dec(g.value())).transpose()
    }

    /// Every stored order, in key order: a full scan, for checks and tests (the API lists the
    /// live orders, `live_orders`).
    pub fn orders(&self) -> Result<Vec<OrderView>, StoreError> {
        let r = self.db()?.begin_read()?;
        let t = r.open_table(ORDERS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push(OrderView {
                pos_reference: k.value().to_string(),
                rec: dec(v.value())?,
            });
        }
        Ok(out)
    }

    /// Newest events first (or oldest first after `since`), for `/events`, with their upstream
    /// state: `pending`, `dead`, `forwarded`, or `local` (kinds that are never forwarded).
    #[allow(clippy::type_complexity)]
    pub fn recent_events(
        &self,
        limit: usize,
        since: Option<u64>,
    ) -> Result<Vec<(u64, EventRec, &'static str)>, StoreError> {
        let r = self.db()?.begin_read()?;
        let t = r.open_table(EVENTS)?;
        let pending = r.open_table(PENDING)?;
        let dead = r.open_table(DEAD)?;
        let mut out = Vec::new();
        let iter: Box<dyn Iterator<Item = _>> = match since {
            Some(s) => Box::new(t.range(s.saturating_add(1)..)?),
            None => Box::new(t.iter()?.rev()),
        };
        for item in iter.take(limit) {
            let (k, v) = item?;
            let seq = k.value();
            let rec: EventRec = dec(v.value())?;
            let state = if pending.get(seq)?.is_some() {
                "pending"
            } else if dead.get(seq)?.is_some() {
                "dead"
            } else if rec.kind == "order_snapshot" {
                "forwarded"
            } else {
                "local"
            };
            out.push((seq, rec, state));
        }
        Ok(out)
    }

    pub fn state_dump(&self, now_ms: u64) -> Result<StateDump, StoreError> {
        let mut dump = StateDump {
            orders: self.live_orders(now_ms)?,
            ..StateDump::default()
        };
        let r = self.db()?.begin_read()?;
        for item in r.open_table(TABLES)?.iter()? {
            dump.tables.push(dec(item?.1.value())?);
        }
        for item in r.open_table(TABLE_LOCKS)?.iter()? {
            dump.locks.push(dec(item?.1.value())?);
        }
        for item in r.open_table(FLOOR_PLANS)?.iter()? {
            dump.floors.push(dec(item?.1.value())?);
        }
        Ok(dump)
    }

    /// Table locks by table key, without reading any order (engine start-up, `/table-locks`).
    pub fn table_locks(&self) -> Result<Vec<(String, LockRec)>, StoreError> {
        let r = self.db()?.begin_read()?;
        let mut out = Vec::new();
        for item in r.open_table(TABLE_LOCKS)?.iter()? {
            let (k, v) = item?;
            out.push((k.value().to_string(), dec(v.value())?));
        }
        Ok(out)
    }

    /// Table states and floor plans, without reading any order (`/tables`).
    pub fn tables_and_floors(&self) -> Result<(Vec<TableRec>, Vec<FloorRec>), StoreError> {
        let r = self.db()?.begin_read()?;
        let mut tables = Vec::new();
        for item in r.open_table(TABLES)?.iter()? {
            tables.push(dec(item?.1.value())?);
        }
        let mut floors = Vec::new();
        for item in r.open_table(FLOOR_PLANS)?.iter()? {
            floors.push(dec(item?.1.value())?);
        }
        Ok((tables, floors))
    }

    pub fn ticket_sequences(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let r = self.db()?.begin_read()?;
        let t = r.open_table(TICKET_SEQ)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push((k.value().to_string(), v.value()));
        }
        Ok(out)
    }

    pub fn leases(&self) -> Result<Vec<(String, LeaseRec)>, StoreError> {
        let r = self.db()?.begin_read()?;
        let t = r.open_table(LEASES)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push((k.value().to_string(), dec(v.value())?));
        }
        Ok(out)
    }
}

/// Opens (or creates) the file (or the given backend) with a Pi-sized page cache; redb repairs
/// it if needed.
fn open_file(
    path: &Path,
    cache_bytes: usize,
    backend: Option<&backend::Opener>,
) -> Result<Database, StoreError> {
    let mut builder = Database::builder();
    builder.set_cache_size(cache_bytes);
    Ok(match backend {
        Some(b) => builder.create_with_backend(b.open().map_err(redb::StorageError::Io)?)?,
        None => builder.create(path)?,
    })
}
