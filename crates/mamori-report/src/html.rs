//! A self-contained HTML file: inline CSS, charts as inline SVG, no script, every value
//! escaped. A Content-Security-Policy meta tag forbids scripts even if escaping were ever missed.

use std::fmt::Write;

use crate::model::{Block, Report, Tone};

/// Escape text for HTML element content and quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
body{font-family:"DejaVu Sans","Noto Sans CJK JP","IPAexGothic","Hiragino Sans","Yu Gothic",Meiryo,sans-serif;font-size:14px;line-height:1.5;color:#1d2430;max-width:1040px;margin:0 auto;padding:24px}
header{background:#1f3b57;color:#fff;padding:16px 20px;border-radius:4px}
header h1{margin:0;font-size:26px}header p{margin:4px 0 0}header .gen{font-size:12px;color:#d8dee6}
h2{color:#1f3b57;border-bottom:2px solid #1f3b57;padding-bottom:3px;margin-top:32px}
h3{color:#2d4f73;margin-bottom:6px}
table{border-collapse:collapse;width:100%;margin:6px 0 10px;font-size:13px}
th,td{border:1px solid #ccd3dc;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#e8ecf1}td.mono{font-family:"DejaVu Sans Mono",monospace;font-size:12px;word-break:break-all}
table.facts td{border:none;padding:2px 8px 2px 0}table.facts td:first-child{font-weight:bold;color:#3c4654;white-space:nowrap}
.notice{padding:8px 10px;border-radius:3px;margin:6px 0}
.info{background:#e9eff6}.warn{background:#fff3d3}.bad{background:#fde1df}.good{background:#e2f3e3}
.figures{display:flex;gap:8px;flex-wrap:wrap}.figures div{flex:1;min-width:120px;background:#f1f4f8;padding:8px;border-radius:3px}
.figures b{display:block;font-size:24px;color:#1f3b57}.figures span{font-size:12px;color:#4a5462}
figure{margin:8px 0}figure svg{width:100%;height:auto}figcaption{font-size:12px;color:#4a5462;text-align:center}
.more{font-size:12px;color:#4a5462}
@media print{h2.page{page-break-before:always}}
"#;

pub(crate) fn render(r: &Report) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} — {}</title><style>{CSS}</style></head><body>\n\
         <header><h1>{}</h1><p>{}</p><p class=\"gen\">{}</p></header>\n",
        r.lang.as_str(),
        esc(&r.title),
        esc(&r.subtitle),
        esc(&r.title),
        esc(&r.subtitle),
        esc(&r.generated)
    );
    let more = r.lang.t("… and {n} more rows", "… ほか {n} 行");
    for s in &r.sections {
        let _ = writeln!(
            h,
            "<section><h2{}>{}</h2>",
            if s.new_page { " class=\"page\"" } else { "" },
            esc(&s.heading)
        );
        for b in &s.blocks {
            block(&mut h, r, b, more);
        }
        h.push_str("</section>\n");
    }
    h.push_str("</body></html>\n");
    h
}

fn block(h: &mut String, r: &Report, b: &Block, more: &str) {
    match b {
        Block::Heading { text } => {
            let _ = writeln!(h, "<h3>{}</h3>", esc(text));
        }
        Block::Para { text } => {
            let _ = writeln!(h, "<p>{}</p>", esc(text));
        }
        Block::Notice { tone, text } => {
            let class = match tone {
                Tone::Info => "info",
                Tone::Warn => "warn",
                Tone::Bad => "bad",
                Tone::Good => "good",
            };
            let _ = writeln!(h, "<p class=\"notice {class}\">{}</p>", esc(text));
        }
        Block::Bullets { items } => {
            h.push_str("<ul>");
            for i in items {
                let _ = write!(h, "<li>{}</li>", esc(i));
            }
            h.push_str("</ul>\n");
        }
        Block::Facts { rows } => {
            h.push_str("<table class=\"facts\">");
            for (k, v) in rows {
                let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
            }
            h.push_str("</table>\n");
        }
        Block::Figures { items } => {
            h.push_str("<div class=\"figures\">");
            for (k, v) in items {
                let _ = write!(h, "<div><b>{}</b><span>{}</span></div>", esc(v), esc(k));
            }
            h.push_str("</div>\n");
        }
        Block::Table(t) => {
            h.push_str("<table><thead><tr>");
            for c in &t.columns {
                let _ = write!(h, "<th>{}</th>", esc(c));
            }
            h.push_str("</tr></thead><tbody>");
            for row in &t.rows {
                h.push_str("<tr>");
                for (j, c) in row.iter().enumerate() {
                    let class = if t.mono.contains(&j) {
                        " class=\"mono\""
                    } else {
                        ""
                    };
                    let _ = write!(h, "<td{class}>{}</td>", esc(c));
                }
                h.push_str("</tr>");
            }
            h.push_str("</tbody></table>\n");
            if t.more > 0 {
                let _ = writeln!(
                    h,
                    "<p class=\"more\">{}</p>",
                    esc(&more.replace("{n}", &t.more.to_string()))
                );
            }
        }
        Block::Chart { index, caption } => {
            // The SVG is plotters' output over our own labels (it escapes text itself).
            let svg = r.charts.get(*index).map_or("", |c| c.svg.as_str());
            let _ = writeln!(
                h,
                "<figure>{svg}<figcaption>{}</figcaption></figure>",
                esc(caption)
            );
        }
    }
}
