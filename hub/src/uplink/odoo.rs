//! The Odoo adapter (docs/upstream.md "The Odoo adapter"): maps a terminal's order snapshot to
//! Odoo's payload exactly as the table of seed 000 says, sends it to `/pos-react/api/orders/create`
//! or `/update` (chosen by `odooId`), and keeps an authenticated session:
//! `POST /web/session/authenticate` (JSON-RPC) once, then the `session_id` cookie on every call,
//! re-authenticating once when Odoo says the session expired (HTTP 401/403 or a JSON-RPC "session
//! expired" error). Every call has a connect and a total timeout. Also: checking a terminal's Odoo
//! session (`/pos-react/api/session`) and the JSON-RPC `call_kw` used by the register push.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, COOKIE, SET_COOKIE};
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;

use super::UpstreamError;

/// Connect timeout of every upstream call (capped by the total timeout).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Top-level snapshot fields the table maps (everything else passes through untouched).
const MAPPED: &[&str] = &[
    "posReference",
    "lines",
    "totals",
    "tableId",
    "partnerId",
    "paymentLines",
];
/// Line fields the table maps.
const LINE_MAPPED: &[&str] = &[
    "id",
    "productId",
    "quantity",
    "unitPrice",
    "taxIds",
    "isVoided",
];

/// Maps a snapshot to Odoo's order payload (seed 000 table). Voided lines are dropped; ids
/// given as numeric strings become integers; fields the table does not name are kept as they
/// are. A value that cannot be mapped (a product id that is not a number) is an error: Odoo
/// would refuse it every time.
pub fn map_order(snapshot: &Value) -> Result<Value, String> {
    let s = snapshot
        .as_object()
        .ok_or_else(|| "snapshot is not an object".to_string())?;
    let mut out = Map::new();
    for (k, v) in s {
        if !MAPPED.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    out.insert(
        "pos_reference".into(),
        s.get("posReference").cloned().unwrap_or(Value::Null),
    );
    let mut lines = Vec::new();
    for (i, l) in s
        .get("lines")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if let Some(m) = map_line(i, l)? {
            lines.push(m);
        }
    }
    out.insert("lines".into(), Value::Array(lines));
    let totals = s.get("totals");
    let total = |k: &str| totals.and_then(|t| t.get(k)).cloned().unwrap_or(json!(0));
    out.insert("amount_total".into(), total("total"));
    out.insert("amount_tax".into(), total("tax"));
    out.insert("amount_untaxed".into(), total("subtotal"));
    out.insert(
        "table_id".into(),
        s.get("tableId").cloned().unwrap_or(Value::Null),
    );
    if let Some(p) = s.get("partnerId").filter(|p| !p.is_null()) {
        let id = as_int(p).ok_or_else(|| format!("partnerId {p} is not an integer"))?;
        out.insert("partner".into(), json!({"partner_id": id}));
    }
    out.insert(
        "statement_ids".into(),
        s.get("paymentLines").cloned().unwrap_or(json!([])),
    );
    Ok(Value::Object(out))
}

/// One order line as Odoo's `lines` take it; None for a voided line.
fn map_line(i: usize, l: &Value) -> Result<Option<Value>, String> {
    let Some(l) = l.as_object() else {
        return Err(format!("lines[{i}] is not an object"));
    };
    if l.get("isVoided") == Some(&Value::Bool(true)) {
        return Ok(None);
    }
    let mut m = Map::new();
    for (k, v) in l {
        if !LINE_MAPPED.contains(&k.as_str()) {
            m.insert(k.clone(), v.clone());
        }
    }
    let product = l.get("productId").unwrap_or(&Value::Null);
    m.insert(
        "product_id".into(),
        json!(as_int(product)
            .ok_or_else(|| format!("lines[{i}].productId {product} is not an integer"))?),
    );
    m.insert("qty".into(), l.get("quantity").cloned().unwrap_or(json!(0)));
    m.insert(
        "price_unit".into(),
        l.get("unitPrice").cloned().unwrap_or(json!(0)),
    );
    let mut taxes = Vec::new();
    for t in l
        .get("taxIds")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        taxes.push(as_int(t).ok_or_else(|| format!("lines[{i}].taxIds: {t} is not an integer"))?);
    }
    m.insert("tax_ids".into(), json!(taxes));
    m.insert(
        "client_line_id".into(),
        l.get("id").cloned().unwrap_or(Value::Null),
    );
    Ok(Some(Value::Object(m)))
}

