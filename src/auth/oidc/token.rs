//! The back channel of a login: redeeming the code at the token endpoint (with the PKCE
//! verifier and client authentication) and, when the ID token lacks the configured claims,
//! asking the userinfo endpoint (whose `sub` must be the ID token's, Core §5.3.2).

use super::discovery::{body, down};
use super::id_token::Claims;
use super::{Discovered, OidcError, Provider};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct TokenResponse {
    pub id_token: Option<String>,
    pub access_token: Option<String>,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Seconds; some providers send it as a string.
    #[serde(default)]
    pub expires_in: Option<serde_json::Value>,
}

impl TokenResponse {
    /// The access token's lifetime, when the provider said (`expires_in`, RFC 6749 §5.1).
    pub fn lifetime_ms(&self) -> Option<u64> {
        let s = match self.expires_in.as_ref()? {
            serde_json::Value::Number(n) => n.as_u64()?,
            serde_json::Value::String(s) => s.parse().ok()?,
            _ => return None,
        };
        Some(s.min(366 * 86_400) * 1000)
    }
}

#[derive(Deserialize)]
struct TokenError {
    error: String,
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// RFC 6749 §2.3.1: client_secret_basic, with both parts form-encoded first.
fn basic(id: &str, secret: &[u8]) -> String {
    let enc = |b: &[u8]| form_urlencoded::byte_serialize(b).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc(id.as_bytes()), enc(secret)))
    )
}

pub async fn redeem(
    p: &Provider,
    d: &Discovered,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Result<TokenResponse, OidcError> {
    let t = call(
        p,
        d,
        vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ],
        "this sign-in was already completed or has expired; start again",
    )
    .await?;
    if t.id_token.is_none() {
        return Err(OidcError::BadAnswer(
            "the token response has no id_token".into(),
        ));
    }
    Ok(t)
}

/// RFC 6749 §6: new tokens for a refresh token. `BadRequest` means the provider refused it
/// (`invalid_grant`: revoked, expired, or already rotated away): the session must end.
pub async fn refresh(
    p: &Provider,
    d: &Discovered,
    refresh_token: &str,
) -> Result<TokenResponse, OidcError> {
    call(
        p,
        d,
        vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
        "the provider no longer accepts this session's refresh token",
    )
    .await
}

/// A token endpoint request with client authentication; `invalid_grant` becomes
/// `BadRequest(refused)`.
async fn call(
    p: &Provider,
    d: &Discovered,
    mut pairs: Vec<(&str, &str)>,
    refused: &str,
) -> Result<TokenResponse, OidcError> {
    let s = &p.settings;
    if s.client_secret.is_none() {
        pairs.push(("client_id", &s.client_id));
    }
    let mut req = p
        .http()
        .post(&d.meta.token_endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(form(&pairs));
    if let Some(secret) = &s.client_secret {
        req = req.header("authorization", basic(&s.client_id, secret.expose()));
    }
    let (status, text) = body(req.send().await.map_err(down)?).await?;
    if status == 400 {
        // invalid_grant: the code was used already, expired, or not ours. The provider's
        // error word is safe to show; its description could echo input, so it is not.
        let word = serde_json::from_slice::<TokenError>(&text)
            .map(|e| e.error)
            .unwrap_or_else(|_| "unknown".into());
        return Err(if word == "invalid_grant" {
            OidcError::BadRequest(refused.into())
        } else {
            OidcError::BadAnswer(format!("the token endpoint refused the code: {word}"))
        });
    }
    if status != 200 {
        return Err(OidcError::BadAnswer(format!(
            "the token endpoint answered HTTP {status}"
        )));
    }
    let t: TokenResponse = serde_json::from_slice(&text)
        .map_err(|_| OidcError::BadAnswer("the token response is not JSON".into()))?;
    if t.token_type
        .as_deref()
        .is_some_and(|tt| !tt.eq_ignore_ascii_case("bearer"))
    {
        return Err(OidcError::BadAnswer("token_type is not Bearer".into()));
    }
    Ok(t)
}

/// Fill in the claims the ID token lacks from the userinfo endpoint.
pub async fn userinfo(
    p: &Provider,
    d: &Discovered,
    access_token: &str,
    claims: &mut Claims,
) -> Result<(), OidcError> {
    let Some(url) = &d.meta.userinfo_endpoint else {
        return Ok(());
    };
    let resp = p
        .http()
        .get(url)
        .header("authorization", format!("Bearer {access_token}"))
        .header("accept", "application/json")
        .send()
        .await
        .map_err(down)?;
    let (status, text) = body(resp).await?;
    if status != 200 {
        return Err(OidcError::BadAnswer(format!(
            "userinfo answered HTTP {status}"
        )));
    }
    let info: Claims = serde_json::from_slice(&text)
        .map_err(|_| OidcError::BadAnswer("userinfo is not a JSON object".into()))?;
    if info.get("sub") != claims.get("sub") {
        return Err(OidcError::BadAnswer(
            "userinfo names another subject".into(),
        ));
    }
    for (k, v) in info {
        // The signed ID token wins where both speak.
        claims.entry(k).or_insert(v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_secret_basic_encodes_both_parts() {
        // RFC 6749 §2.3.1 requires form-encoding before base64.
        assert_eq!(
            super::basic("a b", b"p:w"),
            format!(
                "Basic {}",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "a+b:p%3Aw")
            )
        );
    }
}
