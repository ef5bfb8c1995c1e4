//! A faithful stand-in for Odoo and for the cloud bridge: a real HTTP server (hyper) on
//! 127.0.0.1 with an ephemeral port. It implements `/web/session/authenticate` (JSON-RPC, sets
//! the `session_id` cookie), `/pos-react/api/orders/create|update` (cookie required, 401 when
//! the session expired, idempotent by `pos_reference`), `/pos-react/api/session` (terminal
//! sessions), `/web/dataset/call_kw/pos.config/{search_read,create}`, and the bridge's
//! `POST /events/ingest` (Bearer token, idempotent by `eventId`) and `GET /events?since=N`.
//! It records every request, and injects faults on demand: an HTTP status, a delay (longer than
//! the hub's timeout = a timeout), a dropped connection, an expired session.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::http_get;

pub const DB: &str = "pos";
pub const LOGIN: &str = "hub";
pub const PASSWORD: &str = "secret";
pub const BRIDGE_TOKEN: &str = "bridge-token";

/// What a faulty request gets instead of a normal answer.
#[derive(Debug, Clone)]
pub enum Fault {
    Status(u16),
    /// Answer normally, but only after this long.
    Delay(Duration),
    /// Close the connection without an answer.
    Drop,
}

#[derive(Debug, Clone)]
struct Rule {
    prefix: String,
    fault: Fault,
    /// None: until cleared.
    remaining: Option<u32>,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub cookie: Option<String>,
    pub body: Value,
    /// Whether the double answered it normally (no fault).
    pub served: bool,
}

#[derive(Default)]
struct St {
    requests: Vec<Recorded>,
    rules: Vec<Rule>,
    hub_sessions: u64,
    current_session: Option<String>,
    next_id: i64,
    /// `pos_reference` -> payloads accepted, in arrival order (with the endpoint used).
    orders: BTreeMap<String, Vec<(String, Value)>>,
    /// `pos_reference` -> status to answer for it (permanent rejection).
    refuse: HashMap<String, u16>,
    terminal_sessions: HashMap<String, Value>,
    pos_configs: Vec<Value>,
    created_configs: Vec<Value>,
    ingested: BTreeMap<String, Value>,
    cloud_events: Vec<Value>,
}

