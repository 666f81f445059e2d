//! The console's pages: one template each, rendered for a signed-in user; the sign-in form;
//! sign-out; language and time zone; the embedded assets.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use minijinja::{context, Environment};
use serde::Deserialize;

use super::auth::{self, SessionUser, LOGIN_CSRF_COOKIE, SESSION_COOKIE};
use super::i18n::Lang;
use super::users;
use crate::api::{blocking, ApiError, AppState};

/// The templates, compiled once. Autoescaping is HTML for `.html` names (minijinja's
/// default), so every value is escaped unless a template says otherwise — none does.
pub(super) fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut e = Environment::new();
        for (name, src) in TEMPLATES {
            if let Err(err) = e.add_template(name, src) {
                // A template that does not compile is a build mistake; the test below catches it.
                tracing::error!(template = name, error = %err, "console template does not compile");
            }
        }
        e
    })
}

const TEMPLATES: &[(&str, &str)] = &[
    (
        "base.html",
        include_str!("../../console/templates/base.html"),
    ),
    (
        "login.html",
        include_str!("../../console/templates/login.html"),
    ),
    (
        "page.html",
        include_str!("../../console/templates/page.html"),
    ),
    (
        "header.html",
        include_str!("../../console/templates/header.html"),
    ),
    (
        "agents.html",
        include_str!("../../console/templates/agents.html"),
    ),
    (
        "scans.html",
        include_str!("../../console/templates/scans.html"),
    ),
];

/// The embedded assets: name, content type, bytes. Served with a year of caching; their
/// names carry the version (`?v=`) in the pages that link them.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/assets/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../../console/assets/console.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/assets/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../console/assets/uPlot.min.css"),
    ),
];

