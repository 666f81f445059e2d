//! Any bytes as a Sigma rule file: parsing and compiling must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mamori_detect::{CompileOptions, RuleSet};
use mamori_sigma::{Placeholders, RulePack};

fuzz_target!(|data: &[u8]| {
    let src = String::from_utf8_lossy(data);
    let mut pack = RulePack::new();
    pack.add_file("fuzz.yml", &src, &Placeholders::new());
    pack.resolve_references();
    let _ = RuleSet::compile(&pack, &CompileOptions::default());
});
