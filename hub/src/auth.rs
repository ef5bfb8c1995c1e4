//! Terminal authentication (docs/protocol.md "Authentication and identity"): cloud-signed cluster
//! JWTs verified offline, tokens the hub signs with its own Ed25519 key (created beside the
//! database on first start), realm checks and roles. Odoo session validation lives with the
//! upstream code.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The audience every terminal token must carry.
pub const AUDIENCE: &str = "pos-hub";
/// File name of the hub's private signing key, beside the database.
pub const HUB_KEY_FILE: &str = "hub-signing-key.pem";
/// File name of the generated admin token, beside the database.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// What a terminal may do. Force operations need `Manager` or `Admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Cashier,
    Waiter,
    Manager,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "cashier" => Some(Role::Cashier),
            "waiter" => Some(Role::Waiter),
            "manager" => Some(Role::Manager),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Cashier => "cashier",
            Role::Waiter => "waiter",
            Role::Manager => "manager",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may take a table lock away from its holder.
    pub fn may_force(self) -> bool {
        matches!(self, Role::Manager | Role::Admin)
    }
}

/// Errors of key handling and token checks; `reason()` is what `AUTH_FAIL` carries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("token is not valid: {0}")]
    Invalid(String),
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token is for realm {tenant}/{store}, this hub serves {want}")]
    RealmMismatch {
        tenant: String,
        store: String,
        want: String,
    },
    #[error("key error: {0}")]
    Key(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl AuthError {
    /// The `reason` field of `AUTH_FAIL`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::RealmMismatch { .. } => "realm_mismatch",
            _ => "invalid_token",
        }
    }
}

/// Claims of a terminal token (both cluster and hub-issued).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub sub: String,
    pub aud: String,
    pub tenant_id: String,
    pub store_id: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Who an accepted token says the terminal is.
#[derive(Debug, Clone)]
pub struct Identity {
    pub subject: String,
    pub uid: serde_json::Value,
    pub role: Role,
    pub name: Option<String>,
}

struct VerifyKey {
    key: DecodingKey,
    algs: Vec<Algorithm>,
}

/// Verifies tokens offline against the cluster key and the hub's own key.
pub struct Verifier {
    keys: Vec<VerifyKey>,
    tenant_id: String,
    store_id: String,
}

/// Decodes `CLUSTER_PUBLIC_KEY_BASE64` into PEM text and checks that it is a usable key.
pub fn decode_cluster_key(b64: &str) -> Result<String, AuthError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| AuthError::Key(format!("not base64: {e}")))?;
    let pem = String::from_utf8(raw).map_err(|_| AuthError::Key("not PEM text".into()))?;
    if !pem.contains("-----BEGIN") {
        return Err(AuthError::Key("decoded value is not a PEM key".into()));
    }
    cluster_key(&pem)?;
    Ok(pem)
}

