//! Signed identity assertions for upstreams that verify rather than trust a plain header:
//! a short-lived ES256 JWT (RFC 7519/7515) per forwarded request with an identity, signed
//! with the first key of `assertion_key_file`; every key in the file is published as a JWKS
//! at `/.well-known/portcullis/jwks.json`, so keys rotate like session keys.

use crate::identity::Identity;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::path::Path;
use std::time::Duration;

/// How long an assertion is valid. Short: it is minted per request (and cached briefly).
pub const LIFETIME: Duration = Duration::from_secs(60);
/// A cached assertion is reused while it has at least this much life left.
const REUSE_FOR: Duration = Duration::from_secs(30);

struct SigningKey {
    kid: String,
    pair: EcdsaKeyPair,
}

/// The assertion keys (first signs, all are published) and a short-lived token cache.
pub struct Assertions {
    pub header: http::HeaderName,
    keys: Vec<SigningKey>,
    jwks: String,
    rng: SystemRandom,
    cache: moka::sync::Cache<(Vec<u8>, String, String), (String, u64)>,
}

impl std::fmt::Debug for Assertions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Assertions({}, {} keys, <redacted>)",
            self.header,
            self.keys.len()
        )
    }
}

fn kid_of(public: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, public);
    URL_SAFE_NO_PAD.encode(&d.as_ref()[..12])
}

impl Assertions {
    /// Load PKCS#8 PEM P-256 keys (`portcullis gen-key --assertion`, or
    /// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`).
    pub fn load(header: &str, path: &Path) -> Result<Self, String> {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read assertion keys {}: {e}", path.display()))?;
        let mut ders = Vec::new();
        for item in rustls_pemfile::read_all(&mut pem.as_slice()) {
            match item {
                Ok(rustls_pemfile::Item::Pkcs8Key(k)) => ders.push(k.secret_pkcs8_der().to_vec()),
                Ok(_) => {
                    return Err(format!(
                        "{}: only PKCS#8 \"PRIVATE KEY\" blocks are accepted",
                        path.display()
                    ))
                }
                Err(e) => return Err(format!("{}: not PEM: {e}", path.display())),
            }
        }
        Self::from_pkcs8(header, &ders).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn from_pkcs8(header: &str, ders: &[Vec<u8>]) -> Result<Self, String> {
        let header = http::HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| format!("{header:?} is not a header name"))?;
        if ders.is_empty() {
            return Err("no keys".into());
        }
        let rng = SystemRandom::new();
        let mut keys = Vec::new();
        let mut jwks = Vec::new();
        for der in ders {
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
                .map_err(|_| "a key is not a P-256 (ES256) PKCS#8 private key".to_string())?;
            let public = pair.public_key().as_ref();
            // Uncompressed point: 0x04 ‖ X (32) ‖ Y (32).
            if public.len() != 65 || public[0] != 4 {
                return Err("unexpected public key encoding".into());
            }
            let kid = kid_of(public);
            if keys.iter().any(|k: &SigningKey| k.kid == kid) {
                return Err("duplicate assertion key".into());
            }
            jwks.push(serde_json::json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(&public[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&public[33..65]),
            }));
            keys.push(SigningKey { kid, pair });
        }
        Ok(Self {
            header,
            keys,
            jwks: serde_json::json!({ "keys": jwks }).to_string(),
            rng,
            cache: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(REUSE_FOR)
                .build(),
        })
    }

    /// The JWKS document with every public key.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// An assertion for `identity`, audience `aud` (the route's host), issuer `iss` (the
    /// gateway's origin). `cache_key` identifies the session so that tokens are reused for a
    /// few seconds instead of signing on every request.
    pub fn token(
        &self,
        cache_key: &[u8],
        identity: &Identity,
        auth: Option<&crate::identity::Authentication>,
        aud: &str,
        iss: &str,
        now_secs: u64,
    ) -> Option<String> {
        let ck = (cache_key.to_vec(), aud.to_string(), iss.to_string());
        if let Some((t, exp)) = self.cache.get(&ck) {
            if exp >= now_secs + (LIFETIME - REUSE_FOR).as_secs() {
                return Some(t);
            }
        }
        let key = self.keys.first()?;
        let header = serde_json::json!({ "alg": "ES256", "typ": "JWT", "kid": key.kid });
        let exp = now_secs + LIFETIME.as_secs();
        let mut claims = serde_json::json!({
            "sub": identity.user, "email": identity.email, "groups": identity.groups,
            "iat": now_secs, "nbf": now_secs, "exp": exp, "aud": aud, "iss": iss,
        });
        // How and when the person authenticated, so an upstream can decide for itself
        // (OpenID Connect's `auth_time` and RFC 8176 `amr`). Sessions only: a bearer
        // token's own claims are the token issuer's business.
        if let Some(a) = auth.filter(|a| a.time_ms > 0) {
            claims["auth_time"] = (a.time_ms / 1000).into();
            if !a.methods.is_empty() {
                claims["amr"] = a.methods.clone().into();
            }
        }
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = key.pair.sign(&self.rng, signing_input.as_bytes()).ok()?;
        let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
        self.cache.insert(ck, (token.clone(), exp));
        Some(token)
    }
}

