//! Unit tests of the model, the renderers and the month arithmetic.

use chrono::{TimeZone, Utc};

use crate::model::{Block, Chart, Lang, Locale, Report, Section, Table, Tone, Zone};
use crate::monthly::Month;
use crate::{render, Format};

/// Attacker-controlled text: HTML, typst markup and code, brackets, backslashes.
const HOSTILE: &str = r#"<script>alert(1)</script> #set page(fill: red) #import "/etc/passwd": * ] \ \\ $x$ *b* _i_ @ref <lbl> // c /* d"#;

fn hostile_report(lang: Lang) -> Report {
    let mut s = Section::new(HOSTILE);
    s.push(Block::Para {
        text: HOSTILE.into(),
    });
    s.push(Block::Heading {
        text: HOSTILE.into(),
    });
    s.push(Block::Notice {
        tone: Tone::Bad,
        text: HOSTILE.into(),
    });
    s.push(Block::Bullets {
        items: vec![HOSTILE.into()],
    });
    s.push(Block::Facts {
        rows: vec![(HOSTILE.into(), HOSTILE.into())],
    });
    s.push(Block::Figures {
        items: vec![(HOSTILE.into(), "1".into())],
    });
    let mut t = Table::new(&["a", "b"]).mono(&[1]);
    t.rows.push(vec![HOSTILE.into(), HOSTILE.into()]);
    t.rows.push(vec!["x".into(), "y".into()]);
    s.push(Block::Table(t.limit(1)));
    s.push(Block::Chart {
        index: 0,
        caption: HOSTILE.into(),
    });
    Report {
        lang,
        title: HOSTILE.into(),
        subtitle: HOSTILE.into(),
        generated: HOSTILE.into(),
        sections: vec![s],
        charts: vec![Chart {
            svg: crate::chart::line(&["1".into(), "2".into()], &[1, 2], plotters::style::BLUE)
                .unwrap()
                .svg,
        }],
    }
}

#[test]
fn html_escapes_every_value_and_forbids_scripts() {
    let html = String::from_utf8(render(&hostile_report(Lang::En), Format::Html).unwrap()).unwrap();
    assert!(!html.contains("<script>"), "no live script");
    assert!(!html.contains("\"/etc/passwd\""), "quotes escaped");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; #set page(fill: red) #import &quot;/etc/passwd&quot;: * ] \\ \\\\"));
    assert!(html.contains("default-src 'none'"), "a CSP forbids scripts");
    assert!(
        html.contains("and 1 more rows"),
        "rows past the limit are said"
    );
    assert!(html.contains("<svg"), "the chart is inline");
}

#[test]
fn typst_takes_hostile_text_as_data() {
    if crate::fonts::discover(false).is_err() {
        eprintln!("skipped: no font found (install fonts-ipaexfont-gothic)");
        return;
    }
    for lang in [Lang::En, Lang::Ja] {
        if lang == Lang::Ja && crate::fonts::discover(true).is_err() {
            eprintln!("skipped: no Japanese font (install fonts-ipaexfont-gothic)");
            continue;
        }
        // A template that evaluated the text would fail (`#import` of a missing file) or
        // change the page; typesetting it as text succeeds.
        let pdf = render(&hostile_report(lang), Format::Pdf).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        assert!(pdf.len() > 5_000);
    }
}

#[test]
fn missing_japanese_font_names_the_package() {
    let e = crate::Error::NoFont {
        searched: vec!["/nowhere".into()],
        japanese: true,
    };
    let m = e.to_string();
    assert!(
        m.contains("fonts-ipaexfont-gothic")
            && m.contains("MAMORI_FONT_DIR")
            && m.contains("/nowhere"),
        "{m}"
    );
}

#[test]
fn long_tokens_get_break_opportunities() {
    let mut v = serde_json::json!({ "h": "a".repeat(64), "short": "abc def" });
    crate::pdf::break_long_tokens(&mut v);
    let h = v["h"].as_str().unwrap();
    assert_eq!(h.replace('\u{200B}', ""), "a".repeat(64));
    assert!(h.contains('\u{200B}'));
    assert_eq!(v["short"], "abc def");
}

