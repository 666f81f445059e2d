//! The built-in checks: security headers and cookies, HTTP methods, and the harmless-marker
//! probes (reflected XSS, error-based and boolean SQL injection, open redirect).

use std::sync::OnceLock;

use regex::Regex;
use url::Url;

use crate::crawl::ParamPoint;
use crate::http::{Client, Method, Response};
use crate::model::{excerpt, Finding, Severity};
use crate::scope::Target;
use crate::Result;

/// Where open-redirect probes point: `.invalid` never resolves (RFC 2606).
pub const REDIRECT_PROBE: &str = "https://mamori-scan.invalid/";

/// A finding of built-in check `id`.
pub fn finding(
    id: &str,
    severity: Severity,
    target: &Target,
    location: &str,
    path: &str,
    evidence: &str,
) -> Finding {
    let t = crate::texts::get(id);
    Finding {
        check: id.to_string(),
        severity,
        target: target.given.clone(),
        location: location.to_string(),
        path: path.to_string(),
        title: t.title,
        explain: t.explain,
        fix: t.fix,
        evidence: excerpt(evidence, 400),
        cves: Vec::new(),
    }
}

/// Security headers of the target's main page (an HTML answer).
pub fn headers(target: &Target, r: &Response) -> Vec<Finding> {
    let mut out = Vec::new();
    let path = target.url.path().to_string();
    let loc = target.url.as_str();
    let csp = r.header("content-security-policy").unwrap_or("");
    if target.is_https() {
        match r.header("strict-transport-security") {
            Some(v) if v.to_ascii_lowercase().contains("max-age") && !v.contains("max-age=0") => {}
            other => out.push(finding(
                "hsts-missing",
                Severity::Medium,
                target,
                loc,
                &path,
                other.unwrap_or("(no Strict-Transport-Security)"),
            )),
        }
    }
    if !r.is_html() {
        return out;
    }
    if csp.is_empty() {
        out.push(finding(
            "csp-missing",
            Severity::Low,
            target,
            loc,
            &path,
            "(no Content-Security-Policy)",
        ));
    }
    if r.header("x-frame-options").is_none() && !csp.contains("frame-ancestors") {
        out.push(finding(
            "frame-missing",
            Severity::Low,
            target,
            loc,
            &path,
            "(no X-Frame-Options, no frame-ancestors)",
        ));
    }
    if !r
        .header("x-content-type-options")
        .is_some_and(|v| v.eq_ignore_ascii_case("nosniff"))
    {
        out.push(finding(
            "nosniff-missing",
            Severity::Low,
            target,
            loc,
            &path,
            r.header("x-content-type-options")
                .unwrap_or("(no X-Content-Type-Options)"),
        ));
    }
    out
}

/// Cookies set by any of `pages`, one finding per cookie name missing flags.
pub fn cookies(target: &Target, pages: &[Response]) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for p in pages {
        for c in p.headers_all("set-cookie") {
            let name = c.split('=').next().unwrap_or("").trim().to_string();
            if name.is_empty() || !seen.insert(name.clone()) {
                continue;
            }
            let attrs: Vec<String> = c
                .split(';')
                .skip(1)
                .map(|a| {
                    a.split('=')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                })
                .collect();
            let has = |a: &str| attrs.iter().any(|x| x == a);
            let mut missing = Vec::new();
            if target.is_https() && !has("secure") {
                missing.push("Secure");
            }
            if !has("httponly") {
                missing.push("HttpOnly");
            }
            if !has("samesite") {
                missing.push("SameSite");
            }
            if missing.is_empty() {
                continue;
            }
            let sev = if missing.contains(&"Secure") {
                Severity::Medium
            } else {
                Severity::Low
            };
            let path = Url::parse(&p.url)
                .map(|u| u.path().to_string())
                .unwrap_or_else(|_| "/".into());
            out.push(finding(
                "cookie-flags",
                sev,
                target,
                &format!("cookie {name}"),
                &path,
                &format!("{name}: missing {}", missing.join(", ")),
            ));
        }
    }
    out
}

