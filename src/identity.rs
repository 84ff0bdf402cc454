//! The headers the gateway owns: stripped from every client request, then set from verified
//! state only (design.md steps 5 and 9).
//!
//! A header is owned when its name, lower-cased with `_` and `.` read as `-`, equals an owned
//! name: WSGI/CGI servers fold `X_Forwarded_User` and `X-Forwarded-User` to the same
//! variable, so a client must not be able to smuggle an identity through another spelling.

use pingora::http::RequestHeader;

/// The forwarding headers the gateway always sets itself.
const FORWARDING: [&str; 6] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
    "forwarded",
    "x-real-ip",
];

/// A verified identity, from a session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub user: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// How and when a session's owner proved who they are: kept with the session so that the
/// account page, step-up rules and (next) provider logout can use it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authentication {
    /// The `[[oidc]]` name, or empty for the users file (and for sessions from before
    /// this was recorded, or from an upstream's `Portcullis-Login`).
    pub provider: String,
    /// The provider's `sub` and session id (`sid`), when it sent them.
    pub subject: String,
    pub sid: String,
    /// RFC 8176 method references: `pwd` for the users file, the provider's `amr` for OIDC.
    pub methods: Vec<String>,
    /// The provider's `acr`, if any.
    pub acr: String,
    /// When the person authenticated (ms since the Unix epoch): the login, or the
    /// provider's `auth_time`.
    pub time_ms: u64,
}

impl Authentication {
    pub fn password(now_ms: u64) -> Self {
        Self {
            methods: vec!["pwd".into()],
            time_ms: now_ms,
            ..Self::default()
        }
    }
}

/// Names of the identity headers and every header a client may not send.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub user: http::HeaderName,
    pub email: http::HeaderName,
    pub groups: http::HeaderName,
    /// The same three names as shared bytes, the form pingora's `insert_header` takes
    /// without copying (a `HeaderName` is copied into a new buffer on each insert).
    wire: [bytes::Bytes; 3],
    /// Folded (lower-case, `-`) names stripped from every request.
    owned: Vec<String>,
    /// Bit `n` is set when some owned name is `n` bytes long (bit 63: 63 or longer). Most
    /// request headers are ruled out by their length alone, before any byte is compared.
    lengths: u64,
}

fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

/// Lower-case, with `_` and `.` read as `-`.
pub fn fold(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'_' | b'.' => '-',
            b => b.to_ascii_lowercase() as char,
        })
        .collect()
}

/// `fold(name) == owned`, without allocating (`owned` is already folded).
pub fn folds_to(name: &str, owned: &str) -> bool {
    let (name, owned) = (name.as_bytes(), owned.as_bytes());
    name.len() == owned.len()
        && name.iter().zip(owned).all(|(&a, &b)| {
            let a = match a {
                b'_' | b'.' => b'-',
                a => a.to_ascii_lowercase(),
            };
            a == b
        })
}

impl IdentityHeaders {
    pub fn new<'a>(
        user: &str,
        email: &str,
        groups: &str,
        strip: impl Iterator<Item = &'a str>,
    ) -> Result<Self, String> {
        let parse = |n: &str| {
            http::HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| format!("{n:?} is not a valid header name"))
        };
        let mut owned: Vec<String> = [user, email, groups].iter().map(|n| fold(n)).collect();
        owned.extend(strip.map(fold));
        owned.extend(FORWARDING.iter().map(|n| n.to_string()));
        owned.sort();
        owned.dedup();
        let lengths = owned.iter().fold(0, |m, o| m | length_bit(o.len()));
        let (user, email, groups) = (parse(user)?, parse(email)?, parse(groups)?);
        let wire = |n: &http::HeaderName| bytes::Bytes::copy_from_slice(n.as_str().as_bytes());
        Ok(Self {
            wire: [wire(&user), wire(&email), wire(&groups)],
            user,
            email,
            groups,
            owned,
            lengths,
        })
    }

    /// Is this header name (any spelling) one the gateway owns?
    pub fn is_owned(&self, name: &str) -> bool {
        self.lengths & length_bit(name.len()) != 0 && self.owned.iter().any(|o| folds_to(name, o))
    }

    /// Remove every owned header from a client request; returns how many were removed so the
    /// caller can trace it. Also drops `Connection` options naming headers: a client could
    /// otherwise ask a downstream hop to delete the identity headers we inject.
    pub fn strip(&self, req: &mut RequestHeader) -> usize {
        let doomed: Vec<http::HeaderName> = req
            .headers
            .keys()
            .filter(|n| self.is_owned(n.as_str()))
            .cloned()
            .collect();
        for n in &doomed {
            req.remove_header(n);
        }
        let conn = req
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| matches!(t.as_str(), "close" | "keep-alive" | "upgrade"))
            .collect::<Vec<_>>();
        if req.headers.contains_key(http::header::CONNECTION) {
            req.remove_header(&http::header::CONNECTION);
            if !conn.is_empty() {
                let _ = req.insert_header(http::header::CONNECTION, conn.join(", "));
            }
        }
        doomed.len()
    }

    /// Set the identity headers for a verified identity.
    pub fn inject(&self, req: &mut RequestHeader, id: &Identity) -> pingora::Result<()> {
        req.insert_header(self.wire[0].clone(), &id.user)?;
        if !id.email.is_empty() {
            req.insert_header(self.wire[1].clone(), &id.email)?;
        }
        if !id.groups.is_empty() {
            req.insert_header(self.wire[2].clone(), id.groups.join(","))?;
        }
        Ok(())
    }
}

