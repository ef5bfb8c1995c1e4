//! The CLI's way to a running hub: its HTTP API on this machine, with the admin token read the
//! way the hub itself reads it (`HUB_ADMIN_TOKEN`, else the `admin-token` file beside the DB).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::config::Config;

/// Why a call to the hub failed, worded for a field tech.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no hub answers at {0} (is poshub running? check HUB_HTTP_PORT)")]
    NoHub(String),
    #[error("the hub refused the admin token (HUB_ADMIN_TOKEN or {0})")]
    Unauthorized(String),
    #[error("the hub answered {status}: {body}")]
    Status { status: u16, body: String },
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

/// Calls the hub; admin calls carry the bearer token. Answers the parsed JSON body.
pub async fn call(
    cfg: &Config,
    method: &str,
    path: &str,
    admin: bool,
) -> Result<Value, ClientError> {
    let base = base_url(cfg);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"));
    if admin {
        let token = crate::auth::admin_token(cfg.admin_token.as_deref(), &cfg.data_dir())
            .map_err(|e| ClientError::Other(format!("unable to read the admin token: {e}")))?;
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let req = req
        .body(Full::new(Bytes::new()))
        .map_err(|e| ClientError::Other(e.to_string()))?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let resp = tokio::time::timeout(Duration::from_secs(60), client.request(req))
        .await
        .map_err(|_| ClientError::NoHub(base.clone()))?
        .map_err(|_| ClientError::NoHub(base.clone()))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Other(e.to_string()))?
        .to_bytes();
    let text = String::from_utf8_lossy(&body).to_string();
    match status {
        200..=299 => Ok(serde_json::from_str(&text).unwrap_or(Value::String(text))),
        401 => Err(ClientError::Unauthorized(
            cfg.data_dir()
                .join(crate::auth::ADMIN_TOKEN_FILE)
                .display()
                .to_string(),
        )),
        _ => Err(ClientError::Status { status, body: text }),
    }
}
