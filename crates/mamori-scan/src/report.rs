//! The scan report as text, JSON or a self-contained HTML page, in Japanese or English.
//! Every value from a scanned site (evidence, headers, versions) is attacker-controlled: the
//! HTML escapes all of it and allows no script; the text form strips control characters.

use std::fmt::Write as _;

use crate::model::{Finding, Lang, Severity};
use crate::scan::{Planned, ScanReport};

/// Plain text safe for a terminal: control characters (escape sequences) become `?`.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() && c != '\n' { '?' } else { c })
        .collect()
}

fn t<'a>(lang: Lang, en: &'a str, ja: &'a str) -> &'a str {
    match lang {
        Lang::En => en,
        Lang::Ja => ja,
    }
}

pub fn text(r: &ScanReport, lang: Lang) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} ({} {}, {} {} ms)",
        t(lang, "Mamori scan", "Mamori 診断"),
        t(lang, "profile", "プロファイル"),
        r.profile.as_str(),
        t(lang, "took", "所要"),
        r.duration_ms
    );
    for e in &r.template_errors {
        let _ = writeln!(
            o,
            "{}: {}",
            t(lang, "template error", "テンプレートのエラー"),
            clean(e)
        );
    }
    for tr in &r.targets {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "== {} ({} {}/{})",
            clean(&tr.url),
            t(lang, "requests", "リクエスト"),
            tr.requests,
            tr.max_requests
        );
        for f in &tr.facts {
            let _ = writeln!(o, "   {}: {}", f.name.get(lang), clean(&f.value));
        }
        if tr.findings.is_empty() {
            let _ = writeln!(o, "   {}", t(lang, "no findings", "指摘なし"));
        }
        for f in &tr.findings {
            let _ = writeln!(
                o,
                "\n[{}] {}  ({})",
                f.severity.label(lang),
                clean(f.title.get(lang)),
                f.check
            );
            let _ = writeln!(o, "   {}: {}", t(lang, "where", "場所"), clean(&f.location));
            if !f.evidence.is_empty() {
                let _ = writeln!(
                    o,
                    "   {}: {}",
                    t(lang, "seen", "確認内容"),
                    clean(&f.evidence)
                );
            }
            let _ = writeln!(o, "   {}", clean(f.explain.get(lang)));
            let _ = writeln!(
                o,
                "   {}: {}",
                t(lang, "fix", "対策"),
                clean(f.fix.get(lang))
            );
        }
    }
    let counts = counts(r);
    let _ = writeln!(
        o,
        "\n{}: {}",
        t(lang, "summary", "集計"),
        counts
            .iter()
            .map(|(s, n)| format!("{} {n}", s.label(lang)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    o
}

fn counts(r: &ScanReport) -> Vec<(Severity, usize)> {
    [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ]
    .into_iter()
    .map(|s| (s, r.findings().filter(|f| f.severity == s).count()))
    .collect()
}

pub fn json(r: &ScanReport) -> String {
    serde_json::to_string_pretty(r).unwrap_or_else(|_| "{}".into())
}

/// Escapes text for HTML element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() && c != '\n' => o.push('?'),
            c => o.push(c),
        }
    }
    o
}

const CSS: &str = "body{font-family:system-ui,'Hiragino Sans','Yu Gothic',sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.5rem}h2{font-size:1.2rem;border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2rem}\
.f{border:1px solid #ddd;border-left-width:6px;padding:.6rem .9rem;margin:.8rem 0;border-radius:4px}\
.critical{border-left-color:#7b0000}.high{border-left-color:#c62828}.medium{border-left-color:#ef6c00}.low{border-left-color:#f9a825}.info{border-left-color:#90a4ae}\
.sev{font-weight:bold;margin-right:.5rem}code,pre{background:#f5f5f5;padding:.1rem .3rem;white-space:pre-wrap;word-break:break-all}\
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}";

fn finding_html(o: &mut String, f: &Finding, lang: Lang) {
    let _ = write!(
        o,
        "<div class=\"f {}\"><div><span class=\"sev\">{}</span><strong>{}</strong> <code>{}</code></div>",
        f.severity.as_str(),
        esc(f.severity.label(lang)),
        esc(f.title.get(lang)),
        esc(&f.check)
    );
    let _ = write!(
        o,
        "<p>{}: <code>{}</code></p>",
        t(lang, "Where", "場所"),
        esc(&f.location)
    );
    if !f.evidence.is_empty() {
        let _ = write!(
            o,
            "<p>{}:</p><pre>{}</pre>",
            t(lang, "Seen", "確認内容"),
            esc(&f.evidence)
        );
    }
    let _ = write!(
        o,
        "<p>{}</p><p><strong>{}:</strong> {}</p></div>",
        esc(f.explain.get(lang)),
        t(lang, "How to fix", "対策"),
        esc(f.fix.get(lang))
    );
}