/// The running double.
pub struct OdooDouble {
    pub addr: SocketAddr,
    pub url: String,
    st: Arc<Mutex<St>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OdooDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OdooDouble {
    pub async fn start() -> OdooDouble {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind double");
        let addr = listener.local_addr().expect("addr");
        let st = Arc::new(Mutex::new(St {
            next_id: 1000,
            pos_configs: vec![
                json!({"id": 1, "name": "Main", "journal_id": [7, "POS Sales"],
                "picking_type_id": [9, "PoS Orders"], "pricelist_id": [1, "Public"], "company_id": [1, "Cafe"],
                "currency_id": [2, "EUR"], "invoice_journal_id": false, "stock_location_id": [8, "Stock"],
                "available_pricelist_ids": [1, 3], "payment_method_ids": [1, 2, 5]}),
            ],
            ..Default::default()
        }));
        let shared = st.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = shared.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        OdooDouble {
            addr,
            url: format!("http://{addr}"),
            st,
            task,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut St) -> R) -> R {
        f(&mut self.st.lock().expect("double state"))
    }

    /// Requests whose path starts with `prefix` get `fault` (for the next `n`, or until cleared).
    pub fn fault(&self, prefix: &str, fault: Fault, n: Option<u32>) {
        self.with(|s| {
            s.rules.push(Rule {
                prefix: prefix.into(),
                fault,
                remaining: n,
            });
        });
    }

    pub fn clear_faults(&self) {
        self.with(|s| s.rules.clear());
    }

    /// The hub's Odoo session expires: its next call gets 401 and it must log in again.
    pub fn expire_session(&self) {
        self.with(|s| s.current_session = None);
    }

    /// Orders with this reference are refused with `status` (a permanent error).
    pub fn refuse(&self, pos_reference: &str, status: u16) {
        self.with(|s| s.refuse.insert(pos_reference.into(), status));
    }

    pub fn unrefuse_all(&self) {
        self.with(|s| s.refuse.clear());
    }

    /// A terminal session id Odoo knows.
    pub fn add_terminal_session(&self, sid: &str, info: Value) {
        self.with(|s| s.terminal_sessions.insert(sid.into(), info));
    }

    pub fn revoke_terminal_session(&self, sid: &str) {
        self.with(|s| s.terminal_sessions.remove(sid));
    }

    /// `pos_reference` -> every payload Odoo accepted for it, with the endpoint.
    pub fn orders(&self) -> BTreeMap<String, Vec<(String, Value)>> {
        self.with(|s| s.orders.clone())
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.with(|s| s.requests.clone())
    }

    pub fn logins(&self) -> u64 {
        self.with(|s| s.hub_sessions)
    }

    /// A `pos.config` Odoo already has (as if created before a crash).
    pub fn add_pos_config(&self, name: &str) -> i64 {
        self.with(|s| {
            s.next_id += 1;
            let id = s.next_id;
            s.pos_configs.push(json!({"id": id, "name": name}));
            id
        })
    }

    pub fn created_configs(&self) -> Vec<Value> {
        self.with(|s| s.created_configs.clone())
    }

    pub fn ingested(&self) -> BTreeMap<String, Value> {
        self.with(|s| s.ingested.clone())
    }

    /// An event the cloud has for the hub (served by `GET /events?since=`).
    pub fn add_cloud_event(&self, mut ev: Value) {
        self.with(|s| {
            ev["seq"] = json!(s.cloud_events.len() as u64 + 1);
            s.cloud_events.push(ev);
        });
    }
}

type Resp = Response<Full<Bytes>>;

fn answer(status: u16, body: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn cookie_sid(cookie: Option<&str>) -> Option<String> {
    cookie.and_then(|c| {
        c.split(';')
            .find_map(|p| p.trim().strip_prefix("session_id=").map(str::to_string))
    })
}

/// What the endpoints look at in a request.
struct Req {
    method: String,
    path: String,
    query: String,
    cookie: Option<String>,
    bearer: Option<String>,
    body: Value,
}

impl Req {
    async fn read(req: Request<Incoming>) -> Req {
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let cookie = header(hyper::header::COOKIE);
        let bearer = header(hyper::header::AUTHORIZATION);
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        let body = req
            .into_body()
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        Req {
            method,
            path,
            query,
            cookie,
            bearer,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        }
    }
}

async fn handle(st: Arc<Mutex<St>>, req: Request<Incoming>) -> Result<Resp, std::io::Error> {
    let req = Req::read(req).await;
    match fault_for(&st, &req) {
        Some(Fault::Status(code)) => return Ok(answer(code, &json!({"error": "injected fault"}))),
        Some(Fault::Drop) => return Err(std::io::Error::other("injected: connection dropped")),
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let mut s = st.lock().expect("state");
    Ok(route(&mut s, &req))
}

/// 1. Faults: the first rule whose prefix matches (counted down); the request is recorded.
fn fault_for(st: &Mutex<St>, req: &Req) -> Option<Fault> {
    let mut s = st.lock().expect("state");
    let mut hit = None;
    for r in &mut s.rules {
        if req.path.starts_with(&r.prefix) && r.remaining != Some(0) {
            if let Some(n) = r.remaining.as_mut() {
                *n -= 1;
            }
            hit = Some(r.fault.clone());
            break;
        }
    }
    s.requests.push(Recorded {
        method: req.method.clone(),
        path: req.path.clone(),
        cookie: req.cookie.clone(),
        body: req.body.clone(),
        served: !matches!(hit, Some(Fault::Status(_) | Fault::Drop)),
    });
    hit
}

/// 2. Endpoints.
fn route(s: &mut St, req: &Req) -> Resp {
    let params = req.body.get("params").cloned().unwrap_or(Value::Null);
    let sid = cookie_sid(req.cookie.as_deref());
    let authed = sid.is_some() && sid == s.current_session;
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/web/session/authenticate") => authenticate(s, &params),
        ("POST", "/pos-react/api/orders/create" | "/pos-react/api/orders/update") => {
            if authed {
                pos_order(s, req)
            } else {
                answer(401, &json!({"error": "session expired"}))
            }
        }
        ("POST", "/pos-react/api/session") => {
            match sid.and_then(|sid| s.terminal_sessions.get(&sid).cloned()) {
                Some(info) => answer(200, &json!({"jsonrpc": "2.0", "result": info})),
                None => answer(401, &json!({"error": "invalid session"})),
            }
        }
        ("POST", "/web/dataset/call_kw/pos.config/search_read") if authed => {
            config_search(s, &params)
        }
        ("POST", "/web/dataset/call_kw/pos.config/create") if authed => config_create(s, &params),
        ("POST", p) if p.starts_with("/web/dataset/call_kw/") => answer(
            200,
            &json!({"jsonrpc": "2.0", "error": {"code": 100, "message": "Odoo Session Expired"}}),
        ),
        ("POST", "/events/ingest") => ingest(s, req),
        ("GET", "/events") => cloud_events_since(s, &req.query),
        _ => answer(404, &json!({"error": "no such endpoint"})),
    }
}

/// `/web/session/authenticate`: a new hub session cookie for the right credentials.
fn authenticate(s: &mut St, params: &Value) -> Resp {
    if params["db"] == DB && params["login"] == LOGIN && params["password"] == PASSWORD {
        s.hub_sessions += 1;
        let sid = format!("hubsess-{}", s.hub_sessions);
        s.current_session = Some(sid.clone());
        let mut r = answer(
            200,
            &json!({"jsonrpc": "2.0", "id": 1, "result": {"uid": 2, "db": DB}}),
        );
        r.headers_mut().insert(
            hyper::header::SET_COOKIE,
            hyper::header::HeaderValue::from_str(&format!("session_id={sid}; Path=/; HttpOnly"))
                .expect("cookie"),
        );
        r
    } else {
        answer(
            200,
            &json!({"jsonrpc": "2.0", "id": 1, "error": {"code": 200, "message": "Access Denied"}}),
        )
    }
}

/// `/pos-react/api/orders/create|update` with a valid session: stored, or refused as set up.
fn pos_order(s: &mut St, req: &Req) -> Resp {
    let p = req.body["pos_reference"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Some(code) = s.refuse.get(&p).copied() {
        answer(code, &json!({"error": format!("order {p} refused")}))
    } else {
        let endpoint = req.path.rsplit('/').next().unwrap_or_default().to_string();
        s.orders
            .entry(p)
            .or_default()
            .push((endpoint, req.body.clone()));
        s.next_id += 1;
        answer(200, &json!({"jsonrpc": "2.0", "result": {"id": s.next_id}}))
    }
}

/// `pos.config/search_read`: only the two searches the hub makes: by name, or the first
/// active one.
fn config_search(s: &St, params: &Value) -> Resp {
    let domain = &params["args"][0];
    let by_name = domain
        .as_array()
        .and_then(|d| d.iter().find(|c| c[0] == "name"))
        .map(|c| c[2].clone());
    let active = match by_name {
        Some(n) => s.pos_configs.iter().find(|c| c["name"] == n).cloned(),
        None => s.pos_configs.first().cloned(),
    };
    answer(
        200,
        &json!({"jsonrpc": "2.0", "result": active.into_iter().collect::<Vec<_>>()}),
    )
}

/// `pos.config/create`: stored with a new id.
fn config_create(s: &mut St, params: &Value) -> Resp {
    let vals = params["args"][0].clone();
    s.next_id += 1;
    let id = s.next_id;
    let mut stored = vals.clone();
    stored["id"] = json!(id);
    s.pos_configs.push(stored);
    s.created_configs.push(vals);
    answer(200, &json!({"jsonrpc": "2.0", "result": id}))
}

/// Bridge `/events/ingest` with the bearer token: each eventId kept once.
fn ingest(s: &mut St, req: &Req) -> Resp {
    if req.bearer.as_deref() == Some(&format!("Bearer {BRIDGE_TOKEN}")) {
        for e in req.body.as_array().cloned().unwrap_or_default() {
            let id = e["eventId"].as_str().unwrap_or_default().to_string();
            s.ingested.entry(id).or_insert(e);
        }
        answer(200, &json!({"ok": true}))
    } else {
        answer(401, &json!({"error": "bad token"}))
    }
}

/// Bridge `GET /events?since=N`: the cloud events after N and the new cursor.
fn cloud_events_since(s: &St, query: &str) -> Resp {
    let since: u64 = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("since="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let evs: Vec<Value> = s
        .cloud_events
        .iter()
        .filter(|e| e["seq"].as_u64().unwrap_or(0) > since)
        .cloned()
        .collect();
    let cursor = evs
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .max()
        .unwrap_or(since);
    answer(200, &json!({"events": evs, "cursor": cursor}))
}

// ---- Driving a hub against the double ----

pub const ADMIN: &str = "admin-secret";

pub fn odoo_env(d: &OdooDouble) -> Vec<(&'static str, String)> {
    vec![
        ("ODOO_URL", d.url.clone()),
        ("ODOO_DB", DB.into()),
        ("ODOO_USER", LOGIN.into()),
        ("ODOO_PASSWORD", PASSWORD.into()),
        ("HUB_FORWARD_INTERVAL_MS", "50".into()),
        ("HUB_UPSTREAM_TIMEOUT_MS", "400".into()),
        ("HUB_ADMIN_TOKEN", ADMIN.into()),
        ("HUB_LEASE_TTL_MS", "600000".into()),
    ]
}

pub fn refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, s)| (*k, s.as_str())).collect()
}

/// An HTTP call with an optional bearer token; status and JSON body.
pub async fn admin(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
        .await
        .expect("in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Polls `/health` until `ok` holds for it, or fails after `within`.
pub async fn wait_health(
    addr: std::net::SocketAddr,
    within: Duration,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (_, h) = http_get(addr, "/health").await;
        if ok(&h) {
            return h;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {h}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops an in-process hub and starts it again on the same directory. The WebSocket tasks of
/// the old hub linger for the ~50 ms they give a close frame, still holding the database, so
/// the restart waits that out.
pub async fn restart(hub: super::TestHub, env: &[(&str, &str)]) -> super::TestHub {
    let dir = hub.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    super::TestHub::start_in(dir, env).await
}
