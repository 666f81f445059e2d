//! Sign-in, sessions and CSRF for the console.
//!
//! * A session is 32 random bytes in an `HttpOnly; SameSite=Strict` cookie (`Secure` under
//!   TLS); the state database keeps only its SHA-256 (`console/session/<hex>`) with the user,
//!   the session's CSRF token and its expiry. Every request re-reads the user, so disabling a
//!   user or changing a role takes effect at the next request.
//! * CSRF: a synchronizer token per session. Console forms carry it as a hidden `csrf` field,
//!   the console's JavaScript as the `X-CSRF-Token` header; any other method than GET/HEAD
//!   without it is refused (403). The sign-in form, before there is a session, uses a
//!   double-submit cookie.
//! * Throttling: [`LOCKOUT_AFTER`](super::users::LOCKOUT_AFTER) wrong passwords in a row lock
//!   the account for [`LOCKOUT_FOR`](super::users::LOCKOUT_FOR); more than [`IP_FAILURES`]
//!   failures from one address in [`IP_WINDOW`] are answered 429 without checking anything.
//!   An unknown user name costs the same Argon2 verification as a wrong password.
//! * Every sign-in, failure, lockout and sign-out is recorded in the vault's chain of custody.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue, Method};
use chrono::{DateTime, TimeDelta, Utc};
use mamori_store::AlertStore;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::users::{self, Lockout, Role, LOCKOUT_AFTER, LOCKOUT_FOR};
use crate::api::{ApiError, AppState, Authed};

pub const SESSION_COOKIE: &str = "mamori_session";
pub const LOGIN_CSRF_COOKIE: &str = "mamori_login_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session's lifetime from sign-in.
pub const SESSION_TTL: TimeDelta = TimeDelta::hours(12);
/// Failed sign-ins from one address answered 429 past this many within [`IP_WINDOW`].
pub const IP_FAILURES: u32 = 30;
pub const IP_WINDOW: Duration = Duration::from_secs(600);

/// Per-server sign-in state that is not worth persisting.
pub struct ConsoleState {
    pub audit: Option<crate::seal::AuditHandle>,
    /// Cookies get `Secure` (the console is served over TLS).
    pub secure_cookies: bool,
    /// Where evidence bundles exported while serving are written.
    pub exports_dir: std::path::PathBuf,
    /// `[notify]` of the configuration (contacts, channels, escalation), for the settings page
    /// and its "send test" button.
    pub notify: Option<mamori_notify::NotifyConfig>,
    /// `[analytics] identities`: the identity directory file the settings page shows and edits.
    pub identities: Option<std::path::PathBuf>,
    throttle: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl ConsoleState {
    pub fn new(
        audit: Option<crate::seal::AuditHandle>,
        secure_cookies: bool,
        exports_dir: std::path::PathBuf,
    ) -> ConsoleState {
        ConsoleState {
            audit,
            secure_cookies,
            exports_dir,
            notify: None,
            identities: None,
            throttle: Mutex::new(HashMap::new()),
        }
    }

    /// With the identity directory file the settings page shows and edits.
    pub fn with_identities(mut self, path: Option<std::path::PathBuf>) -> ConsoleState {
        self.identities = path;
        self
    }

    /// With the `[notify]` section the settings page shows and tests.
    pub fn with_notify(mut self, notify: Option<mamori_notify::NotifyConfig>) -> ConsoleState {
        self.notify = notify;
        self
    }

    pub(crate) fn custody(&self, actor: &str, target: &str, detail: String) {
        if let Some(a) = &self.audit {
            a.record(actor, mamori_vault::AuditAction::Other, target, detail);
        }
    }

    fn throttled(&self, ip: IpAddr) -> bool {
        let Ok(mut m) = self.throttle.lock() else {
            return false;
        };
        m.retain(|_, (_, t)| t.elapsed() < IP_WINDOW);
        m.get(&ip).is_some_and(|(n, _)| *n >= IP_FAILURES)
    }

    fn failed_from(&self, ip: IpAddr) {
        if let Ok(mut m) = self.throttle.lock() {
            let e = m.entry(ip).or_insert((0, Instant::now()));
            e.0 += 1;
        }
    }
}

/// A session as stored (under the SHA-256 of its cookie value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user: String,
    pub csrf: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A signed-in console user, as resolved for one request.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub name: String,
    pub role: Role,
    pub csrf: String,
    pub prefs: users::Prefs,
}

