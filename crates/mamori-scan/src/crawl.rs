//! A bounded, in-scope crawl: breadth-first from the target, at most `max_pages` pages, only
//! URLs in the target's scope, never a link that looks like it changes state (logout, delete…).
//! Links and forms are found with small regular expressions over the HTML — enough for finding
//! parameters, and nothing in a page can make the crawl leave its scope.

use std::collections::{HashSet, VecDeque};
use std::sync::OnceLock;

use regex::Regex;
use url::Url;

use crate::http::{Client, Response};
use crate::Result;

/// A URL whose query parameters can be probed (from a link or a `GET` form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamPoint {
    /// Without query.
    pub url: Url,
    pub params: Vec<(String, String)>,
    /// `link` or `form`.
    pub source: &'static str,
}

#[derive(Debug, Default)]
pub struct Crawl {
    pub pages: Vec<Response>,
    pub points: Vec<ParamPoint>,
    /// Forms that `POST`: listed, never submitted.
    pub post_forms: Vec<Url>,
}

fn re(cell: &'static OnceLock<Regex>, pat: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pat).expect("static regex"))
}

fn link_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(
        &R,
        r#"(?i)\b(?:href|src)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+))"#,
    )
}

fn form_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"(?is)<form\b([^>]*)>(.*?)</form>")
}

fn field_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"(?is)<(?:input|textarea|select)\b([^>]*)>")
}

/// The value of attribute `name` in a tag's attribute text.
fn attr(attrs: &str, name: &str) -> Option<String> {
    let pat = format!(
        r#"(?i)(?:^|\s){}\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+))"#,
        regex::escape(name)
    );
    let r = Regex::new(&pat).ok()?;
    let c = r.captures(attrs)?;
    c.get(1)
        .or_else(|| c.get(2))
        .or_else(|| c.get(3))
        .map(|m| unescape(m.as_str()))
}

fn unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

/// Links that may change state when followed; the crawl never requests them.
pub fn looks_unsafe(u: &Url) -> bool {
    let s = format!("{}?{}", u.path(), u.query().unwrap_or("")).to_ascii_lowercase();
    [
        "logout",
        "log-out",
        "signout",
        "sign-out",
        "logoff",
        "delete",
        "remove",
        "destroy",
        "drop",
        "unsubscribe",
        "reset",
        "shutdown",
        "restart",
        "reboot",
        "wipe",
    ]
    .iter()
    .any(|w| s.contains(w))
}

const STATIC_EXT: &[&str] = &[
    ".png", ".jpg", ".jpeg", ".gif", ".svg", ".ico", ".webp", ".css", ".js", ".woff", ".woff2",
    ".ttf", ".pdf", ".zip", ".gz", ".mp4", ".mp3", ".docx", ".xlsx", ".pptx",
];

fn is_static(u: &Url) -> bool {
    let p = u.path().to_ascii_lowercase();
    STATIC_EXT.iter().any(|e| p.ends_with(e))
}

/// A form of a page: method (lower case), action and named fields with their values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    pub method: String,
    pub action: Url,
    pub fields: Vec<(String, String)>,
}

/// Links, forms with their fields, from one page.
pub fn extract(base: &Url, html: &str) -> (Vec<Url>, Vec<Form>) {
    let mut links = Vec::new();
    for c in link_re().captures_iter(html) {
        let raw = c
            .get(1)
            .or_else(|| c.get(2))
            .or_else(|| c.get(3))
            .map(|m| unescape(m.as_str()))
            .unwrap_or_default();
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with('#') || raw.contains("javascript:") {
            continue;
        }
        if let Ok(mut u) = base.join(raw) {
            u.set_fragment(None);
            links.push(u);
        }
    }
    let mut forms = Vec::new();
    for c in form_re().captures_iter(html) {
        let attrs = c.get(1).map_or("", |m| m.as_str());
        let inner = c.get(2).map_or("", |m| m.as_str());
        let method = attr(attrs, "method")
            .unwrap_or_else(|| "get".into())
            .to_ascii_lowercase();
        let action = attr(attrs, "action").unwrap_or_default();
        let Ok(mut url) = base.join(&action) else {
            continue;
        };
        url.set_fragment(None);
        let mut fields = Vec::new();
        for f in field_re().captures_iter(inner) {
            let fa = f.get(1).map_or("", |m| m.as_str());
            let Some(name) = attr(fa, "name") else {
                continue;
            };
            let kind = attr(fa, "type").unwrap_or_default().to_ascii_lowercase();
            if matches!(
                kind.as_str(),
                "submit" | "button" | "image" | "file" | "reset"
            ) {
                continue;
            }
            let value = attr(fa, "value").unwrap_or_else(|| "1".into());
            fields.push((name, value));
        }
        forms.push(Form {
            method,
            action: url,
            fields,
        });
    }
    (links, forms)
}

