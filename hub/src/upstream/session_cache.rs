//! Odoo sessions as terminal credentials (`HUB_AUTH_MODE=odoo`, docs/protocol.md "Authentication
//! and identity"): a token that is not a JWT is an Odoo session id, checked with
//! `POST {ODOO_URL}/pos-react/api/session`. Every answer Odoo gives is recorded durably through the
//! engine (keyed by the SHA-256 of the session id, never the id itself): a valid session is cached
//! with who it belongs to, a refused one is forgotten at once. While Odoo cannot be reached, a
//! session validated within `HUB_AUTH_OFFLINE_GRACE_MS` is let in from the cache, also after a hub
//! restart.

use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::odoo::SessionCheck;
use crate::auth::{Identity, Role};
use crate::context::Hub;
use crate::engine::{now_ms, Cmd, UpstreamCmd};
use crate::protocol::ProtoError;
use crate::store::upstream::SessionRec;

/// True when a token has the shape of a JWT (three base64url parts), so it goes to the JWT
/// verifier rather than to Odoo.
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        })
}

/// Longest a terminal's AUTH waits for Odoo before the offline cache decides.
const SESSION_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

fn key_of(session_id: &str) -> String {
    use std::fmt::Write as _;
    let digest = Sha256::digest(session_id.as_bytes());
    digest.iter().fold(String::with_capacity(64), |mut hex, b| {
        let _ = write!(hex, "{b:02x}"); // writing to a String cannot fail
        hex
    })
}

/// Validates an Odoo session id; on success the terminal's identity.
pub async fn validate(hub: &Hub, session_id: &str) -> Result<Identity, ProtoError> {
    let Some(odoo) = &hub.upstream.odoo else {
        return Err(ProtoError::new(
            "invalid_token",
            "ODOO_URL is not configured",
        ));
    };
    if session_id.len() > 512 {
        return Err(ProtoError::new("invalid_token", "session id too long"));
    }
    let key = key_of(session_id);
    // A terminal waits for this answer: a hanging Odoo must not hold it for the full upstream
    // timeout when the cache can answer.
    let limit = SESSION_CHECK_TIMEOUT.min(hub.cfg.upstream_timeout);
    let check = tokio::time::timeout(limit, odoo.check_session(session_id))
        .await
        .unwrap_or_else(|_| SessionCheck::Unreachable(format!("no answer within {limit:?}")));
    match check {
        SessionCheck::Valid { uid, name, role } => {
            let rec = SessionRec {
                uid_json: uid.to_string(),
                name: name.clone(),
                role: role.clone(),
                validated_ms: now_ms(),
            };
            hub.engine
                .send(Cmd::Upstream(UpstreamCmd::SessionValidated { key, rec }));
            Ok(identity(uid, role.as_deref(), name))
        }
        SessionCheck::Rejected(why) => {
            hub.engine
                .send(Cmd::Upstream(UpstreamCmd::SessionRejected { key }));
            Err(ProtoError::new(
                "invalid_token",
                format!("odoo refused the session: {why}"),
            ))
        }
        SessionCheck::Unreachable(why) => {
            let store = hub.store.clone();
            let cached = tokio::task::spawn_blocking(move || store.odoo_session(&key))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            let grace = crate::clock::millis(hub.cfg.auth_offline_grace);
            match cached {
                Some(rec) if now_ms().saturating_sub(rec.validated_ms) <= grace => {
                    tracing::info!(error = %why, "odoo unreachable; session accepted from the cache");
                    let uid = serde_json::from_str(&rec.uid_json).unwrap_or(Value::Null);
                    Ok(identity(uid, rec.role.as_deref(), rec.name))
                }
                _ => Err(ProtoError::new(
                    "upstream_unreachable",
                    format!("odoo cannot be reached to check the session: {why}"),
                )),
            }
        }
    }
}

fn identity(uid: Value, role: Option<&str>, name: Option<String>) -> Identity {
    Identity {
        subject: String::new(),
        uid,
        role: role.and_then(Role::parse).unwrap_or(Role::Cashier),
        name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_jwts_from_session_ids() {
        assert!(looks_like_jwt("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(!looks_like_jwt("3f2a9c0e1b7d4f6a8e5c2b1a0d9f8e7c6b5a4d3c"));
        assert!(!looks_like_jwt("a..b"));
        assert_eq!(key_of("x").len(), 64);
    }
}
