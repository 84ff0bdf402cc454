//! Upstream-issued sessions (`issues_sessions = true`): an app that keeps its own login form
//! answers with `Portcullis-Login: {"user": …, "email": …, "groups": […]}` to start a session
//! or `Portcullis-Logout: 1` to end one. The gateway acts on them only for routes that
//! allow it, and always removes them before the client sees the response.

use crate::identity::{folds_to, Identity};
use pingora::http::ResponseHeader;

/// What an upstream asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Instruction {
    Login(Identity),
    Logout,
    /// Present but unusable (malformed JSON, bad identity, repeated or conflicting headers).
    Invalid(String),
}

/// Remove both headers, in any spelling, and return what they asked for.
pub fn take(resp: &mut ResponseHeader) -> Option<Instruction> {
    const LOGIN: &str = "portcullis-login";
    const LOGOUT: &str = "portcullis-logout";
    // Nearly every response has neither: find out without allocating.
    if !resp
        .headers
        .keys()
        .any(|n| folds_to(n.as_str(), LOGIN) || folds_to(n.as_str(), LOGOUT))
    {
        return None;
    }
    let mut logins = Vec::new();
    let mut logouts = 0;
    let names: Vec<http::HeaderName> = resp.headers.keys().cloned().collect();
    for name in names {
        let login = folds_to(name.as_str(), LOGIN);
        if !login && !folds_to(name.as_str(), LOGOUT) {
            continue;
        }
        let values: Vec<Vec<u8>> = resp
            .headers
            .get_all(&name)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect();
        resp.remove_header(&name);
        if login {
            logins.extend(values);
        } else {
            logouts += values.len();
        }
    }
    match (logins.len(), logouts) {
        (0, 0) => None,
        (0, _) => Some(Instruction::Logout),
        (1, 0) => Some(parse_login(&logins[0])),
        _ => Some(Instruction::Invalid(
            "more than one Portcullis-Login/-Logout header".into(),
        )),
    }
}

fn parse_login(value: &[u8]) -> Instruction {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Login {
        user: String,
        #[serde(default)]
        email: String,
        #[serde(default)]
        groups: Vec<String>,
    }
    let login: Login = match serde_json::from_slice(value) {
        Ok(l) => l,
        Err(e) => {
            return Instruction::Invalid(format!("Portcullis-Login is not the expected JSON: {e}"))
        }
    };
    let id = Identity {
        user: login.user,
        email: login.email,
        groups: login.groups,
    };
    match crate::identity::validate_identity(&id) {
        Ok(()) => Instruction::Login(id),
        Err(e) => Instruction::Invalid(format!("Portcullis-Login: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn instructions_are_parsed_and_always_removed() {
        let mut r = resp(&[
            ("Portcullis-Login", r#"{"user":"alice","groups":["a"]}"#),
            ("x", "1"),
        ]);
        assert_eq!(
            take(&mut r),
            Some(Instruction::Login(Identity {
                user: "alice".into(),
                email: String::new(),
                groups: vec!["a".into()]
            }))
        );
        assert_eq!(r.headers.len(), 1);
        let mut r = resp(&[("portcullis_logout", "1")]);
        assert_eq!(take(&mut r), Some(Instruction::Logout));
        assert!(r.headers.is_empty());
        for bad in [
            r#"{"user":""}"#,
            "not json",
            r#"{"user":"a","admin":true}"#,
            r#"{"user":"a,b"}"#,
        ] {
            let mut r = resp(&[("Portcullis-Login", bad)]);
            assert!(
                matches!(take(&mut r), Some(Instruction::Invalid(_))),
                "{bad}"
            );
            assert!(r.headers.is_empty());
        }
        let mut r = resp(&[
            ("Portcullis-Login", r#"{"user":"a"}"#),
            ("Portcullis.Logout", "1"),
        ]);
        assert!(matches!(take(&mut r), Some(Instruction::Invalid(_))));
        assert_eq!(take(&mut resp(&[("x", "1")])), None);
    }
}
