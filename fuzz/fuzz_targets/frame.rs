//! Frame and XDR decoders on arbitrary bytes: never panic, and a rewrite keeps
//! the frame well formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vhostfix::fuzzing;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let _ = fuzzing::frame_len([data[0], data[1], data[2], data[3]]);
    }
    if let Some(xml) = fuzzing::decode_all(data, b"<domain/>") {
        assert_eq!(xml, b"<domain/>");
    }
});