pub fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn session_key(cookie: &str) -> String {
    format!(
        "console/session/{}",
        hex::encode(Sha256::digest(cookie.as_bytes()))
    )
}

/// Creates a session for `user`; returns the cookie value.
pub fn create_session(store: &dyn AlertStore, user: &str) -> Result<String, String> {
    let token = random_hex();
    let now = Utc::now();
    let s = Session {
        user: user.to_owned(),
        csrf: random_hex(),
        created_at: now,
        expires_at: now + SESSION_TTL,
    };
    let b = serde_json::to_vec(&s).map_err(|e| e.to_string())?;
    store
        .kv_put(&session_key(&token), &b)
        .map_err(|e| e.to_string())?;
    Ok(token)
}

pub fn delete_session(store: &dyn AlertStore, cookie: &str) {
    let _ = store.kv_delete(&session_key(cookie));
}

/// The user of a session cookie, if the session is live and the user exists and is enabled.
pub fn resolve(store: &dyn AlertStore, cookie: &str) -> Option<SessionUser> {
    if cookie.len() != 64 || !cookie.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let key = session_key(cookie);
    let s: Session = serde_json::from_slice(&store.kv_get(&key).ok()??).ok()?;
    if s.expires_at <= Utc::now() {
        let _ = store.kv_delete(&key);
        return None;
    }
    let u = users::find(store, &s.user).ok()??;
    if u.disabled {
        return None;
    }
    Some(SessionUser {
        prefs: users::prefs(store, &u.name),
        name: u.name,
        role: u.role,
        csrf: s.csrf,
    })
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A `Set-Cookie` value for a console cookie.
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// Read-only requests a viewer may make with a method other than GET (a search is a POST).
fn read_only_post(path: &str) -> bool {
    path == "/api/v1/search"
}

/// Authenticates an API request by its session cookie (the console's own JavaScript): the
/// session must be live, a state change must carry the session's CSRF token in
/// `X-CSRF-Token`, and a viewer may change nothing.
pub(crate) async fn authenticate_api(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    st: &AppState,
) -> Result<Authed, ApiError> {
    let cookie = cookie(headers, SESSION_COOKIE)
        .ok_or(ApiError::Unauthorized)?
        .to_owned();
    let s = std::sync::Arc::clone(st);
    let user = crate::api::blocking(move || Ok(resolve(&*s.alerts, &cookie)))
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let safe = matches!(*method, Method::GET | Method::HEAD);
    if !safe {
        let presented = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !same_secret(presented, &user.csrf) {
            return Err(ApiError::Forbidden(
                "missing or invalid CSRF token (X-CSRF-Token)".into(),
            ));
        }
        if !user.role.can_change() && !read_only_post(path) {
            return Err(ApiError::Forbidden(format!(
                "the role `{}` cannot change anything",
                user.role.as_str()
            )));
        }
    }
    Ok(Authed {
        name: user.name,
        role: user.role,
    })
}

/// Why a sign-in failed (the message shown is the same for all but `Locked` and `Throttled`,
/// so a wrong name and a wrong password cannot be told apart).
#[derive(Debug, PartialEq, Eq)]
pub enum LoginError {
    Invalid,
    Locked(DateTime<Utc>),
    Throttled,
    Internal(String),
}

/// Checks a name and password (blocking: Argon2 takes tens of milliseconds by design).
/// Records the outcome in the chain of custody and returns the new session's cookie value.
pub fn login(
    st: &ConsoleState,
    store: &dyn AlertStore,
    name: &str,
    password: &str,
    ip: IpAddr,
) -> Result<String, LoginError> {
    if st.throttled(ip) {
        st.custody(
            "console",
            &format!("console-user:{}", safe_name(name)),
            format!("sign-in refused: too many failures from {ip}"),
        );
        return Err(LoginError::Throttled);
    }
    let user = users::find(store, name).map_err(LoginError::Internal)?;
    let now = Utc::now();
    let mut lock = user
        .as_ref()
        .map(|u| users::lockout(store, &u.name))
        .unwrap_or_default();
    if let Some(until) = lock.locked_until {
        if until > now {
            // Verify anyway so a locked account answers as slowly as any other.
            let _ = users::verify_password(users::dummy_hash(), password);
            st.failed_from(ip);
            st.custody(
                "console",
                &format!("console-user:{}", safe_name(name)),
                format!("sign-in refused from {ip}: the account is locked until {until}"),
            );
            return Err(LoginError::Locked(until));
        }
        lock = Lockout::default();
    }
    let ok = match &user {
        Some(u) => users::verify_password(&u.hash, password) && !u.disabled,
        None => {
            let _ = users::verify_password(users::dummy_hash(), password);
            false
        }
    };
    let Some(u) = user.filter(|_| ok) else {
        st.failed_from(ip);
        let mut detail = format!("sign-in failed from {ip}");
        if let Some(u) = users::find(store, name).ok().flatten() {
            lock.failed += 1;
            if lock.failed >= LOCKOUT_AFTER {
                let until = now + LOCKOUT_FOR;
                lock = Lockout {
                    failed: 0,
                    locked_until: Some(until),
                };
                detail.push_str(&format!(
                    "; {LOCKOUT_AFTER} wrong passwords in a row: locked until {until}"
                ));
                tracing::warn!(user = %u.name, %ip, "console account locked after repeated wrong passwords");
            }
            users::put_lockout(store, &u.name, &lock).map_err(LoginError::Internal)?;
        } else {
            detail.push_str(" (no such user)");
        }
        st.custody(
            "console",
            &format!("console-user:{}", safe_name(name)),
            detail,
        );
        return match lock.locked_until {
            Some(until) => Err(LoginError::Locked(until)),
            None => Err(LoginError::Invalid),
        };
    };
    users::clear_lockout(store, &u.name);
    let cookie = create_session(store, &u.name).map_err(LoginError::Internal)?;
    st.custody(
        &u.name,
        &format!("console-user:{}", u.name),
        format!("signed in from {ip} (role {})", u.role.as_str()),
    );
    Ok(cookie)
}

/// A user name as it may appear in a custody record (a sign-in attempt's name is untrusted).
fn safe_name(name: &str) -> String {
    name.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mamori_store::MemoryAlertStore;

    fn state() -> ConsoleState {
        ConsoleState::new(None, false, std::env::temp_dir())
    }

    #[test]
    fn sign_in_session_and_lockout() {
        let s = MemoryAlertStore::new();
        let st = state();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        users::add(&s, "aki", Role::Viewer, "correct horse battery").unwrap();
        let c = login(&st, &s, "aki", "correct horse battery", ip).unwrap();
        let u = resolve(&s, &c).unwrap();
        assert_eq!((u.name.as_str(), u.role), ("aki", Role::Viewer));
        // Stored under its hash only.
        assert!(s.kv_get(&format!("console/session/{c}")).unwrap().is_none());
        assert!(resolve(&s, &random_hex()).is_none());
        assert!(resolve(&s, "../../x").is_none());
        assert_eq!(
            login(&st, &s, "nobody", "whatever", ip),
            Err(LoginError::Invalid)
        );
        for i in 1..LOCKOUT_AFTER {
            assert_eq!(
                login(&st, &s, "aki", "wrong password", ip),
                Err(LoginError::Invalid),
                "attempt {i}"
            );
        }
        assert!(matches!(
            login(&st, &s, "aki", "wrong password", ip),
            Err(LoginError::Locked(_))
        ));
        // Locked: even the right password is refused.
        assert!(matches!(
            login(&st, &s, "aki", "correct horse battery", ip),
            Err(LoginError::Locked(_))
        ));
        // Disabling ends the session at its next use.
        users::set_disabled(&s, "aki", true).unwrap();
        assert!(resolve(&s, &c).is_none());
    }

    #[test]
    fn cookies_are_read_and_set_strictly() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; mamori_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        let v = set_cookie(SESSION_COOKIE, "x", 60, true);
        let v = v.to_str().unwrap();
        assert!(v.contains("HttpOnly") && v.contains("SameSite=Strict") && v.contains("Secure"));
    }
}
