//! Console users: names, roles and Argon2id password hashes in the state database.
//!
//! The user list lives in the alert store's key/value table (`console/users`), written by the
//! CLI (`mamori user …`) and by an admin in the console. What the server changes on its own —
//! failed sign-ins and lockouts (`console/lockout/<name>`), language and time zone
//! (`console/prefs/<name>`) — lives under separate keys, so the server never overwrites a
//! change the CLI made to the list while it runs.
//!
//! Passwords are hashed with Argon2id (the crate's defaults: 19 MiB, 2 passes), each with its
//! own random salt; only the PHC string is stored.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use chrono::{DateTime, TimeDelta, Utc};
use mamori_store::AlertStore;
use serde::{Deserialize, Serialize};

pub const USERS_KEY: &str = "console/users";
/// Wrong passwords in a row that lock an account.
pub const LOCKOUT_AFTER: u32 = 10;
/// How long a locked account stays locked.
pub const LOCKOUT_FOR: TimeDelta = TimeDelta::minutes(15);
/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 10;

/// What a user may do. Enforced by the server on every request, never only by hiding buttons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// Works alerts and incidents (acknowledge, assign, phases, tasks, approve and roll back
    /// suggested responses, export evidence); cannot manage users or response policy.
    Analyst,
    /// Everything, including users.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "analyst" => Some(Role::Analyst),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Analyst => "analyst",
            Role::Viewer => "viewer",
        }
    }

    /// Whether this role may change state (anything but reading).
    pub fn can_change(self) -> bool {
        self >= Role::Analyst
    }
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// Argon2id PHC string.
    pub hash: String,
    #[serde(default)]
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

/// Failed sign-ins of one account (server-written).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lockout {
    pub failed: u32,
    pub locked_until: Option<DateTime<Utc>>,
}

/// A user's console preferences (server-written).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prefs {
    /// `ja` or `en`; none = the browser's language.
    pub lang: Option<String>,
    /// IANA zone name; none = JST for Japanese, the browser's zone for English.
    pub tz: Option<String>,
}

pub fn valid_name(name: &str) -> bool {
    crate::tokens::valid_name(name)
}

pub fn read(store: &dyn AlertStore) -> Result<Vec<User>, String> {
    match store.kv_get(USERS_KEY).map_err(|e| e.to_string())? {
        None => Ok(Vec::new()),
        Some(b) => serde_json::from_slice(&b).map_err(|e| format!("user list is corrupt: {e}")),
    }
}

/// Changes the user list with `f`, atomically against every other writer (another process,
/// another cluster node): `f` may run again on a list someone else changed meanwhile.
fn update<R>(
    store: &dyn AlertStore,
    f: impl FnMut(&mut Vec<User>) -> Result<Option<R>, String>,
) -> Result<Option<R>, String> {
    crate::kvlist::update(store, USERS_KEY, "user list", f)
}

/// Changes the named user with `f`; whether the user exists.
fn update_user(store: &dyn AlertStore, name: &str, f: impl Fn(&mut User)) -> Result<bool, String> {
    Ok(update(store, |list| {
        Ok(list.iter_mut().find(|u| u.name == name).map(&f))
    })?
    .is_some())
}

pub fn find(store: &dyn AlertStore, name: &str) -> Result<Option<User>, String> {
    Ok(read(store)?.into_iter().find(|u| u.name == name))
}

pub fn hash_password(password: &str) -> Result<String, String> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(format!(
            "the password is too short: use at least {MIN_PASSWORD} characters"
        ));
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash of a random password, verified against when the user does not exist so that an
/// unknown name takes as long as a wrong password (no user enumeration by timing).
pub fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"not a password of anyone", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

pub fn add(store: &dyn AlertStore, name: &str, role: Role, password: &str) -> Result<(), String> {
    if !valid_name(name) {
        return Err(format!(
            "invalid user name `{name}`: use 1-64 letters, digits, `.`, `_` or `-`"
        ));
    }
    let user = User {
        name: name.to_owned(),
        role,
        hash: hash_password(password)?,
        disabled: false,
        created_at: Utc::now(),
    };
    update(store, |list| {
        if list.iter().any(|u| u.name == name) {
            return Err(format!("a user named `{name}` exists"));
        }
        list.push(user.clone());
        Ok(Some(()))
    })?;
    Ok(())
}

