//! Bearer JWTs on `bearer = true` routes. Tokens are signed by the `jsonwebtoken` crate and,
//! since the gateway verifies with that crate's ring code too, also by an independent
//! implementation (PyJWT on `cryptography`), with keys made here (openssl for RSA, ring for
//! P-256 and Ed25519); a JWKS is served over real HTTPS by a small server in this file.

mod common;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::KeyPair;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A signing key and its public JWK.
struct TestKey {
    alg: Algorithm,
    enc: EncodingKey,
    jwk: serde_json::Value,
    /// The private key as PKCS#8 DER or PEM, for PyJWT.
    private: Vec<u8>,
}

fn rsa_key(dir: &TempDir, name: &str, kid: &str) -> TestKey {
    let path = dir.path(name);
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is required (scripts/test.sh installs it)");
    assert!(ok.success());
    let out = Command::new("openssl")
        .args(["rsa", "-noout", "-modulus", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let hex = text.trim().strip_prefix("Modulus=").unwrap();
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let pem = std::fs::read(&path).unwrap();
    TestKey {
        alg: Algorithm::RS256,
        enc: EncodingKey::from_rsa_pem(&pem).unwrap(),
        jwk: serde_json::json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(n), "e": "AQAB"}),
        private: pem,
    }
}

fn ec_key(kid: &str) -> TestKey {
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let der = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, der.as_ref(), &rng).unwrap();
    let p = pair.public_key().as_ref();
    TestKey {
        alg: Algorithm::ES256,
        enc: EncodingKey::from_ec_der(der.as_ref()),
        jwk: serde_json::json!({"kty": "EC", "crv": "P-256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65])}),
        private: der.as_ref().to_vec(),
    }
}

fn ed_key(kid: &str) -> TestKey {
    let rng = ring::rand::SystemRandom::new();
    let der = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(der.as_ref()).unwrap();
    TestKey {
        alg: Algorithm::EdDSA,
        enc: EncodingKey::from_ed_der(der.as_ref()),
        jwk: serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())}),
        private: der.as_ref().to_vec(),
    }
}

