//! Register push (docs/upstream.md "Register push", seed 004): a register created on the hub
//! (`POST /admin/registers`, `poshub registers add NAME`) waits as `pending_create` until Odoo has
//! a `pos.config` for it. Through JSON-RPC `call_kw` the hub looks for a `pos.config` of that name
//! (adopted if there is one, so a retry never creates it twice), else reads the first active one as
//! a template, creates a clone (its many2one fields as ids, its many2many fields as
//! `[(6, 0, ids)]`) under the new name, and stamps the returned id on the register (`synced`). A
//! failure backs off; the fifth one leaves the register in `sync_error` with the error, until
//! requeued.

use serde_json::{json, Map, Value};

use super::odoo::OdooClient;
use super::UpstreamError;
use crate::context::Hub;
use crate::engine::{now_ms, UpstreamCmd};

/// many2one fields cloned from the template.
pub const MANY2ONE: &[&str] = &[
    "journal_id",
    "picking_type_id",
    "pricelist_id",
    "company_id",
    "currency_id",
    "invoice_journal_id",
    "stock_location_id",
];
/// many2many fields cloned from the template.
pub const MANY2MANY: &[&str] = &["available_pricelist_ids", "payment_method_ids"];
/// Registers pushed per round (seed 004: 10 per tick).
const PER_ROUND: usize = 10;

/// The `pos.config.create` values for a clone of `template` named `name`. A field the template
/// lacks (or has empty) is left out, so Odoo's defaults apply.
pub fn create_payload(template: &Value, name: &str) -> Value {
    let mut out = Map::new();
    for f in MANY2ONE {
        let id = match template.get(*f) {
            Some(Value::Array(a)) => a.first().and_then(Value::as_i64),
            Some(Value::Number(n)) => n.as_i64(),
            _ => None,
        };
        if let Some(id) = id {
            out.insert((*f).into(), json!(id));
        }
    }
    for f in MANY2MANY {
        if let Some(Value::Array(ids)) = template.get(*f) {
            let ids: Vec<i64> = ids.iter().filter_map(Value::as_i64).collect();
            out.insert((*f).into(), json!([[6, 0, ids]]));
        }
    }
    out.insert("name".into(), json!(name));
    Value::Object(out)
}

/// Creates the `pos.config` in Odoo; answers its id. A `pos.config` that already has the
/// name is taken as this register (a retry after a crash between Odoo's create and the stamp
/// must not create it twice).
pub async fn push_one(odoo: &OdooClient, name: &str) -> Result<i64, UpstreamError> {
    let existing = odoo
        .call_kw(
            "pos.config",
            "search_read",
            json!([[["name", "=", name]]]),
            json!({"fields": ["id"], "limit": 1}),
        )
        .await?;
    if let Some(id) = existing
        .as_array()
        .and_then(|a| a.first())
        .and_then(|r| r.get("id"))
        .and_then(Value::as_i64)
    {
        tracing::info!(
            register = name,
            odoo_id = id,
            "pos.config already in odoo; stamping its id"
        );
        return Ok(id);
    }
    let fields: Vec<&str> = MANY2ONE.iter().chain(MANY2MANY).copied().collect();
    let found = odoo
        .call_kw(
            "pos.config",
            "search_read",
            json!([[["active", "=", true]]]),
            json!({"fields": fields, "limit": 1, "order": "id asc"}),
        )
        .await?;
    let template = found.as_array().and_then(|a| a.first()).ok_or_else(|| {
        UpstreamError::Rejected("no active pos.config to use as a template".into())
    })?;
    let created = odoo
        .call_kw(
            "pos.config",
            "create",
            json!([create_payload(template, name)]),
            json!({}),
        )
        .await?;
    let id = match &created {
        Value::Array(a) => a.first().and_then(Value::as_i64),
        v => v.as_i64(),
    };
    id.ok_or_else(|| UpstreamError::Rejected(format!("create answered {created} instead of an id")))
}

/// Pushes the registers that are due (all pending ones when `force`).
pub async fn push_due(hub: &Hub, force: bool) {
    let Some(odoo) = &hub.upstream.odoo else {
        return;
    };
    let store = hub.store.clone();
    let Ok(Ok(all)) = tokio::task::spawn_blocking(move || store.registers()).await else {
        return;
    };
    let now = now_ms();
    let due = all
        .into_iter()
        .filter(|(_, r)| r.state == "pending_create" && (force || r.next_attempt_ms <= now))
        .take(PER_ROUND);
    for (id, reg) in due {
        let outcome = push_one(odoo, &reg.name).await;
        // Wait until the outcome is durable, so the next round never pushes it twice.
        let recorded = super::record(hub, |done| match outcome {
            Ok(odoo_id) => {
                tracing::info!(register = %reg.name, odoo_id, "register created in odoo");
                UpstreamCmd::RegisterPushed {
                    id,
                    odoo_id,
                    done: Some(done),
                }
            }
            Err(e) => {
                tracing::warn!(register = %reg.name, error = %e, "register push failed");
                UpstreamCmd::RegisterFailed {
                    id,
                    error: e.to_string(),
                    done: Some(done),
                }
            }
        })
        .await;
        if !recorded {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_many2one_and_many2many() {
        let t = json!({"id": 1, "journal_id": [7, "Sales"], "company_id": [1, "Co"], "pricelist_id": false,
            "payment_method_ids": [1, 2], "available_pricelist_ids": []});
        let p = create_payload(&t, "Bar 2");
        assert_eq!(
            p,
            json!({"journal_id": 7, "company_id": 1, "payment_method_ids": [[6, 0, [1, 2]]],
            "available_pricelist_ids": [[6, 0, []]], "name": "Bar 2"})
        );
    }
}