/// Enables or disables a user; whether the user exists. Disabling ends the user's sessions
/// at their next request (every request re-reads the user).
pub fn set_disabled(store: &dyn AlertStore, name: &str, disabled: bool) -> Result<bool, String> {
    if !update_user(store, name, |u| u.disabled = disabled)? {
        return Ok(false);
    }
    if !disabled {
        // Re-enabling also lifts a lockout.
        store
            .kv_delete(&lockout_key(name))
            .map_err(|e| e.to_string())?;
    }
    Ok(true)
}

/// Sets a new password (and lifts a lockout); whether the user exists.
pub fn set_password(store: &dyn AlertStore, name: &str, password: &str) -> Result<bool, String> {
    let hash = hash_password(password)?;
    if !update_user(store, name, |u| u.hash = hash.clone())? {
        return Ok(false);
    }
    store
        .kv_delete(&lockout_key(name))
        .map_err(|e| e.to_string())?;
    Ok(true)
}

/// Changes a user's role; whether the user exists.
pub fn set_role(store: &dyn AlertStore, name: &str, role: Role) -> Result<bool, String> {
    update_user(store, name, |u| u.role = role)
}

fn lockout_key(name: &str) -> String {
    format!("console/lockout/{name}")
}

pub fn lockout(store: &dyn AlertStore, name: &str) -> Lockout {
    store
        .kv_get(&lockout_key(name))
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn put_lockout(store: &dyn AlertStore, name: &str, l: &Lockout) -> Result<(), String> {
    let b = serde_json::to_vec(l).map_err(|e| e.to_string())?;
    store
        .kv_put(&lockout_key(name), &b)
        .map_err(|e| e.to_string())
}

pub fn clear_lockout(store: &dyn AlertStore, name: &str) {
    let _ = store.kv_delete(&lockout_key(name));
}

pub fn prefs_key(name: &str) -> String {
    format!("console/prefs/{name}")
}

pub fn prefs(store: &dyn AlertStore, name: &str) -> Prefs {
    store
        .kv_get(&prefs_key(name))
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn put_prefs(store: &dyn AlertStore, name: &str, p: &Prefs) -> Result<(), String> {
    let b = serde_json::to_vec(p).map_err(|e| e.to_string())?;
    store
        .kv_put(&prefs_key(name), &b)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::state_backends;

    /// On every state backend: the user list is the same wherever it is kept.
    #[test]
    fn add_verify_disable_passwd() {
        for b in state_backends::all() {
            eprintln!("backend {}", b.name);
            add_verify_disable_passwd_on(&*b.store);
        }
    }

    fn add_verify_disable_passwd_on(s: &dyn AlertStore) {
        add(s, "aki", Role::Analyst, "correct horse battery").unwrap();
        assert!(add(s, "aki", Role::Viewer, "correct horse battery").is_err());
        assert!(add(s, "bad name", Role::Viewer, "correct horse battery").is_err());
        assert!(add(s, "short", Role::Viewer, "short").is_err());
        let u = find(s, "aki").unwrap().unwrap();
        assert!(u.hash.starts_with("$argon2id$"), "{}", u.hash);
        // Never stored in clear.
        let raw = String::from_utf8(s.kv_get(USERS_KEY).unwrap().unwrap()).unwrap();
        assert!(!raw.contains("correct horse"));
        assert!(verify_password(&u.hash, "correct horse battery"));
        assert!(!verify_password(&u.hash, "correct horse batterY"));
        assert!(!verify_password("garbage", "x"));
        assert!(set_disabled(s, "aki", true).unwrap());
        assert!(find(s, "aki").unwrap().unwrap().disabled);
        assert!(!set_disabled(s, "nobody", true).unwrap());
        put_lockout(
            s,
            "aki",
            &Lockout {
                failed: 3,
                locked_until: None,
            },
        )
        .unwrap();
        assert!(set_password(s, "aki", "another long password").unwrap());
        assert_eq!(lockout(s, "aki"), Lockout::default());
        let u = find(s, "aki").unwrap().unwrap();
        assert!(verify_password(&u.hash, "another long password"));
        assert!(Role::Analyst.can_change() && !Role::Viewer.can_change());
    }
}
