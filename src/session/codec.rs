//! The compact binary encoding shared by snapshots and cookie sessions: little-endian
//! integers and u16-length-prefixed UTF-8 strings, with an identity written as
//! user ‖ email ‖ group count ‖ groups.

use crate::identity::Identity;

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
