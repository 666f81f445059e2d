//! Mamori's own rule pack (`rules/` of the repository), embedded at build time by `build.rs`,
//! which walks the folder (sorted) so every rule file there is included without a hand-kept
//! list. `mamori hunt` and `mamori serve` start from this default; `--rules` adds to it and
//! `--no-default-rules` (serve: `[detection] default_rules = false`) leaves it out.

include!(concat!(env!("OUT_DIR"), "/default_rules.rs"));

/// How embedded files are named in reports and failures: `embedded:rules/linux/ssh.yml`.
pub const PREFIX: &str = "embedded:";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_rules_folder_is_embedded_and_compiles() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules");
        let on_disk = crate::rules::rule_files(&[dir]).unwrap();
        assert_eq!(
            FILES.len(),
            on_disk.len(),
            "every rules/**/*.yml is embedded"
        );
        assert!(FILES.windows(2).all(|w| w[0].0 < w[1].0), "sorted by path");
        let (pack, n) =
            crate::rules::load_pack_with_default(&[], &Default::default(), true).unwrap();
        assert_eq!(n, FILES.len());
        assert!(pack.rules.len() >= FILES.len(), "{}", pack.rules.len());
        assert!(
            pack.failures.is_empty(),
            "{:?}",
            pack.failures
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
        );
        assert!(pack.rules[0].meta.path.starts_with(PREFIX));
    }
}
