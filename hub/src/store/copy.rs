//! A live backup without stopping writes: every table of one read transaction (a consistent
//! snapshot of the last commit) is copied into a fresh redb file, while the engine goes on
//! committing.
//!
//! The first live backup copied the database file between two commits, on the engine's
//! thread: consistent, but terminals' writes waited for the whole copy (on a Pi's SD card,
//! about 14 s for a year's 285 MB, every time the supervisor or an offsite upload asked for
//! one). redb's author: a file may not be copied while writes go on, but a read transaction
//! may be read and saved whole; that is what this does. The copy is also compact: pages the
//! live file keeps free are not copied.

use std::path::Path;

use redb::{
    Database, Durability, Key, ReadTransaction, ReadableTable, TableDefinition, TableHandle, Value,
};

use super::{schema, StoreError};

/// Rows per transaction of the copy: bounds the memory of one transaction whatever the size
/// of the database. Only the last commit is durable (and the file is synced again after its
/// check); a copy cut short is an unfinished `.partial` file, never a backup.
const ROWS_PER_COMMIT: usize = 20_000;

/// The copy's page cache: it only writes, and a large cache would count against the hub's
/// memory on a Pi.
const COPY_CACHE_BYTES: usize = 4 * 1024 * 1024;

/// Copies every table of `snapshot` into a new database at `dst` (which must not exist).
/// Answers the rows copied. Fails, rather than leave a table behind, if the snapshot holds a
/// table this function does not know.
pub fn copy_snapshot(snapshot: &ReadTransaction, dst: &Path) -> Result<u64, StoreError> {
    let tables = schema::all();
    for t in snapshot.list_tables()? {
        if !tables.iter().any(|known| known.name == t.name()) {
            return Err(StoreError::Incomplete(format!(
                "table {} is not known to the backup copy: refusing an incomplete backup",
                t.name()
            )));
        }
    }
    let out = Database::builder()
        .set_cache_size(COPY_CACHE_BYTES)
        .create(dst)?;
    let mut rows = 0;
    for table in tables {
        rows += (table.copy)(snapshot, &out)?;
    }
    // One empty durable commit makes everything before it durable.
    begin(&out, Durability::Immediate)?.commit()?;
    Ok(rows)
}

/// Copies one table in transactions of `ROWS_PER_COMMIT` rows (a table missing from the
/// snapshot is created empty, as the hub's own open would).
pub(super) fn copy<K: Key + 'static, V: Value + 'static>(
    snapshot: &ReadTransaction,
    out: &Database,
    def: TableDefinition<K, V>,
) -> Result<u64, StoreError> {
    let src = match snapshot.open_table(def) {
        Ok(t) => Some(t),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let mut rows = 0u64;
    let mut w = begin(out, Durability::None)?;
    w.open_table(def)?; // created even when empty, as the hub's own open does
    let Some(src) = src else {
        w.commit()?;
        return Ok(0);
    };
    let mut in_txn = 0;
    let mut iter = src.iter()?;
    loop {
        {
            let mut dst = w.open_table(def)?;
            for item in iter.by_ref() {
                let (k, v) = item?;
                dst.insert(k.value(), v.value())?;
                rows += 1;
                in_txn += 1;
                if in_txn == ROWS_PER_COMMIT {
                    break;
                }
            }
        }
        if in_txn < ROWS_PER_COMMIT {
            w.commit()?;
            return Ok(rows);
        }
        w.commit()?;
        w = begin(out, Durability::None)?;
        in_txn = 0;
    }
}

fn begin(out: &Database, durability: Durability) -> Result<redb::WriteTransaction, StoreError> {
    let mut w = out.begin_write()?;
    w.set_durability(durability)
        .map_err(|e| StoreError::Incomplete(format!("backup copy: {e}")))?;
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, EVENTS};
    use redb::ReadableTableMetadata;

    fn count<K: Key + 'static, V: Value + 'static>(db: &Path, def: TableDefinition<K, V>) -> u64 {
        let db = Database::open(db).expect("the copy opens");
        let r = redb::ReadableDatabase::begin_read(&db).expect("read");
        ReadableTableMetadata::len(&r.open_table(def).expect("table")).expect("len")
    }

    #[test]
    fn every_row_of_a_table_larger_than_one_commit_is_copied_and_the_copy_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("hub.redb"), 1 << 20).expect("open");
        let n = 2 * ROWS_PER_COMMIT as u64 + 7;
        {
            let db = store.db().expect("db");
            let w = db.begin_write().expect("write");
            {
                let mut t = w.open_table(EVENTS).expect("events");
                for seq in 1..=n {
                    t.insert(seq, format!("event {seq}").as_bytes())
                        .expect("insert");
                }
            }
            w.commit().expect("commit");
        }
        let snap = store.snapshot().expect("snapshot");
        // Writes after the snapshot are not in the copy.
        {
            let db = store.db().expect("db");
            let w = db.begin_write().expect("write");
            w.open_table(EVENTS)
                .expect("events")
                .insert(n + 1, &b"later"[..])
                .expect("insert");
            w.commit().expect("commit");
        }
        let dst = dir.path().join("copy.redb");
        let rows = copy_snapshot(&snap, &dst).expect("copied");
        assert!(rows >= n, "{rows} rows copied, {n} events at least");
        assert_eq!(count(&dst, EVENTS), n);
        let mut db = Database::open(&dst).expect("open");
        assert!(
            db.check_integrity().expect("check"),
            "the copy passes redb's check"
        );
    }

    #[test]
    fn a_table_the_copy_does_not_know_refuses_the_backup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("hub.redb"), 1 << 20).expect("open");
        {
            let db = store.db().expect("db");
            let w = db.begin_write().expect("write");
            let extra: TableDefinition<u64, u64> = TableDefinition::new("added_later");
            w.open_table(extra)
                .expect("extra")
                .insert(1, 1)
                .expect("insert");
            w.commit().expect("commit");
        }
        let snap = store.snapshot().expect("snapshot");
        let err = copy_snapshot(&snap, &dir.path().join("copy.redb")).expect_err("refused");
        assert!(err.to_string().contains("added_later"), "{err}");
    }
}
