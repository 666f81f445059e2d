//! Sigma matching throughput: the SigmaHQ Windows rules over the corpus' pre-flattened
//! Windows events (`bench/windows-flat.jsonl`), single thread. Skips when the corpus is absent.
//!
//! `cargo bench -p mamori-detect --bench matching`

use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mamori_detect::{CompileOptions, RuleSet};
use mamori_event::{Event, FieldName, Format, Interner, Origin, Value};
use mamori_sigma::{Placeholders, RulePack};

fn corpus() -> Option<PathBuf> {
    let p = std::env::var_os("MAMORI_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"));
    p.join("bench/windows-flat.jsonl").is_file().then_some(p)
}

fn yml(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut v: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    v.sort();
    for p in v {
        if p.is_dir() {
            yml(&p, out)
        } else if p.extension().is_some_and(|e| e == "yml") {
            out.push(p)
        }
    }
}

fn windows_pack(c: &Path) -> RulePack {
    let mut files = Vec::new();
    for d in [
        "sigma/rules/windows",
        "sigma/rules-threat-hunting/windows",
        "sigma/rules-emerging-threats",
    ] {
        yml(&c.join(d), &mut files);
    }
    let ph = Placeholders::from_yaml("known_cdcs: [CDC01]").unwrap();
    let mut pack = RulePack::new();
    for f in files {
        pack.add_file(
            &f.display().to_string(),
            &std::fs::read_to_string(&f).unwrap(),
            &ph,
        );
    }
    pack.rules
        .retain(|r| r.logsource.product.as_deref() == Some("windows"));
    pack.correlations.clear();
    pack.filters.clear();
    pack
}

fn events(c: &Path) -> Vec<Event> {
    let text = std::fs::read_to_string(c.join("bench/windows-flat.jsonl")).unwrap();
    let path: Arc<Path> = Arc::from(Path::new("windows-flat.jsonl"));
    let mut names = Interner::new();
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let mut e = Event::new(
                Format::Json,
                Origin::File {
                    path: path.clone(),
                    record: None,
                    line: Some(i as u64 + 1),
                    offset: 0,
                },
                Vec::new(),
            );
            e.logsource.product = Some(FieldName::new("windows"));
            for (k, v) in v.as_object()? {
                e.push_nonempty(names.intern(k), Value::from_json(v));
            }
            Some(e)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let Some(corpus) = corpus() else {
        eprintln!("skipped: corpus not found (set MAMORI_CORPUS)");
        return;
    };
    let pack = windows_pack(&corpus);
    let evs = events(&corpus);
    let mut g = c.benchmark_group("sigma_windows");
    g.sample_size(10);
    g.throughput(Throughput::Elements(evs.len() as u64));
    let all = pack.rules.clone();
    for n in [100usize, 1000, all.len()] {
        let mut p = RulePack::new();
        p.rules = all[..n.min(all.len())].to_vec();
        let set = RuleSet::compile(&p, &CompileOptions::default());
        let mut scratch = set.scratch();
        let mut out = Vec::new();
        g.bench_function(format!("{n}_rules"), |b| {
            b.iter(|| {
                let mut hits = 0;
                for e in &evs {
                    out.clear();
                    set.matches(e, &mut scratch, &mut out);
                    hits += out.len();
                }
                hits
            })
        });
    }
    g.finish();
    c.bench_function("compile_windows_rules", |b| {
        b.iter(|| RuleSet::compile(&pack, &CompileOptions::default()).len())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
