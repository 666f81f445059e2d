#![no_main]
//! Web access logs: combined format and IIS W3C lines.

use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use mamori_event::{Interner, Origin};
use mamori_ingest::{parse_access_log_line, parse_iis_line, IisFields};

fuzz_target!(|data: &[u8]| {
    let origin = Origin::File { path: Arc::from(Path::new("fuzz")), record: None, line: Some(1), offset: 0 };
    let mut names = Interner::new();
    let _ = parse_access_log_line(data, origin.clone(), &mut names);
    let _ = parse_iis_line(data, &IisFields::default(), origin, &mut names);
});
