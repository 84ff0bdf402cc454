//! The users file: `[[user]]` entries with a name, a password hash (argon2id, or bcrypt
//! `$2b$`/`$2y$` from an htpasswd file), an email and groups.

use crate::identity::{plain_text, Identity};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    user: Vec<UserEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    password: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Clone)]
enum Hash {
    Argon2(String),
    Bcrypt(String),
}

#[derive(Clone)]
struct User {
    identity: Identity,
    hash: Hash,
}

/// Loaded users. `Debug` never shows hashes.
#[derive(Clone, Default)]
pub struct Users {
    by_name: HashMap<String, User>,
    /// A hash of a random password with the default parameters, verified against when the
    /// user does not exist so that both paths do the same work.
    dummy: Option<String>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Users({} users)", self.by_name.len())
    }
}

impl Users {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read users file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let f: UsersFile = toml::from_str(text).map_err(|e| {
            let (line, col) = e
                .span()
                .map_or((0, 0), |s| crate::position::line_col(text, s.start));
            format!("{line}:{col}: {}", e.message())
        })?;
        let mut by_name = HashMap::new();
        for u in f.user {
            if u.name.is_empty()
                || u.name.len() > 256
                || !plain_text(&u.name)
                || u.name.trim() != u.name
            {
                return Err(format!("user {:?}: names must be 1-256 characters without control characters, commas or surrounding spaces", u.name));
            }
            if !plain_text(&u.email) {
                return Err(format!(
                    "user {:?}: email contains a control character or comma",
                    u.name
                ));
            }
            if let Some(g) = u.groups.iter().find(|g| g.is_empty() || !plain_text(g)) {
                return Err(format!(
                    "user {:?}: group {g:?} is empty or contains a control character or comma",
                    u.name
                ));
            }
            let hash = if u.password.starts_with("$argon2") {
                PasswordHash::new(&u.password)
                    .map_err(|e| format!("user {:?}: bad argon2 hash: {e}", u.name))?;
                Hash::Argon2(u.password)
            } else if ["$2b$", "$2y$", "$2a$"]
                .iter()
                .any(|p| u.password.starts_with(p))
            {
                u.password
                    .parse::<bcrypt::HashParts>()
                    .map_err(|e| format!("user {:?}: bad bcrypt hash: {e}", u.name))?;
                Hash::Bcrypt(u.password)
            } else {
                return Err(format!(
                    "user {:?}: password must be an argon2id or bcrypt hash (make one with `portcullis hash-password`), never plain text",
                    u.name
                ));
            };
            let identity = Identity {
                user: u.name.clone(),
                email: u.email,
                groups: u.groups,
            };
            if by_name
                .insert(u.name.clone(), User { identity, hash })
                .is_some()
            {
                return Err(format!("user {:?} appears twice", u.name));
            }
        }
        let dummy = if by_name.is_empty() {
            None
        } else {
            Some(hash_password("dummy password for timing")?)
        };
        Ok(Self { by_name, dummy })
    }

    /// Users built in code (the `demo` command).
    pub fn from_identities(list: Vec<(Identity, String)>) -> Result<Self, String> {
        let by_name = list
            .into_iter()
            .map(|(identity, hash)| {
                (
                    identity.user.clone(),
                    User {
                        identity,
                        hash: Hash::Argon2(hash),
                    },
                )
            })
            .collect();
        Ok(Self {
            by_name,
            dummy: Some(hash_password("dummy password for timing")?),
        })
    }

    /// Every user name (a passwordless sign-in finds its user by a handle derived from it).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Check a password. CPU-heavy by design: call from a blocking thread. An unknown user
    /// costs one verification against a dummy hash, like a known user with a wrong password.
    /// The identity of `name`, without a password (the second step of a login, which the
    /// password already passed).
    pub fn identity(&self, name: &str) -> Option<Identity> {
        self.by_name.get(name).map(|u| u.identity.clone())
    }

    pub fn verify(&self, name: &str, password: &str) -> Option<Identity> {
        match self.by_name.get(name) {
            Some(u) => check(&u.hash, password).then(|| u.identity.clone()),
            None => {
                if let Some(d) = &self.dummy {
                    let _ = check(&Hash::Argon2(d.clone()), password);
                }
                None
            }
        }
    }
}

fn check(hash: &Hash, password: &str) -> bool {
    match hash {
        Hash::Argon2(h) => PasswordHash::new(h)
            .map(|ph| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &ph)
                    .is_ok()
            })
            .unwrap_or(false),
        Hash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
    }
}

/// An argon2id hash (default parameters: 19 MiB, 2 passes) in PHC string form.
pub fn hash_password(password: &str) -> Result<String, String> {
    use ring::rand::SecureRandom;
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| "no randomness".to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_and_bcrypt_users() {
        let a = hash_password("s3cret").unwrap();
        let b = bcrypt::hash("hunter2", 4)
            .unwrap()
            .replacen("$2b$", "$2y$", 1);
        let text = format!(
            "[[user]]\nname = \"alice\"\npassword = \"{a}\"\nemail = \"a@example.com\"\ngroups = [\"admin\"]\n\
             [[user]]\nname = \"bob\"\npassword = \"{b}\"\n"
        );
        let u = Users::parse(&text).unwrap();
        assert_eq!(u.verify("alice", "s3cret").unwrap().groups, ["admin"]);
        assert!(u.verify("alice", "wrong").is_none());
        assert_eq!(u.verify("bob", "hunter2").unwrap().user, "bob");
        assert!(u.verify("carol", "s3cret").is_none());
    }

    #[test]
    fn refuses_plain_passwords_and_duplicates() {
        assert!(
            Users::parse("[[user]]\nname = \"a\"\npassword = \"plain\"\n")
                .unwrap_err()
                .contains("never plain text")
        );
        let a = hash_password("x").unwrap();
        let dup = format!(
            "[[user]]\nname=\"a\"\npassword=\"{a}\"\n[[user]]\nname=\"a\"\npassword=\"{a}\"\n"
        );
        assert!(Users::parse(&dup).unwrap_err().contains("twice"));
        assert!(Users::parse("[[user]]\nname=\"a\"\npassword=\"x\"\nrole=1\n").is_err());
    }
}
