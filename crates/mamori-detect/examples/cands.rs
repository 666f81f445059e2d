use mamori_detect::{CompileOptions, RuleSet};
use mamori_event::{Event, FieldName, Format, Interner, Origin, Value};
use mamori_sigma::{Placeholders, RulePack};
use std::path::Path;
use std::sync::Arc;
fn main() {
    let c = Path::new("/work/shared/corpus/sigma");
    let mut files = Vec::new();
    for d in [
        "rules/windows",
        "rules-threat-hunting/windows",
        "rules-emerging-threats",
    ] {
        mamori_sigma::yml_files(&c.join(d), &mut files);
    }
    let mut pack = RulePack::new();
    for f in files {
        pack.add_file(
            &f.display().to_string(),
            &std::fs::read_to_string(&f).unwrap(),
            &Placeholders::new(),
        );
    }
    pack.rules
        .retain(|r| r.logsource.product.as_deref() == Some("windows"));
    let set = RuleSet::compile(&pack, &CompileOptions::default());
    let mut st = set.slot_stats();
    st.sort_by_key(|x| std::cmp::Reverse(x.1[0]));
    for x in st.iter().take(8) {
        println!("{:?}", x);
    }
    let text = std::fs::read_to_string("/work/shared/corpus/bench/windows-flat.jsonl").unwrap();
    let mut names = Interner::new();
    let mut sc = set.scratch();
    let mut out = Vec::new();
    let (mut n, mut cands, mut fired, mut m) = (0usize, 0usize, 0usize, 0usize);
    let mut per_rule = vec![0usize; set.len()];
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let mut e = Event::new(
            Format::Json,
            Origin::File {
                path: Arc::from(Path::new("x")),
                record: None,
                line: None,
                offset: 0,
            },
            Vec::new(),
        );
        e.logsource.product = Some(FieldName::new("windows"));
        for (k, v) in v.as_object().unwrap() {
            e.push_nonempty(names.intern(k), Value::from_json(v));
        }
        out.clear();
        set.matches(&e, &mut sc, &mut out);
        n += 1;
        cands += sc.candidates();
        fired += sc.fired_literals();
        m += out.len();
        for r in set.last_candidates(&sc) {
            per_rule[*r as usize] += 1;
        }
    }
    println!(
        "scanned/event {:.1} raw matches/event {:.1}",
        sc.scanned as f64 / n as f64,
        sc.raw_matches as f64 / n as f64
    );
    println!(
        "events {n} avg candidates {:.1} avg fired {:.1} matches {m}",
        cands as f64 / n as f64,
        fired as f64 / n as f64
    );
    let mut v: Vec<_> = per_rule.iter().enumerate().collect();
    v.sort_by(|a, b| b.1.cmp(a.1));
    for (r, c) in v.iter().take(25) {
        println!("{c:>6} {}", set.rule(*r as u32).meta.path);
    }
}
