//! Signed identity assertions, verified by an independent implementation (PyJWT).

mod common;
use common::*;
use std::process::Command;

fn python_with_pyjwt() -> &'static str {
    let ok = Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "python3 with PyJWT is required: python3 -m pip install 'pyjwt[crypto]' (scripts/test.sh does it)");
    "python3"
}

fn gen_assertion_key() -> String {
    let out = Command::new(BIN)
        .args(["gen-key", "--assertion"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn upstreams_can_verify_the_identity_assertion_with_pyjwt() {
    let py = python_with_pyjwt();
    let dir = TempDir::new("assertion");
    let (_echo, echo) = echo("app", &dir);
    let addrs = Addrs::new();
    dir.write("session.keys", &gen_key());
    // Two keys: the first signs, both are published (rotation).
    dir.write(
        "assertion.pem",
        &(gen_assertion_key() + &gen_assertion_key()),
    );
    dir.write(
        "users.toml",
        &format!("[[user]]\nname = \"alice\"\npassword = \"{}\"\nemail = \"alice@example.com\"\ngroups = [\"admin\"]\n", hash_password("pw")),
    );
    let cfg = dir.write(
        "gateway.toml",
        &format!(
            "[listen]\nhttp = [\"{}\"]\n[admin]\nlisten = \"{}\"\n[session]\nkeys_file = \"session.keys\"\nsecure = false\n\
             [auth]\nusers_file = \"users.toml\"\n[identity]\nassertion = \"X-Portcullis-Assertion\"\nassertion_key_file = \"assertion.pem\"\n\
             [[upstream]]\nname = \"app\"\ntargets = [\"{echo}\"]\n[[route]]\npath = \"/\"\nupstream = \"app\"\n\
             [[route]]\npath = \"/public\"\nupstream = \"app\"\naccess = \"public\"\n",
            addrs.http, addrs.admin
        ),
    );
    let g = start_gateway(&dir, &cfg, &addrs, false);
    let h = g.http;

    let jwks = get(h, "/.well-known/portcullis/jwks.json", &[]);
    assert_eq!(jwks.status, 200);
    assert_eq!(jwks.json()["keys"].as_array().unwrap().len(), 2);
    let jwks_file = dir.write("jwks.json", &jwks.body);

    let r = login(h, "alice", "pw", "/", &[]);
    let cookie = format!("session={}", r.set_cookie_value("session").unwrap());
    let host = "app.example.com";
    let r = get(
        h,
        "/x",
        &[
            ("Cookie", &cookie),
            ("Host", host),
            ("X-Portcullis-Assertion", "forged.by.client"),
            ("X_Portcullis_Assertion", "forged"),
        ],
    );
    let tokens = r.upstream_header("x-portcullis-assertion");
    assert_eq!(tokens.len(), 1, "{:?}", r.upstream_headers());
    assert_ne!(tokens[0], "forged.by.client");
    let verify = |jwks: &std::path::Path, token: &str, aud: &str| {
        Command::new(py)
            .args([
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/support/verify_assertion.py"
                ),
                jwks.to_str().unwrap(),
                token,
                aud,
                &format!("http://{host}"),
            ])
            .output()
            .unwrap()
    };
    let out = verify(&jwks_file, &tokens[0], host);
    assert!(
        out.status.success(),
        "PyJWT refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["groups"], serde_json::json!(["admin"]));
    let life = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(life, 60, "short-lived");

    // The wrong audience, or a JWKS without the signing key, does not verify.
    assert!(!verify(&jwks_file, &tokens[0], "other.example.com")
        .status
        .success());
    let mut only_second = jwks.json();
    only_second["keys"].as_array_mut().unwrap().remove(0);
    let second_file = dir.write("jwks-second.json", &only_second.to_string());
    assert!(
        !verify(&second_file, &tokens[0], host).status.success(),
        "the first key signs"
    );
    // A tampered token does not verify.
    let mut bad = tokens[0].clone().into_bytes();
    let i = bad.len() / 2;
    bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
    assert!(!verify(&jwks_file, &String::from_utf8(bad).unwrap(), host)
        .status
        .success());

    // No identity, no assertion; and a client-sent one never passes.
    let r = get(
        h,
        "/public",
        &[("X-Portcullis-Assertion", "forged.by.client")],
    );
    assert!(r.upstream_header("x-portcullis-assertion").is_empty());
}
