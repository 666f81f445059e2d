#![no_main]
//! Syslog (RFC 5424/3164, auth programs): the line parser must accept anything.

use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use mamori_event::{Interner, Origin};
use mamori_ingest::parse_syslog_line;

fuzz_target!(|data: &[u8]| {
    let origin = Origin::File { path: Arc::from(Path::new("fuzz")), record: None, line: Some(1), offset: 0 };
    let _ = parse_syslog_line(data, origin, &mut Interner::new());
});
