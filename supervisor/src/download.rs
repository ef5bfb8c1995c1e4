//! `install URL`: fetches a bundle over HTTPS (or plain HTTP) with reqwest and rustls, into the
//! spool directory, resuming an interrupted transfer with HTTP range requests. Certificates are
//! verified against the system's CA roots (`/etc/ssl/certs`, or `SSL_CERT_FILE`) plus the
//! certificates of `SUPERVISOR_CA_FILE` (a private CA); verification is never turned off.
//! Bundles are signed, so a resumed download spliced from two different files is refused by
//! the signature or payload check; `If-Range` avoids even that.

use std::io::SeekFrom;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use reqwest::header::{HeaderValue, CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE};
use reqwest::{Client, Response, StatusCode};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// Connections tried per download: the first and up to this many minus one resumptions.
pub const MAX_ATTEMPTS: u32 = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A server that sends nothing for this long counts as an interrupted transfer.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The HTTPS client: system roots plus the PEM certificates in `ca_file` (if given).
pub fn client(ca_file: Option<&Path>) -> Result<Client> {
    let mut b = Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .user_agent(concat!("poshub-supervisor/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("SUPERVISOR_CA_FILE {}: unable to read", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            anyhow!(
                "SUPERVISOR_CA_FILE {}: not PEM certificates ({e})",
                path.display()
            )
        })?;
        if certs.is_empty() {
            bail!(
                "SUPERVISOR_CA_FILE {}: holds no PEM certificate",
                path.display()
            );
        }
        b = b.tls_certs_merge(certs);
    }
    b.build().context("unable to set up the HTTPS client")
}

/// Downloads `url` into `dest` (created or truncated), refusing more than `limit` bytes. A
/// transfer cut after some bytes arrived is resumed from where it stopped (`Range: bytes=N-`),
/// up to [`MAX_ATTEMPTS`] connections with a growing pause; returns the file's length.
pub async fn download(client: &Client, url: &str, dest: &Path, limit: u64) -> Result<u64> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        bail!("{url:?}: only https:// and http:// URLs are supported");
    }
    let mut f = tokio::fs::File::create(dest)
        .await
        .with_context(|| format!("unable to create {}", dest.display()))?;
    let mut have = 0u64;
    let mut validator: Option<HeaderValue> = None;
    let mut last_err = anyhow!("no attempt made");
    for attempt in 1..=MAX_ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt - 1))).await;
            tracing::warn!(
                attempt,
                have,
                "download interrupted: resuming ({last_err:#})"
            );
        }
        let mut req = client.get(url);
        if have > 0 {
            req = req.header(RANGE, format!("bytes={have}-"));
            if let Some(v) = &validator {
                req = req.header(IF_RANGE, v.clone());
            }
        }
        let resp = match req.send().await {
            Ok(r) => r,
            // A first connection that fails is reported as is (wrong host, certificate);
            // once bytes have arrived, the server is worth asking again.
            Err(e) if have > 0 => {
                last_err = anyhow::Error::new(e).context("reconnecting failed");
                continue;
            }
            Err(e) => {
                let e = anyhow::Error::new(e);
                let hint = if format!("{e:#}").contains("certificate") {
                    " (is the server's CA in SUPERVISOR_CA_FILE or the system's CA bundle?)"
                } else {
                    ""
                };
                return Err(e.context(format!("request failed{hint}")));
            }
        };
        let expected = match start_of(&resp, have)? {
            Start::Resumed => have + resp.content_length().unwrap_or(0),
            Start::FromZero => {
                if have > 0 {
                    tracing::warn!("the server did not resume at byte {have}: starting over");
                    f.set_len(0).await?;
                    f.seek(SeekFrom::Start(0)).await?;
                    have = 0;
                }
                validator = resp
                    .headers()
                    .get(ETAG)
                    .filter(|v| !v.as_bytes().starts_with(b"W/"))
                    .or_else(|| resp.headers().get(LAST_MODIFIED))
                    .cloned();
                resp.content_length().unwrap_or(0)
            }
        };
        if expected > limit {
            bail!("download is larger than the {limit}-byte limit ({expected} bytes)");
        }
        match receive(resp, &mut f, &mut have, limit).await {
            Ok(()) if expected == 0 || have >= expected => {
                f.sync_all().await?;
                return Ok(have);
            }
            Ok(()) => last_err = anyhow!("the connection closed at {have} of {expected} bytes"),
            Err(Interrupted::Fatal(e)) => return Err(e),
            Err(Interrupted::Retry(e)) => last_err = e,
        }
    }
    Err(last_err.context(format!(
        "download failed after {MAX_ATTEMPTS} attempts ({have} bytes received)"
    )))
}

/// Where a response's body starts.
enum Start {
    /// 206 at the byte asked for.
    Resumed,
    /// 200: the whole file.
    FromZero,
}

fn start_of(resp: &Response, have: u64) -> Result<Start> {
    match resp.status() {
        StatusCode::PARTIAL_CONTENT if have > 0 => {
            let range = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let first = range
                .strip_prefix("bytes ")
                .and_then(|r| r.split('-').next())
                .and_then(|n| n.parse::<u64>().ok());
            if first != Some(have) {
                bail!("the server resumed at {range:?}, not at byte {have}");
            }
            Ok(Start::Resumed)
        }
        s if s == StatusCode::OK => Ok(Start::FromZero),
        s => bail!("download answered {s}"),
    }
}

enum Interrupted {
    /// The transfer broke off: resume.
    Retry(anyhow::Error),
    /// Local trouble or the limit: give up.
    Fatal(anyhow::Error),
}

/// Appends the body to `f`, counting into `have`.
async fn receive(
    mut resp: Response,
    f: &mut tokio::fs::File,
    have: &mut u64,
    limit: u64,
) -> Result<(), Interrupted> {
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(()),
            Err(e) => return Err(Interrupted::Retry(anyhow::Error::new(e))),
        };
        *have += chunk.len() as u64;
        if *have > limit {
            return Err(Interrupted::Fatal(anyhow!(
                "download is larger than the {limit}-byte limit"
            )));
        }
        f.write_all(&chunk)
            .await
            .map_err(|e| Interrupted::Fatal(anyhow::Error::new(e).context("unable to save")))?;
    }
}
