//! Users over the API (admin only): list, add, change role, disable/enable, set a password.
//! Every change is recorded in the chain of custody with who made it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value as JsonValue};

use super::users::{self, Role};
use crate::api::{blocking, ApiError, AppState, Authed};

pub(super) async fn list_users(
    auth: Authed,
    State(st): State<AppState>,
) -> Result<Json<JsonValue>, ApiError> {
    auth.require_admin()?;
    let s = Arc::clone(&st);
    let list = blocking(move || {
        let list = users::read(&*s.alerts).map_err(ApiError::Internal)?;
        Ok(list
            .into_iter()
            .map(|u| {
                let l = users::lockout(&*s.alerts, &u.name);
                json!({
                    "name": u.name,
                    "role": u.role,
                    "disabled": u.disabled,
                    "created_at": u.created_at,
                    "locked_until": l.locked_until,
                })
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(json!({ "users": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUser {
    name: String,
    role: String,
    password: String,
}

fn role(s: &str) -> Result<Role, ApiError> {
    Role::parse(s)
        .ok_or_else(|| ApiError::BadRequest(format!("unknown role `{s}` (admin, analyst, viewer)")))
}

pub(super) async fn add_user(
    auth: Authed,
    State(st): State<AppState>,
    b: Result<Json<NewUser>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<JsonValue>, ApiError> {
    auth.require_admin()?;
    let Json(b) = b.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let r = role(&b.role)?;
    let s = Arc::clone(&st);
    let name = b.name.clone();
    blocking(move || {
        if users::find(&*s.alerts, &b.name)
            .map_err(ApiError::Internal)?
            .is_some()
        {
            return Err(ApiError::Conflict(format!(
                "a user named `{}` exists",
                b.name
            )));
        }
        users::add(&*s.alerts, &b.name, r, &b.password).map_err(ApiError::BadRequest)
    })
    .await?;
    st.console.custody(
        &auth.name,
        &format!("console-user:{name}"),
        format!("user added with role {}", r.as_str()),
    );
    Ok(Json(json!({ "name": name, "role": r })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangeUser {
    role: Option<String>,
    disabled: Option<bool>,
    password: Option<String>,
}

pub(super) async fn change_user(
    auth: Authed,
    State(st): State<AppState>,
    Path(name): Path<String>,
    b: Result<Json<ChangeUser>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<JsonValue>, ApiError> {
    auth.require_admin()?;
    let Json(b) = b.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let new_role = b.role.as_deref().map(role).transpose()?;
    if name == auth.name && (b.disabled == Some(true) || new_role.is_some_and(|r| r != Role::Admin))
    {
        return Err(ApiError::Conflict(
            "you cannot disable or demote yourself; ask another admin".into(),
        ));
    }
    let s = Arc::clone(&st);
    let n = name.clone();
    let mut what = Vec::new();
    if let Some(r) = new_role {
        what.push(format!("role set to {}", r.as_str()));
    }
    if let Some(d) = b.disabled {
        what.push(if d {
            "disabled".into()
        } else {
            "enabled".to_owned()
        });
    }
    if b.password.is_some() {
        what.push("password changed".into());
    }
    blocking(move || {
        let st = &*s.alerts;
        let mut found = users::find(st, &n).map_err(ApiError::Internal)?.is_some();
        if let Some(r) = new_role {
            found &= users::set_role(st, &n, r).map_err(ApiError::Internal)?;
        }
        if let Some(d) = b.disabled {
            found &= users::set_disabled(st, &n, d).map_err(ApiError::Internal)?;
        }
        if let Some(p) = &b.password {
            found &= users::set_password(st, &n, p).map_err(ApiError::BadRequest)?;
        }
        if found {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!("no user `{n}`")))
        }
    })
    .await?;
    st.console
        .custody(&auth.name, &format!("console-user:{name}"), what.join("; "));
    Ok(Json(json!({ "name": name, "changed": what })))
}
