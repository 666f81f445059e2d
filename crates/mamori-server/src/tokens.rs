//! API tokens: created once (`mamori token create`), shown once, stored only as a SHA-256 hash.
//!
//! Tokens are 32 random bytes (256 bits), so a fast hash is enough: there is nothing to brute
//! force, unlike a password. Presented tokens are compared hash-to-hash in constant time. The
//! list lives in the alert store's key/value table and the server re-reads it at most every
//! [`REFRESH`] — on the next request after that, and in the background — so a token created or
//! revoked by the CLI while the server runs takes effect within a second (issue #15: a revoked
//! token used to keep working until an unknown token forced a reload).
//!
//! Revoking keeps the record, marked `revoked_at`, so the server can put the revocation in the
//! vault's chain of custody even when it happened while the server was stopped. Only the
//! server writes the list of custody records already made (`api/tokens.custody`), and only the
//! CLI writes the token list, so the two never overwrite each other's changes.

use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mamori_store::AlertStore;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const KEY: &str = "api/tokens";
/// Custody records already sealed: `created:<sha256>` / `revoked:<sha256>`.
const CUSTODY_KEY: &str = "api/tokens.custody";
const PREFIX: &str = "mamori_";
/// The server re-reads the token list at most this often (revocation takes effect within it).
pub const REFRESH: Duration = Duration::from_millis(500);

/// A token as stored: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    pub created_at: DateTime<Utc>,
    /// When the token was revoked; a revoked token is never accepted again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl TokenRecord {
    pub fn active(&self) -> bool {
        self.revoked_at.is_none()
    }
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

/// Changes the token list with `f`, atomically against every other writer (another process,
/// another cluster node): `f` may run again on a list someone else changed meanwhile.
fn update<R>(
    store: &dyn AlertStore,
    f: impl FnMut(&mut Vec<TokenRecord>) -> Result<Option<R>, String>,
) -> Result<Option<R>, String> {
    crate::kvlist::update(store, KEY, "token list", f)
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
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("{PREFIX}{}", hex::encode(bytes));
    let record = TokenRecord {
        name: name.to_owned(),
        sha256: hex::encode(hash(&token)),
        created_at: Utc::now(),
        revoked_at: None,
    };
    update(store, |list| {
        if list.iter().any(|t| t.name == name && t.active()) {
            return Err(format!(
                "a token named `{name}` exists; revoke it first or pick another name"
            ));
        }
        list.push(record.clone());
        Ok(Some(()))
    })?;
    Ok(token)
}

/// The active tokens (names and creation times).
pub fn list(store: &dyn AlertStore) -> Result<Vec<TokenRecord>, String> {
    Ok(read(store)?
        .into_iter()
        .filter(TokenRecord::active)
        .collect())
}

/// Revokes the active token named `name`; whether it existed.
pub fn revoke(store: &dyn AlertStore, name: &str) -> Result<bool, String> {
    let at = Utc::now();
    Ok(update(store, |list| {
        Ok(list
            .iter_mut()
            .find(|t| t.name == name && t.active())
            .map(|t| t.revoked_at = Some(at)))
    })?
    .is_some())
}

/// The server's view of the tokens: re-read from the store at most every [`REFRESH`].
pub struct TokenCache {
    hashes: RwLock<Vec<(String, [u8; 32])>>,
    last_refresh: Mutex<Option<Instant>>,
    /// When the token list was last read successfully.
    last_ok: Mutex<Instant>,
    audit: Option<crate::seal::AuditHandle>,
}

/// How long a token list that cannot be re-read is still trusted.
const STALE: Duration = Duration::from_secs(5);

impl TokenCache {
    pub fn new(store: &dyn AlertStore) -> TokenCache {
        TokenCache::with_audit(store, None)
    }

    /// A cache that records token creations and revocations in the vault's chain of custody.
    pub fn with_audit(
        store: &dyn AlertStore,
        audit: Option<crate::seal::AuditHandle>,
    ) -> TokenCache {
        let c = TokenCache {
            hashes: RwLock::new(Vec::new()),
            last_refresh: Mutex::new(None),
            last_ok: Mutex::new(Instant::now()),
            audit,
        };
        c.refresh_if_due(store);
        c
    }

    /// Re-reads the token list if the last read is older than [`REFRESH`].
    pub fn refresh_if_due(&self, store: &dyn AlertStore) {
        let due = match self.last_refresh.lock() {
            Ok(mut last) => {
                let due = last.is_none_or(|t| t.elapsed() >= REFRESH);
                if due {
                    *last = Some(Instant::now());
                }
                due
            }
            Err(_) => true,
        };
        if due {
            self.refresh(store);
        }
    }

