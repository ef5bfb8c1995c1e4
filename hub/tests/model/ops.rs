//! The operations of a model-based run and the proptest strategy that draws sequences of them:
//! a few terminals (one per role), a few orders, tables and products, so that sequences collide
//! on the same lease, lock, order version, eventId and business day often.

use proptest::prelude::*;

/// The terminals of a run: (terminal id, role in open mode). Cashier and waiter may not force a
/// table lock; manager and admin may.
pub const TERMINALS: [(&str, &str); 4] = [
    ("till-cashier", "cashier"),
    ("tab-waiter", "waiter"),
    ("till-manager", "manager"),
    ("office-admin", "admin"),
];
/// Order references.
pub const ORDERS: [&str; 3] = ["Order 001", "Order 002", "Order 003"];
/// Snapshot states (`paid` and `cancelled` free the order's table).
pub const STATES: [&str; 4] = ["draft", "sent", "paid", "cancelled"];
/// Ticket order types.
pub const ORDER_TYPES: [&str; 3] = ["takeout", "delivery", "dine_in"];
/// How many tables and products there are (ids 1..=N).
pub const TABLES: u8 = 3;
pub const PRODUCTS: u8 = 3;
/// Size of the eventId pools (small, so ids are reused: resends and cross-use).
pub const EVENT_IDS: u8 = 4;

/// A table or product id as a terminal sends it: the number `n`, or its text (`4` and `"4"` are
/// the same table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Id {
    pub n: u8,
    pub text: bool,
}

/// The `baseVersion` of a snapshot, relative to the order's current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    Current,
    /// One below the current version (stale; 0 if the order is new).
    Stale,
    /// One above the current version (accepted: only a base below the current one conflicts).
    Ahead,
    Zero,
}

/// How far the test moves the hub's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Ms(u64),
    /// Exactly the grace period, or one ms less / more (`delta` −1, 0, 1).
    Grace(i8),
    /// Exactly the lease TTL, ± 1 ms.
    LeaseTtl(i8),
    /// Exactly the table lock TTL, ± 1 ms.
    LockTtl(i8),
    /// To the next local midnight, ± 1 ms.
    Midnight(i8),
}

/// Who sends a request about an order or a table: a given terminal, or the one holding that
/// order's lease or that table's lock if it is connected (`or` otherwise), so that holders'
/// writes, renewals and releases are frequent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    T(usize),
    Holder { or: usize },
}

/// One thing that happens: terminal `t` (an index into `TERMINALS`) sends a request, its socket
/// goes or comes back, or time moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    LeaseAcquire {
        t: usize,
        o: usize,
    },
    LeaseHeartbeat {
        by: Who,
        o: usize,
    },
    LeaseRelease {
        by: Who,
        o: usize,
    },
    Snapshot(Snapshot),
    Lock {
        t: usize,
        table: Id,
        force: bool,
    },
    LockHeartbeat {
        by: Who,
        table: Id,
    },
    Unlock {
        by: Who,
        table: Id,
    },
    Ticket {
        t: usize,
        order_type: usize,
    },
    Adjust {
        t: usize,
        product: Id,
        delta: i64,
        event: u8,
    },
    Disconnect {
        t: usize,
    },
    /// The first terminal from `t` on that is not connected reconnects.
    Reconnect {
        t: usize,
    },
    Advance(Step),
}

/// An `ORDER_SNAPSHOT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub by: Who,
    pub o: usize,
    pub base: Base,
    pub state: usize,
    pub table: Option<Id>,
    pub event: Option<u8>,
}

fn terminal() -> impl Strategy<Value = usize> {
    0..TERMINALS.len()
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![
        1 => terminal().prop_map(Who::T),
        3 => terminal().prop_map(|or| Who::Holder { or }),
    ]
}

fn order() -> impl Strategy<Value = usize> {
    0..ORDERS.len()
}

fn id(max: u8) -> impl Strategy<Value = Id> {
    (1..=max, any::<bool>()).prop_map(|(n, text)| Id { n, text })
}

fn delta() -> impl Strategy<Value = i8> {
    -1i8..=1
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u64..20_000).prop_map(Step::Ms),
        2 => delta().prop_map(Step::Grace),
        2 => delta().prop_map(Step::LeaseTtl),
        2 => delta().prop_map(Step::LockTtl),
        1 => delta().prop_map(Step::Midnight),
    ]
}

fn base() -> impl Strategy<Value = Base> {
    prop_oneof![
        4 => Just(Base::Current),
        2 => Just(Base::Stale),
        1 => Just(Base::Ahead),
        1 => Just(Base::Zero),
    ]
}

fn snapshot() -> impl Strategy<Value = Op> {
    let table = proptest::option::weighted(0.6, id(TABLES));
    let event = proptest::option::weighted(0.4, 0..EVENT_IDS);
    (who(), order(), base(), 0..STATES.len(), table, event).prop_map(
        |(by, o, base, state, table, event)| {
            Op::Snapshot(Snapshot {
                by,
                o,
                base,
                state,
                table,
                event,
            })
        },
    )
}

fn adjust() -> impl Strategy<Value = Op> {
    let delta = prop_oneof![-5i64..=-1, 1i64..=5];
    (terminal(), id(PRODUCTS), delta, 0..EVENT_IDS).prop_map(|(t, product, delta, event)| {
        Op::Adjust {
            t,
            product,
            delta,
            event,
        }
    })
}

/// One operation, weighted towards the contended ones (leases, writes, locks).
pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (terminal(), order()).prop_map(|(t, o)| Op::LeaseAcquire { t, o }),
        1 => (who(), order()).prop_map(|(by, o)| Op::LeaseHeartbeat { by, o }),
        1 => (who(), order()).prop_map(|(by, o)| Op::LeaseRelease { by, o }),
        6 => snapshot(),
        3 => (terminal(), id(TABLES), any::<bool>())
            .prop_map(|(t, table, force)| Op::Lock { t, table, force }),
        1 => (who(), id(TABLES)).prop_map(|(by, table)| Op::LockHeartbeat { by, table }),
        2 => (who(), id(TABLES)).prop_map(|(by, table)| Op::Unlock { by, table }),
        2 => (terminal(), 0..ORDER_TYPES.len())
            .prop_map(|(t, order_type)| Op::Ticket { t, order_type }),
        3 => adjust(),
        1 => terminal().prop_map(|t| Op::Disconnect { t }),
        2 => terminal().prop_map(|t| Op::Reconnect { t }),
        2 => step().prop_map(Op::Advance),
    ]
}

/// A sequence of `min..max` operations.
pub fn ops(min: usize, max: usize) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), min..max)
}
