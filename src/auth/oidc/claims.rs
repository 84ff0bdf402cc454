//! From the provider's claims to the gateway's `Identity`: configurable claim names,
//! dotted paths into nested claims (Keycloak's `realm_access.roles`), the email-domain
//! rule, and the same validity rules as every other identity source.

use super::{OidcError, ProviderSettings};
use crate::identity::{Authentication, Identity};
use serde_json::Value;

pub type Claims = serde_json::Map<String, Value>;

/// A claim by name: the name as it is first (claims such as
/// `https://example.com/roles` contain dots), else a dotted path into nested objects.
pub fn lookup<'a>(claims: &'a Claims, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut v = claims.get(parts.next()?)?;
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    Some(v)
}

fn refused(why: String) -> OidcError {
    OidcError::Refused(why)
}

pub fn identity(s: &ProviderSettings, claims: &Claims) -> Result<Identity, OidcError> {
    let user = match lookup(claims, &s.user_claim) {
        Some(Value::String(u)) => u.clone(),
        _ => {
            return Err(refused(format!(
                "the provider sent no {:?} claim",
                s.user_claim
            )))
        }
    };
    let email = match lookup(claims, &s.email_claim) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(e)) => e.clone(),
        Some(_) => return Err(refused(format!("{:?} is not a string", s.email_claim))),
    };
    let groups = match lookup(claims, &s.groups_claim) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(g)) => vec![g.clone()],
        Some(Value::Array(l)) => l
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| refused(format!("{:?} holds a non-string", s.groups_claim)))?,
        Some(_) => return Err(refused(format!("{:?} is not a list", s.groups_claim))),
    };
    if !s.allowed_email_domains.is_empty() {
        // Only an address the provider has verified says anything about its domain.
        let verified = matches!(claims.get("email_verified"), Some(Value::Bool(true)))
            || matches!(claims.get("email_verified"), Some(Value::String(v)) if v == "true");
        if !verified {
            return Err(refused(
                "the provider has not verified this email address".into(),
            ));
        }
        let domain = email
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        if !s.allowed_email_domains.contains(&domain) {
            return Err(refused("this email domain may not sign in here".into()));
        }
    }
    let id = Identity {
        user,
        email,
        groups,
    };
    crate::identity::validate_identity(&id).map_err(|e| {
        refused(format!(
            "the provider's claims are not a usable identity: {e}"
        ))
    })?;
    Ok(id)
}

/// How the provider says the person authenticated: `sub`, `sid`, `amr`, `acr` and
/// `auth_time` (seconds; the login time when absent or in the future). Values that could
/// not be shown or logged safely are dropped rather than stored.
pub fn authentication(provider: &str, claims: &Claims, now_ms: u64) -> Authentication {
    let text = |k: &str| {
        claims
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| s.len() <= 256 && !s.chars().any(char::is_control))
            .unwrap_or("")
            .to_string()
    };
    let methods = claims
        .get("amr")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(Value::as_str)
                .filter(|m| {
                    m.len() <= 32
                        && m.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                })
                .take(16)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let time_ms = claims
        .get("auth_time")
        .and_then(Value::as_f64)
        .filter(|t| t.is_finite() && *t > 0.0)
        .map(|t| (t * 1000.0) as u64)
        .filter(|t| *t <= now_ms)
        .unwrap_or(now_ms);
    Authentication {
        provider: provider.to_string(),
        subject: text("sub"),
        sid: text("sid"),
        methods,
        acr: text("acr"),
        time_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(domains: &[&str]) -> ProviderSettings {
        ProviderSettings {
            name: "p".into(),
            display_name: "P".into(),
            issuer: "https://idp".into(),
            client_id: "gw".into(),
            client_secret: None,
            scopes: vec!["openid".into()],
            ca_pem: None,
            user_claim: "preferred_username".into(),
            email_claim: "email".into(),
            groups_claim: "realm_access.roles".into(),
            allowed_email_domains: domains.iter().map(|d| d.to_string()).collect(),
            timeout: Duration::from_secs(5),
            refresh: false,
            access_token_header: None,
            provider_logout: false,
        }
    }

    fn claims(v: serde_json::Value) -> Claims {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn nested_claims_domains_and_hostile_values() {
        let c = claims(serde_json::json!({"sub": "1", "preferred_username": "ana",
            "email": "ana@Example.com", "email_verified": true,
            "realm_access": {"roles": ["r1", "r2"]}}));
        let id = identity(&settings(&[]), &c).unwrap();
        assert_eq!(
            (id.user.as_str(), id.groups.clone()),
            ("ana", vec!["r1".to_string(), "r2".into()])
        );
        assert!(identity(&settings(&["example.com"]), &c).is_ok());
        assert!(identity(&settings(&["other.com"]), &c).is_err());
        let mut unverified = c.clone();
        unverified.insert("email_verified".into(), false.into());
        assert!(identity(&settings(&["example.com"]), &unverified).is_err());
        assert!(
            identity(&settings(&[]), &unverified).is_ok(),
            "no domain rule, no check"
        );
        for (k, v) in [
            ("preferred_username", serde_json::json!("a,b")),
            (
                "preferred_username",
                serde_json::json!("a\r\nX-Forwarded-User: root"),
            ),
            ("preferred_username", serde_json::json!("x".repeat(300))),
            ("preferred_username", serde_json::json!(7)),
            ("email", serde_json::json!(["a"])),
        ] {
            let mut bad = c.clone();
            bad.insert(k.into(), v.clone());
            assert!(identity(&settings(&[]), &bad).is_err(), "{k}={v}");
        }
        let mut dotted = c.clone();
        dotted.insert("realm_access.roles".into(), serde_json::json!(["flat"]));
        assert_eq!(
            identity(&settings(&[]), &dotted).unwrap().groups,
            vec!["flat".to_string()]
        );
    }
}
