//! TOTP (RFC 6238: HMAC-SHA-1, 6 digits, 30 s steps, ±1 step of skew) through `totp-rs`;
//! each code is accepted once per user (the step is claimed in the session store, so
//! across instances with Redis or memcached).

use crate::session::store::Store;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::time::Duration;

/// A new 160-bit secret (RFC 4226 §4 recommends 160), base64url.
pub fn new_secret(rng: &dyn ring::rand::SecureRandom) -> Option<String> {
    let mut b = [0u8; 20];
    rng.fill(&mut b).ok()?;
    Some(URL_SAFE_NO_PAD.encode(b))
}

fn totp(secret: &str, account: &str, issuer: &str) -> Option<totp_rs::Totp> {
    let raw = URL_SAFE_NO_PAD.decode(secret).ok()?;
    totp_rs::Builder::new()
        .with_secret(raw)
        .with_account_name(account.replace(':', "_"))
        .with_issuer(Some(issuer.replace(':', "_")))
        .build()
        .ok()
}

/// The `otpauth://totp/…` URI an authenticator app scans.
pub fn uri(secret: &str, account: &str, issuer: &str) -> Option<String> {
    totp(secret, account, issuer)?.to_url().ok()
}

/// The URI as an inline SVG QR code (no script, no image request: the page's CSP allows
/// neither).
pub fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(220, 220)
        .build();
    // Drop the XML declaration: the SVG goes inside an HTML page.
    Some(match svg.find("<svg") {
        Some(i) => svg[i..].to_string(),
        None => svg,
    })
}

/// The time step a code matches at `now_s` (±1 step), if any.
pub fn matching_step(secret: &str, code: &str, now_s: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    totp(secret, "x", "x")?.check(code, now_s)
}

/// Verify `code` for `user` and spend it: `Ok(true)` only for a valid code of a step not
/// used before by this user.
pub async fn verify_once(
    store: &Store,
    user: &str,
    secret: &str,
    code: &str,
    now_s: u64,
) -> Result<bool, crate::session::store::StoreError> {
    let Some(step) = matching_step(secret, code, now_s) else {
        return Ok(false);
    };
    let who = ring::digest::digest(&ring::digest::SHA256, user.as_bytes());
    let name = format!("totp:{}:{step}", URL_SAFE_NO_PAD.encode(who.as_ref()));
    // Three steps cover the skew window the code was accepted in.
    store.claim(&name, Duration::from_secs(120)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_appendix_b_sha1_vectors() {
        // Secret "12345678901234567890", 8-digit codes in the RFC; the last 6 digits are
        // the 6-digit codes.
        let secret = URL_SAFE_NO_PAD.encode(b"12345678901234567890");
        for (t, code) in [
            (59u64, "287082"),
            (1111111109, "081804"),
            (1234567890, "005924"),
        ] {
            assert_eq!(matching_step(&secret, code, t), Some(t / 30), "{t}");
        }
        assert_eq!(
            matching_step(&secret, "287082", 89),
            Some(1),
            "one step late"
        );
        assert_eq!(
            matching_step(&secret, "287082", 119),
            None,
            "two steps late"
        );
        assert_eq!(matching_step(&secret, "28708", 59), None);
        assert_eq!(matching_step(&secret, "2870821", 59), None);
        assert_eq!(matching_step(&secret, "28708a", 59), None);
        let u = uri(&secret, "ana", "gw.example").unwrap();
        assert!(u.starts_with("otpauth://totp/gw.example:ana?"), "{u}");
        assert!(u.contains("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"), "{u}");
        assert!(qr_svg(&u).unwrap().starts_with("<svg"));
    }
}
