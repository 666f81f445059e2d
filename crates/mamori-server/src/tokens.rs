//! API tokens: created once (`mamori token create`), shown once, stored only as a SHA-256 hash.
//!
//! Tokens are 32 random bytes (256 bits), so a fast hash is enough: there is nothing to brute
//! force, unlike a password. Presented tokens are compared hash-to-hash in constant time. The
//! list lives in the alert store's key/value table, so a token created by the CLI while the
//! server runs is picked up at the next unknown-token request (re-read at most once a second).

use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mamori_store::AlertStore;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const KEY: &str = "api/tokens";
const PREFIX: &str = "mamori_";

/// A token as stored: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    pub created_at: DateTime<Utc>,
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn read(store: &dyn AlertStore) -> Result<Vec<TokenRecord>, String> {
    match store.kv_get(KEY).map_err(|e| e.to_string())? {
        None => Ok(Vec::new()),
        Some(b) => serde_json::from_slice(&b).map_err(|e| format!("token list is corrupt: {e}")),
    }
}

fn write(store: &dyn AlertStore, list: &[TokenRecord]) -> Result<(), String> {
    let b = serde_json::to_vec(list).map_err(|e| e.to_string())?;
    store.kv_put(KEY, &b).map_err(|e| e.to_string())
}

/// Whether `name` is a valid token name: 1–64 of `[A-Za-z0-9._-]`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Creates a token named `name` and returns it (the only time it is visible).
pub fn create(store: &dyn AlertStore, name: &str) -> Result<String, String> {
    if !valid_name(name) {
        return Err(format!(
            "invalid token name `{name}`: use 1-64 letters, digits, `.`, `_` or `-`"
        ));
    }
    let mut list = read(store)?;
    if list.iter().any(|t| t.name == name) {
        return Err(format!(
            "a token named `{name}` exists; revoke it first or pick another name"
        ));
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("{PREFIX}{}", hex::encode(bytes));
    list.push(TokenRecord {
        name: name.to_owned(),
        sha256: hex::encode(hash(&token)),
        created_at: Utc::now(),
    });
    write(store, &list)?;
    Ok(token)
}

/// The stored tokens (names and creation times).
pub fn list(store: &dyn AlertStore) -> Result<Vec<TokenRecord>, String> {
    read(store)
}

/// Revokes the token named `name`; whether it existed.
pub fn revoke(store: &dyn AlertStore, name: &str) -> Result<bool, String> {
    let mut list = read(store)?;
    let before = list.len();
    list.retain(|t| t.name != name);
    if list.len() == before {
        return Ok(false);
    }
    write(store, &list)?;
    Ok(true)
}

/// The server's view of the tokens, refreshed from the store when an unknown token shows up.
pub struct TokenCache {
    hashes: RwLock<Vec<(String, [u8; 32])>>,
    last_refresh: Mutex<Option<Instant>>,
}

impl TokenCache {
    pub fn new(store: &dyn AlertStore) -> TokenCache {
        let c = TokenCache {
            hashes: RwLock::new(Vec::new()),
            last_refresh: Mutex::new(None),
        };
        c.refresh(store);
        c
    }

    fn refresh(&self, store: &dyn AlertStore) {
        let list = match read(store) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot read API tokens");
                return;
            }
        };
        let hashes = list
            .into_iter()
            .filter_map(|t| {
                let mut h = [0u8; 32];
                hex::decode_to_slice(&t.sha256, &mut h).ok()?;
                Some((t.name, h))
            })
            .collect();
        if let Ok(mut g) = self.hashes.write() {
            *g = hashes;
        }
    }

    fn lookup(&self, h: &[u8; 32]) -> Option<String> {
        let g = self.hashes.read().ok()?;
        let mut found = None;
        // Compare against every entry (no early exit) in constant time.
        for (name, stored) in g.iter() {
            if bool::from(stored.ct_eq(h)) {
                found = Some(name.clone());
            }
        }
        found
    }

    /// The name of the token, if `presented` is a valid one.
    pub fn verify(&self, store: &dyn AlertStore, presented: &str) -> Option<String> {
        if !presented.starts_with(PREFIX) || presented.len() != PREFIX.len() + 64 {
            return None;
        }
        let h = hash(presented);
        if let Some(n) = self.lookup(&h) {
            return Some(n);
        }
        let due = {
            let mut last = self.last_refresh.lock().ok()?;
            let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            self.refresh(store);
            return self.lookup(&h);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mamori_store::MemoryAlertStore;

    #[test]
    fn create_verify_revoke() {
        let s = MemoryAlertStore::new();
        let cache = TokenCache::new(&s);
        let t = create(&s, "ops").unwrap();
        assert!(t.starts_with("mamori_") && t.len() == 71);
        // Stored hashed, never in clear.
        let raw = String::from_utf8(s.kv_get(KEY).unwrap().unwrap()).unwrap();
        assert!(!raw.contains(&t[7..]));
        assert_eq!(cache.verify(&s, &t).as_deref(), Some("ops"));
        assert_eq!(cache.verify(&s, "mamori_nope"), None);
        let mut wrong = t.clone();
        wrong.replace_range(70..71, if t.ends_with('0') { "1" } else { "0" });
        assert_eq!(cache.verify(&s, &wrong), None);
        assert!(create(&s, "ops").is_err());
        assert!(create(&s, "bad name").is_err());
        assert!(revoke(&s, "ops").unwrap());
        std::thread::sleep(Duration::from_millis(1100));
        let cache = TokenCache::new(&s);
        assert_eq!(cache.verify(&s, &t), None);
    }
}