/// `OPTIONS` (announced methods) and, in the standard profile, `TRACE`.
pub fn methods(client: &Client, trace: bool) -> Result<Vec<Finding>> {
    let t = client.target().clone();
    let mut out = Vec::new();
    if let Some(r) = client.send(Method::Options, &t.url)? {
        let allow = r
            .header("allow")
            .or_else(|| r.header("public"))
            .unwrap_or("")
            .to_ascii_uppercase();
        let risky: Vec<&str> = ["PUT", "DELETE", "PROPPATCH", "MKCOL", "MOVE", "COPY"]
            .into_iter()
            .filter(|m| allow.split(',').any(|a| a.trim() == *m))
            .collect();
        if !risky.is_empty() && r.status < 400 {
            out.push(finding(
                "put-allowed",
                Severity::Medium,
                &t,
                t.url.as_str(),
                t.url.path(),
                &format!("Allow: {allow}"),
            ));
        }
    }
    if trace {
        if let Some(r) = client.send(Method::Trace, &t.url)? {
            if r.status == 200 && r.body.contains("TRACE /") {
                out.push(finding(
                    "trace-enabled",
                    Severity::Low,
                    &t,
                    t.url.as_str(),
                    t.url.path(),
                    &format!("HTTP {} echoing: {}", r.status, excerpt(&r.body, 120)),
                ));
            }
        }
    }
    Ok(out)
}

fn sql_error_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        Regex::new(concat!(
            r"(?i)(you have an error in your sql syntax|warning: mysql|mysqli?_|",
            r"unclosed quotation mark after the character string|microsoft ole db provider for|",
            r"odbc (sql server )?driver|ORA-0\d{4}|pg_query\(\)|postgresql.{0,40}error|",
            r"syntax error at or near|unterminated quoted string|sqlite3?[._ ](operational)?error|",
            r"sqlite_error|near .{1,40}: syntax error|unrecognized token:|SQLSTATE\[|",
            r"quoted string not properly terminated|jdbc\.|hibernate\.)"
        ))
        .expect("static regex")
    })
}

/// `point` with parameter `name` set to `value` (the others kept).
pub fn with_param(point: &ParamPoint, name: &str, value: &str) -> Url {
    let mut u = point.url.clone();
    {
        let mut q = u.query_pairs_mut();
        q.clear();
        for (n, v) in &point.params {
            q.append_pair(n, if n == name { value } else { v });
        }
    }
    u
}

fn similar(a: &Response, b: &Response) -> bool {
    if a.status != b.status {
        return false;
    }
    let (x, y) = (a.body.len() as i64, b.body.len() as i64);
    let tol = (x.max(y) / 50).max(8);
    (x - y).abs() <= tol
}

fn redirect_like(name: &str, value: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "url",
        "next",
        "redirect",
        "return",
        "returnto",
        "return_to",
        "returnurl",
        "dest",
        "destination",
        "continue",
        "goto",
        "target",
        "redir",
        "r",
        "u",
        "to",
        "back",
    ]
    .contains(&n.as_str())
        || n.contains("redirect")
        || n.contains("url")
        || value.starts_with("http://")
        || value.starts_with("https://")
        || (value.starts_with('/') && !value.starts_with("//"))
}