/// Is this a value we can put in a header and a log field without escaping trouble?
pub fn plain_text(s: &str) -> bool {
    !s.chars().any(|c| c.is_control() || c == ',')
}

/// Check an identity that did not come from the users file (a bearer token's claims, an
/// upstream's `Portcullis-Login`) by the same rules the users file follows: nothing that
/// could split a header or a log field.
pub fn validate_identity(id: &Identity) -> Result<(), String> {
    if id.user.is_empty()
        || id.user.len() > 256
        || !plain_text(&id.user)
        || id.user.trim() != id.user
    {
        return Err("user must be 1-256 characters without control characters, commas or surrounding spaces".into());
    }
    if id.email.len() > 256 || !plain_text(&id.email) {
        return Err("email is too long or contains a control character or comma".into());
    }
    if id.groups.len() > 64
        || id
            .groups
            .iter()
            .any(|g| g.is_empty() || g.len() > 256 || !plain_text(g))
    {
        return Err(
            "groups must be at most 64 non-empty names without control characters or commas".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers() -> IdentityHeaders {
        IdentityHeaders::new(
            "X-Forwarded-User",
            "X-Forwarded-Email",
            "X-Forwarded-Groups",
            ["Remote-User"].into_iter(),
        )
        .unwrap()
    }

    #[test]
    fn every_spelling_is_stripped() {
        let h = headers();
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for n in [
            "X-Forwarded-User",
            "x_forwarded_email",
            "X.Forwarded.Groups",
            "REMOTE_USER",
            "X-Forwarded-For",
            "x_forwarded_host",
            "X-Request-Id",
            "Forwarded",
        ] {
            req.append_header(n.to_string(), "spoof").unwrap();
        }
        req.append_header("Accept", "*/*").unwrap();
        req.append_header("Connection", "keep-alive, X-Forwarded-User")
            .unwrap();
        assert_eq!(h.strip(&mut req), 8);
        assert_eq!(req.headers.len(), 2);
        assert_eq!(req.headers.get("connection").unwrap(), "keep-alive");
        assert!(req.headers.get("accept").is_some());
    }

    #[test]
    fn long_owned_names_are_stripped_too() {
        let long = format!("X-{}", "A".repeat(70));
        let h = IdentityHeaders::new(
            "X-Forwarded-User",
            "X-Forwarded-Email",
            "X-Forwarded-Groups",
            [long.as_str()].into_iter(),
        )
        .unwrap();
        assert!(h.is_owned(&long.to_lowercase()));
        assert!(h.is_owned(&long.replace('-', "_")));
        assert!(!h.is_owned(&format!("{long}B")));
        assert!(!h.is_owned(&long[..66]));
    }

    #[test]
    fn similar_names_are_kept() {
        let h = headers();
        assert!(!h.is_owned("X-Forwarded-Users"));
        assert!(!h.is_owned("X-Forwarded-Use"));
        assert!(h.is_owned("x-forwarded-user"));
    }
}
