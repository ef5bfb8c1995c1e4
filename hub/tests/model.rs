//! The engine against a model of its rules (issue 21, point 4). Proptest draws sequences of
//! terminal operations (order leases, snapshots with current, stale and future `baseVersion`,
//! with and without a lease, resent eventIds; table locks, forced by roles that may and may not;
//! disconnects and reconnects; the clock moved to just before, at and past the grace period,
//! the lease and lock TTLs and the local midnight; ticket numbers; inventory adjustments with
//! reused eventIds) over four terminals, one per role. Each sequence runs against a real hub
//! (`model/driver.rs`) and a small in-memory model (`model/rules.rs`): every answer must carry
//! what the model decides (accepted or refused, error code, version, lease or lock holder and
//! expiry, ticket number and business day, stock level, the seq of a resent eventId's
//! acknowledgement), every terminal must have received exactly the revocation notices the
//! model predicts, and at the end the hub's leases, locks, orders, tables, stock levels and
//! ticket counters (read over its HTTP API and its database) must equal the model's.
//!
//! `PROPTEST_CASES` (default 64) sets the number of sequences; a failure shrinks to a short
//! sequence and prints it (`minimal failing input: ops = [...]`). docs/reliability.md has the
//! figures of a longer run.

mod common;
#[path = "model/driver.rs"]
mod driver;
#[path = "model/ops.rs"]
mod ops;
#[path = "model/rules.rs"]
mod rules;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::Value;

use driver::{matches, HubSide};
use ops::{Op, TERMINALS};
use rules::{Model, Plan, Ttls};

/// What a run exercised: answers by kind, rules fired, operations by kind.
#[derive(Default)]
struct Figures {
    cases: u64,
    ops: u64,
    count: BTreeMap<String, u64>,
}

impl Figures {
    fn bump(&mut self, what: String) {
        *self.count.entry(what).or_insert(0) += 1;
    }

    fn plan(&mut self, plan: &Plan) {
        let kind = match plan {
            Plan::Skip => "op skipped (terminal not connected / already connected)",
            Plan::Send { .. } => "request sent",
            Plan::Disconnect(_) => "disconnect",
            Plan::Reconnect(_) => "reconnect",
            Plan::Advance(_) => "clock moved",
        };
        self.bump(kind.to_string());
    }

    fn answer(&mut self, got: &Value) {
        let detail = ["code", "reason"]
            .iter()
            .find_map(|k| got[*k].as_str())
            .map_or(String::new(), |d| format!(" {d}"));
        let dup = if got["duplicate"] == true {
            " (resent eventId)"
        } else {
            ""
        };
        self.bump(format!(
            "answer {}{detail}{dup}",
            got["type"].as_str().unwrap_or("?")
        ));
    }

    fn notices(&mut self, notices: &[Value]) {
        for n in notices {
            let ty = n["type"].as_str().unwrap_or("?");
            self.bump(format!(
                "notice {ty} {}",
                n["reason"].as_str().unwrap_or("?")
            ));
        }
    }

    fn case(&mut self, ops: usize, fired: &BTreeMap<&'static str, u64>) {
        self.cases += 1;
        self.ops += ops as u64;
        for (rule, n) in fired {
            *self.count.entry(format!("rule: {rule}")).or_insert(0) += n;
        }
    }

    fn report(&self, took: Duration) -> String {
        let mut out = format!(
            "model-based run: {} cases, {} operations, {:.1} s\n",
            self.cases,
            self.ops,
            took.as_secs_f64()
        );
        for (what, n) in &self.count {
            let _ = writeln!(out, "  {n:7}  {what}");
        }
        out
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// Runs `ops` against a fresh hub and the model; the first difference, with the operation
/// that showed it.
async fn run(ops: &[Op], figures: &mut Figures) -> Result<(), String> {
    let mut hub = HubSide::start().await;
    let ttl = Ttls {
        lease: driver::LEASE_TTL_MS,
        lock: driver::LOCK_TTL_MS,
        grace: driver::GRACE_MS,
    };
    let mut model = Model::new(hub.now(), ttl);
    let mut result = Ok(());
    for (i, op) in ops.iter().enumerate() {
        if let Err(e) = apply(&mut hub, &mut model, op, figures).await {
            let upto: Vec<String> = ops[..=i]
                .iter()
                .enumerate()
                .map(|(k, op)| format!("  {k:2}: {op:?}"))
                .collect();
            result = Err(format!(
                "operation {i} ({op:?}): {e}\nthe sequence up to it:\n{}",
                upto.join("\n")
            ));
            break;
        }
    }
    if result.is_ok() {
        result = finish(&mut hub, &mut model, figures).await;
    }
    figures.case(ops.len(), &model.fired);
    hub.stop().await;
    result
}

/// One operation on both sides.
async fn apply(
    hub: &mut HubSide,
    model: &mut Model,
    op: &Op,
    figures: &mut Figures,
) -> Result<(), String> {
    let plan = model.step(op);
    figures.plan(&plan);
    match plan {
        Plan::Skip => Ok(()),
        Plan::Send { t, frame, expect } => {
            let got = hub.request(t, frame.clone()).await?;
            figures.answer(&got);
            if !matches(&expect, &got) {
                return Err(format!(
                    "{} sent {frame}\n  hub answered {got}\n  model expects {expect}",
                    TERMINALS[t].0
                ));
            }
            if let Some(seq) = got["seq"].as_u64() {
                model.note_seq(seq);
            }
            Ok(())
        }
        Plan::Disconnect(t) => {
            let notices = hub.disconnect(t).await?;
            figures.notices(&notices);
            same_notices(t, &notices, &model.take_notices(t))
        }
        Plan::Reconnect(t) => {
            hub.connect(t).await;
            Ok(())
        }
        Plan::Advance(ms) => {
            hub.advance(ms, &model.leases_json(), &model.locks_json())
                .await
        }
    }
}

/// The notices of every terminal still connected, then the final state.
async fn finish(hub: &mut HubSide, model: &mut Model, figures: &mut Figures) -> Result<(), String> {
    for t in model.connected() {
        let notices = hub.barrier(t).await?;
        figures.notices(&notices);
        same_notices(t, &notices, &model.take_notices(t))?;
    }
    let got = hub.state().await?;
    let want = model.state();
    if got != want {
        return Err(format!(
            "final state differs\n  hub   {got}\n  model {want}"
        ));
    }
    Ok(())
}

/// The notices a terminal received equal the model's, in any order.
fn same_notices(t: usize, got: &[Value], want: &[Value]) -> Result<(), String> {
    let mut left = got.to_vec();
    let all_there = want.iter().all(|w| match left.iter().position(|g| g == w) {
        Some(i) => {
            left.remove(i);
            true
        }
        None => false,
    });
    if all_there && left.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} received the notices {got:?}\n  model expects {want:?}",
        TERMINALS[t].0
    ))
}

/// The test: `cases()` random sequences, then the figures of the run (`--nocapture`).
#[test]
fn the_engine_follows_the_model() {
    let config = ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        max_shrink_iters: 2000,
        // A sequence that fails on a wait runs into `driver::SETTLE` each time: bound shrinking.
        max_shrink_time: 180_000,
        ..ProptestConfig::default()
    };
    let started = std::time::Instant::now();
    let figures = std::cell::RefCell::new(Figures::default());
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(&ops::ops(20, 61), |ops| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let result = rt.block_on(run(&ops, &mut figures.borrow_mut()));
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
        Ok(())
    });
    eprintln!("{}", figures.borrow().report(started.elapsed()));
    if let Err(e) = outcome {
        panic!("{e}");
    }
}
