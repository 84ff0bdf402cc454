//! JWS compact serialization (RFC 7515) and the four signature algorithms we accept.
//!
//! The signatures are checked by `jsonwebtoken` (on the same `ring` the rest of the
//! gateway uses); what stays here is the part that crate leaves to its caller or does
//! differently: the structure check (size bound, exactly three canonical base64url
//! segments, and refusing `crit`/`b64` as RFC 7515 §4.1.11 requires, which the crate's
//! header type silently ignores) and binding each key to one algorithm. Every key is typed
//! by what it can verify: an RSA key only checks RS256, a P-256 key only ES256, an Ed25519
//! key only EdDSA and a secret only HS256, so algorithm confusion (a public key fed to
//! HMAC as a "secret") cannot be expressed. ID tokens and logout tokens go through the
//! same `parse` and `verify`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// Tokens longer than this are refused before any decoding (a JWT is a header value).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    Rs256,
    Es256,
    EdDsa,
    Hs256,
}

impl Alg {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            "EdDSA" => Some(Self::EdDsa),
            "HS256" => Some(Self::Hs256),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
            Self::Hs256 => "HS256",
        }
    }
}

/// A verification key: the `jsonwebtoken` key, tagged with the one algorithm it may
/// verify. The tag is what stops algorithm confusion: `jsonwebtoken::crypto::verify` takes
/// the algorithm from its caller and would run HMAC over an EC key's bytes if asked (only
/// its high-level `decode` compares key family and algorithm), so `verify` below refuses a
/// mismatched pair before the crate sees it.
#[derive(Clone)]
pub struct Key {
    alg: Alg,
    key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret; the algorithm says what kind of key it is.
        write!(f, "Key({})", self.alg.as_str())
    }
}

impl Key {
    /// Big-endian modulus and exponent (leading zeros removed by the caller).
    pub fn rsa(n: &[u8], e: &[u8]) -> Self {
        Self {
            alg: Alg::Rs256,
            key: DecodingKey::from_rsa_raw_components(n, e),
        }
    }

    /// P-256 affine coordinates, base64url as in a JWK (`x`, `y`).
    pub fn p256(x: &str, y: &str) -> Result<Self, Malformed> {
        Ok(Self {
            alg: Alg::Es256,
            key: DecodingKey::from_ec_components(x, y).map_err(|_| Malformed::Base64)?,
        })
    }

    /// An Ed25519 public key, base64url as in a JWK (`x`).
    pub fn ed25519(x: &str) -> Result<Self, Malformed> {
        Ok(Self {
            alg: Alg::EdDsa,
            key: DecodingKey::from_ed_components(x).map_err(|_| Malformed::Base64)?,
        })
    }

    pub fn hmac(secret: &[u8]) -> Self {
        Self {
            alg: Alg::Hs256,
            key: DecodingKey::from_secret(secret),
        }
    }

    /// The one algorithm this key verifies.
    pub fn alg(&self) -> Alg {
        self.alg
    }
}

/// The parts of the protected header we read. Unknown members are ignored, except `crit`
/// (RFC 7515 §4.1.11: a verifier must refuse extensions it does not understand). Key
/// location hints (`jku`, `x5u`, `jwk`) are deliberately never followed: keys come only
/// from the configuration.
#[derive(Debug, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
    #[serde(default)]
    pub b64: Option<bool>,
}

/// Why a token's structure was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("token too long")]
    TooLong,
    #[error("not three base64url segments")]
    Segments,
    #[error("bad base64url")]
    Base64,
    #[error("header or payload is not a JSON object")]
    Json,
    #[error("header lists critical extensions")]
    Crit,
}

/// A parsed but not yet verified compact JWS.
#[derive(Debug)]
pub struct Compact<'a> {
    pub header: Header,
    /// `BASE64URL(header) '.' BASE64URL(payload)`: what the signature covers.
    pub signing_input: &'a [u8],
    pub payload: Vec<u8>,
    /// The signature segment as sent (base64url, already checked to decode).
    pub signature: &'a str,
}

fn b64(s: &str) -> Result<Vec<u8>, Malformed> {
    // The engine refuses padding and non-canonical trailing bits.
    URL_SAFE_NO_PAD.decode(s).map_err(|_| Malformed::Base64)
}

pub fn parse(token: &str) -> Result<Compact<'_>, Malformed> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Malformed::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Malformed::Segments);
    };
    if h.is_empty() || s.is_empty() {
        return Err(Malformed::Segments);
    }
    let header: Header = serde_json::from_slice(&b64(h)?).map_err(|_| Malformed::Json)?;
    if header.crit.is_some() || header.b64.is_some() {
        return Err(Malformed::Crit);
    }
    Ok(Compact {
        header,
        signing_input: &token.as_bytes()[..h.len() + 1 + p.len()],
        payload: b64(p)?,
        signature: {
            b64(s)?;
            s
        },
    })
}

impl Alg {
    fn jose(self) -> Algorithm {
        match self {
            Self::Rs256 => Algorithm::RS256,
            Self::Es256 => Algorithm::ES256,
            Self::EdDsa => Algorithm::EdDSA,
            Self::Hs256 => Algorithm::HS256,
        }
    }
}

