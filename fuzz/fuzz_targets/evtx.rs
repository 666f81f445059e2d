#![no_main]
//! EVTX: arbitrary bytes behind a valid file-header prefix, read through `read_file` (the
//! reader needs a path: the parser seeks).

use libfuzzer_sys::fuzz_target;
use mamori_ingest::{read_file, ReadOptions};
use mamori_event::Format;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("f.evtx");
    let mut bytes = b"ElfFile\0".to_vec();
    bytes.extend_from_slice(data);
    std::fs::write(&path, &bytes).expect("write");
    let opts = ReadOptions { format: Some(Format::Evtx), ..ReadOptions::default() };
    let _ = read_file(&path, &opts, &mut |_| {});
});
