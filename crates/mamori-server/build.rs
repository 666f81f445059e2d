//! Embeds Mamori's own rule pack (`rules/**/*.yml` at the workspace root) into the binary, so
//! `mamori hunt DIR` and `mamori serve` work without `--rules`. The folder is walked here —
//! no hand-kept list — so a rule file added under `rules/` is embedded by the next build.

use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_dir() {
            walk(&p, out);
        } else if md.is_file() && p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(p);
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let root = manifest.join("../../rules");
    // A directory: cargo re-runs this script when anything under it changes.
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    let mut src = String::from("/// `(path under rules/, contents)` of every embedded rule file, sorted by path.\npub static FILES: &[(&str, &str)] = &[\n");
    for f in &files {
        let rel = f
            .strip_prefix(&root)
            .unwrap_or(f)
            .to_string_lossy()
            .replace('\\', "/");
        let abs = f.canonicalize().unwrap_or_else(|_| f.clone());
        src.push_str(&format!(
            "    ({:?}, include_str!({:?})),\n",
            format!("rules/{rel}"),
            abs.display().to_string()
        ));
    }
    src.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("out dir")).join("default_rules.rs");
    std::fs::write(out, src).expect("write default_rules.rs");
}
