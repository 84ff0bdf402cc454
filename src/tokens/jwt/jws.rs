//! JWS compact serialization (RFC 7515) and the four signature algorithms we accept.
//!
//! Every key is typed by what it can verify: an RSA key only checks RS256, a P-256 key only
//! ES256, an Ed25519 key only EdDSA and a secret only HS256. Algorithm confusion (an RSA
//! public key fed to HMAC as a "secret") therefore cannot be expressed: `verify` refuses any
//! (algorithm, key) pair that does not belong together before touching the signature.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, UnparsedPublicKey};
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

/// A verification key.
pub enum Key {
    /// Big-endian modulus (no leading zeros) and exponent.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed SEC1 point: 0x04 ‖ X ‖ Y.
    P256(Vec<u8>),
    Ed25519(Vec<u8>),
    Hmac(ring::hmac::Key),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rsa { .. } => "Key::Rsa",
            Self::P256(_) => "Key::P256",
            Self::Ed25519(_) => "Key::Ed25519",
            // Never print a secret.
            Self::Hmac(_) => "Key::Hmac(<redacted>)",
        })
    }
}

impl Key {
    /// The one algorithm this key verifies.
    pub fn alg(&self) -> Alg {
        match self {
            Self::Rsa { .. } => Alg::Rs256,
            Self::P256(_) => Alg::Es256,
            Self::Ed25519(_) => Alg::EdDsa,
            Self::Hmac(_) => Alg::Hs256,
        }
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
    pub signature: Vec<u8>,
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
        signature: b64(s)?,
    })
}

/// Check `sig` over `msg` with `key` under `alg`. `false` for any mismatch, including a key
/// that does not belong to `alg`.
pub fn verify(alg: Alg, key: &Key, msg: &[u8], sig: &[u8]) -> bool {
    match (alg, key) {
        (Alg::Rs256, Key::Rsa { n, e }) => signature::RsaPublicKeyComponents { n, e }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, msg, sig)
            .is_ok(),
        (Alg::Es256, Key::P256(point)) => {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(msg, sig)
                .is_ok()
        }
        (Alg::EdDsa, Key::Ed25519(x)) => UnparsedPublicKey::new(&signature::ED25519, x)
            .verify(msg, sig)
            .is_ok(),
        (Alg::Hs256, Key::Hmac(k)) => ring::hmac::verify(k, msg, sig).is_ok(),
        _ => false,
    }
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
        let mut point = vec![4u8];
        point.extend(d(A3_X));
        point.extend(d(A3_Y));
        vec![
            Key::Hmac(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &d(A1_KEY))),
            Key::Rsa {
                n: d(A2_N),
                e: d("AQAB"),
            },
            Key::P256(point),
            Key::Ed25519(d(ED_X)),
        ]
    }
    fn check(token: &str, key: &Key) -> bool {
        let c = parse(token).unwrap();
        let alg = Alg::parse(&c.header.alg).unwrap();
        verify(alg, key, c.signing_input, &c.signature)
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
            assert!(!verify(alg, k, &msg, &c.signature));
            let mut sig = c.signature.clone();
            let last = sig.len() - 1;
            sig[last] ^= 1;
            assert!(!verify(alg, k, c.signing_input, &sig));
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
        let rsa = Key::Rsa { n, e: d("AQAB") };
        assert!(!verify(Alg::Hs256, &rsa, forged_msg, tag.as_ref()));
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