#[test]
fn dates_follow_the_reader() {
    let t = Utc.with_ymd_and_hms(2026, 11, 3, 5, 5, 0).unwrap();
    assert_eq!(
        Locale::new(Lang::Ja, None).time(t),
        "2026年11月3日 14:05 JST"
    );
    assert_eq!(Locale::new(Lang::En, None).time(t), "3 Nov 2026 05:05 UTC");
    let ny = Zone::parse("-05:00").unwrap();
    assert_eq!(
        Locale::new(Lang::En, Some(ny)).time(t),
        "3 Nov 2026 00:05 UTC-05:00"
    );
    assert_eq!(Zone::parse("Asia/Tokyo"), Some(Zone::jst()));
    for bad in ["", "+25:00", "+09:75", "Mars/Base", "9"] {
        assert!(Zone::parse(bad).is_none(), "{bad}");
    }
    assert_eq!(Locale::new(Lang::Ja, None).month(2026, 11), "2026年11月");
    assert_eq!(Locale::new(Lang::En, None).month(2026, 11), "November 2026");
    assert_eq!(
        Locale::new(Lang::En, None).duration(chrono::TimeDelta::minutes(90)),
        "90 min"
    );
    assert_eq!(
        Locale::new(Lang::Ja, None).duration(chrono::TimeDelta::hours(3)),
        "3.0時間"
    );
}

#[test]
fn months_parse_and_bound_in_the_readers_zone() {
    assert_eq!(
        Month::parse("2026-11"),
        Some(Month {
            year: 2026,
            month: 11
        })
    );
    for bad in ["2026-13", "2026-00", "26-11", "2026/11", "", "2026-1x"] {
        assert!(Month::parse(bad).is_none(), "{bad}");
    }
    let m = Month {
        year: 2026,
        month: 1,
    };
    assert_eq!(
        m.back(1),
        Month {
            year: 2025,
            month: 12
        }
    );
    assert_eq!(
        m.back(13),
        Month {
            year: 2024,
            month: 12
        }
    );
    assert_eq!(
        Month {
            year: 2026,
            month: 12
        }
        .next(),
        Month {
            year: 2027,
            month: 1
        }
    );
    let ja = Locale::new(Lang::Ja, None);
    // November in JST starts at 15:00 UTC on 31 October.
    assert_eq!(
        Month::parse("2026-11").unwrap().start(&ja),
        Utc.with_ymd_and_hms(2026, 10, 31, 15, 0, 0).unwrap()
    );
    let first = Utc.with_ymd_and_hms(2026, 12, 1, 0, 30, 0).unwrap();
    assert_eq!(
        Month::previous_of(first, &ja),
        Month {
            year: 2026,
            month: 11
        }
    );
    assert_eq!(
        Month::previous_of(first, &Locale::new(Lang::En, None)).key(),
        "2026-11"
    );
}

#[test]
fn an_empty_month_says_what_is_missing_and_invents_nothing() {
    let loc = Locale::new(Lang::En, None);
    let m = Month {
        year: 2026,
        month: 11,
    };
    let r = crate::monthly::build(&crate::monthly::MonthlyData::default(), m, &loc, Utc::now())
        .unwrap();
    let html = String::from_utf8(render(&r, Format::Html).unwrap()).unwrap();
    assert!(html.contains("No backup checks configured"));
    assert!(html.contains("No address aggregates recorded"));
    assert!(html.contains("No per-source aggregates recorded"));
    assert!(
        !html.contains("events recorded"),
        "no event count without aggregates"
    );
}