fn cluster_key(pem: &str) -> Result<VerifyKey, AuthError> {
    let b = pem.as_bytes();
    if let Ok(key) = DecodingKey::from_ed_pem(b) {
        return Ok(VerifyKey {
            key,
            algs: vec![Algorithm::EdDSA],
        });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(b) {
        return Ok(VerifyKey {
            key,
            algs: vec![Algorithm::ES256, Algorithm::ES384],
        });
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(b) {
        use Algorithm::{PS256, PS384, PS512, RS256, RS384, RS512};
        return Ok(VerifyKey {
            key,
            algs: vec![RS256, RS384, RS512, PS256, PS384, PS512],
        });
    }
    Err(AuthError::Key(
        "PEM is not an Ed25519, P-256 or RSA public key".into(),
    ))
}

/// The hub's own Ed25519 key pair, used to sign `poshub token issue` tokens.
pub struct HubKey {
    signing: EncodingKey,
    public_pem: String,
}

impl HubKey {
    /// Loads the key beside the database, creating it (mode 0600, written atomically) on first
    /// start so tokens issued before a restart stay valid after it.
    pub fn load_or_create(data_dir: &Path) -> Result<HubKey, AuthError> {
        let path = data_dir.join(HUB_KEY_FILE);
        let io = |source| AuthError::Io {
            path: path.clone(),
            source,
        };
        let pem = match std::fs::read_to_string(&path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
                let pem = key
                    .to_pkcs8_pem(LineEnding::default())
                    .map_err(|e| AuthError::Key(e.to_string()))?;
                crate::fsutil::write_atomic(&path, pem.as_bytes(), 0o600).map_err(io)?;
                pem.to_string()
            }
            Err(e) => return Err(io(e)),
        };
        Self::from_pem(&pem)
    }

    fn from_pem(pem: &str) -> Result<HubKey, AuthError> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| AuthError::Key(format!("hub signing key: {e}")))?;
        let public_pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::default())
            .map_err(|e| AuthError::Key(e.to_string()))?;
        let signing =
            EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| AuthError::Key(e.to_string()))?;
        Ok(HubKey {
            signing,
            public_pem,
        })
    }

    /// Signs a token for one terminal of this hub's realm.
    pub fn issue(&self, claims: &Claims) -> Result<String, AuthError> {
        let header = Header::new(Algorithm::EdDSA);
        jsonwebtoken::encode(&header, claims, &self.signing)
            .map_err(|e| AuthError::Key(e.to_string()))
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Verifier {
    pub fn new(
        cluster_pem: Option<&str>,
        hub_key: Option<&HubKey>,
        tenant_id: &str,
        store_id: &str,
    ) -> Result<Verifier, AuthError> {
        let mut keys = Vec::new();
        if let Some(hk) = hub_key {
            let key = DecodingKey::from_ed_pem(hk.public_pem.as_bytes())
                .map_err(|e| AuthError::Key(e.to_string()))?;
            keys.push(VerifyKey {
                key,
                algs: vec![Algorithm::EdDSA],
            });
        }
        if let Some(pem) = cluster_pem {
            keys.push(cluster_key(pem)?);
        }
        Ok(Verifier {
            keys,
            tenant_id: tenant_id.into(),
            store_id: store_id.into(),
        })
    }

    /// Checks signature, audience, expiry and realm of a terminal token.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let mut last = AuthError::Invalid(format!("no key accepts {:?} tokens", header.alg));
        for vk in self.keys.iter().filter(|k| k.algs.contains(&header.alg)) {
            let mut v = Validation::new(header.alg);
            v.set_audience(&[AUDIENCE]);
            v.set_required_spec_claims(&["exp", "aud", "sub"]);
            v.validate_nbf = true;
            v.leeway = 30;
            match jsonwebtoken::decode::<Claims>(token, &vk.key, &v) {
                Ok(data) => return self.identity(data.claims),
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind;
                    last = match e.kind() {
                        ErrorKind::ExpiredSignature => return Err(AuthError::Expired),
                        ErrorKind::ImmatureSignature => return Err(AuthError::NotYetValid),
                        _ => AuthError::Invalid(e.to_string()),
                    }
                }
            }
        }
        Err(last)
    }

    fn identity(&self, c: Claims) -> Result<Identity, AuthError> {
        if c.tenant_id != self.tenant_id || c.store_id != self.store_id {
            return Err(AuthError::RealmMismatch {
                tenant: c.tenant_id,
                store: c.store_id,
                want: format!("{}/{}", self.tenant_id, self.store_id),
            });
        }
        // An unknown role gets the least privilege rather than being refused: the cloud may
        // know roles this hub does not.
        let role = c
            .role
            .as_deref()
            .and_then(Role::parse)
            .unwrap_or(Role::Cashier);
        Ok(Identity {
            subject: c.sub,
            uid: c.uid.unwrap_or(serde_json::Value::Null),
            role,
            name: c.name,
        })
    }
}

