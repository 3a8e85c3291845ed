//! The whole decision on arbitrary frames (with a fixed Windows domain as the
//! lookup answer): never panics, and a replacement is a valid frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vhostfix::fuzzing;

const WIN: &str = include_str!("../../examples/windows-vhostuser.xml");

fuzz_target!(|data: &[u8]| {
    if let Some(f) = fuzzing::decide_default(data, WIN) {
        let len = fuzzing::frame_len([f[0], f[1], f[2], f[3]]).expect("valid length");
        assert_eq!(len, f.len());
    }
});
