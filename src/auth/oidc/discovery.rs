//! OpenID Provider discovery (OpenID Connect Discovery 1.0 §4): the metadata document at
//! `{issuer}/.well-known/openid-configuration`, over HTTPS only, bounded in time and size.

use super::{OidcError, ProviderSettings};
use crate::tokens::jwt::jwks::Remote;
use serde::Deserialize;
use std::time::Duration;

const MAX_BODY: usize = 1024 * 1024;
/// The provider's keys are re-read this often, and on a `kid` they do not hold.
const JWKS_REFRESH: Duration = Duration::from_secs(3600);

/// The parts of the metadata the gateway uses.
#[derive(Debug, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// RFC 9207: the provider adds `iss` to its authorization responses.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
}

/// What discovery found: the metadata and the provider's key set.
#[derive(Debug)]
pub struct Discovered {
    pub meta: Metadata,
    pub jwks: Remote,
}

pub(super) fn http_client(
    ca_pem: Option<&[u8]>,
    timeout: Duration,
) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .https_only(true)
        // A provider that redirects its token endpoint is misconfigured or hijacked.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        // Calls are per login, from whichever pingora runtime: no pooled connection may
        // outlive the runtime that made it.
        .pool_max_idle_per_host(0)
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca_pem {
        let certs =
            reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("ca_file: {e}"))?;
        if certs.is_empty() {
            return Err("ca_file holds no certificate".into());
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| format!("HTTPS client: {e}"))
}

/// Read a whole answer, at most `MAX_BODY` bytes. Network failures are `Down`.
pub(super) async fn body(resp: reqwest::Response) -> Result<(u16, Vec<u8>), OidcError> {
    let status = resp.status().as_u16();
    let mut resp = resp;
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| OidcError::Down(format!("reading the answer: {e}")))?
    {
        if out.len() + chunk.len() > MAX_BODY {
            return Err(OidcError::BadAnswer("answer larger than 1 MiB".into()));
        }
        out.extend_from_slice(&chunk);
    }
    Ok((status, out))
}

pub(super) fn down(e: reqwest::Error) -> OidcError {
    OidcError::Down(if e.is_timeout() {
        "timed out".into()
    } else {
        // reqwest's message names the URL and the cause, never a secret we sent.
        e.without_url().to_string()
    })
}

pub(super) async fn discover(
    s: &ProviderSettings,
    client: &reqwest::Client,
) -> Result<Discovered, OidcError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        s.issuer.trim_end_matches('/')
    );
    let resp = client
        .get(&url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(down)?;
    let (status, text) = body(resp).await?;
    if status != 200 {
        return Err(OidcError::BadAnswer(format!(
            "discovery answered HTTP {status}"
        )));
    }
    let meta: Metadata = serde_json::from_slice(&text)
        .map_err(|e| OidcError::BadAnswer(format!("discovery document: {e}")))?;
    // §4.3: the issuer in the document must be exactly the one we asked about.
    if meta.issuer != s.issuer {
        return Err(OidcError::BadAnswer(format!(
            "discovery document names issuer {:?}, not {:?}",
            meta.issuer, s.issuer
        )));
    }
    for (what, u) in [
        ("authorization_endpoint", Some(&meta.authorization_endpoint)),
        ("token_endpoint", Some(&meta.token_endpoint)),
        ("jwks_uri", Some(&meta.jwks_uri)),
        ("userinfo_endpoint", meta.userinfo_endpoint.as_ref()),
        ("end_session_endpoint", meta.end_session_endpoint.as_ref()),
    ] {
        if let Some(u) = u {
            if !u.starts_with("https://") || reqwest::Url::parse(u).is_err() {
                return Err(OidcError::BadAnswer(format!("{what} is not an https URL")));
            }
        }
    }
    if !meta.code_challenge_methods_supported.is_empty()
        && !meta
            .code_challenge_methods_supported
            .iter()
            .any(|m| m == "S256")
    {
        return Err(OidcError::BadAnswer(
            "the provider does not support PKCE S256".into(),
        ));
    }
    let jwks = Remote::new(&meta.jwks_uri, s.ca_pem.as_deref(), JWKS_REFRESH)
        .map_err(OidcError::BadAnswer)?;
    Ok(Discovered { meta, jwks })
}
