//! The agents page (`/agents`): enrolled host agents with name, host, OS, version, state, last
//! seen and disk buffer depth, rendered on the server from the registry the `/api/v1/agents`
//! route reads. Admins get a revoke button per active agent: a form post with the session's
//! CSRF token, checked here, then the same `Agents::revoke` as the API, recorded in the chain
//! of custody. Agent-reported text (host name, OS, version) is attacker-controlled: the
//! template autoescapes it; the page has no script.

use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;

use crate::api::{blocking, ApiError, AppState};

#[derive(Deserialize, Default)]
pub(super) struct Shown {
    /// The agent just revoked (its name, shown as text).
    revoked: Option<String>,
}

pub(super) async fn page(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<Shown>,
) -> Response {
    let user = match super::pages::page_user(&st, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let lang = super::pages::lang_of(Some(&user), &headers);
    let agents = match &st.agents {
        Some(a) => a.report(chrono::Utc::now())["agents"].clone(),
        None => serde_json::json!([]),
    };
    super::pages::render(
        "agents.html",
        context! {
        ..super::pages::chrome(&user, lang, "agents", "/agents"),
        ..context! {
        agents => agents,
        is_admin => user.role == super::Role::Admin,
        csrf => user.csrf,
        revoked => q.revoked.filter(|r| crate::tokens::valid_name(r)),
        }},
    )
}

#[derive(Deserialize)]
pub(super) struct RevokeForm {
    csrf: String,
}

pub(super) async fn revoke(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<RevokeForm>,
) -> Response {
    let user = match super::pages::form_user(&st, &headers, &f.csrf).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if user.role != super::Role::Admin {
        return ApiError::Forbidden(format!(
            "only an admin may revoke an agent (you are `{}`)",
            user.role.as_str()
        ))
        .into_response();
    }
    let Some(agents) = st.agents.clone() else {
        return ApiError::NotFound("agents are not available".into()).into_response();
    };
    let who = id.clone();
    let a = Arc::clone(&agents);
    let name = match blocking(move || {
        let rec = a.find_active(&who)?;
        a.revoke(&rec.id)?;
        Ok(rec.name)
    })
    .await
    {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    st.console.custody(
        &user.name,
        &format!("agent:{name}"),
        format!("revoked agent {name} ({id}) in the console"),
    );
    let mut r = Redirect::to(&format!("/agents?revoked={name}")).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::super::i18n::Lang;
    use super::*;

    #[test]
    fn the_page_escapes_what_agents_report_and_shows_revoke_to_admins_only() {
        let agents = serde_json::json!([{ "id": "ag-1", "name": "web01", "hostname": "<script>x</script>",
            "os": "Debian <b>12</b>", "version": "0.1", "state": "active", "last_seen": "2026-12-07T00:00:00Z",
            "events": 5, "buffer": { "bytes": 10, "pending": 2, "dropped": 0 } }]);
        use super::super::pages::{chrome, env, test_user};
        use super::super::users::Role;
        let admin = test_user(Role::Admin);
        let t = env().get_template("agents.html").unwrap();
        let html = t
            .render(context! { ..chrome(&admin, Lang::Ja, "agents", "/agents"), ..context! { agents => agents.clone(), is_admin => true, revoked => None::<String> } })
            .unwrap();
        assert!(
            !html.contains("<script>x") && html.contains("&lt;script&gt;"),
            "{html}"
        );
        assert!(
            html.contains("稼働中")
                && html.contains("revoke-ag-1")
                && html.contains("value=\"tok\"")
        );
        // The shared top bar: every navigation link, this page's marked, the language switch
        // returning here, sign-out, and the user's name escaped.
        for nav in [
            "nav-overview",
            "nav-alerts",
            "nav-incidents",
            "nav-search",
            "nav-rules",
            "nav-scans",
            "nav-settings",
        ] {
            assert!(
                html.contains(&format!("id=\"{nav}\"")),
                "{nav} missing: {html}"
            );
        }
        assert!(html.contains("class=\"on\" id=\"nav-agents\""), "{html}");
        assert!(
            html.contains("id=\"lang-switch\"")
                && html.contains("value=\"&#x2f;agents\"")
                && html.contains("id=\"sign-out\"")
        );
        assert!(
            html.contains("op&lt;1&gt;") && html.contains("管理者"),
            "{html}"
        );
        let viewer = test_user(Role::Viewer);
        let html = t
            .render(context! { ..chrome(&viewer, Lang::En, "agents", "/agents"), ..context! { agents => agents, is_admin => false, revoked => None::<String> } })
            .unwrap();
        assert!(!html.contains("revoke-ag-1") && html.contains("active"));
        assert!(
            html.contains(">日本語</button>") && html.contains("Sign out"),
            "{html}"
        );
    }
}
