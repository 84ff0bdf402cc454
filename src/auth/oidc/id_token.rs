//! ID token validation, OpenID Connect Core §3.1.3.7, through the same JWS code as bearer
//! tokens (`tokens::jwt::jws`): structure, an algorithm allow-list (asymmetric only:
//! `none` and HS256 never, whatever the provider advertises), a key from the provider's
//! JWKS only (`jku`, `x5u` and `jwk` headers are never followed), then the claims.

use super::OidcError;
use crate::tokens::jwt::jwks::{KeyMiss, Remote};
use crate::tokens::jwt::jws::{self, Alg};

pub type Claims = serde_json::Map<String, serde_json::Value>;

/// Clock skew allowed on `exp` and `iat`.
pub(super) const LEEWAY_S: f64 = 60.0;

/// What a valid ID token must match.
pub struct Expect<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// The login's nonce; `None` for an ID token from a refresh, which carries none to
    /// match (Core §12.2): its `sub` is compared with the session's instead.
    pub nonce: Option<&'a str>,
    /// The provider's `id_token_signing_alg_values_supported` (empty: RS256, the default).
    pub advertised: &'a [String],
}

fn bad(why: &str) -> OidcError {
    OidcError::BadAnswer(format!("ID token refused: {why}"))
}

pub(super) fn number(c: &Claims, name: &str) -> Result<Option<f64>, OidcError> {
    match c.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|n| n.is_finite())
            .map(Some)
            .ok_or_else(|| bad(&format!("{name} is not a number"))),
    }
}

/// Verify `token` at `now_s` and return its claims.
pub async fn verify(
    token: &str,
    keys: &Remote,
    want: &Expect<'_>,
    now_s: u64,
) -> Result<Claims, OidcError> {
    let claims = verify_signature(token, keys, want.advertised, bad).await?;
    check(&claims, want, now_s)?;
    Ok(claims)
}

/// The signature part of the checks, shared by ID tokens and logout tokens: structure,
/// the algorithm allow-list, a key from the provider's JWKS only. `bad` words the
/// refusal for the caller's kind of token.
pub async fn verify_signature(
    token: &str,
    keys: &Remote,
    advertised: &[String],
    bad: fn(&str) -> OidcError,
) -> Result<Claims, OidcError> {
    let c = jws::parse(token).map_err(|e| bad(&e.to_string()))?;
    let alg = Alg::parse(&c.header.alg).ok_or_else(|| bad("algorithm not accepted"))?;
    let advertised_ok = if advertised.is_empty() {
        alg == Alg::Rs256
    } else {
        advertised.iter().any(|a| a == alg.as_str())
    };
    // A symmetric ID token would be checked with the client secret: we never accept it.
    if alg == Alg::Hs256 || !advertised_ok {
        return Err(bad("algorithm not accepted"));
    }
    let set = keys.keys(c.header.kid.as_deref()).await;
    set.verify(alg, &c).map_err(|m| match m {
        KeyMiss::NoKey => bad("no key in the provider's JWKS matches"),
        KeyMiss::Signature => bad("bad signature"),
    })?;
    serde_json::from_slice(&c.payload).map_err(|_| bad("payload is not a JSON object"))
}

/// The claim checks, apart from the signature (unit-tested on their own).
pub fn check(claims: &Claims, want: &Expect<'_>, now_s: u64) -> Result<(), OidcError> {
    let now = now_s as f64;
    if claims.get("iss").and_then(|v| v.as_str()) != Some(want.issuer) {
        return Err(bad("iss is not the provider"));
    }
    let auds: Vec<&str> = match claims.get("aud") {
        Some(serde_json::Value::String(a)) => vec![a.as_str()],
        Some(serde_json::Value::Array(l)) => l.iter().filter_map(|v| v.as_str()).collect(),
        _ => return Err(bad("no aud")),
    };
    if !auds.contains(&want.client_id) {
        return Err(bad("aud does not name this client"));
    }
    match claims.get("azp") {
        Some(serde_json::Value::String(a)) if a == want.client_id => {}
        Some(_) => return Err(bad("azp is another client")),
        None if auds.len() > 1 => return Err(bad("several audiences and no azp")),
        None => {}
    }
    let exp = number(claims, "exp")?.ok_or_else(|| bad("no exp"))?;
    if now > exp + LEEWAY_S {
        return Err(bad("expired"));
    }
    let iat = number(claims, "iat")?.ok_or_else(|| bad("no iat"))?;
    if iat > now + LEEWAY_S {
        return Err(bad("issued in the future"));
    }
    number(claims, "auth_time")?;
    if let Some(expected) = want.nonce {
        let nonce = claims.get("nonce").and_then(|v| v.as_str());
        if !nonce.is_some_and(|n| crate::secret::same_bytes(n.as_bytes(), expected.as_bytes())) {
            return Err(bad("nonce does not match this login"));
        }
    }
    if claims
        .get("sub")
        .and_then(|s| s.as_str())
        .is_none_or(str::is_empty)
    {
        return Err(bad("no sub"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn good() -> serde_json::Value {
        serde_json::json!({"iss": "https://idp", "aud": "gw", "sub": "u1", "nonce": "n1",
            "exp": NOW + 300, "iat": NOW})
    }

    fn run(v: serde_json::Value) -> Result<(), OidcError> {
        let want = Expect {
            issuer: "https://idp",
            client_id: "gw",
            nonce: Some("n1"),
            advertised: &[],
        };
        check(v.as_object().unwrap(), &want, NOW)
    }

    fn with(k: &str, v: serde_json::Value) -> serde_json::Value {
        let mut c = good();
        c[k] = v;
        c
    }

    #[test]
    fn every_claim_rule_of_core_3_1_3_7() {
        assert!(run(good()).is_ok());
        assert!(run(with("aud", serde_json::json!(["gw"]))).is_ok());
        assert!(run(with("azp", "gw".into())).is_ok());
        let mut multi = with("aud", serde_json::json!(["gw", "other"]));
        assert!(run(multi.clone()).is_err(), "several audiences need azp");
        multi["azp"] = "gw".into();
        assert!(run(multi).is_ok());
        for bad in [
            with("iss", "https://evil".into()),
            with("aud", "other".into()),
            with("aud", serde_json::json!([])),
            with("azp", "other".into()),
            with("exp", (NOW - 61).into()),
            with("exp", "soon".into()),
            with("iat", (NOW + 3600).into()),
            with("nonce", "n2".into()),
            with("nonce", serde_json::Value::Null),
            with("sub", "".into()),
            with("auth_time", "yesterday".into()),
        ] {
            assert!(run(bad.clone()).is_err(), "{bad}");
        }
        let mut no_nonce = good();
        no_nonce.as_object_mut().unwrap().remove("nonce");
        assert!(run(no_nonce).is_err());
        let mut no_iat = good();
        no_iat.as_object_mut().unwrap().remove("iat");
        assert!(run(no_iat).is_err());
    }
}
