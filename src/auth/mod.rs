//! Login, logout and the identity endpoints under `[auth] prefix`.

pub mod endpoints;
pub mod mfa;
pub mod oidc;
pub mod page;
pub mod params;
pub mod ratelimit;
pub mod redirect;
pub mod users;

/// Where a session that must re-authenticate goes (step-up, or changing a factor): its
/// provider again when it came from one, else the login page. `rd` is already
/// URL-encoded; `mfa` asks the password login for a second factor even when the user's
/// group does not require one.
pub fn reauth_url(ctx: &crate::request::RequestCtx, provider: &str, rd: &str, mfa: bool) -> String {
    let prefix = &ctx.config.auth.prefix;
    let known = ctx
        .config
        .oidc
        .as_ref()
        .is_some_and(|o| o.get(provider).is_some());
    if known {
        format!("{prefix}/oidc/{provider}/start?rd={rd}&step_up=1")
    } else {
        let kind = if mfa { "mfa" } else { "1" };
        format!("{prefix}/login?rd={rd}&step_up={kind}")
    }
}
