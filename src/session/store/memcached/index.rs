//! The per-user index (`u:<hex SHA-256(user)>`): which session keys a user holds, so that
//! "log this user out everywhere" is a handful of deletes instead of a scan memcached
//! cannot do. One line per session, `<hex store key> <absolute deadline ms>`; lines past
//! their deadline are dropped whenever the index is rewritten. Updated with compare-and-
//! swap (`mg … c`, `ms … C<cas>`), so two logins of one user never lose each other's line.

use crate::session::cookie::StoreKey;

/// More concurrent sessions than any person has; bounds the index item (~80 bytes each).
/// When a login would exceed it, the session with the earliest deadline is ended.
pub const MAX_ENTRIES: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: StoreKey,
    pub deadline_ms: u64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<StoreKey> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(StoreKey(k))
}

pub fn store_key_hex(key: &StoreKey) -> String {
    hex(&key.0)
}

/// Parse an index value; lines that do not parse are dropped (the index is advisory for
/// cleanup of *our* keys only, never a source of identity).
pub fn parse(value: &[u8]) -> Vec<Entry> {
    let text = String::from_utf8_lossy(value);
    text.lines()
        .filter_map(|l| {
            let (k, d) = l.split_once(' ')?;
            Some(Entry {
                key: unhex(k)?,
                deadline_ms: d.parse().ok()?,
            })
        })
        .collect()
}

pub fn render(entries: &[Entry]) -> Vec<u8> {
    let mut out = String::with_capacity(entries.len() * 80);
    for e in entries {
        out.push_str(&hex(&e.key.0));
        out.push(' ');
        out.push_str(&e.deadline_ms.to_string());
        out.push('\n');
    }
    out.into_bytes()
}

/// The index after adding `new` at `now_ms`: expired lines dropped, and if still over
/// `MAX_ENTRIES`, the earliest deadlines evicted. Returns (kept, evicted).
pub fn add(mut entries: Vec<Entry>, new: Entry, now_ms: u64) -> (Vec<Entry>, Vec<Entry>) {
    entries.retain(|e| e.deadline_ms > now_ms && e.key != new.key);
    entries.push(new);
    let mut evicted = Vec::new();
    if entries.len() > MAX_ENTRIES {
        entries.sort_by_key(|e| e.deadline_ms);
        let extra = entries.len() - MAX_ENTRIES;
        evicted = entries.drain(..extra).collect();
    }
    (entries, evicted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(b: u8, d: u64) -> Entry {
        Entry {
            key: StoreKey([b; 32]),
            deadline_ms: d,
        }
    }

    #[test]
    fn round_trip_prune_and_bound() {
        let v = render(&[e(1, 100), e(2, 200)]);
        assert_eq!(parse(&v), vec![e(1, 100), e(2, 200)]);
        assert_eq!(parse(b"junk\nzz 1\n"), vec![]);
        let (kept, ev) = add(parse(&v), e(3, 300), 150);
        assert_eq!(kept, vec![e(2, 200), e(3, 300)], "expired line dropped");
        assert!(ev.is_empty());
        let full: Vec<Entry> = (0..MAX_ENTRIES as u64)
            .map(|i| Entry {
                key: StoreKey({
                    let mut k = [0u8; 32];
                    k[..8].copy_from_slice(&i.to_le_bytes());
                    k
                }),
                deadline_ms: 1_000 + i,
            })
            .collect();
        let (kept, ev) = add(full, e(0xff, 5_000), 0);
        assert_eq!(kept.len(), MAX_ENTRIES);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].deadline_ms, 1_000, "the earliest deadline goes");
    }
}
