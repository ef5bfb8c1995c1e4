//! The generic cloud bridge (docs/upstream.md "Cloud bridge"), optional (`CLOUD_BRIDGE_URL`):
//! pending events are pushed as one JSON array per batch to `POST {url}/events/ingest` (each with a
//! stable `eventId`, so a resend is harmless), and `GET {url}/events?since=CURSOR` pulls what the
//! cloud has for this store (online orders, say); the engine applies and rebroadcasts those and
//! stores the new cursor in the same transaction, so a crash never skips or re-applies one.

use reqwest::header::{HeaderValue, AUTHORIZATION};
use serde_json::Value;

use super::odoo::{clip, http_client, net_error};
use super::UpstreamError;

/// Most events taken from one pull answer.
const MAX_PULL: usize = 1000;

/// Client of one cloud bridge.
pub struct BridgeClient {
    http: reqwest::Client,
    base: String,
    auth: Option<HeaderValue>,
}

impl BridgeClient {
    pub fn new(
        timeout: std::time::Duration,
        base: &str,
        token: Option<&str>,
    ) -> Result<BridgeClient, UpstreamError> {
        let auth = match token {
            Some(t) => Some(HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                UpstreamError::Auth("CLOUD_BRIDGE_TOKEN is not a valid header value".into())
            })?),
            None => None,
        };
        Ok(BridgeClient {
            http: http_client(timeout)?,
            base: base.trim_end_matches('/').to_string(),
            auth,
        })
    }

    fn authed(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some(a) => r.header(AUTHORIZATION, a.clone()),
            None => r,
        }
    }

    /// Pushes a batch of events.
    pub async fn ingest(&self, events: &[Value]) -> Result<(), UpstreamError> {
        let r = self
            .authed(self.http.post(format!("{}/events/ingest", self.base)))
            .json(events)
            .send()
            .await
            .map_err(net_error)?;
        let status = r.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let body = r.text().await.unwrap_or_default();
        if status == 401 || status == 403 {
            return Err(UpstreamError::Auth(format!(
                "cloud bridge answered HTTP {status}"
            )));
        }
        Err(UpstreamError::Status {
            status,
            body: clip(&body),
        })
    }

    /// Events after `since`, and the cursor to ask from next time.
    pub async fn fetch(&self, since: u64) -> Result<(Vec<Value>, u64), UpstreamError> {
        let r = self
            .authed(self.http.get(format!("{}/events?since={since}", self.base)))
            .send()
            .await
            .map_err(net_error)?;
        let status = r.status().as_u16();
        let text = r.text().await.map_err(net_error)?;
        if !(200..300).contains(&status) {
            return Err(UpstreamError::Status {
                status,
                body: clip(&text),
            });
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| UpstreamError::Status {
            status,
            body: format!("not JSON: {e}"),
        })?;
        let (events, cursor) = match &v {
            Value::Array(a) => (a.clone(), None),
            Value::Object(o) => (
                o.get("events")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                o.get("cursor")
                    .or_else(|| o.get("nextCursor"))
                    .and_then(Value::as_u64),
            ),
            _ => (Vec::new(), None),
        };
        let events: Vec<Value> = events.into_iter().take(MAX_PULL).collect();
        let newest = events
            .iter()
            .filter_map(|e| e.get("seq").and_then(Value::as_u64))
            .max();
        let cursor = cursor.or(newest).unwrap_or(since).max(since);
        Ok((events, cursor))
    }
}
