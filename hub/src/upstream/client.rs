//! The CLI side of the upstream operator commands (`poshub drain`, `poshub dead-letters
//! [--requeue]`, `poshub registers add NAME`): they talk to the running hub's admin HTTP API on
//! `127.0.0.1:HUB_HTTP_PORT` with the admin token from `HUB_ADMIN_TOKEN` or the `admin-token`
//! file beside the database (redb allows one process, so the CLI never opens the database).

use reqwest::Method;
use serde_json::Value;

use crate::config::Config;

/// Calls one admin endpoint of the running hub (see `crate::client`).
fn call(cfg: &Config, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
    crate::client::call(cfg, method, path, true, body).map_err(|e| e.to_string())
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