/// Largest integer a float holds exactly (2^53); a whole float beyond it is not taken as an
/// id, since `as i64` would saturate it to a different one.
const MAX_EXACT_FLOAT: f64 = 9_007_199_254_740_992.0;

/// An integer, or a string holding one ("42"); `None` for anything that is not exactly an i64.
// The float cast only sees whole values within ±2^53 (filtered first): exact as i64.
#[allow(clippy::cast_possible_truncation)]
fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() <= MAX_EXACT_FLOAT)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// What Odoo said about a terminal's session id.
#[derive(Debug, Clone)]
pub enum SessionCheck {
    Valid {
        uid: Value,
        name: Option<String>,
        role: Option<String>,
    },
    Rejected(String),
    Unreachable(String),
}

/// A connection to one Odoo database.
pub struct OdooClient {
    http: reqwest::Client,
    base: String,
    db: String,
    login: String,
    password: String,
    session: Mutex<SessionState>,
}

/// The hub's own Odoo session, and the last failed login.
#[derive(Default)]
struct SessionState {
    sid: Option<String>,
    failed: Option<(Instant, UpstreamError)>,
}

impl OdooClient {
    pub fn new(
        timeout: Duration,
        base: &str,
        db: Option<&str>,
        login: Option<&str>,
        password: Option<&str>,
    ) -> Result<OdooClient, UpstreamError> {
        Ok(OdooClient {
            http: http_client(timeout)?,
            base: base.trim_end_matches('/').to_string(),
            db: db.unwrap_or_default().to_string(),
            login: login.unwrap_or_default().to_string(),
            password: password.unwrap_or_default().to_string(),
            session: Mutex::new(SessionState::default()),
        })
    }

    /// Sends one order snapshot: create without `odooId`, update with it.
    pub async fn push_order(&self, snapshot: &Value) -> Result<(), UpstreamError> {
        let payload = map_order(snapshot).map_err(UpstreamError::Rejected)?;
        let path = if snapshot.get("odooId").is_some_and(|v| !v.is_null()) {
            "/pos-react/api/orders/update"
        } else {
            "/pos-react/api/orders/create"
        };
        self.authed_post(path, &payload).await.map(|_| ())
    }

    /// JSON-RPC `call_kw` on `model.method`; answers the `result`.
    pub async fn call_kw(
        &self,
        model: &str,
        method: &str,
        args: Value,
        kwargs: Value,
    ) -> Result<Value, UpstreamError> {
        let path = format!("/web/dataset/call_kw/{model}/{method}");
        let body = rpc(&json!({"model": model, "method": method, "args": args, "kwargs": kwargs}));
        let v = self.authed_post(&path, &body).await?;
        Ok(v.get("result").cloned().unwrap_or(Value::Null))
    }