/// Reads `HUB_ADMIN_TOKEN` or the generated token beside the database, creating it once.
pub fn admin_token(configured: Option<&str>, data_dir: &Path) -> Result<String, AuthError> {
    if let Some(t) = configured {
        return Ok(t.to_string());
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        Ok(_) => Err(AuthError::Key(format!("{} is empty", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 24];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
            let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            crate::fsutil::write_atomic(&path, token.as_bytes(), 0o600).map_err(|source| {
                AuthError::Io {
                    path: path.clone(),
                    source,
                }
            })?;
            Ok(token)
        }
        Err(source) => Err(AuthError::Io { path, source }),
    }
}

/// Parses a token lifetime such as `90d`, `12h`, `30m` or `3600s` (seconds if no unit).
pub fn parse_ttl(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'd') => (&s[..i], 86_400),
        (i, 'h') => (&s[..i], 3_600),
        (i, 'm') => (&s[..i], 60),
        (i, 's') => (&s[..i], 1),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)?
        .checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(tenant: &str, exp: u64) -> Claims {
        Claims {
            sub: "t1".into(),
            aud: AUDIENCE.into(),
            tenant_id: tenant.into(),
            store_id: "s1".into(),
            exp,
            nbf: None,
            iat: None,
            uid: Some(7.into()),
            role: Some("manager".into()),
            name: Some("Ana".into()),
        }
    }

    #[test]
    fn hub_tokens_round_trip_and_realm_is_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = HubKey::load_or_create(dir.path()).expect("key");
        let again = HubKey::load_or_create(dir.path()).expect("same key");
        let v = Verifier::new(None, Some(&again), "t", "s1").expect("verifier");
        let tok = key.issue(&claims("t", now_secs() + 60)).expect("issue");
        let id = v.verify(&tok).expect("valid");
        assert_eq!((id.subject.as_str(), id.role), ("t1", Role::Manager));
        let other = key.issue(&claims("other", now_secs() + 60)).expect("issue");
        assert_eq!(v.verify(&other).unwrap_err().reason(), "realm_mismatch");
        let old = key.issue(&claims("t", now_secs() - 3600)).expect("issue");
        assert_eq!(v.verify(&old).unwrap_err().reason(), "expired");
        assert_eq!(v.verify("garbage").unwrap_err().reason(), "invalid_token");
    }

    #[test]
    fn a_token_from_another_key_is_refused() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let ka = HubKey::load_or_create(a.path()).expect("key");
        let kb = HubKey::load_or_create(b.path()).expect("key");
        let v = Verifier::new(Some(&kb.public_pem), None, "t", "s1").expect("verifier");
        let tok = ka.issue(&claims("t", now_secs() + 60)).expect("issue");
        assert_eq!(v.verify(&tok).unwrap_err().reason(), "invalid_token");
        let good = kb.issue(&claims("t", now_secs() + 60)).expect("issue");
        assert!(v.verify(&good).is_ok());
    }

    /// Cloud keys may be P-256 or RSA: sign with each (keys made by the openssl CLI) and verify
    /// through `CLUSTER_PUBLIC_KEY_BASE64`'s decoding path.
    #[test]
    fn p256_and_rsa_cluster_keys_verify() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = |args: &[&str]| {
            std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .map(|o| o.status.success())
        };
        if run(&["version"]).is_err() {
            println!("SKIPPED: openssl CLI not installed");
            return;
        }
        let cases = [
            (
                vec![
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                    "k.pem",
                ],
                Algorithm::ES256,
                true,
            ),
            (
                vec![
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    "k.pem",
                ],
                Algorithm::RS256,
                false,
            ),
        ];
        for (gen, alg, ec) in cases {
            assert_eq!(run(&gen).ok(), Some(true));
            assert_eq!(
                run(&["pkey", "-in", "k.pem", "-pubout", "-out", "pub.pem"]).ok(),
                Some(true)
            );
            let private = std::fs::read(dir.path().join("k.pem")).expect("key");
            let public = std::fs::read_to_string(dir.path().join("pub.pem")).expect("pub");
            let b64 = base64::engine::general_purpose::STANDARD.encode(&public);
            let pem = decode_cluster_key(&b64).expect("usable cluster key");
            let v = Verifier::new(Some(&pem), None, "t", "s1").expect("verifier");
            let key = if ec {
                EncodingKey::from_ec_pem(&private)
            } else {
                EncodingKey::from_rsa_pem(&private)
            }
            .expect("signing key");
            let tok = jsonwebtoken::encode(&Header::new(alg), &claims("t", now_secs() + 60), &key)
                .expect("sign");
            let id = v.verify(&tok).expect("valid cloud token");
            assert_eq!(id.role, Role::Manager);
        }
    }

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("2d"), Some(172_800));
        assert_eq!(parse_ttl("90"), Some(90));
        assert_eq!(parse_ttl("x"), None);
        assert_eq!(parse_ttl("0h"), None);
    }
}
