//! This box's copies in S3-compatible storage, through `object_store` (its `aws` feature:
//! request signing, multipart uploads and listing on reqwest + rustls, no OpenSSL).
//!
//! A copy is `<prefix>/<tenant>/<store>/poshub-<YYYYmmddTHHMMSSZ>.redb.zst.enc`: the realm
//! keeps stores apart, the UTC time of the snapshot orders the copies (and is what
//! `--at` picks by). Uploads go in 5 MiB parts (S3's smallest), paced to
//! `BACKUP_S3_MAX_KBPS` on average, so the store's uplink stays usable for card payments.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::settings::Settings;
use super::OffsiteError;
use crate::backup::retention;

/// Start and end of a copy's object name around its time stamp.
const NAME_PREFIX: &str = "poshub-";
const NAME_SUFFIX: &str = ".redb.zst.enc";
/// S3's smallest multipart part (except the last).
const PART: usize = 5 * 1024 * 1024;

/// One copy in storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// The object name (last path segment).
    pub name: String,
    /// Snapshot time (UTC seconds), from the name.
    pub at: u64,
    pub bytes: u64,
}

/// The object name of a snapshot taken at `unix` seconds.
pub fn object_name(unix: u64) -> String {
    format!("{NAME_PREFIX}{}{NAME_SUFFIX}", retention::stamp(unix))
}

/// The snapshot time in an object name; `None` for anything else in the prefix.
pub fn parse_name(name: &str) -> Option<u64> {
    let stamp = name.strip_prefix(NAME_PREFIX)?.strip_suffix(NAME_SUFFIX)?;
    retention::parse_stamp(stamp)
}

/// The storage of one box's copies.
pub struct Remote {
    store: AmazonS3,
    prefix: ObjPath,
}

impl Remote {
    /// A client for `s`; nothing is contacted yet.
    pub fn new(s: &Settings) -> Result<Remote, OffsiteError> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&s.bucket)
            .with_region(&s.region)
            .with_access_key_id(&s.access_key_id)
            .with_secret_access_key(&s.secret_access_key)
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(10))
                    // A part of 5 MiB at the slowest allowed pace, with room.
                    .with_timeout(Duration::from_secs(300)),
            )
            // Few, quick retries: the schedule backs off itself while storage is down.
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 2,
                retry_timeout: Duration::from_secs(30),
            });
        if let Some(e) = &s.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        let store = b
            .build()
            .map_err(|e| OffsiteError::Storage(format!("settings refused: {e}")))?;
        Ok(Remote {
            store,
            prefix: ObjPath::from(s.prefix.as_str()),
        })
    }

    fn path(&self, name: &str) -> ObjPath {
        self.prefix.clone().join(name)
    }

    /// This box's copies, newest first (other objects under the prefix are ignored).
    pub async fn list(&self) -> Result<Vec<Copy>, OffsiteError> {
        let mut out = Vec::new();
        let mut stream = self.store.list(Some(&self.prefix));
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(storage("list"))?;
            let Some(name) = meta.location.filename().map(str::to_string) else {
                continue;
            };
            // Only direct children: another realm's prefix may nest below ours.
            if meta
                .location
                .prefix_match(&self.prefix)
                .map(std::iter::Iterator::count)
                != Some(1)
            {
                continue;
            }
            if let Some(at) = parse_name(&name) {
                out.push(Copy {
                    name,
                    at,
                    bytes: meta.size,
                });
            }
        }
        out.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.name.cmp(&a.name)));
        Ok(out)
    }

    /// Uploads `file` as `name`, at most `max_kbps` KiB/s on average (0: no limit).
    pub async fn upload(
        &self,
        file: &Path,
        name: &str,
        max_kbps: u64,
    ) -> Result<u64, OffsiteError> {
        let path = self.path(name);
        let mut f = tokio::fs::File::open(file).await?;
        let len = f.metadata().await?.len();
        let pace = Pace::new(max_kbps);
        if len <= PART as u64 {
            let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(PART));
            f.read_to_end(&mut buf).await?;
            self.store
                .put(&path, PutPayload::from(buf))
                .await
                .map_err(storage("upload"))?;
            return Ok(len);
        }
        let mut up = self
            .store
            .put_multipart(&path)
            .await
            .map_err(storage("upload"))?;
        let mut sent = 0u64;
        let r: Result<(), OffsiteError> = async {
            loop {
                let mut part = vec![0u8; PART];
                let n = read_up_to(&mut f, &mut part).await?;
                if n == 0 {
                    break;
                }
                part.truncate(n);
                up.put_part(PutPayload::from(part))
                    .await
                    .map_err(storage("upload"))?;
                sent += n as u64;
                pace.wait(sent).await;
            }
            up.complete().await.map_err(storage("upload"))?;
            Ok(())
        }
        .await;
        if let Err(e) = r {
            // Parts left behind cost storage until the bucket's lifecycle rule removes them.
            let _ = up.abort().await;
            return Err(e);
        }
        Ok(len)
    }

    /// Downloads the copy `name` into `dst` (created or truncated).
    pub async fn download(&self, name: &str, dst: &Path) -> Result<u64, OffsiteError> {
        let got = self
            .store
            .get(&self.path(name))
            .await
            .map_err(storage("download"))?;
        let mut out = tokio::fs::File::create(dst).await?;
        let mut stream = got.into_stream();
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(storage("download"))?;
            out.write_all(&chunk).await?;
            n += chunk.len() as u64;
        }
        out.sync_all().await?;
        Ok(n)
    }

    /// Deletes the copy `name`.
    pub async fn delete(&self, name: &str) -> Result<(), OffsiteError> {
        self.store
            .delete(&self.path(name))
            .await
            .map_err(storage("delete"))
    }
}

fn storage(what: &'static str) -> impl Fn(object_store::Error) -> OffsiteError {
    move |e| OffsiteError::Storage(format!("{what} failed: {e}"))
}

async fn read_up_to(f: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).await? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Keeps the average upload rate under a limit by sleeping between parts.
struct Pace {
    start: Instant,
    bytes_per_s: u64,
}

impl Pace {
    fn new(max_kbps: u64) -> Pace {
        Pace {
            start: Instant::now(),
            bytes_per_s: max_kbps.saturating_mul(1024),
        }
    }

    #[allow(clippy::cast_precision_loss)] // a pace in seconds: 52 bits of bytes are plenty
    async fn wait(&self, sent: u64) {
        if self.bytes_per_s == 0 {
            return;
        }
        let due = Duration::from_secs_f64(sent as f64 / self.bytes_per_s as f64);
        if let Some(d) = due.checked_sub(self.start.elapsed()) {
            tokio::time::sleep(d).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_carry_the_snapshot_time() {
        let t = 1_796_478_321;
        let n = object_name(t);
        assert_eq!(n, "poshub-20261205T134521Z.redb.zst.enc");
        assert_eq!(parse_name(&n), Some(t));
        for other in [
            "poshub-20261205T134521Z.redb",
            "notes.txt",
            "poshub-x.redb.zst.enc",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }
}
