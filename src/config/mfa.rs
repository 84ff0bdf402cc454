//! Validation of `[mfa]` into `auth::mfa::MfaSettings`.

use super::file::MfaSection;
use super::{ConfigError, Source};
use crate::auth::mfa::{FactorStore, MfaSettings};
use std::sync::Arc;

pub(crate) fn settings(
    src: &Source<'_>,
    section: Option<toml::Spanned<MfaSection>>,
    users_file: bool,
    redis_store: bool,
) -> Result<Option<Arc<MfaSettings>>, ConfigError> {
    let Some(m) = section else {
        return Ok(None);
    };
    let span = m.span();
    let m = m.into_inner();
    if !users_file {
        return Err(src.at(
            span,
            "[mfa] adds second factors to users_file logins: set [auth] users_file (people of an [[oidc]] provider use the provider's factors)",
        ));
    }
    let (totp, passkeys) = (*m.totp.get_ref(), *m.passkeys.get_ref());
    if !totp && !passkeys {
        return Err(src.at(
            span,
            "totp = false and passkeys = false leave no second factor to use",
        ));
    }
    if !totp && !m.required_groups.is_empty() {
        // A member without a factor enrolls an authenticator app inside the login.
        return Err(src.at(
            m.totp.span(),
            "required_groups needs totp = true: members without a factor add an authenticator app while signing in",
        ));
    }
    for g in &m.required_groups {
        if g.is_empty() || g.contains(',') || g.chars().any(|c| c.is_control()) {
            return Err(src.at(span, format!("required_groups: {g:?} is not a group name")));
        }
    }
    let store = if redis_store {
        FactorStore::Redis
    } else {
        let p = m.credentials_file.get_ref();
        if p.is_empty() {
            return Err(src.at(
                m.credentials_file.span(),
                "credentials_file must not be empty",
            ));
        }
        FactorStore::File(src.resolve(p), Default::default())
    };
    Ok(Some(Arc::new(MfaSettings {
        totp,
        passkeys,
        required_groups: m.required_groups,
        store,
    })))
}
