#![no_main]
//! JSON: one object through the line parser, and the whole input as a file (JSON Lines,
//! documents, CloudTrail `Records`).

use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use mamori_event::{Format, Interner, Origin};
use mamori_ingest::{parse_json_object, read_file, ReadOptions};

fuzz_target!(|data: &[u8]| {
    let origin = Origin::File { path: Arc::from(Path::new("fuzz")), record: None, line: Some(1), offset: 0 };
    let _ = parse_json_object(data, origin, &mut Interner::new());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("f.json");
    std::fs::write(&path, data).expect("write");
    let opts = ReadOptions { format: Some(Format::Json), max_record_bytes: 4096, ..ReadOptions::default() };
    let _ = read_file(&path, &opts, &mut |_| {});
});
