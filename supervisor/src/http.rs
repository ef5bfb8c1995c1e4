//! A minimal HTTP/1 client over plain TCP (hyper) for the hub's health probe on loopback.
//! Bundle downloads (`install URL`, HTTPS) are in [`crate::download`].

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::Response;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A parsed `http://host:port/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// Parses an `http://` URL; anything else is a clear error.
pub fn parse_url(url: &str) -> Result<HttpUrl> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("{url:?}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse()
                .map_err(|_| anyhow!("{url:?}: port {p:?} is not a number"))?,
        ),
        None => (authority, 80),
    };
    if host.is_empty() {
        bail!("{url:?}: no host");
    }
    Ok(HttpUrl {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        path: path.to_string(),
    })
}

/// Sends `GET url` and returns the response head with a streaming body.
pub async fn get(url: &HttpUrl, timeout: Duration) -> Result<Response<Incoming>> {
    let fut = async {
        let stream = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .with_context(|| format!("unable to connect to {}:{}", url.host, url.port))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("http handshake failed")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = hyper::Request::get(url.path.as_str())
            .header(hyper::header::HOST, format!("{}:{}", url.host, url.port))
            .body(Empty::<Bytes>::new())
            .context("bad request")?;
        sender.send_request(req).await.context("request failed")
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| anyhow!("no answer within {} ms", timeout.as_millis()))?
}

/// The hub's health check: 200 with JSON `status: "ok"`, within `timeout`.
pub async fn probe_health(url: &HttpUrl, timeout: Duration) -> Result<()> {
    let fut = async {
        let resp = get(url, timeout).await?;
        let code = resp.status();
        let body = resp.into_body().collect().await.context("body")?.to_bytes();
        if !code.is_success() {
            bail!("health answered {code}");
        }
        let v: serde_json::Value =
            serde_json::from_slice(&body).context("health answer is not JSON")?;
        match v.get("status").and_then(|s| s.as_str()) {
            Some("ok") => Ok(()),
            other => bail!("health status is {other:?}"),
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| anyhow!("health check timed out after {} ms", timeout.as_millis()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_or_fail_clearly() {
        let u = parse_url("http://127.0.0.1:8766/health").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8766, "/health")
        );
        assert_eq!(parse_url("http://hub").unwrap().port, 80);
        assert!(parse_url("https://x/")
            .unwrap_err()
            .to_string()
            .contains("http://"));
        assert!(parse_url("http://x:abc/").is_err());
    }
}
