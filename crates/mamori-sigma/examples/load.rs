//! Rule loading cost (issue #16): parses every `.yml` under a directory, N times.
//!
//!     cargo run --release -p mamori-sigma --example load -- RULES_DIR [N]
use std::path::Path;
use std::time::Instant;

use mamori_sigma::{Placeholders, RulePack};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1) else {
        eprintln!("usage: load RULES_DIR [N]");
        std::process::exit(2);
    };
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let mut files = Vec::new();
    mamori_sigma::yml_files(Path::new(dir), &mut files);
    files.sort();
    let srcs: Vec<(String, String)> = files
        .iter()
        .filter_map(|f| Some((f.display().to_string(), std::fs::read_to_string(f).ok()?)))
        .collect();
    let mut ph = Placeholders::new();
    ph.insert("known_cdcs", vec!["CN=CDC01".into()]);
    for _ in 0..n {
        let t = Instant::now();
        let mut yaml = 0usize;
        for (path, src) in &srcs {
            yaml += mamori_sigma::yaml::parse_documents(src).map_or(0, |d| d.len());
            std::hint::black_box(path);
        }
        let yaml_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut pack = RulePack::new();
        for (path, src) in &srcs {
            pack.add_file(path, src, &ph);
        }
        pack.resolve_references();
        println!(
            "{} files: YAML alone {yaml_s:.3}s ({yaml} documents); rules {:.3}s ({} rules, {} failed)",
            srcs.len(),
            t.elapsed().as_secs_f64(),
            pack.rules.len(),
            pack.failures.len()
        );
    }
}
