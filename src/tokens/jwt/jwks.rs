//! JSON Web Key Sets (RFC 7517/7518/8037): from a file, or fetched over HTTPS and cached.

use super::jws::{Alg, Key};
use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A key from a set, with the identifiers a token's header can select it by.
#[derive(Debug)]
pub struct Jwk {
    pub kid: Option<String>,
    pub key: Key,
}

#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: Vec<Jwk>,
}

impl KeySet {
    /// Candidate keys for a token: the one named by `kid`, or (no `kid`) every key that can
    /// verify `alg`. The key's own type decides the algorithm, never the token.
    pub fn candidates<'a>(
        &'a self,
        alg: Alg,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Key> + 'a {
        self.keys
            .iter()
            .filter(move |k| k.key.alg() == alg && (kid.is_none() || k.kid.as_deref() == kid))
            .map(|k| &k.key)
    }

    /// Check a parsed token's signature against the candidate keys (see `candidates`).
    pub fn verify(&self, alg: Alg, c: &super::jws::Compact<'_>) -> Result<(), KeyMiss> {
        let kid = c.header.kid.as_deref();
        let mut tried = false;
        for key in self.candidates(alg, kid) {
            tried = true;
            if super::jws::verify(alg, key, c.signing_input, c.signature) {
                return Ok(());
            }
        }
        Err(if tried {
            KeyMiss::Signature
        } else {
            KeyMiss::NoKey
        })
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// Why `KeySet::verify` refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMiss {
    /// No key of the set can verify this algorithm (under this `kid`).
    NoKey,
    /// Keys were tried; none verifies the signature.
    Signature,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// More keys than any real issuer publishes; bounds the work a hostile set can cause.
const MAX_KEYS: usize = 64;

/// Parse a JWKS document. Keys we cannot use (encryption keys, other curves, `oct`
/// secrets, RSA under 2048 bits) are skipped and named in the returned notes; a document
/// with no usable key at all is an error.
pub fn parse(text: &[u8]) -> Result<(KeySet, Vec<String>), String> {
    let raw: RawSet =
        serde_json::from_slice(text).map_err(|e| format!("not a JWKS document: {e}"))?;
    if raw.keys.len() > MAX_KEYS {
        return Err(format!("more than {MAX_KEYS} keys"));
    }
    let mut set = KeySet::default();
    let mut notes = Vec::new();
    for (i, m) in raw.keys.iter().enumerate() {
        match one(m) {
            Ok(Some(k)) => set.keys.push(k),
            Ok(None) => {}
            Err(e) => notes.push(format!("key {i} skipped: {e}")),
        }
    }
    if set.keys.is_empty() {
        return Err(format!(
            "no usable signing key (RS256, ES256 or EdDSA){}",
            if notes.is_empty() {
                String::new()
            } else {
                format!("; {}", notes.join("; "))
            }
        ));
    }
    Ok((set, notes))
}

fn member<'a>(m: &'a serde_json::Map<String, serde_json::Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(|v| v.as_str())
}

fn bytes(m: &serde_json::Map<String, serde_json::Value>, k: &str) -> Result<Vec<u8>, String> {
    let s = member(m, k).ok_or_else(|| format!("missing \"{k}\""))?;
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| format!("\"{k}\" is not base64url"))
}

/// `Ok(None)`: a key meant for something else (encryption), silently not ours.
fn one(m: &serde_json::Map<String, serde_json::Value>) -> Result<Option<Jwk>, String> {
    if member(m, "use").is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let kty = member(m, "kty").ok_or("missing \"kty\"")?;
    let key = match (kty, member(m, "crv")) {
        ("RSA", _) => {
            let mut n = bytes(m, "n")?;
            let e = bytes(m, "e")?;
            // RFC 7518 forbids leading zeros, some issuers emit one anyway; ring wants none.
            let zeros = n.iter().take_while(|b| **b == 0).count();
            n.drain(..zeros);
            if n.len() < 256 {
                return Err(format!("RSA modulus of {} bits is too short", n.len() * 8));
            }
            Key::rsa(&n, &e)
        }
        ("EC", Some("P-256")) => {
            let (x, y) = (bytes(m, "x")?, bytes(m, "y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 coordinates must be 32 bytes".into());
            }
            Key::p256(member(m, "x").unwrap_or(""), member(m, "y").unwrap_or(""))
                .map_err(|_| "P-256 coordinates are not base64url".to_string())?
        }
        ("OKP", Some("Ed25519")) => {
            let x = bytes(m, "x")?;
            if x.len() != 32 {
                return Err("Ed25519 key must be 32 bytes".into());
            }
            Key::ed25519(member(m, "x").unwrap_or(""))
                .map_err(|_| "Ed25519 key is not base64url".to_string())?
        }
        ("oct", _) => {
            return Err("symmetric keys are not taken from a JWKS; use secret_file".into())
        }
        (kty, crv) => return Err(format!("unsupported key type {kty} {}", crv.unwrap_or(""))),
    };
    // A key that names its algorithm must name the one its type verifies.
    if let Some(alg) = member(m, "alg") {
        if Alg::parse(alg) != Some(key.alg()) {
            return Err(format!("\"alg\": {alg:?} does not fit a {kty} key"));
        }
    }
    Ok(Some(Jwk {
        kid: member(m, "kid").map(str::to_string),
        key,
    }))
}

