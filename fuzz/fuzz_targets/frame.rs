//! Frame and XDR decoders on arbitrary bytes: never panic, and a rewrite keeps
//! the frame well formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vhostfix::proxy::wire;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let _ = wire::frame_len([data[0], data[1], data[2], data[3]]);
    }
    let _ = wire::Header::of_frame(data);
    let _ = wire::fd_count(data);
    let _ = wire::decode_error(wire::payload(data));
    if let Ok(Some(call)) = wire::xml_call(data) {
        let replaced = wire::replace_string(data, call.range.clone(), b"<domain/>");
        if let Some(f) = replaced {
            let again = wire::xml_call(&f).expect("rewritten frame decodes").expect("still a call");
            assert_eq!(again.xml, b"<domain/>");
        }
    }
});