fn jwks(keys: &[&TestKey]) -> String {
    serde_json::json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

fn claims(iss: &str, sub: &str) -> serde_json::Value {
    serde_json::json!({"iss": iss, "aud": "api", "sub": sub, "email": format!("{sub}@example.com"),
        "groups": ["dev", "ops"], "iat": now(), "exp": now() + 300})
}

fn sign(key: &TestKey, claims: &serde_json::Value) -> String {
    let mut h = Header::new(key.alg);
    h.kid = key.jwk["kid"].as_str().map(str::to_string);
    jsonwebtoken::encode(&h, claims, &key.enc).unwrap()
}

/// Sign `claims` with PyJWT, the key read from `path` (PEM, PKCS#8 DER, or the HMAC secret).
fn pyjwt_sign(path: &std::path::Path, key: &TestKey, claims: &serde_json::Value) -> String {
    let alg = match key.alg {
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        _ => "HS256",
    };
    let script = r#"
import json, sys, jwt
from cryptography.hazmat.primitives import serialization as s
path, alg, kid, claims = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
raw = open(path, "rb").read()
if alg == "HS256":
    key = raw
elif raw.startswith(b"-----"):
    key = s.load_pem_private_key(raw, None)
elif alg == "EdDSA":
    # ring writes PKCS#8 v2 (RFC 5958, with the public key), which cryptography does not
    # read; the 32-byte seed sits at a fixed offset in ring's encoding.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    key = Ed25519PrivateKey.from_private_bytes(raw[16:48])
else:
    key = s.load_der_private_key(raw, None)
headers = {"kid": kid} if kid else None
print(jwt.encode(claims, key, algorithm=alg, headers=headers))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .arg(alg)
        .arg(key.jwk["kid"].as_str().unwrap_or(""))
        .arg(claims.to_string())
        .output()
        .expect("python3 with PyJWT is required (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "PyJWT: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

const HS_SECRET: &str = "an-hs256-secret-that-is-long-enough-0123";

#[test]
fn bearer_tokens_of_every_algorithm_pass_and_forgeries_get_401() {
    let dir = TempDir::new("jwt");
    let (_echo, echo) = echo("api", &dir);
    let addrs = Addrs::new();
    let rsa = rsa_key(&dir, "rsa.pem", "r1");
    let ec = ec_key("e1");
    let ed = ed_key("d1");
    dir.write("idp.jwks", &jwks(&[&rsa, &ec, &ed]));
    dir.write("hs.secret", &format!("{HS_SECRET}\n"));
    dir.write("session.keys", &gen_key());
    dir.write(
        "users.toml",
        &format!(
            "[[user]]\nname = \"alice\"\npassword = \"{}\"\n",
            hash_password("pw")
        ),
    );
    let cfg = dir.write(
        "gateway.toml",
        &format!(
            "[listen]\nhttp = [\"{}\"]\n[admin]\nlisten = \"{}\"\n[session]\nkeys_file = \"session.keys\"\nsecure = false\n\
             [auth]\nusers_file = \"users.toml\"\n\
             [[jwt]]\nissuer = \"https://idp.test\"\naudiences = [\"api\"]\nalgorithms = [\"RS256\", \"ES256\", \"EdDSA\"]\njwks_file = \"idp.jwks\"\n\
             [[jwt]]\nissuer = \"https://hs.test\"\naudiences = [\"api\"]\nalgorithms = [\"HS256\"]\nsecret_file = \"hs.secret\"\n\
             [[upstream]]\nname = \"api\"\ntargets = [\"{echo}\"]\n\
             [[route]]\npath = \"/api\"\nupstream = \"api\"\nbearer = true\n\
             [[route]]\npath = \"/web\"\nupstream = \"api\"\n",
            addrs.http, addrs.admin
        ),
    );
    let g = start_gateway(&dir, &cfg, &addrs, false);
    let h = g.http;

    // Every algorithm, each signed by jsonwebtoken, maps to the identity headers.
    let hs = TestKey {
        alg: Algorithm::HS256,
        enc: EncodingKey::from_secret(HS_SECRET.as_bytes()),
        jwk: serde_json::json!({}),
        private: HS_SECRET.as_bytes().to_vec(),
    };
    let mut valid = Vec::new();
    for (key, iss) in [
        (&rsa, "https://idp.test"),
        (&ec, "https://idp.test"),
        (&ed, "https://idp.test"),
        (&hs, "https://hs.test"),
    ] {
        let t = sign(key, &claims(iss, "bob"));
        let r = get(
            h,
            "/api/items",
            &[
                ("Authorization", &bearer(&t)),
                ("X-Forwarded-User", "root"),
                ("x_forwarded_groups", "admin"),
            ],
        );
        assert_eq!(r.status, 200, "{:?}: {}", key.alg, r.body);
        assert_eq!(r.upstream_header("x-forwarded-user"), vec!["bob"]);
        assert_eq!(
            r.upstream_header("x-forwarded-email"),
            vec!["bob@example.com"]
        );
        assert_eq!(r.upstream_header("x-forwarded-groups"), vec!["dev,ops"]);
        assert!(r.upstream_header("x_forwarded_groups").is_empty());
        valid.push(t);
    }

    // The same four algorithms signed by PyJWT: the gateway's verifier is not only
    // checked against the crate it is built on.
    for (key, iss, file) in [
        (&rsa, "https://idp.test", "py-rsa.key"),
        (&ec, "https://idp.test", "py-ec.key"),
        (&ed, "https://idp.test", "py-ed.key"),
        (&hs, "https://hs.test", "py-hs.key"),
    ] {
        let path = dir.path(file);
        std::fs::write(&path, &key.private).unwrap();
        let t = pyjwt_sign(&path, key, &claims(iss, "carol"));
        let r = get(h, "/api/items", &[("Authorization", &bearer(&t))]);
        assert_eq!(r.status, 200, "PyJWT {:?}: {}", key.alg, r.body);
        assert_eq!(r.upstream_header("x-forwarded-user"), vec!["carol"]);
        // One byte of PyJWT's signature changed: refused.
        let mut b = t.into_bytes();
        let i = b.len() - 10;
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        let r = get(
            h,
            "/api/items",
            &[("Authorization", &bearer(&String::from_utf8(b).unwrap()))],
        );
        assert_eq!(r.status, 401, "PyJWT {:?} flipped", key.alg);
    }

    // No token: 401 with a Bearer challenge (an API client is not sent to a login form).
    let r = get(h, "/api/items", &[("Accept", "application/json")]);
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));

    // Forgeries and misuse: all 401 invalid_token, never the upstream, never a 500.
    let good = claims("https://idp.test", "bob");
    let with = |k: &str, v: serde_json::Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let other_rsa = rsa_key(&dir, "other.pem", "r1");
    let enc = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let body = enc(&good.to_string());
    let rsa_n = rsa.jwk["n"].as_str().unwrap().to_string();
    // Algorithm confusion: HS256 "signed" with the RSA public key's bytes as the secret.
    let confused = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("r1".into());
        jsonwebtoken::encode(&h, &good, &EncodingKey::from_secret(rsa_n.as_bytes())).unwrap()
    };
    // The payload changed (sub → root) under the original signature.
    let tampered = {
        let parts: Vec<&str> = valid[0].split('.').collect();
        let mut c: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        c["sub"] = "root".into();
        format!("{}.{}.{}", parts[0], enc(&c.to_string()), parts[2])
    };
    // One signature character changed (mid-string, so the base64 stays canonical).
    let sig_flip = {
        let mut b = valid[1].clone().into_bytes();
        let i = b.len() - 10;
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let forged: Vec<(&str, String)> = vec![
        ("expired", sign(&rsa, &with("exp", (now() - 3600).into()))),
        ("no exp", {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove("exp");
            sign(&ec, &c)
        }),
        (
            "not yet valid",
            sign(&ec, &with("nbf", (now() + 3600).into())),
        ),
        ("wrong audience", sign(&ed, &with("aud", "billing".into()))),
        (
            "unknown issuer",
            sign(&rsa, &with("iss", "https://evil.test".into())),
        ),
        (
            "issuer of the HS key, RSA-signed",
            sign(&rsa, &with("iss", "https://hs.test".into())),
        ),
        ("alg none", format!("{}.{body}.", enc(r#"{"alg":"none"}"#))),
        (
            "alg none with sig",
            format!("{}.{body}.AAAA", enc(r#"{"alg":"none"}"#)),
        ),
        ("alg confusion", confused),
        ("same kid, other key", sign(&other_rsa, &good)),
        ("unknown kid", {
            let mut h = Header::new(Algorithm::ES256);
            h.kid = Some("nope".into());
            jsonwebtoken::encode(&h, &good, &ec.enc).unwrap()
        }),
        ("tampered payload", tampered),
        ("flipped signature", sig_flip),
        ("bad base64", "eyJhbGciOiJSUzI1NiJ9.e30=.c2ln".into()),
        ("bad json", format!("{}.{}.c2ln", enc("{\"alg\":"), body)),
        ("not a jwt", "hello".into()),
        ("empty", String::new()),
        (
            "crit",
            format!("{}.{body}.c2ln", enc(r#"{"alg":"ES256","crit":["x"]}"#)),
        ),
        ("huge", "a".repeat(9000)),
        (
            "user with CRLF",
            sign(&ec, &with("sub", "bob\r\nX-Forwarded-User: root".into())),
        ),
        ("numeric user", sign(&ec, &with("sub", 7.into()))),
    ];
    for (what, token) in &forged {
        let r = get(h, "/api/items", &[("Authorization", &bearer(token))]);
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert_eq!(r.json()["error"], "invalid_token", "{what}");
        assert!(
            r.header("www-authenticate")
                .unwrap()
                .contains("invalid_token"),
            "{what}"
        );
    }

    // Routes without `bearer = true` never honour a token.
    let r = get(h, "/web/", &[("Authorization", &bearer(&valid[0]))]);
    assert_eq!(r.status, 401, "{}", r.body);
    // Other schemes are the app's business and pass through untouched.
    let r = get(h, "/api/x", &[("Authorization", "Basic Ym9iOnB3")]);
    assert_eq!(r.status, 401);
    // Two Authorization headers are ambiguous.
    let auth = bearer(&valid[0]);
    let r = get(
        h,
        "/api/x",
        &[("Authorization", &auth), ("Authorization", &auth)],
    );
    assert_eq!(r.status, 400);

    // A bearer-only POST carries no ambient credential: no CSRF refusal.
    let r = request(
        h,
        "POST",
        "/api/items",
        &[
            ("Authorization", &auth),
            ("Origin", "https://elsewhere.test"),
        ],
        "x",
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // Cookie and token together must name the same user.
    let l = login(h, "alice", "pw", "/", &[]);
    assert_eq!(l.status, 303);
    let cookie = format!("session={}", l.set_cookie_value("session").unwrap());
    let r = get(
        h,
        "/api/me",
        &[("Cookie", &cookie), ("Authorization", &auth)],
    );
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], "conflicting_credentials");
    let alice = sign(&ed, &claims("https://idp.test", "alice"));
    let r = get(
        h,
        "/api/me",
        &[("Cookie", &cookie), ("Authorization", &bearer(&alice))],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.upstream_header("x-forwarded-user"), vec!["alice"]);
    // The session alone still works on a bearer route.
    let r = get(h, "/api/me", &[("Cookie", &cookie)]);
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-forwarded-user"), vec!["alice"]);

    // Metrics count by reason; no token or user reaches a label or the log.
    let m = admin_get(&g, "/metrics").body;
    let count = |label: &str| -> u64 {
        m.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "portcullis_bearer_tokens_total{{result=\"{label}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert!(count("valid") >= 6, "{m}");
    assert!(count("expired") >= 2);
    assert!(count("algorithm") >= 2);
    assert!(count("signature") >= 3);
    assert!(count("unknown_key") >= 1);
    assert!(!m.contains("bob"));
    let log = g.proc.log_text();
    for t in valid
        .iter()
        .chain(forged.iter().map(|(_, t)| t).filter(|t| t.len() > 20))
    {
        assert!(!log.contains(t.as_str()), "a token reached the log");
    }
    assert!(log.contains("bearer token refused"));
}

/// A tiny HTTPS server that serves whatever JWKS `body` holds and counts requests.
struct JwksServer {
    addr: std::net::SocketAddr,
    body: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
    ca_pem: String,
}

fn jwks_server(initial: String) -> JwksServer {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![ck.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into()),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let body = Arc::new(Mutex::new(initial));
    let hits = Arc::new(AtomicUsize::new(0));
    let (b, n) = (body.clone(), hits.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut tcp) = stream else { continue };
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(conn, &mut tcp);
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => req.extend_from_slice(&buf[..k]),
                }
            }
            if req.is_empty() {
                continue; // a client that refused our certificate
            }
            n.fetch_add(1, Ordering::SeqCst);
            let doc = b.lock().unwrap().clone();
            let _ = write!(
                tls,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{doc}",
                doc.len()
            );
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    JwksServer {
        addr,
        body,
        hits,
        ca_pem: ck.cert.pem(),
    }
}

#[test]
fn jwks_url_is_fetched_over_https_and_follows_key_rotation() {
    let dir = TempDir::new("jwks-url");
    let (_echo, echo) = echo("api", &dir);
    let addrs = Addrs::new();
    let k1 = ec_key("k1");
    let k2 = ed_key("k2");
    let server = jwks_server(jwks(&[&k1]));
    dir.write("idp-ca.pem", &server.ca_pem);
    let url = format!("https://127.0.0.1:{}/jwks.json", server.addr.port());
    let cfg = dir.write(
        "gateway.toml",
        &format!(
            "[listen]\nhttp = [\"{}\"]\n[admin]\nlisten = \"{}\"\n\
             [[jwt]]\nissuer = \"https://idp.test\"\naudiences = [\"api\"]\nalgorithms = [\"ES256\", \"EdDSA\"]\njwks_url = \"{url}\"\njwks_ca_file = \"idp-ca.pem\"\n\
             [[jwt]]\nissuer = \"https://untrusted.test\"\naudiences = [\"api\"]\nalgorithms = [\"ES256\"]\njwks_url = \"{url}\"\n\
             [[upstream]]\nname = \"api\"\ntargets = [\"{echo}\"]\n\
             [[route]]\npath = \"/api\"\nupstream = \"api\"\nbearer = true\n",
            addrs.http, addrs.admin
        ),
    );
    let g = start_gateway(&dir, &cfg, &addrs, false);
    let h = g.http;
    let call = |t: &str| get(h, "/api/x", &[("Authorization", &bearer(t))]);

    let t1 = sign(&k1, &claims("https://idp.test", "carol"));
    let r = call(&t1);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.upstream_header("x-forwarded-user"), vec!["carol"]);
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    // Cached: more requests do not fetch again.
    for _ in 0..5 {
        assert_eq!(call(&t1).status, 200);
    }
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);

    // The issuer rotates: k2 replaces k1. Past the refetch cooldown, a token with the new
    // kid makes the gateway fetch once and accept it; the retired key is then refused.
    *server.body.lock().unwrap() = jwks(&[&k2]);
    std::thread::sleep(Duration::from_millis(2100));
    let t2 = sign(&k2, &claims("https://idp.test", "carol"));
    let r = call(&t2);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
    assert_eq!(call(&t1).status, 401);
    // Made-up key ids inside the cooldown cause no fetch storm.
    for i in 0..10 {
        let mut hd = Header::new(Algorithm::EdDSA);
        hd.kid = Some(format!("made-up-{i}"));
        let t = jsonwebtoken::encode(&hd, &claims("https://idp.test", "carol"), &k2.enc).unwrap();
        assert_eq!(call(&t).status, 401);
    }
    assert!(server.hits.load(Ordering::SeqCst) <= 3);

    // The same server, without its CA configured: the TLS handshake fails, so no key and
    // no access (the certificate is really checked).
    let t = sign(&k1, &claims("https://untrusted.test", "carol"));
    assert_eq!(call(&t).status, 401);
    assert!(eventually(Duration::from_secs(5), || g
        .proc
        .log_text()
        .contains("JWKS fetch failed")));
}

#[test]
fn unsafe_jwt_settings_are_refused_at_load() {
    let dir = TempDir::new("jwt-config");
    dir.write("short.secret", "too-short\n");
    dir.write("ok.secret", HS_SECRET);
    dir.write("k.jwks", &jwks(&[&ec_key("a")]));
    let base = "[listen]\nhttp = [\"127.0.0.1:1\"]\n[[upstream]]\nname = \"a\"\ntargets = [\"127.0.0.1:2\"]\n";
    let cases = [
        (
            "algorithms = [\"none\"]\njwks_file = \"k.jwks\"",
            "never accepted",
        ),
        (
            "algorithms = [\"HS256\"]\njwks_file = \"k.jwks\"",
            "HS256 needs secret_file",
        ),
        (
            "algorithms = [\"HS256\", \"RS256\"]\nsecret_file = \"ok.secret\"",
            "only algorithms = [\"HS256\"]",
        ),
        (
            "algorithms = [\"HS256\"]\nsecret_file = \"short.secret\"",
            "at least 32 bytes",
        ),
        ("algorithms = [\"ES256\"]", "exactly one of"),
        (
            "algorithms = [\"ES256\"]\njwks_url = \"http://127.0.0.1/jwks\"",
            "https://",
        ),
        (
            "algorithms = [\"RS256\"]\njwks_file = \"k.jwks\"",
            "no key for the listed algorithms",
        ),
        (
            "algorithms = [\"PS256\"]\njwks_file = \"k.jwks\"",
            "unsupported algorithm",
        ),
    ];
    for (jwt, want) in cases {
        let cfg = dir.write(
            "gateway.toml",
            &format!("{base}[[jwt]]\nissuer = \"https://i\"\naudiences = [\"api\"]\n{jwt}\n[[route]]\npath = \"/\"\nupstream = \"a\"\naccess = \"public\"\n"),
        );
        let out = Command::new(BIN)
            .args(["check", "-c", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{jwt}: {err}");
        assert!(err.contains(want), "{jwt}: {err}");
        assert!(err.contains("gateway.toml:"), "{err}");
    }
    let cfg = dir.write(
        "gateway.toml",
        &format!(
            "{base}[[route]]\npath = \"/\"\nupstream = \"a\"\naccess = \"public\"\nbearer = true\n"
        ),
    );
    let out = Command::new(BIN)
        .args(["check", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs at least one [[jwt]]"));
}