    fn refresh(&self, store: &dyn AlertStore) {
        let list = match read(store) {
            Ok(l) => l,
            Err(e) => {
                // A passing error (the CLI holding a write lock) keeps the last list; one that
                // lasts past STALE fails closed, so a revocation can never be ignored for long.
                let stale = self
                    .last_ok
                    .lock()
                    .map(|t| t.elapsed() > STALE)
                    .unwrap_or(true);
                tracing::error!(error = %e, refusing_all = stale, "cannot read API tokens");
                if stale {
                    if let Ok(mut g) = self.hashes.write() {
                        g.clear();
                    }
                }
                return;
            }
        };
        if let Ok(mut t) = self.last_ok.lock() {
            *t = Instant::now();
        }
        let hashes: Vec<(String, [u8; 32])> = list
            .iter()
            .filter(|t| t.active())
            .filter_map(|t| {
                let mut h = [0u8; 32];
                hex::decode_to_slice(&t.sha256, &mut h).ok()?;
                Some((t.name.clone(), h))
            })
            .collect();
        if let Ok(mut g) = self.hashes.write() {
            *g = hashes;
        }
        self.custody(store, &list);
    }

    /// Seals a custody record for every creation and revocation not recorded yet.
    fn custody(&self, store: &dyn AlertStore, list: &[TokenRecord]) {
        let Some(audit) = &self.audit else {
            return;
        };
        let mut done: Vec<String> = match store.kv_get(CUSTODY_KEY) {
            Ok(Some(b)) => serde_json::from_slice(&b).unwrap_or_default(),
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the token custody records");
                return;
            }
        };
        let before = done.len();
        for t in list {
            let key = format!("created:{}", t.sha256);
            if !done.contains(&key) {
                audit.record(
                    "mamori",
                    mamori_vault::AuditAction::Other,
                    &format!("api-token:{}", t.name),
                    format!(
                        "API token `{}` created at {}",
                        t.name,
                        t.created_at.to_rfc3339()
                    ),
                );
                done.push(key);
            }
            if let Some(at) = t.revoked_at {
                let key = format!("revoked:{}", t.sha256);
                if !done.contains(&key) {
                    tracing::info!(token = %t.name, "API token revoked");
                    audit.record(
                        "mamori",
                        mamori_vault::AuditAction::Other,
                        &format!("api-token:{}", t.name),
                        format!("API token `{}` revoked at {}", t.name, at.to_rfc3339()),
                    );
                    done.push(key);
                }
            }
        }
        if done.len() != before {
            let b = serde_json::to_vec(&done).unwrap_or_default();
            if let Err(e) = store.kv_put(CUSTODY_KEY, &b) {
                tracing::error!(error = %e, "cannot save the token custody records");
            }
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

    /// The name of the token, if `presented` is a valid, unrevoked one.
    pub fn verify(&self, store: &dyn AlertStore, presented: &str) -> Option<String> {
        if !presented.starts_with(PREFIX) || presented.len() != PREFIX.len() + 64 {
            return None;
        }
        self.refresh_if_due(store);
        self.lookup(&hash(presented))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::state_backends;

    /// On every state backend: the token list is the same wherever it is kept.
    #[test]
    fn create_verify_revoke() {
        for b in state_backends::all() {
            create_verify_revoke_on(&*b.store, b.name);
        }
    }

    fn create_verify_revoke_on(s: &dyn AlertStore, backend: &str) {
        let cache = TokenCache::new(s);
        let t = create(s, "ops").unwrap();
        assert!(t.starts_with("mamori_") && t.len() == 71, "{backend}");
        // Stored hashed, never in clear.
        let raw = String::from_utf8(s.kv_get(KEY).unwrap().unwrap()).unwrap();
        assert!(!raw.contains(&t[7..]), "{backend}");
        // A token created after the cache was filled is accepted within REFRESH.
        std::thread::sleep(REFRESH + Duration::from_millis(50));
        assert_eq!(cache.verify(s, &t).as_deref(), Some("ops"), "{backend}");
        assert_eq!(cache.verify(s, "mamori_nope"), None, "{backend}");
        let mut wrong = t.clone();
        wrong.replace_range(70..71, if t.ends_with('0') { "1" } else { "0" });
        assert_eq!(cache.verify(s, &wrong), None, "{backend}");
        assert!(create(s, "ops").is_err(), "{backend}");
        assert!(create(s, "bad name").is_err(), "{backend}");
        assert!(revoke(s, "ops").unwrap(), "{backend}");
        assert!(!revoke(s, "ops").unwrap(), "already revoked ({backend})");
        assert!(list(s).unwrap().is_empty(), "{backend}");
        // Issue #15 finding 4: the same cache stops accepting it within REFRESH.
        std::thread::sleep(REFRESH + Duration::from_millis(50));
        assert_eq!(cache.verify(s, &t), None, "{backend}");
        // The name can be reused; the old token stays dead.
        let t2 = create(s, "ops").unwrap();
        std::thread::sleep(REFRESH + Duration::from_millis(50));
        assert_eq!(cache.verify(s, &t2).as_deref(), Some("ops"), "{backend}");
        assert_eq!(cache.verify(s, &t), None, "{backend}");
    }

    #[test]
    fn old_records_without_revoked_at_still_read() {
        for b in state_backends::all() {
            let s = &*b.store;
            let h = hex::encode(hash("mamori_x"));
            let old =
                format!(r#"[{{"name":"a","sha256":"{h}","created_at":"2026-01-01T00:00:00Z"}}]"#);
            s.kv_put(KEY, old.as_bytes()).unwrap();
            assert_eq!(list(s).unwrap().len(), 1, "{}", b.name);
        }
    }
}
