//! Secrets as types that never print.

use std::fmt;
use std::path::Path;

/// A secret byte string. `Debug` prints `<redacted>` so a secret cannot reach a log line
/// through a `{:?}` of a containing struct.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Read a bearer token file (first line, trimmed). Refuses empty and short tokens: an
    /// admin token guards session revocation.
    pub fn read_token(path: &Path) -> Result<Secret, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
        let token = text.lines().next().unwrap_or("").trim();
        if token.len() < 16 {
            return Err(format!(
                "token file {} must hold a token of at least 16 characters (try `portcullis gen-key`)",
                path.display()
            ));
        }
        Ok(Secret(token.as_bytes().to_vec()))
    }

    /// Compare against a presented value without leaking where they differ: both sides are
    /// hashed first, so timing depends only on the (public) digests.
    pub fn matches(&self, presented: &[u8]) -> bool {
        same_bytes(&self.0, presented)
    }
}

/// Equal without leaking where two values differ: both sides are hashed first, so timing
/// depends only on the (public) digests.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    use ring::digest::{digest, SHA256};
    let a = digest(&SHA256, a);
    let b = digest(&SHA256, b);
    a.as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted_and_matches_is_exact() {
        let s = Secret::new(b"hunter2-hunter2-hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert!(s.matches(b"hunter2-hunter2-hunter2"));
        assert!(!s.matches(b"hunter2-hunter2-hunter3"));
        assert!(!s.matches(b""));
    }
}
