//! `serve --demo`: a sample floor plan so a first look shows something.

use redb::ReadableTableMetadata;

use crate::store::records::{enc, FloorRec, TableRec};
use crate::store::{Store, StoreError, FLOOR_PLANS, TABLES};

/// Writes a floor "main" with eight tables, once, into an empty database.
pub fn seed(store: &Store) -> Result<(), StoreError> {
    let txn = store.db()?.begin_write()?;
    {
        let mut floors = txn.open_table(FLOOR_PLANS)?;
        if !floors.is_empty()? {
            return Ok(());
        }
        let tables: Vec<serde_json::Value> = (1..=8)
            .map(|i| serde_json::json!({"id": i, "name": format!("T{i}"), "seats": if i % 2 == 0 { 4 } else { 2 },
                "x": ((i - 1) % 4) * 120 + 20, "y": ((i - 1) / 4) * 120 + 20}))
            .collect();
        let rec = FloorRec {
            floor_id_json: "\"main\"".into(),
            tables_json: serde_json::Value::Array(tables).to_string(),
            layout_mode_json: Some("\"grid\"".into()),
            terminal_id: "demo".into(),
            updated_ms: crate::engine::now_ms(),
        };
        floors.insert("main", enc(&rec).as_slice())?;
        let mut t = txn.open_table(TABLES)?;
        for i in 1..=8u32 {
            let rec = TableRec {
                table_id_json: i.to_string(),
                status: "available".into(),
                pos_reference: None,
                terminal_id: None,
                updated_ms: 0,
            };
            t.insert(i.to_string().as_str(), enc(&rec).as_slice())?;
        }
    }
    txn.commit()?;
    Ok(())
}