/// The probes on one parameter point. `nonce` makes markers unique per scan.
pub fn probe_point(client: &Client, point: &ParamPoint, nonce: &str) -> Result<Vec<Finding>> {
    let t = client.target().clone();
    let mut out = Vec::new();
    let Some(base) = client.get(&with_param(point, "", ""))? else {
        return Ok(out);
    };
    let base_sql_error = sql_error_re().is_match(&base.body);
    for (name, value) in point.params.iter().take(10) {
        let loc = format!("{}?{}", point.url, name);
        let path = point.url.path().to_string();
        // Reflected XSS: an inert, made-up element; found only if it comes back unescaped.
        let tag = format!("mmr{nonce}");
        let marker = format!("{value}\"'><{tag}>");
        if let Some(r) = client.get(&with_param(point, name, &marker))? {
            if r.is_html() && r.body.contains(&format!("<{tag}>")) {
                let at = r.body.find(&format!("<{tag}>")).unwrap_or(0);
                let from = at.saturating_sub(40);
                let ctx: String = r.body[floor(&r.body, from)..].chars().take(100).collect();
                out.push(finding(
                    "xss-reflected",
                    Severity::High,
                    &t,
                    &loc,
                    &path,
                    &format!("{name}={marker} → …{ctx}…"),
                ));
            }
        }
        // Error-based SQL injection: one quote.
        let mut sqli = false;
        if !base_sql_error {
            if let Some(r) = client.get(&with_param(point, name, &format!("{value}'")))? {
                if let Some(m) = sql_error_re().find(&r.body) {
                    let from = floor(&r.body, m.start().saturating_sub(30));
                    let ctx: String = r.body[from..].chars().take(120).collect();
                    out.push(finding(
                        "sqli-error",
                        Severity::Critical,
                        &t,
                        &loc,
                        &path,
                        &format!("{name}={value}' → …{ctx}…"),
                    ));
                    sqli = true;
                }
            }
        }
        // Boolean SQL injection: true and false conditions of equal length, read-only.
        if !sqli {
            for (tv, fv) in [
                (
                    format!("{value}' AND '1'='1"),
                    format!("{value}' AND '1'='2"),
                ),
                (format!("{value} AND 1=1"), format!("{value} AND 1=2")),
            ] {
                let Some(orig) = client.get(&with_param(point, name, value))? else {
                    break;
                };
                let Some(rt) = client.get(&with_param(point, name, &tv))? else {
                    break;
                };
                let Some(rf) = client.get(&with_param(point, name, &fv))? else {
                    break;
                };
                if similar(&orig, &rt) && !similar(&rt, &rf) {
                    // Confirm once: the true condition again, the false one again.
                    let rt2 = client.get(&with_param(point, name, &tv))?;
                    let rf2 = client.get(&with_param(point, name, &fv))?;
                    if rt2.is_some_and(|r| similar(&r, &rt))
                        && rf2.is_some_and(|r| similar(&r, &rf))
                    {
                        out.push(finding(
                            "sqli-boolean",
                            Severity::High,
                            &t,
                            &loc,
                            &path,
                            &format!(
                                "{name}={tv} → HTTP {} {} bytes; {name}={fv} → HTTP {} {} bytes",
                                rt.status,
                                rt.body.len(),
                                rf.status,
                                rf.body.len()
                            ),
                        ));
                        break;
                    }
                }
            }
        }
        // Open redirect: only parameters that look like a destination.
        if redirect_like(name, value) {
            if let Some(r) = client.get(&with_param(point, name, REDIRECT_PROBE))? {
                let loc_h = r.header("location").unwrap_or("");
                if (300..400).contains(&r.status)
                    && (loc_h.starts_with(REDIRECT_PROBE.trim_end_matches('/'))
                        || loc_h.starts_with("//mamori-scan.invalid"))
                {
                    out.push(finding(
                        "open-redirect",
                        Severity::Medium,
                        &t,
                        &loc,
                        &path,
                        &format!(
                            "{name}={REDIRECT_PROBE} → HTTP {} Location: {loc_h}",
                            r.status
                        ),
                    ));
                }
            }
        }
    }
    Ok(out)
}

fn floor(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            url: "https://a.example/".into(),
            status: 200,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.into(),
        }
    }

    #[test]
    fn missing_headers_are_findings_and_complete_ones_are_not() {
        let t = Target::parse("https://a.example/").unwrap();
        let bare = resp(&[("content-type", "text/html")], "<html>");
        let ids: Vec<String> = headers(&t, &bare).into_iter().map(|f| f.check).collect();
        assert_eq!(
            ids,
            [
                "hsts-missing",
                "csp-missing",
                "frame-missing",
                "nosniff-missing"
            ]
        );
        let good = resp(
            &[
                ("content-type", "text/html"),
                ("strict-transport-security", "max-age=31536000"),
                (
                    "content-security-policy",
                    "default-src 'self'; frame-ancestors 'none'",
                ),
                ("x-content-type-options", "nosniff"),
            ],
            "<html>",
        );
        assert!(headers(&t, &good).is_empty());
    }

    #[test]
    fn cookie_flags() {
        let t = Target::parse("https://a.example/").unwrap();
        let r = resp(
            &[
                ("set-cookie", "sid=1; Path=/"),
                ("set-cookie", "ok=1; Secure; HttpOnly; SameSite=Lax"),
            ],
            "",
        );
        let f = cookies(&t, &[r]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity, Severity::Medium);
        assert!(f[0].evidence.contains("Secure, HttpOnly, SameSite"));
    }

    #[test]
    fn sql_errors_are_recognised() {
        for e in [
            "You have an error in your SQL syntax; check the manual",
            "sqlite3.OperationalError: unrecognized token: \"'1''\"",
            "ERROR: syntax error at or near \"'\"",
            "near \"x\": syntax error",
        ] {
            assert!(sql_error_re().is_match(e), "{e}");
        }
        assert!(!sql_error_re().is_match("<p>No results for your search</p>"));
    }

    #[test]
    fn params_are_replaced_one_at_a_time() {
        let p = ParamPoint {
            url: Url::parse("https://a.example/s").unwrap(),
            params: vec![("q".into(), "x".into()), ("page".into(), "2".into())],
            source: "link",
        };
        assert_eq!(
            with_param(&p, "q", "a b'").as_str(),
            "https://a.example/s?q=a+b%27&page=2"
        );
    }
}
