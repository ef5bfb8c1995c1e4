//! The hub's tables in one list: what `Store::open` creates and what a live backup copies
//! (`copy.rs`) are read from here, so a table added to the hub cannot be left out of either.

use redb::{ReadTransaction, TableHandle, WriteTransaction};

use super::kitchen::{
    INVENTORY, INVENTORY_APPLIED, KITCHEN_TICKETS, PRINT_QUEUE_BDS, PRINT_QUEUE_KDS,
};
use super::live::{FINISHED_ORDERS, LIVE_ORDERS};
use super::upstream::{ODOO_SESSIONS, REGISTERS};
use super::{
    copy, StoreError, DEAD, EVENTS, EVENT_IDS, FLOOR_PLANS, LEASES, META, ORDERS, PENDING, TABLES,
    TABLE_LOCKS, TERMINAL_SUBJECTS, TICKET_SEQ,
};

/// One table of the hub, with what can be done to it without knowing its key and value types.
pub struct Table {
    /// redb's name of the table: how a snapshot's tables are matched to this list.
    pub name: &'static str,
    /// Creates the table if it is missing (a new database, or one from an older hub).
    pub create: fn(&WriteTransaction) -> Result<(), StoreError>,
    /// Copies the table of a snapshot into another database; answers the rows copied.
    pub copy: fn(&ReadTransaction, &redb::Database) -> Result<u64, StoreError>,
}

macro_rules! tables {
    ($($def:expr),* $(,)?) => {
        [$(Table {
            name: $def.name(),
            create: |w| {
                w.open_table($def)?;
                Ok(())
            },
            copy: |r, o| copy::copy(r, o, $def),
        }),*]
    };
}

/// Every table of the hub.
pub fn all() -> [Table; 21] {
    tables![
        META,
        ORDERS,
        LEASES,
        EVENTS,
        PENDING,
        DEAD,
        TABLES,
        TABLE_LOCKS,
        FLOOR_PLANS,
        TICKET_SEQ,
        EVENT_IDS,
        TERMINAL_SUBJECTS,
        KITCHEN_TICKETS,
        PRINT_QUEUE_KDS,
        PRINT_QUEUE_BDS,
        INVENTORY,
        INVENTORY_APPLIED,
        LIVE_ORDERS,
        FINISHED_ORDERS,
        ODOO_SESSIONS,
        REGISTERS,
    ]
}

#[cfg(test)]
mod tests {
    use redb::{ReadableDatabase, TableHandle};

    use crate::store::Store;

    #[test]
    fn a_new_database_holds_exactly_the_listed_tables() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hub.redb");
        drop(Store::open(&path, 1 << 20).expect("open"));
        let db = redb::Database::open(&path).expect("reopen");
        let read = db.begin_read().expect("read");
        let mut found: Vec<String> = read
            .list_tables()
            .expect("list")
            .map(|t| t.name().to_string())
            .collect();
        found.sort();
        let mut listed: Vec<String> = super::all().iter().map(|t| t.name.to_string()).collect();
        listed.sort();
        assert_eq!(found, listed);
    }
}