/// Crawls `client`'s target; every request goes through the client (scope, budget, rate).
pub fn crawl(client: &Client, max_pages: usize) -> Result<Crawl> {
    let target = client.target().clone();
    let mut out = Crawl::default();
    let mut queue = VecDeque::from([target.url.clone()]);
    let mut seen: HashSet<String> = HashSet::from([target.url.to_string()]);
    let mut point_keys: HashSet<String> = HashSet::new();
    let mut add_point = |out: &mut Crawl, url: &Url, params: Vec<(String, String)>, src| {
        if params.is_empty() || params.len() > 20 {
            return;
        }
        let mut bare = url.clone();
        bare.set_query(None);
        let mut names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        let key = format!("{}?{}", bare, names.join("&"));
        if point_keys.insert(key) {
            out.points.push(ParamPoint {
                url: bare,
                params,
                source: src,
            });
        }
    };
    while let Some(url) = queue.pop_front() {
        if out.pages.len() >= max_pages {
            break;
        }
        let Some(resp) = client.get(&url)? else {
            continue;
        };
        if url.query().is_some() {
            let params: Vec<(String, String)> = url.query_pairs().into_owned().collect();
            add_point(&mut out, &url, params, "link");
        }
        let html = resp.is_html() || resp.body.trim_start().starts_with('<');
        if html && resp.status < 400 {
            let (links, forms) = extract(&url, &resp.body);
            let mut next = Vec::new();
            for l in links {
                if !target.in_scope(&l) || looks_unsafe(&l) {
                    continue;
                }
                // A file's folder may list its neighbours.
                if is_static(&l) {
                    if let Ok(dir) = l.join("./") {
                        next.push(dir);
                    }
                    continue;
                }
                next.push(l);
            }
            for f in forms {
                if !target.in_scope(&f.action) {
                    continue;
                }
                if f.method == "get" {
                    // A form whose fields say `delete`, `logout`… is never submitted either.
                    let mut as_url = f.action.clone();
                    as_url.query_pairs_mut().extend_pairs(f.fields.iter());
                    if !looks_unsafe(&as_url) {
                        add_point(&mut out, &f.action, f.fields, "form");
                    }
                } else if !out.post_forms.contains(&f.action) {
                    out.post_forms.push(f.action);
                }
            }
            for n in next {
                let k = n.to_string();
                if target.in_scope(&n) && seen.insert(k) {
                    queue.push_back(n);
                }
            }
        }
        out.pages.push(resp);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_forms_are_extracted() {
        let base = Url::parse("https://a.example/app/").unwrap();
        let html = r##"<a href="page?id=1&amp;x=2">p</a> <img src='/app/img/logo.png'>
            <a href=other.html>o</a> <a href="https://evil.example/">e</a> <a href="#top">t</a>
            <form action="search" method="get"><input name="q" value="hello"><input type="submit" name="go"></form>
            <form action="/app/login" method="POST"><input name="user"><input type="password" name="pw"></form>"##;
        let (links, forms) = extract(&base, html);
        let l: Vec<String> = links.iter().map(|u| u.to_string()).collect();
        assert!(
            l.contains(&"https://a.example/app/page?id=1&x=2".to_string()),
            "{l:?}"
        );
        assert!(l.contains(&"https://a.example/app/other.html".to_string()));
        assert!(l.contains(&"https://evil.example/".to_string()));
        assert_eq!(forms.len(), 2);
        assert_eq!(forms[0].method, "get");
        assert_eq!(
            forms[0].fields,
            vec![("q".to_string(), "hello".to_string())]
        );
        assert_eq!(forms[1].method, "post");
    }

    #[test]
    fn state_changing_links_are_recognised() {
        for s in [
            "https://a/logout",
            "https://a/x?action=delete&id=3",
            "https://a/SignOut",
        ] {
            assert!(looks_unsafe(&Url::parse(s).unwrap()), "{s}");
        }
        assert!(!looks_unsafe(
            &Url::parse("https://a/products?id=1").unwrap()
        ));
        let mut form = Url::parse("https://a/admin").unwrap();
        form.query_pairs_mut()
            .extend_pairs([("do", "delete"), ("id", "3")]);
        assert!(looks_unsafe(&form));
    }
}
