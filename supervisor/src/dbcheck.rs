//! The integrity check of a redb file, shared by the start-up recovery check (the hub's
//! database and the backups it may restore) and by backups (only a copy that passes counts).

use std::path::Path;

/// Opens a redb file and runs its integrity check: Ok(true) clean, Ok(false) repaired.
pub fn check_redb(path: &Path) -> Result<bool, String> {
    let path = path.to_path_buf();
    std::panic::catch_unwind(move || {
        let mut db = redb::Database::builder()
            .set_cache_size(16 * 1024 * 1024)
            .open(&path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => "in-use".to_string(),
                other => other.to_string(),
            })?;
        db.check_integrity().map_err(|e| e.to_string())
    })
    .unwrap_or_else(|_| Err("redb panicked while reading the file".into()))
}
