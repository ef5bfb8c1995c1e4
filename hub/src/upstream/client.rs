//! The CLI side of the upstream operator commands (`poshub drain`, `poshub dead-letters
//! [--requeue]`, `poshub registers add NAME`): they talk to the running hub's admin HTTP API on
//! 127.0.0.1:HUB_HTTP_PORT with the admin token from `HUB_ADMIN_TOKEN` or the `admin-token`
//! file beside the database (redb allows one process, so the CLI never opens the database).

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::auth::ADMIN_TOKEN_FILE;
use crate::config::Config;

/// Calls one admin endpoint; answers the JSON body of a 2xx, or a message for the user.
pub fn call(
    cfg: &Config,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let token = match &cfg.admin_token {
        Some(t) => t.clone(),
        None => {
            let p = cfg.data_dir().join(ADMIN_TOKEN_FILE);
            std::fs::read_to_string(&p)
                .map(|t| t.trim().to_string())
                .map_err(|e| format!("no HUB_ADMIN_TOKEN and cannot read {}: {e}", p.display()))?
        }
    };
    let url = format!("http://127.0.0.1:{}{path}", cfg.http_port);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("unable to start the runtime: {e}"))?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        let mut r = client.request(method, &url).bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.map_err(|e| {
            if e.is_connect() {
                format!(
                    "no hub answers at http://127.0.0.1:{} (is it running? HUB_HTTP_PORT)",
                    cfg.http_port
                )
            } else {
                format!("{url}: {e}")
            }
        })?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(
                "the hub refused the admin token (HUB_ADMIN_TOKEN or the admin-token file)".into(),
            );
        }
        if !status.is_success() {
            let msg = v
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("request failed");
            return Err(format!("{path}: HTTP {}: {msg}", status.as_u16()));
        }
        Ok(v)
    })
}

/// `poshub drain`
pub fn drain(cfg: &Config) -> Result<(), String> {
    let v = call(cfg, Method::POST, "/admin/drain", None)?;
    println!(
        "forwarded {}, failed {}, dead-lettered {}; upstream {}",
        v["forwarded"],
        v["failed"],
        v["deadLettered"],
        v["upstream"]["state"].as_str().unwrap_or("?")
    );
    if let Some(e) = v["error"].as_str() {
        println!("last error: {e}");
    }
    Ok(())
}

/// `poshub dead-letters [--requeue]`
pub fn dead_letters(cfg: &Config, requeue: bool) -> Result<(), String> {
    if requeue {
        let v = call(cfg, Method::POST, "/admin/dead-letters/requeue", None)?;
        println!("requeued {} dead letters", v["requeued"]);
        return Ok(());
    }
    let v = call(cfg, Method::GET, "/admin/dead-letters", None)?;
    let list = v["deadLetters"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no dead letters");
    }
    for d in list {
        println!(
            "seq {}  {}  {}  after {} tries: {}",
            d["seq"],
            d["kind"].as_str().unwrap_or(""),
            d["posReference"].as_str().unwrap_or("-"),
            d["attempts"],
            d["lastError"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// `poshub registers add NAME`
pub fn registers_add(cfg: &Config, name: &str) -> Result<(), String> {
    let v = call(
        cfg,
        Method::POST,
        "/admin/registers",
        Some(serde_json::json!({"name": name})),
    )?;
    println!(
        "register {} {:?} created ({}); it is pushed to Odoo in the background",
        v["id"],
        name,
        v["state"].as_str().unwrap_or("?")
    );
    Ok(())
}
