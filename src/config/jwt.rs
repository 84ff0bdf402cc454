//! Validation of `[[jwt]]` sections into `jwt::Issuer`s.

use super::file::JwtSection;
use super::{ConfigError, Source};
use crate::tokens::jwt::jwks::{self, KeySet, Remote};
use crate::tokens::jwt::jws::{Alg, Key};
use crate::tokens::jwt::{Issuer, Issuers, KeySource};
use std::sync::Arc;
use std::time::Duration;

/// HS256 secrets shorter than the hash output are refused (RFC 7518 §3.2).
const MIN_SECRET: usize = 32;
const MAX_LEEWAY: Duration = Duration::from_secs(300);

pub(crate) fn issuers(src: &Source<'_>, sections: Vec<JwtSection>) -> Result<Issuers, ConfigError> {
    let mut list: Vec<Issuer> = Vec::new();
    for j in sections {
        let issuer = j.issuer.get_ref().clone();
        if issuer.is_empty() {
            return Err(src.at(j.issuer.span(), "issuer must not be empty"));
        }
        if list.iter().any(|i| i.issuer == issuer) {
            return Err(src.at(j.issuer.span(), "another [[jwt]] has the same issuer"));
        }
        if j.audiences.get_ref().is_empty() || j.audiences.get_ref().iter().any(|a| a.is_empty()) {
            return Err(src.at(
                j.audiences.span(),
                "audiences must list at least one non-empty audience: a token for another service must not be accepted here",
            ));
        }
        let mut algorithms = Vec::new();
        for a in j.algorithms.get_ref() {
            let alg = Alg::parse(a.get_ref()).ok_or_else(|| {
                src.at(
                    a.span(),
                    if a.get_ref().eq_ignore_ascii_case("none") {
                        "\"none\" is never accepted: unsigned tokens prove nothing".to_string()
                    } else {
                        format!(
                            "unsupported algorithm {:?}; choose from RS256, ES256, EdDSA, HS256",
                            a.get_ref()
                        )
                    },
                )
            })?;
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
        if algorithms.is_empty() {
            return Err(src.at(j.algorithms.span(), "algorithms must not be empty"));
        }
        let leeway = j.leeway.get_ref().0;
        if leeway > MAX_LEEWAY {
            return Err(src.at(j.leeway.span(), "leeway is at most 5m"));
        }
        if algorithms.contains(&Alg::Hs256) && j.secret_file.is_none() {
            return Err(src.at(
                j.algorithms.span(),
                "HS256 needs secret_file (a JWKS holds public keys)",
            ));
        }
        let keys = match (&j.jwks_file, &j.jwks_url, &j.secret_file) {
            (Some(f), None, None) => {
                let path = src.resolve(f.get_ref());
                let text = std::fs::read(&path).map_err(|e| {
                    src.at(f.span(), format!("cannot read {}: {e}", path.display()))
                })?;
                let (set, notes) = jwks::parse(&text)
                    .map_err(|e| src.at(f.span(), format!("{}: {e}", path.display())))?;
                for n in notes {
                    tracing::warn!(file = %path.display(), "JWKS {n}");
                }
                if !set.keys.iter().any(|k| algorithms.contains(&k.key.alg())) {
                    return Err(src.at(
                        f.span(),
                        format!("{} has no key for the listed algorithms", path.display()),
                    ));
                }
                KeySource::Static(Arc::new(set))
            }
            (None, Some(u), None) => {
                let ca = match &j.jwks_ca_file {
                    None => None,
                    Some(c) => {
                        let path = src.resolve(c.get_ref());
                        Some(std::fs::read(&path).map_err(|e| {
                            src.at(c.span(), format!("cannot read {}: {e}", path.display()))
                        })?)
                    }
                };
                let refresh = j.jwks_refresh.0.max(jwks::MIN_REFETCH);
                KeySource::Remote(
                    Remote::new(u.get_ref(), ca.as_deref(), refresh)
                        .map_err(|e| src.at(u.span(), e))?,
                )
            }
            (None, None, Some(s)) => {
                // One secret, one algorithm: mixing it with public-key algorithms is how
                // algorithm-confusion attacks start.
                if algorithms != [Alg::Hs256] {
                    return Err(src.at(
                        j.algorithms.span(),
                        "secret_file allows only algorithms = [\"HS256\"]",
                    ));
                }
                let path = src.resolve(s.get_ref());
                let raw = std::fs::read(&path).map_err(|e| {
                    src.at(s.span(), format!("cannot read {}: {e}", path.display()))
                })?;
                // A trailing newline from `echo` or an editor is not part of the secret.
                let mut secret = raw.as_slice();
                while let Some((b'\n' | b'\r', rest)) = secret.split_last() {
                    secret = rest;
                }
                if secret.len() < MIN_SECRET {
                    return Err(src.at(
                        s.span(),
                        format!(
                            "{}: an HS256 secret must be at least {MIN_SECRET} bytes",
                            path.display()
                        ),
                    ));
                }
                KeySource::Static(Arc::new(KeySet {
                    keys: vec![jwks::Jwk {
                        kid: None,
                        key: Key::hmac(secret),
                    }],
                }))
            }
            _ => {
                return Err(src.at(
                    j.issuer.span(),
                    "each [[jwt]] needs exactly one of jwks_file, jwks_url or secret_file",
                ))
            }
        };
        if j.jwks_ca_file.is_some() && j.jwks_url.is_none() {
            return Err(src.at(j.issuer.span(), "jwks_ca_file only applies to jwks_url"));
        }
        list.push(Issuer {
            issuer,
            audiences: j.audiences.into_inner(),
            algorithms,
            keys,
            user_claim: j.user_claim,
            email_claim: j.email_claim,
            groups_claim: j.groups_claim,
            leeway: leeway.as_secs(),
        });
    }
    Ok(Issuers { list })
}
