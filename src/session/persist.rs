//! Encrypted snapshots of the memory store, so sessions survive a restart.
//!
//! Layout: `PCSNAP4\n` ‖ key id (4) ‖ nonce (12) ‖ AES-256-GCM(records). (`PCSNAP3`
//! snapshots, written before records kept the provider's tokens, and `PCSNAP2`, before
//! they carried how their owner authenticated, still load.) Records are a
//! compact binary encoding (JSON took seconds at a million sessions). The key id
//! names the session key whose derived seal key was used, so a snapshot written before a
//! key rotation still opens while that key is in `keys_file`. A snapshot that does not
//! open (corrupt, foreign, key removed) is reported and ignored, never trusted.

use super::codec::{self, Reader};
use super::cookie::StoreKey;
use super::keys::{KeyRing, KEY_ID_LEN};
use super::store::{MemoryStore, SessionRecord, SessionStore};
use ring::aead;
use ring::rand::SecureRandom;
use std::io::Write;
use std::path::Path;

const MAGIC: &[u8] = b"PCSNAP4\n";
/// Records without the provider's tokens.
const MAGIC_V3: &[u8] = b"PCSNAP3\n";
/// Records without the authentication block.
const MAGIC_V2: &[u8] = b"PCSNAP2\n";

/// What a snapshot's records hold, by its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Version {
    V2,
    V3,
    V4,
}
const AAD: &[u8] = b"portcullis snapshot v1";

/// Record encoding: store key (32) ‖ created ms (u64 LE) ‖ last seen ms (u64 LE) ‖
/// identity ‖ authentication ‖ provider tokens ‖ device (see `codec`; the authentication
/// block is absent in `PCSNAP2`, the last two fields in `PCSNAP2` and `PCSNAP3`).
fn encode(out: &mut Vec<u8>, key: &StoreKey, r: &SessionRecord) {
    out.extend_from_slice(&key.0);
    out.extend_from_slice(&r.created_ms.to_le_bytes());
    out.extend_from_slice(&r.last_seen_ms().to_le_bytes());
    codec::put_identity(out, &r.identity);
    codec::put_auth(out, &r.auth);
    codec::put_tokens(out, r.tokens.as_deref());
    codec::put_device(out, &r.device);
}

/// Validate one record (without allocating, apart from the authentication block).
fn skip_record(r: &mut Reader<'_>, v: Version) -> Option<()> {
    r.take(48)?;
    r.skip_identity()?;
    if v >= Version::V3 {
        // From v3 on the block is mandatory: its absence is corruption.
        if r.0.first() != Some(&0xA1) {
            return None;
        }
        r.auth_or_old(0)?;
    }
    if v >= Version::V4 {
        r.tokens()?;
        r.device()?;
    }
    Some(())
}

fn read_record(r: &mut Reader<'_>, v: Version) -> Option<(StoreKey, SessionRecord)> {
    let mut key = [0u8; 32];
    key.copy_from_slice(r.take(32)?);
    let (created, seen) = (r.u64()?, r.u64()?);
    let identity = r.identity()?;
    let mut rec = SessionRecord::restored(identity, created, seen);
    if v >= Version::V3 {
        rec = rec.with_auth(r.auth_or_old(created)?);
    }
    if v >= Version::V4 {
        rec = rec.with_tokens(r.tokens()?).with_device(r.device()?);
    }
    Some((StoreKey(key), rec))
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read snapshot {0}: {1}")]
    Read(String, std::io::Error),
    #[error("cannot write snapshot {0}: {1}")]
    Write(String, std::io::Error),
    #[error("snapshot {0} is not a portcullis snapshot or is truncated")]
    Format(String),
    #[error("snapshot {0} was sealed with a key that is not in keys_file")]
    UnknownKey(String),
    #[error("snapshot {0} does not authenticate (corrupt or foreign); ignored")]
    Corrupt(String),
    #[error("could not seal snapshot")]
    Seal,
}

fn key_for(seal: &[u8; 32]) -> Result<aead::LessSafeKey, SnapshotError> {
    let k = aead::UnboundKey::new(&aead::AES_256_GCM, seal).map_err(|_| SnapshotError::Seal)?;
    Ok(aead::LessSafeKey::new(k))
}

/// Write every live session to `path` atomically (temp file, fsync, rename; mode 0600).
pub fn save(store: &MemoryStore, keys: &KeyRing, path: &Path) -> Result<usize, SnapshotError> {
    let p = path.display().to_string();
    let entries = store.entries();
    let mut plain = Vec::with_capacity(entries.len() * 96);
    for (k, r) in &entries {
        encode(&mut plain, k, r);
    }
    let k = keys.current();
    let mut nonce = [0u8; 12];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SnapshotError::Seal)?;
    key_for(&k.seal)?
        .seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(AAD),
            &mut plain,
        )
        .map_err(|_| SnapshotError::Seal)?;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(&k.id)?;
        f.write_all(&nonce)?;
        f.write_all(&plain)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| SnapshotError::Write(p, e))?;
    Ok(entries.len())
}