/// A new P-256 key as PKCS#8 PEM (what `gen-key --assertion` prints).
pub fn generate_pem() -> Result<String, String> {
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map_err(|_| "key generation failed".to_string())?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    fn der(pem: &str) -> Vec<u8> {
        match rustls_pemfile::read_one(&mut pem.as_bytes())
            .unwrap()
            .unwrap()
        {
            rustls_pemfile::Item::Pkcs8Key(k) => k.secret_pkcs8_der().to_vec(),
            _ => panic!("not pkcs8"),
        }
    }

    #[test]
    fn tokens_verify_against_the_published_key_and_are_cached() {
        let (a, b) = (generate_pem().unwrap(), generate_pem().unwrap());
        let asr = Assertions::from_pkcs8("X-Portcullis-Assertion", &[der(&a), der(&b)]).unwrap();
        let jwks: serde_json::Value = serde_json::from_str(asr.jwks()).unwrap();
        assert_eq!(
            jwks["keys"].as_array().unwrap().len(),
            2,
            "every key is published"
        );
        let id = Identity {
            user: "alice".into(),
            email: "a@x".into(),
            groups: vec!["g".into()],
        };
        let t = asr
            .token(
                b"s1",
                &id,
                Some(&crate::identity::Authentication {
                    methods: vec!["pwd".into(), "otp".into()],
                    time_ms: 900_000,
                    ..Default::default()
                }),
                "app.example.com",
                "https://gw.example.com",
                1000,
            )
            .unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(header["kid"], jwks["keys"][0]["kid"], "the first key signs");
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["exp"], 1060);
        assert_eq!(claims["aud"], "app.example.com");
        assert_eq!(claims["auth_time"], 900);
        assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp"]));
        let k = &jwks["keys"][0];
        let mut point = vec![4u8];
        point.extend(URL_SAFE_NO_PAD.decode(k["x"].as_str().unwrap()).unwrap());
        point.extend(URL_SAFE_NO_PAD.decode(k["y"].as_str().unwrap()).unwrap());
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .expect("signature verifies with the published key");
        assert_eq!(
            asr.token(
                b"s1",
                &id,
                None,
                "app.example.com",
                "https://gw.example.com",
                1010
            )
            .unwrap(),
            t,
            "reused"
        );
        assert_ne!(
            asr.token(b"s1", &id, None, "other", "https://gw.example.com", 1010)
                .unwrap(),
            t,
            "per audience"
        );
        assert!(Assertions::from_pkcs8("X", &[der(&a), der(&a)]).is_err());
        assert!(Assertions::from_pkcs8("X", &[vec![1, 2, 3]]).is_err());
    }
}
