//! Where matching time goes: per event type and per rule (diagnostics for issue #16).
//!
//!     cargo run --release -p mamori-detect --example costs -- RULES_DIR EVENTS.jsonl
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use mamori_detect::{CompileOptions, RuleSet};
use mamori_ingest::ReadOptions;
use mamori_sigma::{Placeholders, RulePack};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Ok(n) = std::env::var("COSTS_READ_ONLY") {
        // Only reading (parse, flatten, drop), N times: for profiling the reader alone.
        for _ in 0..n.parse::<usize>().unwrap_or(1) {
            let t = Instant::now();
            let mut k = 0usize;
            mamori_ingest::read_file(Path::new(&args[2]), &ReadOptions::default(), &mut |e| {
                k += e.fields().len();
            });
            println!("read {:.3}s, {k} fields", t.elapsed().as_secs_f64());
        }
        return;
    }
    let mut files = Vec::new();
    mamori_sigma::yml_files(Path::new(&args[1]), &mut files);
    files.sort();
    let t0 = Instant::now();
    let t = t0;
    let mut pack = RulePack::new();
    let mut ph = Placeholders::new();
    ph.insert("known_cdcs", vec!["CN=CDC01".into()]);
    let mut read_s = 0.0;
    for f in &files {
        let t = Instant::now();
        let src = std::fs::read_to_string(f).unwrap();
        read_s += t.elapsed().as_secs_f64();
        pack.add_file(&f.display().to_string(), &src, &ph);
    }
    pack.resolve_references();
    if std::env::var_os("COSTS_LOAD_ONLY").is_some() {
        let t = Instant::now();
        let set = RuleSet::compile(&pack, &CompileOptions::default());
        println!(
            "load {:.3}s, compile {:.3}s, {} rules",
            t0.elapsed().as_secs_f64() - t.elapsed().as_secs_f64(),
            t.elapsed().as_secs_f64(),
            set.len()
        );
        return;
    }
    println!(
        "load {:.3}s ({read_s:.3}s reading files), {} rules",
        t.elapsed().as_secs_f64(),
        pack.rules.len()
    );
    let t = Instant::now();
    let set = RuleSet::compile(&pack, &CompileOptions::default());
    println!("compile {:.3}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let mut events = Vec::new();
    mamori_ingest::read_file(Path::new(&args[2]), &ReadOptions::default(), &mut |e| {
        events.push(e)
    });
    println!(
        "read {:.3}s, {} events",
        t.elapsed().as_secs_f64(),
        events.len()
    );
    let t = Instant::now();
    let mut n = 0usize;
    for e in &events {
        n += e.fields_json_text().len();
    }
    println!(
        "fields_json_text all {:.3}s ({n} bytes)",
        t.elapsed().as_secs_f64()
    );
    // Per-rule timing clears the predicate cache before each rule: slow, and noisy on a
    // loaded machine; off unless COSTS_PER_RULE is set.
    let per_rule = std::env::var_os("COSTS_PER_RULE").is_some();
    let mut sc = set.scratch();
    let mut out = Vec::new();
    let mut by_type: HashMap<String, (f64, usize, usize)> = HashMap::new();
    let mut by_rule: HashMap<u32, (f64, usize)> = HashMap::new();
    let mut total = 0.0;
    let mut evals = 0.0;
    let mut cands = 0usize;
    for e in &events {
        out.clear();
        let mut d = f64::MAX;
        for _ in 0..3 {
            out.clear();
            let t = Instant::now();
            set.matches(e, &mut sc, &mut out);
            d = d.min(t.elapsed().as_secs_f64());
        }
        total += d;
        let key = format!(
            "{}/{}",
            e.get_str("Channel").unwrap_or_default(),
            e.get_str("EventID").unwrap_or_default()
        );
        let x = by_type.entry(key).or_default();
        x.0 += d;
        x.1 += 1;
        x.2 += set.last_candidates(&sc).len();
        let cs: Vec<u32> = if per_rule {
            set.last_candidates(&sc).to_vec()
        } else {
            Vec::new()
        };
        cands += cs.len();
        for r in cs {
            // The fastest of three: a run the scheduler interrupted does not count.
            let mut d = f64::MAX;
            for _ in 0..3 {
                let t = Instant::now();
                std::hint::black_box(set.eval_uncached(r, e, &mut sc));
                d = d.min(t.elapsed().as_secs_f64());
            }
            evals += d;
            let x = by_rule.entry(r).or_default();
            x.0 += d;
            x.1 += 1;
        }
    }
    let ne = events.len() as f64;
    println!(
        "matches {:.3}s = {:.2} µs/event; candidates {:.1}/event; uncached eval of all candidates {:.3}s",
        total,
        total * 1e6 / ne,
        cands as f64 / ne,
        evals
    );
    let mut v: Vec<_> = by_type.into_iter().collect();
    v.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    println!("-- event types by matching time: total s, events, µs/event, cands/event");
    for (k, (d, c, cn)) in v.iter().take(15) {
        println!(
            "{k:60} {d:.3} {c:6} {:8.2} {:.1}",
            d * 1e6 / *c as f64,
            *cn as f64 / *c as f64
        );
    }
    let mut v: Vec<_> = by_rule.into_iter().collect();
    v.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    println!("-- rules by uncached eval time: s, evaluations, µs each");
    for (r, (d, c)) in v.iter().take(25) {
        println!(
            "{:60} {d:.4} {c:6} {:.2}",
            set.rule(*r).meta.title.chars().take(60).collect::<String>(),
            d * 1e6 / *c as f64
        );
    }
}