/// Load a snapshot into `store`; returns how many sessions were restored. A missing file
/// is not an error (first start).
pub fn load(store: &MemoryStore, keys: &KeyRing, path: &Path) -> Result<usize, SnapshotError> {
    let p = path.display().to_string();
    let mut data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(SnapshotError::Read(p, e)),
    };
    let head = MAGIC.len() + KEY_ID_LEN + 12;
    let version = if data.starts_with(MAGIC) {
        Version::V4
    } else if data.starts_with(MAGIC_V3) {
        Version::V3
    } else if data.starts_with(MAGIC_V2) {
        Version::V2
    } else {
        return Err(SnapshotError::Format(p));
    };
    if data.len() < head + 16 {
        return Err(SnapshotError::Format(p));
    }
    let kid = &data[MAGIC.len()..MAGIC.len() + KEY_ID_LEN];
    let k = keys
        .by_id(kid)
        .ok_or_else(|| SnapshotError::UnknownKey(p.clone()))?;
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&data[MAGIC.len() + KEY_ID_LEN..head]);
    let body = &mut data[head..];
    let plain = key_for(&k.seal)?
        .open_in_place(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(AAD),
            body,
        )
        .map_err(|_| SnapshotError::Corrupt(p.clone()))?;
    // First pass, without allocating: check that every record is well formed (a snapshot
    // that authenticates but does not parse is refused whole, before the store is touched)
    // and note where each worker's share of the records starts.
    let workers = std::thread::available_parallelism()
        .map_or(1, |c| c.get())
        .clamp(1, 8);
    let mut reader = Reader(plain);
    let mut starts = Vec::new();
    let mut n = 0usize;
    while !reader.0.is_empty() {
        starts.push(plain.len() - reader.0.len());
        skip_record(&mut reader, version).ok_or_else(|| SnapshotError::Corrupt(p.clone()))?;
        n += 1;
    }
    let per = n.div_ceil(workers).max(1);
    let mut ranges = Vec::with_capacity(workers);
    for (w, chunk) in starts.chunks(per).enumerate() {
        let from = chunk[0];
        let to = starts.get((w + 1) * per).copied().unwrap_or(plain.len());
        ranges.push(&plain[from..to]);
    }
    // Second pass, in parallel: decode and insert. Page faults for the new records and
    // cache inserts dominate a large restore, and both spread over cores.
    std::thread::scope(|scope| {
        for range in ranges {
            scope.spawn(move || {
                let mut r = Reader(range);
                while let Some((key, rec)) = read_record(&mut r, version) {
                    // The memory store cannot fail.
                    let _ = store.create(key, rec);
                }
            });
        }
    });
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::session::keys::generate_key;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn ring() -> KeyRing {
        let raw = URL_SAFE_NO_PAD.decode(generate_key().unwrap()).unwrap();
        KeyRing::from_raw_keys(&[raw])
    }

    #[test]
    fn round_trip_and_foreign_snapshots() {
        let dir = std::env::temp_dir().join(format!("pc-snap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.snap");
        let keys = ring();
        let s = MemoryStore::new(100);
        let id = Identity {
            user: "alice".into(),
            email: "a@x".into(),
            groups: vec!["g".into()],
        };
        s.create(StoreKey([3; 32]), SessionRecord::new(id.clone(), 42))
            .unwrap();
        assert_eq!(save(&s, &keys, &path).unwrap(), 1);
        let s2 = MemoryStore::new(100);
        assert_eq!(load(&s2, &keys, &path).unwrap(), 1);
        let r = s2.load(&StoreKey([3; 32])).unwrap().unwrap();
        assert_eq!(*r.identity, id);
        assert_eq!(r.created_ms, 42);
        // Another gateway's keys: refused.
        assert!(matches!(
            load(&MemoryStore::new(1), &ring(), &path),
            Err(SnapshotError::UnknownKey(_))
        ));
        // A flipped byte: refused.
        let mut data = std::fs::read(&path).unwrap();
        let last = data.len() - 1;
        data[last] ^= 1;
        std::fs::write(&path, &data).unwrap();
        assert!(matches!(
            load(&MemoryStore::new(1), &keys, &path),
            Err(SnapshotError::Corrupt(_))
        ));
        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(
            load(&MemoryStore::new(1), &keys, &path),
            Err(SnapshotError::Format(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