    /// POSTs with the session cookie, logging in first if needed and once more if the session
    /// expired. Answers the JSON body (`null` if there is none).
    async fn authed_post(&self, path: &str, body: &Value) -> Result<Value, UpstreamError> {
        for attempt in 0..2 {
            let sid = self.session_id().await?;
            let r = self
                .http
                .post(format!("{}{path}", self.base))
                .header(COOKIE, cookie(&sid)?)
                .json(body)
                .send()
                .await
                .map_err(net_error)?;
            let status = r.status().as_u16();
            let text = r.text().await.map_err(net_error)?;
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let expired = status == 401 || status == 403 || rpc_session_expired(&v);
            if expired {
                // Forget this session, unless a concurrent call already replaced it.
                let mut guard = self.session.lock().await;
                if guard.sid.as_deref() == Some(sid.as_str()) {
                    guard.sid = None;
                }
                drop(guard);
                if attempt == 0 {
                    tracing::info!("odoo session expired; logging in again");
                    continue;
                }
                return Err(UpstreamError::Auth(format!(
                    "HTTP {status} after a fresh login"
                )));
            }
            if !(200..300).contains(&status) {
                return Err(UpstreamError::Status {
                    status,
                    body: clip(&text),
                });
            }
            if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
                return Err(UpstreamError::Rejected(clip(&e.to_string())));
            }
            return Ok(v);
        }
        Err(UpstreamError::Auth("session expired".into()))
    }

    async fn session_id(&self) -> Result<String, UpstreamError> {
        let asked = Instant::now();
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.sid.as_ref() {
            return Ok(s.clone());
        }
        // Calls that queued behind a login that failed share its outcome instead of each
        // trying again (a hanging Odoo would otherwise cost one timeout per waiting call).
        if let Some((at, e)) = &guard.failed {
            if *at >= asked {
                return Err(e.clone());
            }
        }
        let result = self.login().await;
        match &result {
            Ok(sid) => {
                guard.sid = Some(sid.clone());
                guard.failed = None;
            }
            Err(e) => guard.failed = Some((Instant::now(), e.clone())),
        }
        result
    }

    async fn login(&self) -> Result<String, UpstreamError> {
        let body = rpc(&json!({"db": self.db, "login": self.login, "password": self.password}));
        let r = self
            .http
            .post(format!("{}/web/session/authenticate", self.base))
            .json(&body)
            .send()
            .await
            .map_err(net_error)?;
        let status = r.status().as_u16();
        let sid = r
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .find_map(|c| c.trim().strip_prefix("session_id="))
            .map(|c| c.split(';').next().unwrap_or_default().to_string());
        let text = r.text().await.map_err(net_error)?;
        if status >= 500 {
            return Err(UpstreamError::Status {
                status,
                body: clip(&text),
            });
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
            return Err(UpstreamError::Auth(clip(&e.to_string())));
        }
        let logged_in = v
            .pointer("/result/uid")
            .is_some_and(|u| !u.is_null() && u != &json!(false));
        match sid.filter(|s| !s.is_empty()) {
            Some(s) if (200..300).contains(&status) && logged_in => {
                tracing::info!(db = %self.db, login = %self.login, "logged in to odoo");
                Ok(s)
            }
            _ => Err(UpstreamError::Auth(format!(
                "login refused (HTTP {status})"
            ))),
        }
    }

    /// Asks Odoo whether a terminal's session id is valid.
    pub async fn check_session(&self, session_id: &str) -> SessionCheck {
        let Ok(c) = cookie(session_id) else {
            return SessionCheck::Rejected("malformed session id".into());
        };
        let r = self
            .http
            .post(format!("{}/pos-react/api/session", self.base))
            .header(COOKIE, c)
            .json(&rpc(&json!({})))
            .send()
            .await;
        let r = match r {
            Ok(r) => r,
            Err(e) => return SessionCheck::Unreachable(net_error(e).to_string()),
        };
        let status = r.status().as_u16();
        let text = match r.text().await {
            Ok(t) => t,
            Err(e) => return SessionCheck::Unreachable(net_error(e).to_string()),
        };
        if status >= 500 || status == 408 || status == 429 {
            return SessionCheck::Unreachable(format!("HTTP {status}"));
        }
        if !(200..300).contains(&status) {
            return SessionCheck::Rejected(format!("HTTP {status}"));
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if v.get("error").is_some_and(|e| !e.is_null()) {
            return SessionCheck::Rejected("session refused".into());
        }
        let info = v.get("result").unwrap_or(&v);
        match info.get("uid") {
            Some(uid) if !uid.is_null() && uid != &json!(false) => SessionCheck::Valid {
                uid: uid.clone(),
                name: info.get("name").and_then(Value::as_str).map(str::to_string),
                role: info.get("role").and_then(Value::as_str).map(str::to_string),
            },
            _ => SessionCheck::Rejected("session has no user".into()),
        }
    }
}

/// A reqwest client with the hub's timeouts (rustls, no OpenSSL).
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, UpstreamError> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .timeout(timeout)
        .build()
        .map_err(|e| UpstreamError::Network(e.to_string()))
}