pub(super) async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ct, body)) => (
            [
                (header::CONTENT_TYPE, *ct),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

fn html(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

pub(super) fn render(name: &str, ctx: minijinja::Value) -> Response {
    match env().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(s) => html(s),
        Err(e) => ApiError::Internal(format!("console template {name}: {e}")).into_response(),
    }
}

/// What the shared top bar (`header.html`) needs of a signed-in page: the words in `lang`, the
/// page's name (its navigation link is marked), the user, role and CSRF token, and `back`, the
/// path the language switch returns to.
pub(super) fn chrome(user: &SessionUser, lang: Lang, page: &str, back: &str) -> minijinja::Value {
    context! {
        page => page,
        lang => lang.as_str(),
        ja => lang == Lang::Ja,
        t => super::i18n::words(lang),
        user => user.name.clone(),
        role => user.role.as_str(),
        csrf => user.csrf.clone(),
        back => back,
        version => env!("CARGO_PKG_VERSION"),
    }
}

/// A signed-in user for the templates' tests.
#[cfg(test)]
pub(super) fn test_user(role: users::Role) -> SessionUser {
    SessionUser {
        name: "op<1>".into(),
        role,
        csrf: "tok".into(),
        prefs: users::Prefs::default(),
    }
}

pub(super) fn lang_of(user: Option<&SessionUser>, headers: &HeaderMap) -> Lang {
    user.and_then(|u| u.prefs.lang.as_deref())
        .and_then(Lang::parse)
        .unwrap_or_else(|| Lang::from_headers(headers))
}

/// The signed-in user of a page request, or the redirect to the sign-in form.
pub(super) async fn page_user(st: &AppState, headers: &HeaderMap) -> Result<SessionUser, Response> {
    let Some(cookie) = auth::cookie(headers, SESSION_COOKIE).map(str::to_owned) else {
        return Err(Redirect::to("/login").into_response());
    };
    let s = Arc::clone(st);
    let user = blocking(move || Ok(auth::resolve(&*s.alerts, &cookie)))
        .await
        .map_err(IntoResponse::into_response)?;
    user.ok_or_else(|| Redirect::to("/login").into_response())
}

/// Renders page `page` (its script part is chosen by `data-page`) with `id` when it shows one
/// thing.
async fn show(st: AppState, headers: HeaderMap, page: &'static str, id: Option<i64>) -> Response {
    let user = match page_user(&st, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let lang = lang_of(Some(&user), &headers);
    let tz = user
        .prefs
        .tz
        .clone()
        .or_else(|| lang.default_tz().map(str::to_owned))
        .unwrap_or_default();
    render(
        "page.html",
        context! {
            page => page,
            id => id,
            lang => lang.as_str(),
            t => super::i18n::words(lang),
            user => user.name,
            role => user.role.as_str(),
            can_change => user.role.can_change(),
            is_admin => user.role == users::Role::Admin,
            csrf => user.csrf,
            tz => tz,
            tz_pref => user.prefs.tz.clone().unwrap_or_default(),
            version => env!("CARGO_PKG_VERSION"),
        },
    )
}

pub(super) async fn overview(State(st): State<AppState>, h: HeaderMap) -> Response {
    show(st, h, "overview", None).await
}
pub(super) async fn alerts(State(st): State<AppState>, h: HeaderMap) -> Response {
    show(st, h, "alerts", None).await
}
pub(super) async fn alert(
    State(st): State<AppState>,
    Path(id): Path<i64>,
    h: HeaderMap,
) -> Response {
    show(st, h, "alert", Some(id)).await
}
pub(super) async fn incidents(State(st): State<AppState>, h: HeaderMap) -> Response {
    show(st, h, "incidents", None).await
}
pub(super) async fn incident(
    State(st): State<AppState>,
    Path(id): Path<i64>,
    h: HeaderMap,
) -> Response {
    show(st, h, "incident", Some(id)).await
}
pub(super) async fn search(State(st): State<AppState>, h: HeaderMap) -> Response {
    show(st, h, "search", None).await
}
pub(super) async fn rules(State(st): State<AppState>, h: HeaderMap) -> Response {
    show(st, h, "rules", None).await
}
pub(super) async fn settings(State(st): State<AppState>, h: HeaderMap) -> Response {
    show(st, h, "settings", None).await
}

fn login_page(
    st: &AppState,
    headers: &HeaderMap,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let lang = lang_of(None, headers);
    let t = super::i18n::words(lang);
    let token = auth::random_hex();
    let mut r = render(
        "login.html",
        context! {
            lang => lang.as_str(),
            error => error.and_then(|k| t.get(k).copied()),
            t => t,
            csrf => token,
            version => env!("CARGO_PKG_VERSION"),
        },
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::SET_COOKIE,
        auth::set_cookie(LOGIN_CSRF_COOKIE, &token, 3600, st.console.secure_cookies),
    );
    r
}

pub(super) async fn login_form(State(st): State<AppState>, h: HeaderMap) -> Response {
    login_page(&st, &h, None, StatusCode::OK)
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    user: String,
    password: String,
    csrf: String,
}

pub(super) async fn login(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    h: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let cookie_token = auth::cookie(&h, LOGIN_CSRF_COOKIE).unwrap_or("");
    if cookie_token.is_empty() || !auth::same_secret(cookie_token, &f.csrf) {
        return login_page(&st, &h, Some("login_expired"), StatusCode::FORBIDDEN);
    }
    if f.user.len() > 64 || f.password.len() > 1024 {
        return login_page(&st, &h, Some("login_invalid"), StatusCode::UNAUTHORIZED);
    }
    let s = Arc::clone(&st);
    let r = blocking(move || {
        Ok(auth::login(
            &s.console,
            &*s.alerts,
            &f.user,
            &f.password,
            peer.ip(),
        ))
    })
    .await;
    match r {
        Ok(Ok(cookie)) => {
            let mut r = Redirect::to("/").into_response();
            r.headers_mut().insert(
                header::SET_COOKIE,
                auth::set_cookie(
                    SESSION_COOKIE,
                    &cookie,
                    auth::SESSION_TTL.num_seconds(),
                    st.console.secure_cookies,
                ),
            );
            r
        }
        Ok(Err(auth::LoginError::Invalid)) => {
            login_page(&st, &h, Some("login_invalid"), StatusCode::UNAUTHORIZED)
        }
        Ok(Err(auth::LoginError::Locked(_))) => {
            login_page(&st, &h, Some("login_locked"), StatusCode::FORBIDDEN)
        }
        Ok(Err(auth::LoginError::Throttled)) => login_page(
            &st,
            &h,
            Some("login_throttled"),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        Ok(Err(auth::LoginError::Internal(e))) => ApiError::Internal(e).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    csrf: String,
}

/// The session behind a form post, if its CSRF field matches.
pub(super) async fn form_user(
    st: &AppState,
    h: &HeaderMap,
    csrf: &str,
) -> Result<SessionUser, Response> {
    let user = page_user(st, h).await?;
    if !auth::same_secret(csrf, &user.csrf) {
        return Err(ApiError::Forbidden("missing or invalid CSRF token".into()).into_response());
    }
    Ok(user)
}

pub(super) async fn logout(
    State(st): State<AppState>,
    h: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let user = match form_user(&st, &h, &f.csrf).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Some(c) = auth::cookie(&h, SESSION_COOKIE).map(str::to_owned) {
        let s = Arc::clone(&st);
        let _ = blocking(move || {
            auth::delete_session(&*s.alerts, &c);
            Ok(())
        })
        .await;
    }
    st.console.custody(
        &user.name,
        &format!("console-user:{}", user.name),
        "signed out".into(),
    );
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        auth::set_cookie(SESSION_COOKIE, "", 0, st.console.secure_cookies),
    );
    r
}

#[derive(Deserialize)]
pub(super) struct PrefsForm {
    csrf: String,
    lang: Option<String>,
    tz: Option<String>,
    back: Option<String>,
}

/// Whether `tz` looks like an IANA zone name (`Asia/Tokyo`, `UTC`); the browser validates it
/// for real when it formats a time, and an unknown one falls back to the default.
fn plausible_tz(tz: &str) -> bool {
    !tz.is_empty()
        && tz.len() <= 64
        && tz
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'))
}

/// A same-site path to return to (never another host: no open redirect).
fn back_path(b: Option<&str>) -> &str {
    match b {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && p.len() < 2000
                && p.bytes().all(|c| c.is_ascii_graphic()) =>
        {
            p
        }
        _ => "/",
    }
}

pub(super) async fn prefs(
    State(st): State<AppState>,
    h: HeaderMap,
    Form(f): Form<PrefsForm>,
) -> Response {
    let user = match form_user(&st, &h, &f.csrf).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let mut p = user.prefs.clone();
    if let Some(l) = f.lang.as_deref() {
        p.lang = Lang::parse(l).map(|l| l.as_str().to_owned());
    }
    if let Some(tz) = f.tz.as_deref() {
        let tz = tz.trim();
        p.tz = plausible_tz(tz).then(|| tz.to_owned());
    }
    let s = Arc::clone(&st);
    let name = user.name.clone();
    if let Err(e) =
        blocking(move || users::put_prefs(&*s.alerts, &name, &p).map_err(ApiError::Internal)).await
    {
        return e.into_response();
    }
    let mut r = Redirect::to(back_path(f.back.as_deref())).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_compile() {
        for (name, _) in TEMPLATES {
            env().get_template(name).unwrap();
        }
    }

    #[test]
    fn template_values_are_escaped() {
        let out = env()
            .get_template("login.html")
            .unwrap()
            .render(context! {
                lang => "en",
                t => super::super::i18n::words(Lang::En),
                error => "<script>alert(1)</script>",
                csrf => "\"><img src=x onerror=alert(1)>",
                version => "0",
            })
            .unwrap();
        assert!(!out.contains("<script>alert"), "{out}");
        assert!(!out.contains("<img src=x"), "{out}");
        assert!(out.contains("&lt;script&gt;"), "{out}");
    }

    #[test]
    fn redirects_stay_on_this_site() {
        assert_eq!(back_path(Some("/alerts?x=1")), "/alerts?x=1");
        assert_eq!(back_path(Some("//evil.example/")), "/");
        assert_eq!(back_path(Some("https://evil.example/")), "/");
        assert_eq!(back_path(Some("/\\evil.example")), "/");
        assert_eq!(back_path(None), "/");
        assert!(plausible_tz("Asia/Tokyo") && !plausible_tz("x\"><script>"));
    }
}
