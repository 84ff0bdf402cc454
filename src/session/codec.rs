//! The compact binary encoding shared by snapshots and cookie sessions: little-endian
//! integers and u16-length-prefixed UTF-8 strings, with an identity written as
//! user ‖ email ‖ group count ‖ groups.

use crate::identity::{Authentication, Identity};
use crate::session::provider_tokens::ProviderTokens;
use crate::session::store::record::Device;

/// Marks the device block in shared-store records (a trailing, optional block).
pub const DEVICE_BLOCK: u8 = 0xA3;

/// Marks the authentication block that follows an identity in newer records; records
/// written before it existed simply end after the identity.
const AUTH_BLOCK: u8 = 0xA1;

/// Append a length-prefixed string. Names, emails and groups are validated short strings;
/// anything longer than a u16 length is clamped rather than corrupting the stream.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

pub fn put_identity(out: &mut Vec<u8>, id: &Identity) {
    put_str(out, &id.user);
    put_str(out, &id.email);
    let groups = &id.groups[..id.groups.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(groups.len() as u16).to_le_bytes());
    for g in groups {
        put_str(out, g);
    }
}

/// Append how the session's owner authenticated: tag ‖ provider ‖ subject ‖ sid ‖ acr ‖
/// time (u64) ‖ method count ‖ methods.
pub fn put_auth(out: &mut Vec<u8>, a: &Authentication) {
    out.push(AUTH_BLOCK);
    for s in [&a.provider, &a.subject, &a.sid, &a.acr] {
        put_str(out, s);
    }
    out.extend_from_slice(&a.time_ms.to_le_bytes());
    let m = &a.methods[..a.methods.len().min(16)];
    out.extend_from_slice(&(m.len() as u16).to_le_bytes());
    for s in m {
        put_str(out, s);
    }
}

/// Append the provider's tokens as a field that is always present: 0 (none), or 1 ‖
/// access ‖ refresh ‖ id token ‖ issued (u64) ‖ expires (u64). Tokens are bounded by
/// `ProviderTokens::bounded` well below the u16 length limit.
pub fn put_tokens(out: &mut Vec<u8>, t: Option<&ProviderTokens>) {
    let Some(t) = t else {
        out.push(0);
        return;
    };
    out.push(1);
    for s in [&t.access, &t.refresh, &t.id_token] {
        put_str(out, s);
    }
    out.extend_from_slice(&t.issued_ms.to_le_bytes());
    out.extend_from_slice(&t.expires_ms.to_le_bytes());
}

/// Append where the session was started from: client ‖ agent.
pub fn put_device(out: &mut Vec<u8>, d: &Device) {
    put_str(out, &d.client);
    put_str(out, &d.agent);
}

/// A bounds-checked reader; every method returns `None` on truncated or invalid input.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }

    pub fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    }

    pub fn u64(&mut self) -> Option<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Some(u64::from_le_bytes(a))
    }

    pub fn string(&mut self) -> Option<String> {
        let n = self.u16()?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }

    fn skip_string(&mut self) -> Option<()> {
        let n = self.u16()?;
        std::str::from_utf8(self.take(n)?).ok().map(|_| ())
    }

    pub fn identity(&mut self) -> Option<Identity> {
        let (user, email) = (self.string()?, self.string()?);
        let n = self.u16()?;
        let groups = (0..n).map(|_| self.string()).collect::<Option<Vec<_>>>()?;
        Some(Identity {
            user,
            email,
            groups,
        })
    }

    /// The authentication block, if the record has one (`None` inside means malformed).
    /// A record that ends here predates the block: its owner's method is unknown and the
    /// time is `created_ms`.
    pub fn auth_or_old(&mut self, created_ms: u64) -> Option<Authentication> {
        if self.0.first() != Some(&AUTH_BLOCK) {
            return Some(Authentication {
                time_ms: created_ms,
                ..Authentication::default()
            });
        }
        self.take(1)?;
        let (provider, subject, sid, acr) = (
            self.string()?,
            self.string()?,
            self.string()?,
            self.string()?,
        );
        let time_ms = self.u64()?;
        let n = self.u16()?;
        if n > 16 {
            return None;
        }
        let methods = (0..n).map(|_| self.string()).collect::<Option<Vec<_>>>()?;
        Some(Authentication {
            provider,
            subject,
            sid,
            methods,
            acr,
            time_ms,
        })
    }

    /// The field `put_tokens` wrote (`None` inside: none kept; outer `None`: malformed).
    pub fn tokens(&mut self) -> Option<Option<ProviderTokens>> {
        match self.take(1)? {
            [0] => Some(None),
            [1] => {
                let (access, refresh, id_token) = (self.string()?, self.string()?, self.string()?);
                let (issued_ms, expires_ms) = (self.u64()?, self.u64()?);
                Some(Some(ProviderTokens {
                    access,
                    refresh,
                    id_token,
                    issued_ms,
                    expires_ms,
                }))
            }
            _ => None,
        }
    }

    pub fn device(&mut self) -> Option<Device> {
        Some(Device {
            client: self.string()?,
            agent: self.string()?,
        })
    }

    /// Validate an identity without allocating.
    pub fn skip_identity(&mut self) -> Option<()> {
        self.skip_string()?;
        self.skip_string()?;
        let n = self.u16()?;
        (0..n).try_for_each(|_| self.skip_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_truncation() {
        let t = ProviderTokens {
            access: "at".into(),
            refresh: "rt".into(),
            id_token: "e.y.j".into(),
            issued_ms: 5,
            expires_ms: 9,
        };
        for v in [None, Some(&t)] {
            let mut out = Vec::new();
            put_tokens(&mut out, v);
            let mut r = Reader(&out);
            assert_eq!(r.tokens(), Some(v.cloned()));
            assert!(r.0.is_empty());
            for cut in 0..out.len() {
                assert_eq!(Reader(&out[..cut]).tokens(), None, "cut at {cut}");
            }
        }
        assert_eq!(Reader(&[2]).tokens(), None);
    }

    #[test]
    fn authentication_round_trips_and_old_records_read_as_unknown() {
        let a = Authentication {
            provider: "corp".into(),
            subject: "s-1".into(),
            sid: "sid".into(),
            methods: vec!["pwd".into(), "otp".into()],
            acr: "1".into(),
            time_ms: 42,
        };
        let mut out = Vec::new();
        put_auth(&mut out, &a);
        let mut r = Reader(&out);
        assert_eq!(r.auth_or_old(7), Some(a));
        assert!(r.0.is_empty());
        let old = Reader(&[]).auth_or_old(7).unwrap();
        assert_eq!((old.time_ms, old.methods.len()), (7, 0));
        for cut in 1..out.len() {
            assert_eq!(Reader(&out[..cut]).auth_or_old(7), None, "cut at {cut}");
        }
    }

    #[test]
    fn identities_round_trip_and_truncation_is_caught() {
        let id = Identity {
            user: "alice".into(),
            email: "a@x".into(),
            groups: vec!["g1".into(), "ü".into()],
        };
        let mut out = Vec::new();
        put_identity(&mut out, &id);
        assert_eq!(Reader(&out).identity(), Some(id));
        assert_eq!(Reader(&out).skip_identity(), Some(()));
        for cut in 0..out.len() {
            assert_eq!(Reader(&out[..cut]).identity(), None, "cut at {cut}");
            assert_eq!(Reader(&out[..cut]).skip_identity(), None, "cut at {cut}");
        }
    }
}