/// Check the base64url signature `sig` over `msg` with `key` under `alg`. `false` for any
/// mismatch, including a key that does not belong to `alg` (refused before any crypto).
pub fn verify(alg: Alg, key: &Key, msg: &[u8], sig: &str) -> bool {
    key.alg == alg && jsonwebtoken::crypto::verify(sig, msg, &key.key, alg.jose()).unwrap_or(false)
}

#[cfg(test)]
pub(crate) mod tests {
    //! Published vectors: RFC 7515 appendices A.1 (HS256), A.2 (RS256), A.3 (ES256) and
    //! RFC 8037 appendix A.4 (Ed25519). Keys and tokens are the RFCs' own.
    use super::*;

    const A1_KEY: &str =
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
    const A1_TOKEN: &str = concat!(
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.",
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.",
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    );
    pub(crate) const A2_N: &str = concat!(
        "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddx",
        "HmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMs",
        "D1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSH",
        "SXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdV",
        "MTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8",
        "NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"
    );
    const A2_TOKEN: &str = concat!(
        "eyJhbGciOiJSUzI1NiJ9.",
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.",
        "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7",
        "AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4",
        "BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K",
        "0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqv",
        "hJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrB",
        "p0igcN_IoypGlUPQGe77Rw"
    );
    const A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
    const A3_TOKEN: &str = concat!(
        "eyJhbGciOiJFUzI1NiJ9.",
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.",
        "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
    );
    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const ED_TOKEN: &str = concat!(
        "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.",
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
    );

    fn d(s: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(s).unwrap()
    }
    fn keys() -> Vec<Key> {
        vec![
            Key::hmac(&d(A1_KEY)),
            Key::rsa(&d(A2_N), &d("AQAB")),
            Key::p256(A3_X, A3_Y).unwrap(),
            Key::ed25519(ED_X).unwrap(),
        ]
    }
    fn check(token: &str, key: &Key) -> bool {
        let c = parse(token).unwrap();
        let alg = Alg::parse(&c.header.alg).unwrap();
        verify(alg, key, c.signing_input, c.signature)
    }

    #[test]
    fn rfc_vectors_verify_with_their_own_key_only() {
        let tokens = [A1_TOKEN, A2_TOKEN, A3_TOKEN, ED_TOKEN];
        let keys = keys();
        for (i, t) in tokens.iter().enumerate() {
            for (j, k) in keys.iter().enumerate() {
                assert_eq!(check(t, k), i == j, "token {i} with key {j}");
            }
        }
        let c = parse(A1_TOKEN).unwrap();
        assert_eq!(
            c.payload,
            b"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}"
        );
    }

    #[test]
    fn a_changed_byte_anywhere_breaks_every_vector() {
        let keys = keys();
        for (t, k) in [A1_TOKEN, A2_TOKEN, A3_TOKEN, ED_TOKEN].iter().zip(&keys) {
            let c = parse(t).unwrap();
            let alg = Alg::parse(&c.header.alg).unwrap();
            let mut msg = c.signing_input.to_vec();
            msg[5] ^= 1;
            assert!(!verify(alg, k, &msg, c.signature));
            let mut sig = d(c.signature);
            let last = sig.len() - 1;
            sig[last] ^= 1;
            assert!(!verify(
                alg,
                k,
                c.signing_input,
                &URL_SAFE_NO_PAD.encode(sig)
            ));
        }
    }

    #[test]
    fn confusion_an_rsa_public_key_used_as_an_hmac_secret_is_refused() {
        // The classic attack: sign with HMAC using the bytes of the public key. Even if the
        // bytes match, an RSA key never verifies HS256.
        let n = d(A2_N);
        let forged_msg = b"eyJhbGciOiJIUzI1NiJ9.e30";
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &n),
            forged_msg,
        );
        let rsa = Key::rsa(&n, &d("AQAB"));
        assert!(!verify(
            Alg::Hs256,
            &rsa,
            forged_msg,
            &URL_SAFE_NO_PAD.encode(tag.as_ref())
        ));
        // The same attack with an EC key, whose bytes the crate would feed to HMAC as they
        // are if the algorithm were not bound to the key.
        let mut point = vec![4u8];
        point.extend(d(A3_X));
        point.extend(d(A3_Y));
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &point),
            forged_msg,
        );
        let ec = Key::p256(A3_X, A3_Y).unwrap();
        assert!(!verify(
            Alg::Hs256,
            &ec,
            forged_msg,
            &URL_SAFE_NO_PAD.encode(tag.as_ref())
        ));
    }

    #[test]
    fn malformed_structure_is_named() {
        assert_eq!(parse("a.b").unwrap_err(), Malformed::Segments);
        assert_eq!(parse("a.b.c.d.e").unwrap_err(), Malformed::Segments);
        assert_eq!(parse(".e30.c2ln").unwrap_err(), Malformed::Segments);
        assert_eq!(parse("e30=.e30.c2ln").unwrap_err(), Malformed::Base64);
        assert_eq!(parse("e3+.e30.c2ln").unwrap_err(), Malformed::Base64);
        assert_eq!(parse("bm90IGpzb24.e30.c2ln").unwrap_err(), Malformed::Json);
        let crit = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","crit":["exp"],"exp":1}"#);
        assert_eq!(
            parse(&format!("{crit}.e30.c2ln")).unwrap_err(),
            Malformed::Crit
        );
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(parse(&long).unwrap_err(), Malformed::TooLong);
    }
}
