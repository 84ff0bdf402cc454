//! Validation of `[[oidc]]` sections into `auth::oidc::Provider`s. Offline: nothing here
//! contacts a provider (discovery happens at the first login).

use super::file::OidcSection;
use super::{ConfigError, Source};
use crate::auth::oidc::{Provider, ProviderSettings, Providers};
use crate::secret::Secret;
use std::sync::Arc;
use std::time::Duration;

/// Names `access_token_header` may not take: request framing, the gateway's own
/// credentials and forwarding headers.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "cookie",
    "authorization",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
    "forwarded",
    "x-real-ip",
];

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

pub(crate) fn providers(
    src: &Source<'_>,
    sections: Vec<OidcSection>,
    has_sessions: bool,
    cookie_sessions: bool,
) -> Result<Option<Arc<Providers>>, ConfigError> {
    if sections.is_empty() {
        return Ok(None);
    }
    let mut list: Vec<Arc<Provider>> = Vec::new();
    for o in sections {
        let name = o.name.get_ref().clone();
        if !valid_name(&name) {
            return Err(src.at(
                o.name.span(),
                "name must be 1-32 characters of [a-z0-9-] (it appears in URLs)",
            ));
        }
        if list.iter().any(|p| p.settings.name == name) {
            return Err(src.at(o.name.span(), "another [[oidc]] has the same name"));
        }
        if !has_sessions {
            return Err(src.at(
                o.name.span(),
                "[[oidc]] logs people into sessions: add a [session] section",
            ));
        }
        let issuer = o.issuer.get_ref().clone();
        let parsed = reqwest::Url::parse(&issuer)
            .map_err(|e| src.at(o.issuer.span(), format!("issuer: {e}")))?;
        if parsed.scheme() != "https" || parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(src.at(o.issuer.span(), "issuer must be an https:// URL without query or fragment (OpenID Connect Discovery §2)"));
        }
        let client_id = o.client_id.get_ref().clone();
        if client_id.is_empty() {
            return Err(src.at(o.client_id.span(), "client_id must not be empty"));
        }
        let scopes = o.scopes.get_ref().clone();
        if !scopes.iter().any(|s| s == "openid") {
            return Err(src.at(o.scopes.span(), "scopes must include \"openid\""));
        }
        if scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
            return Err(src.at(o.scopes.span(), "scopes are single words"));
        }
        let read = |p: &toml::Spanned<String>| {
            let path = src.resolve(p.get_ref());
            std::fs::read(&path)
                .map_err(|e| src.at(p.span(), format!("cannot read {}: {e}", path.display())))
        };
        let client_secret = match &o.client_secret_file {
            None => None,
            Some(p) => {
                let raw = read(p)?;
                let text = String::from_utf8(raw).map_err(|_| src.at(p.span(), "not UTF-8"))?;
                let secret = text.lines().next().unwrap_or("").trim().to_string();
                if secret.is_empty() {
                    return Err(src.at(p.span(), "client secret file is empty"));
                }
                Some(Secret::new(secret.into_bytes()))
            }
        };
        let ca_pem = match &o.ca_file {
            None => None,
            Some(p) => Some(read(p)?),
        };
        let mut domains = Vec::new();
        for d in o.allowed_email_domains.get_ref() {
            let d = d.trim().to_ascii_lowercase();
            if d.is_empty() || d.contains('@') || d.contains(' ') {
                return Err(src.at(
                    o.allowed_email_domains.span(),
                    format!("{d:?} is not a domain"),
                ));
            }
            domains.push(d);
        }
        let access_token_header = match o.access_token_header.get_ref().as_str() {
            "" => None,
            h => {
                let at = |m: &str| src.at(o.access_token_header.span(), m.to_string());
                let name = http::HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| at(&format!("{h:?} is not a valid header name")))?;
                if RESERVED_HEADERS.contains(&name.as_str()) {
                    return Err(at(&format!(
                        "{h} is a header the gateway or HTTP itself relies on; pick another, e.g. X-Forwarded-Access-Token"
                    )));
                }
                if cookie_sessions {
                    return Err(at("store = \"cookie\" keeps no provider tokens, so there is no access token to forward; use a server-side store"));
                }
                Some(name)
            }
        };
        let timeout = o.timeout.get_ref().0;
        if timeout < Duration::from_millis(100) || timeout > Duration::from_secs(60) {
            return Err(src.at(o.timeout.span(), "timeout must be between 100ms and 60s"));
        }
        for (what, claim) in [
            ("user_claim", &o.user_claim),
            ("email_claim", &o.email_claim),
            ("groups_claim", &o.groups_claim),
        ] {
            if claim.is_empty() {
                return Err(src.at(o.name.span(), format!("{what} must not be empty")));
            }
        }
        let settings = ProviderSettings {
            display_name: o.display_name.clone().unwrap_or_else(|| name.clone()),
            name,
            issuer,
            client_id,
            client_secret,
            scopes,
            ca_pem,
            user_claim: o.user_claim,
            email_claim: o.email_claim,
            groups_claim: o.groups_claim,
            allowed_email_domains: domains,
            timeout,
            // Cookie sessions keep no tokens: nothing to renew.
            refresh: *o.refresh.get_ref() && !cookie_sessions,
            access_token_header,
            provider_logout: *o.provider_logout.get_ref(),
        };
        let p = Provider::new(settings).map_err(|e| src.at(o.issuer.span(), e))?;
        list.push(Arc::new(p));
    }
    Ok(Some(Arc::new(Providers::new(list))))
}