pub fn html(r: &ScanReport, lang: Lang) -> String {
    let mut o = String::new();
    let title = t(lang, "Mamori scan report", "Mamori 診断レポート");
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title><style>{CSS}</style></head><body><h1>{title}</h1>",
        match lang {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    );
    let _ = write!(
        o,
        "<p>{}: {} · {}: {} · {} ms</p><table><tr>",
        t(lang, "Profile", "プロファイル"),
        esc(r.profile.as_str()),
        t(lang, "Started", "開始"),
        esc(&r.started),
        r.duration_ms
    );
    for (s, n) in counts(r) {
        let _ = write!(o, "<th>{}</th><td>{n}</td>", esc(s.label(lang)));
    }
    o.push_str("</tr></table>");
    for e in &r.template_errors {
        let _ = write!(
            o,
            "<p>{}: {}</p>",
            t(lang, "Template error", "テンプレートのエラー"),
            esc(e)
        );
    }
    for tr in &r.targets {
        let _ = write!(
            o,
            "<h2>{}</h2><p>{} {}/{}</p><table>",
            esc(&tr.url),
            t(lang, "Requests", "リクエスト"),
            tr.requests,
            tr.max_requests
        );
        for f in &tr.facts {
            let _ = write!(
                o,
                "<tr><th>{}</th><td>{}</td></tr>",
                esc(f.name.get(lang)),
                esc(&f.value)
            );
        }
        o.push_str("</table>");
        if tr.findings.is_empty() {
            let _ = write!(
                o,
                "<p>{}</p>",
                t(lang, "No findings.", "指摘はありません。")
            );
        }
        for f in &tr.findings {
            finding_html(&mut o, f, lang);
        }
    }
    o.push_str("</body></html>\n");
    o
}

/// The dry run's list, one request a line.
pub fn plan_text(plan: &[Planned], lang: Lang) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}",
        t(
            lang,
            "dry run: nothing was sent; a scan would send:",
            "ドライラン: 何も送信していません。スキャンでは次を送ります:"
        )
    );
    for p in plan {
        let _ = writeln!(o, "{:<8} {}  # {}", p.method, clean(&p.url), clean(&p.why));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Text;
    use crate::scan::{Profile, TargetReport};

    fn report(evidence: &str) -> ScanReport {
        ScanReport {
            scanner: "x".into(),
            profile: Profile::Safe,
            started: "2026-01-01T00:00:00Z".into(),
            duration_ms: 1,
            template_errors: vec![],
            targets: vec![TargetReport {
                target: "https://a/".into(),
                url: "https://a/".into(),
                reachable: true,
                requests: 3,
                max_requests: 10,
                facts: vec![],
                findings: vec![Finding {
                    check: "xss-reflected".into(),
                    severity: Severity::High,
                    target: "https://a/".into(),
                    location: "https://a/s?q".into(),
                    path: "/s".into(),
                    title: Text::new("XSS", "XSS（日本語）"),
                    explain: Text::new("explain", "説明"),
                    fix: Text::new("fix", "対策文"),
                    evidence: evidence.into(),
                    cves: vec![],
                }],
            }],
        }
    }

    #[test]
    fn html_escapes_every_value_and_runs_no_script() {
        let h = html(&report("<script>alert(1)</script>\"'&"), Lang::Ja);
        assert!(!h.contains("<script>"));
        assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"));
        assert!(h.contains("default-src 'none'"));
        assert!(h.contains("対策文") && h.contains("lang=\"ja\""));
    }

    #[test]
    fn text_strips_terminal_escapes_and_speaks_both_languages() {
        let r = report("\u{1b}[31mred");
        let en = text(&r, Lang::En);
        assert!(!en.contains('\u{1b}') && en.contains("?[31mred"));
        assert!(en.contains("[high] XSS") && en.contains("fix: fix"));
        let ja = text(&r, Lang::Ja);
        assert!(ja.contains("[高] XSS（日本語）") && ja.contains("対策: 対策文"));
    }
}
