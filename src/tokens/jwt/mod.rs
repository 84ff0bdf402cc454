//! Bearer JWTs for API clients (`[[jwt]]`, routes with `bearer = true`).
//!
//! A token is read in this order, and the first failure decides the answer (always 401):
//! structure (`jws::parse`), algorithm name, issuer (the unverified `iss` only *selects*
//! which configured issuer's keys and rules apply), the issuer's algorithm allow-list, key,
//! signature, then the time and audience claims and the identity the claims map to.

pub mod jwks;
pub mod jws;

use crate::identity::Identity;
use jws::{Alg, Malformed};
use std::sync::Arc;

/// Where an issuer's verification keys come from.
#[derive(Debug)]
pub enum KeySource {
    /// `jwks_file` or `secret_file`, read at load (and at every reload).
    Static(Arc<jwks::KeySet>),
    /// `jwks_url`, fetched and cached.
    Remote(jwks::Remote),
}

impl KeySource {
    async fn keys(&self, kid: Option<&str>) -> Arc<jwks::KeySet> {
        match self {
            Self::Static(s) => s.clone(),
            Self::Remote(r) => r.keys(kid).await,
        }
    }
}

/// One validated `[[jwt]]` entry.
#[derive(Debug)]
pub struct Issuer {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Alg>,
    pub keys: KeySource,
    pub user_claim: String,
    pub email_claim: String,
    pub groups_claim: String,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: u64,
}

/// Why a token was refused. The label is a fixed word for metrics and logs; the token and
/// its claims never are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("malformed token: {0}")]
    Malformed(#[from] Malformed),
    #[error("algorithm not accepted")]
    Algorithm,
    #[error("unknown issuer")]
    Issuer,
    #[error("no key matches the token")]
    UnknownKey,
    #[error("bad signature")]
    Signature,
    #[error("expired")]
    Expired,
    #[error("not valid yet")]
    NotYetValid,
    #[error("audience not accepted")]
    Audience,
    #[error("claims do not name a valid identity")]
    Claims,
}

impl Rejection {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::Algorithm => "algorithm",
            Self::Issuer => "issuer",
            Self::UnknownKey => "unknown_key",
            Self::Signature => "signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Audience => "audience",
            Self::Claims => "claims",
        }
    }
}

type Claims = serde_json::Map<String, serde_json::Value>;

/// Every configured issuer.
#[derive(Debug, Default)]
pub struct Issuers {
    pub list: Vec<Issuer>,
}

impl Issuers {
    /// Verify `token` at `now` (Unix seconds) and map its claims to an identity.
    pub async fn verify(&self, token: &str, now: u64) -> Result<Identity, Rejection> {
        let c = jws::parse(token)?;
        // `none`, `HS512`, `RS384`, … are refused here whatever an issuer allows.
        let alg = Alg::parse(&c.header.alg).ok_or(Rejection::Algorithm)?;
        let claims: Claims = serde_json::from_slice(&c.payload)
            .map_err(|_| Rejection::Malformed(Malformed::Json))?;
        let iss = claims
            .get("iss")
            .and_then(|v| v.as_str())
            .ok_or(Rejection::Issuer)?;
        let issuer = self
            .list
            .iter()
            .find(|i| i.issuer == iss)
            .ok_or(Rejection::Issuer)?;
        if !issuer.algorithms.contains(&alg) {
            return Err(Rejection::Algorithm);
        }
        let set = issuer.keys.keys(c.header.kid.as_deref()).await;
        set.verify(alg, &c).map_err(|m| match m {
            jwks::KeyMiss::NoKey => Rejection::UnknownKey,
            jwks::KeyMiss::Signature => Rejection::Signature,
        })?;
        issuer.check_claims(&claims, now)?;
        issuer.identity(&claims)
    }
}

fn numeric_date(claims: &Claims, name: &str) -> Result<Option<f64>, Rejection> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|n| n.is_finite())
            .map(Some)
            .ok_or(Rejection::Claims),
    }
}

impl Issuer {
    fn check_claims(&self, claims: &Claims, now: u64) -> Result<(), Rejection> {
        let now = now as f64;
        let leeway = self.leeway as f64;
        // A bearer token without an expiry would be valid forever: refuse it.
        let exp = numeric_date(claims, "exp")?.ok_or(Rejection::Expired)?;
        if now > exp + leeway {
            return Err(Rejection::Expired);
        }
        if numeric_date(claims, "nbf")?.is_some_and(|nbf| nbf > now + leeway) {
            return Err(Rejection::NotYetValid);
        }
        if numeric_date(claims, "iat")?.is_some_and(|iat| iat > now + leeway) {
            return Err(Rejection::NotYetValid);
        }
        let ok = match claims.get("aud") {
            Some(serde_json::Value::String(a)) => self.audiences.iter().any(|x| x == a),
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .filter_map(|v| v.as_str())
                .any(|a| self.audiences.iter().any(|x| x == a)),
            _ => false,
        };
        if !ok {
            return Err(Rejection::Audience);
        }
        Ok(())
    }

