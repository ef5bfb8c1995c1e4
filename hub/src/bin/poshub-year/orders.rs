//! What a busy store's terminals send for one order, stage by stage: the order's life is four
//! quarter-hour stages (taken, cooking, served, paid), each a few snapshots that grow the order
//! to about 1.1 KB, with its ticket number, kitchen and bar tickets, the table lock of a dine-in
//! order, and the inventory adjustments of what was sold.

use serde_json::{json, Value};

/// Stages of an order, one per simulated step.
pub const STAGES: u32 = 4;
/// Tables of the store (dine-in orders lock one).
const TABLES: u64 = 40;

/// One order of the year.
#[derive(Debug, Clone)]
pub struct Order {
    /// The store's order number since the start of the year.
    pub n: u64,
    pub day: u32,
    /// The step of the day it was taken.
    pub opened: u32,
}

impl Order {
    fn pos_reference(&self) -> String {
        format!("Order {:05}-001-{:04}", self.day, self.n % 10_000)
    }

    fn dine_in(&self) -> bool {
        self.n.is_multiple_of(2)
    }

    fn table(&self) -> u64 {
        self.n % TABLES + 1
    }

    /// The order's snapshot after its `w`-th write of `total`: lines accumulate, the last
    /// write pays it.
    fn snapshot(&self, w: u32, total: u32) -> Value {
        let lines: Vec<Value> = (0..=w.min(7))
            .map(|i| {
                json!({"id": format!("l{i}"), "productId": 100 + (self.n + u64::from(i)) % 60,
                       "name": format!("Item {}", (self.n + u64::from(i)) % 60),
                       "quantity": 1 + i % 3, "unitPrice": 4.5, "taxIds": [1],
                       "note": if i % 3 == 0 { "no onions" } else { "" }})
            })
            .collect();
        let paid = w + 1 == total;
        let mut s = json!({
            "posReference": self.pos_reference(), "state": if paid { "paid" } else { "draft" },
            "lines": lines, "totals": {"subtotal": 4.5 * f64::from(w + 1), "tax": 0.45 * f64::from(w + 1)},
            "paymentLines": if paid { json!([{"method": "card", "amount": 4.95 * f64::from(w + 1)}]) } else { json!([]) },
            "customerCount": 2, "rev": w,
        });
        if self.dine_in() {
            s["tableId"] = json!(self.table());
        }
        s
    }

    /// The messages of stage `stage` (0-based), given `writes` snapshots in all. Each carries
    /// a `requestId` except those the protocol does not answer (`TABLE_LOCK_RELEASE`).
    pub fn stage(&self, stage: u32, writes: u32, next_id: &mut u64) -> Vec<(Value, bool)> {
        let p = self.pos_reference();
        let mut out: Vec<(Value, bool)> = Vec::new();
        let mut ask = |v: Value| out.push((v, true));
        ask(json!({"type": "LEASE_ACQUIRE", "posReference": p}));
        if self.dine_in() && stage + 1 < STAGES {
            ask(json!({"type": "TABLE_LOCK_ACQUIRE", "tableId": self.table()}));
        }
        if stage == 0 {
            let kind = if self.dine_in() { "dine_in" } else { "takeout" };
            ask(json!({"type": "TICKET_NUMBER_REQUEST", "orderType": kind}));
        }
        let per = writes.div_ceil(STAGES);
        for w in (stage * per)..((stage + 1) * per).min(writes) {
            ask(
                json!({"type": "ORDER_SNAPSHOT", "posReference": p, "baseVersion": w,
                       "eventId": format!("{}-{w}", self.n), "snapshot": self.snapshot(w, writes)}),
            );
        }
        let ticket = |station: &str| format!("{station}-{}", self.n);
        match stage {
            0 => ask(
                json!({"type": "KITCHEN_TICKET", "ticketId": ticket("k"), "station": "kds",
                            "posReference": p, "lines": [{"name": "Burger", "quantity": 2, "note": "no onions"}]}),
            ),
            1 if self.n.is_multiple_of(3) => {
                ask(json!({"type": "KITCHEN_TICKET", "ticketId": ticket("b"),
                            "station": "bds", "posReference": p, "lines": [{"name": "Lemonade", "quantity": 2}]}));
            }
            2 => ask(
                json!({"type": "KITCHEN_TICKET_STATUS", "ticketId": ticket("k"), "status": "done"}),
            ),
            _ => {}
        }
        if stage + 1 == STAGES {
            for (i, sku) in [self.n % 60, (self.n + 7) % 60].iter().enumerate() {
                ask(
                    json!({"type": "INVENTORY_ADJUST", "productId": format!("SKU-{sku}"),
                           "delta": -1, "eventId": format!("inv-{}-{i}", self.n)}),
                );
            }
            if self.n.is_multiple_of(3) {
                ask(
                    json!({"type": "KITCHEN_TICKET_STATUS", "ticketId": ticket("b"), "status": "done"}),
                );
            }
            ask(json!({"type": "LEASE_RELEASE", "posReference": p}));
            if self.dine_in() {
                out.push((
                    json!({"type": "TABLE_LOCK_RELEASE", "tableId": self.table()}),
                    false,
                ));
            }
        }
        for (v, answered) in &mut out {
            if *answered {
                *next_id += 1;
                v["requestId"] = json!(*next_id);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_is_fifteen_snapshots_ending_paid_at_about_1_1_kb() {
        let o = Order {
            n: 12,
            day: 3,
            opened: 0,
        };
        let mut id = 0;
        let msgs: Vec<Value> = (0..STAGES)
            .flat_map(|s| o.stage(s, 15, &mut id))
            .map(|(v, _)| v)
            .collect();
        let snaps: Vec<&Value> = msgs
            .iter()
            .filter(|m| m["type"] == "ORDER_SNAPSHOT")
            .collect();
        assert_eq!(snaps.len(), 15);
        let versions: Vec<u64> = snaps
            .iter()
            .filter_map(|m| m["baseVersion"].as_u64())
            .collect();
        assert_eq!(versions, (0..15).collect::<Vec<u64>>());
        let last = &snaps[14]["snapshot"];
        assert_eq!(last["state"], "paid");
        let size = last.to_string().len();
        assert!((900..1400).contains(&size), "final snapshot {size} bytes");
    }
}
