#![no_main]
//! auditd: each input line a record, all records grouped into one event.

use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use mamori_event::{Interner, Origin};
use mamori_ingest::{auditd_event, parse_auditd_line};

fuzz_target!(|data: &[u8]| {
    let records: Vec<_> = data.split(|&b| b == b'\n').filter_map(|l| parse_auditd_line(l).ok()).collect();
    let origin = Origin::File { path: Arc::from(Path::new("fuzz")), record: None, line: Some(1), offset: 0 };
    let _ = auditd_event(&records, data.to_vec(), origin, &mut Interner::new());
});