    fn identity(&self, claims: &Claims) -> Result<Identity, Rejection> {
        let user = claims
            .get(&self.user_claim)
            .and_then(|v| v.as_str())
            .ok_or(Rejection::Claims)?
            .to_string();
        let email = match claims.get(&self.email_claim) {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(_) => return Err(Rejection::Claims),
        };
        let groups = match claims.get(&self.groups_claim) {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or(Rejection::Claims)?,
            Some(_) => return Err(Rejection::Claims),
        };
        let id = Identity {
            user,
            email,
            groups,
        };
        // The same rules as the users file: nothing that could split or forge a header.
        crate::identity::validate_identity(&id).map_err(|_| Rejection::Claims)?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn issuers() -> Issuers {
        Issuers {
            list: vec![Issuer {
                issuer: "https://idp.test".into(),
                audiences: vec!["api".into()],
                algorithms: vec![Alg::Hs256],
                keys: KeySource::Static(Arc::new(jwks::KeySet {
                    keys: vec![jwks::Jwk {
                        kid: None,
                        key: jws::Key::hmac(SECRET),
                    }],
                })),
                user_claim: "sub".into(),
                email_claim: "email".into(),
                groups_claim: "groups".into(),
                leeway: 30,
            }],
        }
    }

    fn sign(header: &serde_json::Value, claims: &serde_json::Value, secret: &[u8]) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
            input.as_bytes(),
        );
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    fn good() -> serde_json::Value {
        serde_json::json!({"iss": "https://idp.test", "aud": ["x", "api"], "sub": "ana",
            "email": "ana@example.com", "groups": ["dev"], "exp": NOW + 60, "iat": NOW})
    }

    fn run(token: &str) -> Result<Identity, Rejection> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(issuers().verify(token, NOW))
    }

    fn with(k: &str, v: serde_json::Value) -> String {
        let mut c = good();
        c[k] = v;
        sign(&serde_json::json!({"alg": "HS256"}), &c, SECRET)
    }

    #[test]
    fn a_good_token_maps_to_an_identity() {
        let id = run(&sign(
            &serde_json::json!({"alg": "HS256", "typ": "JWT"}),
            &good(),
            SECRET,
        ))
        .unwrap();
        assert_eq!(id.user, "ana");
        assert_eq!(id.email, "ana@example.com");
        assert_eq!(id.groups, vec!["dev".to_string()]);
        // Leeway: expired 20 s ago is still fine with 30 s of leeway.
        assert!(run(&with("exp", (NOW - 20).into())).is_ok());
        assert!(run(&with("aud", "api".into())).is_ok());
    }

    #[test]
    fn every_forgery_is_a_named_rejection() {
        use Rejection::*;
        let hdr = serde_json::json!({"alg": "HS256"});
        let cases: Vec<(String, Rejection)> = vec![
            (
                sign(&hdr, &good(), b"another secret of 32 bytes......"),
                Signature,
            ),
            (
                format!(
                    "{}.{}.",
                    URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
                    URL_SAFE_NO_PAD.encode(good().to_string())
                ),
                Malformed(jws::Malformed::Segments),
            ),
            (
                format!(
                    "{}.{}.c2ln",
                    URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
                    URL_SAFE_NO_PAD.encode(good().to_string())
                ),
                Algorithm,
            ),
            (
                sign(&serde_json::json!({"alg": "HS512"}), &good(), SECRET),
                Algorithm,
            ),
            (
                sign(&serde_json::json!({"alg": "RS256"}), &good(), SECRET),
                Algorithm,
            ),
            (with("iss", "https://evil.test".into()), Issuer),
            (with("iss", serde_json::Value::Null), Issuer),
            (with("exp", (NOW - 31).into()), Expired),
            (with("exp", "tomorrow".into()), Claims),
            (with("nbf", (NOW + 31).into()), NotYetValid),
            (with("iat", (NOW + 3600).into()), NotYetValid),
            (with("aud", "other".into()), Audience),
            (with("aud", serde_json::json!([])), Audience),
            (with("sub", 42.into()), Claims),
            (with("sub", "ana\r\nX-Forwarded-User: root".into()), Claims),
            (with("groups", serde_json::json!(["a", 1])), Claims),
            ("not a token".into(), Malformed(jws::Malformed::Segments)),
            // `e30` is `{}`: a header without "alg" is a shape error.
            ("e30.e30.e30".into(), Malformed(jws::Malformed::Json)),
        ];
        for (token, want) in cases {
            assert_eq!(run(&token).unwrap_err(), want, "{token}");
        }
        let mut no_exp = good();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(run(&sign(&hdr, &no_exp, SECRET)).unwrap_err(), Expired);
        // An issuer whose keys are HMAC has no key for an RS256 token even if it allowed it.
        let mut is = issuers();
        is.list[0].algorithms.push(Alg::Rs256);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let t = sign(&serde_json::json!({"alg": "RS256"}), &good(), SECRET);
        assert_eq!(rt.block_on(is.verify(&t, NOW)).unwrap_err(), UnknownKey);
    }
}
