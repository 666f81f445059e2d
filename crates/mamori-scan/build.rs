//! Embeds the shipped scan templates (`templates/*.yml`) — the folder is walked here, no
//! hand-kept list, so a template added there is embedded by the next build.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let dir = manifest.join("templates");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut src = String::from(
        "/// `(path, contents)` of every shipped template file, sorted by path.\npub static SHIPPED: &[(&str, &str)] = &[\n",
    );
    for f in &files {
        let name = f.file_name().unwrap_or_default().to_string_lossy();
        src.push_str(&format!(
            "    ({:?}, include_str!({:?})),\n",
            format!("templates/{name}"),
            f.display().to_string()
        ));
    }
    src.push_str("];\n");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("out dir")).join("shipped_templates.rs");
    std::fs::write(out, src).expect("write shipped_templates.rs");
}
