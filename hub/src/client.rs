//! The CLI's way to a running hub: its HTTP API on this machine (redb lets one process open the
//! database, so the CLI never does while a hub runs). Admin calls carry the token the hub uses:
//! `HUB_ADMIN_TOKEN`, else the `admin-token` file beside the database (read, never created here).

use std::time::Duration;

use serde_json::Value;

use crate::config::Config;

/// Why a call to the hub failed, worded for a field tech.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no hub answers at {0} (is poshub running? check HUB_HTTP_PORT)")]
    NoHub(String),
    #[error("the hub refused the admin token (HUB_ADMIN_TOKEN or {0})")]
    Unauthorized(String),
    #[error("{path}: HTTP {status}: {message}")]
    Status {
        path: String,
        status: u16,
        message: String,
    },
    #[error("{0}")]
    Other(String),
}

/// Base URL of the local hub.
pub fn base_url(cfg: &Config) -> String {
    let host = if cfg.bind.is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        cfg.bind.to_string()
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    format!("http://{host}:{}", cfg.http_port)
}

fn admin_token(cfg: &Config) -> Result<String, ClientError> {
    if let Some(t) = &cfg.admin_token {
        return Ok(t.clone());
    }
    let p = cfg.data_dir().join(crate::auth::ADMIN_TOKEN_FILE);
    std::fs::read_to_string(&p)
        .map(|t| t.trim().to_string())
        .map_err(|e| {
            ClientError::Other(format!(
                "no HUB_ADMIN_TOKEN and cannot read {}: {e}",
                p.display()
            ))
        })
}

/// Calls the hub and answers the JSON body of a 2xx.
pub fn call(
    cfg: &Config,
    method: reqwest::Method,
    path: &str,
    admin: bool,
    body: Option<Value>,
) -> Result<Value, ClientError> {
    let token = match admin.then(|| admin_token(cfg)).transpose() {
        Ok(t) => t,
        // Without a token, the more useful news may be that no hub runs at all.
        Err(e) => {
            let probe = call(cfg, reqwest::Method::GET, "/health", false, None);
            return Err(match probe {
                Err(no_hub @ ClientError::NoHub(_)) => no_hub,
                _ => e,
            });
        }
    };
    let base = base_url(cfg);
    let url = format!("{base}{path}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Other(format!("unable to start the runtime: {e}")))?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| ClientError::Other(e.to_string()))?;
        let mut r = client.request(method, &url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                ClientError::NoHub(base.clone())
            } else {
                ClientError::Other(format!("{url}: {e}"))
            }
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        match status {
            200..=299 => Ok(v),
            401 => Err(ClientError::Unauthorized(
                cfg.data_dir()
                    .join(crate::auth::ADMIN_TOKEN_FILE)
                    .display()
                    .to_string(),
            )),
            _ => Err(ClientError::Status {
                path: path.to_string(),
                status,
                message: v
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("request failed")
                    .to_string(),
            }),
        }
    })
}