/// Bounds on fetching a remote key set.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_BODY: usize = 1024 * 1024;
/// An unknown `kid` triggers a fetch at most this often, so a stream of tokens with made-up
/// key ids cannot turn the gateway into a load generator against the issuer.
pub const MIN_REFETCH: Duration = Duration::from_secs(2);

/// A JWKS fetched from `jwks_url` over HTTPS, refreshed every `refresh` and on an unknown
/// `kid`. A failed refresh keeps the last good set.
pub struct Remote {
    pub url: String,
    client: reqwest::Client,
    refresh: Duration,
    keys: ArcSwap<KeySet>,
    /// When the last fetch was attempted (successful or not).
    attempted: Mutex<Option<Instant>>,
    /// Serializes fetches: concurrent requests with a new `kid` wait for one fetch.
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.url)
    }
}

impl Remote {
    pub fn new(url: &str, ca_pem: Option<&[u8]>, refresh: Duration) -> Result<Self, String> {
        if !url.starts_with("https://") {
            return Err("jwks_url must be an https:// URL".into());
        }
        reqwest::Url::parse(url).map_err(|e| format!("jwks_url: {e}"))?;
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(FETCH_TIMEOUT)
            // Fetches are rare; a pooled connection would outlive the runtime that made it.
            .pool_max_idle_per_host(0)
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("jwks_ca_file: {e}"))?;
            if certs.is_empty() {
                return Err("jwks_ca_file holds no certificate".into());
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let client = b.build().map_err(|e| format!("HTTPS client: {e}"))?;
        Ok(Self {
            url: url.to_string(),
            client,
            refresh,
            keys: ArcSwap::from_pointee(KeySet::default()),
            attempted: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    fn last_attempt(&self) -> Option<Instant> {
        *self.attempted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current key set, fetched first when there is none yet, when it is older than the
    /// refresh interval, or when it lacks `kid` (at most every `MIN_REFETCH`).
    pub async fn keys(&self, kid: Option<&str>) -> Arc<KeySet> {
        let current = self.keys.load_full();
        let last = self.last_attempt();
        let due = match last {
            None => true,
            Some(t) => {
                let age = t.elapsed();
                age >= self.refresh
                    || (age >= MIN_REFETCH
                        && (current.keys.is_empty() || kid.is_some_and(|k| !current.has_kid(k))))
            }
        };
        if !due {
            return current;
        }
        let _one = self.fetching.lock().await;
        // Someone else may have fetched while we waited.
        if self.last_attempt() != last {
            return self.keys.load_full();
        }
        *self.attempted.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        match self.fetch().await {
            Ok(set) => {
                tracing::info!(url = %self.url, keys = set.keys.len(), "fetched JWKS");
                self.keys.store(Arc::new(set));
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed; keeping the last key set")
            }
        }
        self.keys.load_full()
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let mut resp = self
            .client
            .get(&self.url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(format!("HTTP {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err("JWKS larger than 1 MiB".into());
            }
            body.extend_from_slice(&chunk);
        }
        let (set, notes) = parse(&body)?;
        for n in notes {
            tracing::warn!(url = %self.url, "JWKS {n}");
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_keys_are_kept_and_the_rest_named() {
        let doc = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "r", "n": crate::tokens::jwt::jws::tests::A2_N, "e": "AQAB", "alg": "RS256"},
            {"kty": "EC", "crv": "P-256", "kid": "e",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "oct", "k": "c2VjcmV0"},
            {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "crv": "P-256", "alg": "HS256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
        ]});
        let (set, notes) = parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.keys.len(), 3);
        assert_eq!(notes.len(), 4, "{notes:?}");
        assert_eq!(set.candidates(Alg::Rs256, Some("r")).count(), 1);
        assert_eq!(set.candidates(Alg::Rs256, Some("e")).count(), 0);
        assert_eq!(set.candidates(Alg::EdDsa, None).count(), 1);
        assert_eq!(set.candidates(Alg::Hs256, None).count(), 0);
        assert!(parse(br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).is_err());
        assert!(parse(b"[]").is_err());
    }

    #[test]
    fn remote_sets_are_https_only() {
        assert!(Remote::new("http://127.0.0.1/jwks", None, Duration::from_secs(60)).is_err());
        assert!(Remote::new("https://127.0.0.1/jwks", None, Duration::from_secs(60)).is_ok());
    }
}
