use super::*;

fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
    Response {
        url: "https://a.example/x".into(),
        status,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: body.into(),
    }
}

#[test]
fn every_shipped_template_loads() {
    let s = TemplateSet::shipped();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert!(s.templates.len() >= 15, "{}", s.templates.len());
    for t in &s.templates {
        for txt in [&t.info.name, &t.info.description, &t.info.remediation] {
            assert!(!txt.en.is_empty() && !txt.ja.is_empty(), "{}", t.id);
        }
        if let Some(p) = &t.fingerprint {
            assert!(
                crate::kev::Kev::shipped().product(p).is_some(),
                "{}: fingerprint {p} not in the KEV list",
                t.id
            );
        }
    }
}

#[test]
fn git_template_matches_a_head_file_and_not_an_html_page() {
    let s = TemplateSet::shipped();
    let t = s.templates.iter().find(|t| t.id == "exposed-git").unwrap();
    let p = &t.requests[0].probe;
    assert!(p.eval(&resp(200, &[], "ref: refs/heads/main\n")).is_some());
    assert!(p.eval(&resp(200, &[], "<html>not found</html>")).is_none());
    assert!(p.eval(&resp(404, &[], "ref: refs/heads/main\n")).is_none());
}

#[test]
fn env_template_negative_matcher() {
    let s = TemplateSet::shipped();
    let t = s.templates.iter().find(|t| t.id == "exposed-env").unwrap();
    let p = &t.requests[0].probe;
    assert!(p
        .eval(&resp(200, &[], "APP_KEY=x\nDB_PASSWORD=y\n"))
        .is_some());
    assert!(p
        .eval(&resp(200, &[], "<!DOCTYPE html>\nAPP_KEY=x\n"))
        .is_none());
}

#[test]
fn roundcube_version_is_extracted_from_rcversion() {
    let s = TemplateSet::shipped();
    let t = s
        .templates
        .iter()
        .find(|t| t.id == "fingerprint-roundcube")
        .unwrap();
    let hit = t
        .passive
        .as_ref()
        .unwrap()
        .eval(&resp(
            200,
            &[],
            r#"<title>Roundcube Webmail :: Welcome</title> {"rcversion":10403}"#,
        ))
        .unwrap();
    assert_eq!(hit.extracted, vec![("version".into(), "1.04.03".into())]);
}

#[test]
fn and_or_conditions_and_header_part() {
    let yaml = r#"
id: t1
info: {name: {en: a, ja: a}, severity: low, description: {en: a, ja: a}, remediation: {en: a, ja: a}}
passive:
  matchers-condition: or
  matchers:
    - {type: word, part: header, words: ["x-one", "x-two"], condition: and}
    - {type: status, status: [418]}
"#;
    let mut s = TemplateSet::default();
    s.add_text("t.yml", yaml);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let p = s.templates[0].passive.as_ref().unwrap();
    assert!(p
        .eval(&resp(200, &[("x-one", "1"), ("x-two", "2")], ""))
        .is_some());
    assert!(p.eval(&resp(200, &[("x-one", "1")], "")).is_none());
    assert!(p.eval(&resp(418, &[], "")).is_some());
}

#[test]
fn bad_templates_are_reported_with_their_file_and_the_rest_load() {
    let mut s = TemplateSet::default();
    s.add_text(
        "bad.yml",
        "id: a\ninfo: {name: {en: a, ja: a}, severity: low, description: {en: a, ja: a}, remediation: {en: a, ja: a}}\nrequests:\n  - path: [\"http://elsewhere/\"]\n    matchers: [{type: status, status: [200]}]\n---\nid: b\ninfo: {name: {en: a, ja: a}, severity: loud, description: {en: a, ja: a}, remediation: {en: a, ja: a}}\n",
    );
    s.add_text("broken.yml", "id: [unclosed");
    s.add_text(
        "ok.yml",
        "id: ok\ninfo: {name: {en: a, ja: a}, severity: low, description: {en: a, ja: a}, remediation: {en: a, ja: a}}\npassive:\n  matchers: [{type: regex, regex: ['(']}]\n",
    );
    let msgs: Vec<String> = s.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(msgs.len(), 4, "{msgs:?}");
    assert!(
        msgs[0].starts_with("bad.yml") && msgs[0].contains("BaseURL"),
        "{msgs:?}"
    );
    assert!(
        msgs[1].starts_with("bad.yml: document 2") && msgs[1].contains("loud"),
        "{msgs:?}"
    );
    assert!(
        msgs[2].starts_with("broken.yml") && msgs[2].contains("line"),
        "{msgs:?}"
    );
    assert!(
        msgs[3].starts_with("ok.yml") && msgs[3].contains("regex"),
        "{msgs:?}"
    );
    assert!(s.templates.is_empty());
}

#[test]
fn a_template_directory_adds_and_overrides_and_reports_bad_files() {
    let d = tempfile::tempdir().unwrap();
    let info = "info: {name: {en: a, ja: a}, severity: low, description: {en: a, ja: a}, remediation: {en: a, ja: a}}";
    std::fs::write(
        d.path().join("a.yml"),
        format!("id: exposed-git\n{info}\nrequests:\n  - path: [\"{{{{BaseURL}}}}/.git/ORIG_HEAD\"]\n    matchers: [{{type: status, status: [200]}}]\n"),
    )
    .unwrap();
    std::fs::write(d.path().join("b.yaml"), "id: [").unwrap();
    std::fs::write(d.path().join("notes.txt"), "not a template").unwrap();
    let mut s = TemplateSet::shipped();
    let before = s.templates.len();
    s.add_dir(d.path()).unwrap();
    assert_eq!(
        s.templates.len(),
        before,
        "same id replaces the shipped one"
    );
    let git = s.templates.iter().find(|t| t.id == "exposed-git").unwrap();
    assert_eq!(
        git.requests[0].path,
        vec!["{{BaseURL}}/.git/ORIG_HEAD".to_string()]
    );
    assert_eq!(s.errors.len(), 1);
    assert!(
        s.errors[0].to_string().contains("b.yaml"),
        "{}",
        s.errors[0]
    );
    assert!(TemplateSet::default()
        .add_dir(&d.path().join("missing"))
        .is_err());
}
