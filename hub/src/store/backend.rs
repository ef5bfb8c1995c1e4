//! Opening the database on a caller-supplied redb [`StorageBackend`] instead of the file at
//! `HUB_DB_PATH`. The hub itself always uses the file; the power-loss tests
//! (`hub/tests/power_loss.rs`) run the real engine on a backend that records every write and
//! `sync_data`, so they can cut the power at any I/O operation and keep only what was synced.

use std::fmt;
use std::sync::Arc;

use redb::StorageBackend;

/// Makes the backend the database runs on. Called at open and again by `Store::reopen` (redb
/// hands a backend back when it closes), so it must return the same storage each time.
#[derive(Clone)]
pub struct Opener(Arc<dyn Fn() -> std::io::Result<Box<dyn StorageBackend>> + Send + Sync>);

impl Opener {
    /// An opener from a closure that returns a fresh handle on the same storage.
    pub fn new(
        f: impl Fn() -> std::io::Result<Box<dyn StorageBackend>> + Send + Sync + 'static,
    ) -> Opener {
        Opener(Arc::new(f))
    }

    pub(super) fn open(&self) -> std::io::Result<Boxed> {
        (self.0)().map(Boxed)
    }
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Opener")
    }
}

/// A boxed backend as redb wants it (a sized `StorageBackend`).
#[derive(Debug)]
pub(super) struct Boxed(Box<dyn StorageBackend>);

impl StorageBackend for Boxed {
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.write(offset, data)
    }
    fn close(&self) -> std::io::Result<()> {
        self.0.close()
    }
}