#[test]
fn scheduled_scan_findings_of_the_month_are_reported_in_both_languages() {
    let dir = tempfile::tempdir().unwrap();
    let db = rusqlite::Connection::open(dir.path().join(mamori_scan::store::SCANS_FILE)).unwrap();
    db.execute_batch(mamori_scan::store::SCHEMA).unwrap();
    db.execute(
        "INSERT INTO scans(started, duration_ms, profile, worst, findings, report) VALUES ('2026-11-10T03:00:00+00:00', 900, 'safe', 'high', 2, '{}')",
        [],
    )
    .unwrap();
    for (key, check, sev, first, last) in [
        (
            "a",
            "cert-expired",
            "high",
            "2026-11-10T03:00:00+00:00",
            "2026-11-20T03:00:00+00:00",
        ),
        (
            "b",
            "hsts-missing",
            "info",
            "2026-11-10T03:00:00+00:00",
            "2026-11-20T03:00:00+00:00",
        ),
        // Last seen before the month: fixed, not reported.
        (
            "c",
            "sqli-error",
            "critical",
            "2026-09-01T03:00:00+00:00",
            "2026-10-01T03:00:00+00:00",
        ),
    ] {
        db.execute(
            "INSERT INTO findings(key, check_id, target, location, severity, first_seen, last_seen, first_scan, last_scan) VALUES (?1, ?2, 'https://mail.example.jp/<b>', '/', ?3, ?4, ?5, 1, 1)",
            rusqlite::params![key, check, sev, first, last],
        )
        .unwrap();
    }
    drop(db);
    let m = Month {
        year: 2026,
        month: 11,
    };
    for (lang, title, heading) in [
        (Lang::En, "expired", "External scans of your services"),
        (Lang::Ja, "有効期限が切れている", "公開サービスの外部診断"),
    ] {
        let loc = Locale::new(lang, None);
        let d = crate::monthly::load(dir.path(), m, &loc).unwrap();
        let (runs, found) = d.scans.as_ref().unwrap();
        assert_eq!((*runs, found.len()), (1, 2), "{found:?}");
        let r = crate::monthly::build(&d, m, &loc, Utc::now()).unwrap();
        let html = String::from_utf8(render(&r, Format::Html).unwrap()).unwrap();
        assert!(html.contains(heading), "{lang:?}");
        assert!(html.contains(title), "{lang:?}: the finding's title");
        let high = if lang == Lang::Ja {
            "<td>高</td>"
        } else {
            "<td>high</td>"
        };
        assert!(
            html.contains(high),
            "{lang:?}: the severity in the reader's language"
        );
        assert!(html.contains("mail.example.jp/&lt;b&gt;"), "escaped target");
        assert!(!html.contains("SQL"), "a finding fixed before the month");
    }
    // Without a scan database the section says so.
    let empty = tempfile::tempdir().unwrap();
    let loc = Locale::new(Lang::En, None);
    let d = crate::monthly::load(empty.path(), m, &loc).unwrap();
    let html = String::from_utf8(
        render(
            &crate::monthly::build(&d, m, &loc, Utc::now()).unwrap(),
            Format::Html,
        )
        .unwrap(),
    )
    .unwrap();
    assert!(html.contains("No scheduled scans configured"));
}

#[test]
fn titles_read_in_japanese_when_a_japanese_title_exists() {
    let ja = Locale::new(Lang::Ja, None);
    let en = Locale::new(Lang::En, None);
    assert_eq!(
        ja.pick("SSH Brute Force", Some("SSH総当たり攻撃")),
        "SSH総当たり攻撃"
    );
    assert_eq!(
        en.pick("SSH Brute Force", Some("SSH総当たり攻撃")),
        "SSH Brute Force"
    );
    assert_eq!(ja.pick("SSH Brute Force", None), "SSH Brute Force");
    assert_eq!(ja.pick("SSH Brute Force", Some(" ")), "SSH Brute Force");

    let t = Utc.with_ymd_and_hms(2026, 11, 3, 5, 5, 0).unwrap();
    let mut a = mamori_store::Alert {
        id: mamori_store::AlertId(1),
        rule_id: mamori_event::RuleId("r".into()),
        title: "SSH Brute Force From One Source".into(),
        level: mamori_event::Level::High,
        status: mamori_store::AlertStatus::Open,
        event_time: Some(t),
        received_at: t,
        last_seen: t,
        count: 1,
        event_seqs: vec![1],
        group_key: None,
        dedup_key: None,
        details: serde_json::json!({ "title_ja": "同一送信元からのSSH総当たり攻撃" }),
        ack: None,
    };
    assert_eq!(ja.alert_title(&a), "同一送信元からのSSH総当たり攻撃");
    assert_eq!(en.alert_title(&a), "SSH Brute Force From One Source");
    a.details = serde_json::json!({ "title_ja": null });
    assert_eq!(ja.alert_title(&a), "SSH Brute Force From One Source");
}
