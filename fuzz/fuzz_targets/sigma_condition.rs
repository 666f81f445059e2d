//! Any string as a condition expression: the parser returns a value or an error, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = mamori_sigma::parse_condition(s, 1);
    }
});
