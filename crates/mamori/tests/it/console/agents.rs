//! The agents page (`/agents`) against the real binary: an agent enrolled over the API is
//! listed with its OS, version, state and buffer; what it reported is escaped; admins get a
//! revoke button that needs the session's CSRF token, viewers neither see nor may use it; a
//! revoked agent's batches are refused.

use super::*;

#[test]
fn console_agents_page_lists_and_admins_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, cfg) = start(dir.path(), "");
    let a = srv.http;
    let out = mamori(&[
        "agent",
        "token",
        "create",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    let body = serde_json::json!({ "token": token, "name": "web01", "hostname": "web01.example",
        "os": "Debian <b>12</b>", "version": "0.1.0" });
    let (s, _, b) = raw(
        a,
        "POST",
        "/api/v1/agents/enroll",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(s, 200, "{}", text(&b));
    let enrolled: Value = serde_json::from_slice(&b).unwrap();
    let id = enrolled["agent_id"].as_str().unwrap().to_owned();
    let cred = enrolled["credential"].as_str().unwrap().to_owned();

    // Signed out: to the sign-in form.
    let (s, head, _) = raw(a, "GET", "/agents", &[], b"");
    assert_eq!(s, 303, "{head}");
    assert!(head.contains("location: /login"), "{head}");

    let admin = Session::new(a, "admin");
    let viewer = Session::new(a, "viewer");
    let page = |who: &Session, lang: &str| {
        let (s, head, b) = raw(
            a,
            "GET",
            "/agents",
            &[("Cookie", &who.cookie), ("Accept-Language", lang)],
            b"",
        );
        assert_eq!(s, 200);
        assert!(head.contains("content-security-policy"), "{head}");
        text(&b)
    };
    let html = page(&admin, "en");
    assert!(
        html.contains("web01.example") && html.contains("0.1.0"),
        "{html}"
    );
    assert!(
        html.contains("Debian &lt;b&gt;12&lt;") && !html.contains("<b>12"),
        "escaped: {html}"
    );
    assert!(html.contains(&format!("id=\"revoke-{id}\"")), "{html}");
    assert!(html.contains(">active<"), "{html}");
    let vhtml = page(&viewer, "en");
    assert!(vhtml.contains("web01.example"));
    assert!(!vhtml.contains("revoke-"), "viewers see no revoke button");

    let form = |who: &Session, csrf: &str| {
        raw(
            a,
            "POST",
            &format!("/agents/{id}/revoke"),
            &[
                ("Cookie", &who.cookie),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            format!("csrf={csrf}").as_bytes(),
        )
    };
    // A viewer may not, nor an admin without the CSRF token.
    assert_eq!(form(&viewer, &viewer.csrf).0, 403);
    assert_eq!(form(&admin, &"0".repeat(64)).0, 403);
    let (_, v) = srv.get("/api/v1/agents");
    assert_eq!(v["agents"][0]["state"], "active", "{v}");
    // The admin revokes: the page says so, the agent is cut off.
    let (s, head, _) = form(&admin, &admin.csrf);
    assert_eq!(s, 303, "{head}");
    assert!(head.contains("location: /agents?revoked=web01"), "{head}");
    let (s, _, b) = raw(
        a,
        "GET",
        "/agents?revoked=web01",
        &[("Cookie", &admin.cookie), ("Accept-Language", "ja")],
        b"",
    );
    assert_eq!(s, 200);
    let html = text(&b);
    assert!(
        html.contains("失効") && html.contains("id=\"agent-revoked\""),
        "{html}"
    );
    assert!(!html.contains(&format!("id=\"revoke-{id}\"")), "{html}");
    let (_, v) = srv.get("/api/v1/agents");
    assert_eq!(v["agents"][0]["state"], "revoked", "{v}");
    let (s, _, _) = raw(
        a,
        "POST",
        "/api/v1/agents/heartbeat",
        &[
            ("Authorization", &format!("Bearer {cred}")),
            ("Content-Type", "application/json"),
        ],
        b"{}",
    );
    assert_eq!(s, 403);
    assert_eq!(form(&admin, &admin.csrf).0, 409, "already revoked");
}