fn rpc(params: &Value) -> Value {
    json!({"jsonrpc": "2.0", "method": "call", "params": params, "id": 1})
}

fn cookie(sid: &str) -> Result<HeaderValue, UpstreamError> {
    HeaderValue::from_str(&format!("session_id={sid}"))
        .map_err(|_| UpstreamError::Auth("session id is not a valid cookie value".into()))
}

/// Odoo answers an expired session on a JSON route with HTTP 200 and error code 100.
fn rpc_session_expired(v: &Value) -> bool {
    let Some(e) = v.get("error") else {
        return false;
    };
    e.get("code") == Some(&json!(100))
        || e.pointer("/data/name")
            .and_then(Value::as_str)
            .is_some_and(|n| n.contains("SessionExpired"))
}

/// A reqwest failure as a transient error, saying whether it was a timeout. Takes the error by
/// value so that it reads `.map_err(net_error)`.
#[allow(clippy::needless_pass_by_value)]
pub fn net_error(e: reqwest::Error) -> UpstreamError {
    if e.is_timeout() {
        UpstreamError::Timeout(e.to_string())
    } else {
        UpstreamError::Network(format!("{e}: {}", source_chain(&e)))
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}

/// At most 300 characters of an answer, for error messages.
pub fn clip(s: &str) -> String {
    s.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_seed_000_table() {
        let snap = json!({"posReference": "P-1", "state": "paid", "orderType": "dine_in", "tableId": 7,
            "partnerId": "42", "ticketNumber": 3, "custom": {"x": 1},
            "lines": [
                {"id": "l1", "productId": "100", "quantity": 2, "unitPrice": 4.5, "taxIds": ["1", 2], "note": "hot"},
                {"id": "l2", "productId": 101, "quantity": 1, "unitPrice": 3, "taxIds": [], "isVoided": true}
            ],
            "totals": {"subtotal": 9.0, "tax": 0.9, "total": 9.9},
            "paymentLines": [{"amount": 9.9, "methodId": 1}]});
        let p = map_order(&snap).expect("maps");
        assert_eq!(p["pos_reference"], "P-1");
        assert_eq!(p["amount_total"], 9.9);
        assert_eq!(p["amount_tax"], 0.9);
        assert_eq!(p["amount_untaxed"], 9.0);
        assert_eq!(p["table_id"], 7);
        assert_eq!(p["partner"], json!({"partner_id": 42}));
        assert_eq!(p["statement_ids"], json!([{"amount": 9.9, "methodId": 1}]));
        assert_eq!(
            p["lines"],
            json!([{"product_id": 100, "qty": 2, "price_unit": 4.5, "tax_ids": [1, 2],
            "client_line_id": "l1", "note": "hot"}])
        );
        assert_eq!(
            (p["state"].as_str(), p["custom"]["x"].as_i64()),
            (Some("paid"), Some(1))
        );
        assert!(p.get("posReference").is_none() && p.get("totals").is_none());
    }

    #[test]
    fn unmappable_ids_are_errors() {
        let snap = json!({"posReference": "P", "lines": [{"id": "l", "productId": "abc", "quantity": 1, "unitPrice": 1, "taxIds": []}]});
        assert!(map_order(&snap).unwrap_err().contains("productId"));
        assert!(map_order(&json!([])).is_err());
    }

    /// Ids beyond i64 (or floats past 2^53) are refused, never saturated into another id.
    #[test]
    fn extreme_ids_are_exact_or_refused() {
        let ok = [
            (json!(i64::MIN), i64::MIN),
            (json!(i64::MAX), i64::MAX),
            (json!(2.0), 2),
        ];
        for (v, want) in ok {
            assert_eq!(as_int(&v), Some(want), "{v}");
        }
        let refused = [
            json!(u64::MAX),
            json!(1e300),
            json!(-1e19),
            json!(9.007_199_254_740_994e15),
            json!(1.5),
        ];
        for v in refused {
            assert_eq!(as_int(&v), None, "{v}");
        }
    }
}
