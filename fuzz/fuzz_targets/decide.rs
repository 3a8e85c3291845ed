//! The whole decision on arbitrary frames (with a fixed Windows domain as the
//! lookup answer): never panics, and a replacement is a valid frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vhostfix::config::Config;
use vhostfix::proxy::{decide, wire};

const WIN: &str = include_str!("../../examples/windows-vhostuser.xml");

fuzz_target!(|data: &[u8]| {
    let config = Config::default();
    let mut lookup = |_d: &wire::DomainRef<'_>| -> Result<String, String> { Ok(WIN.to_string()) };
    let d = decide::decide(data, &config, "fuzz", &mut lookup);
    if let decide::Action::Replace(f) = d.action {
        let len = wire::frame_len([f[0], f[1], f[2], f[3]]).expect("valid length");
        assert_eq!(len, f.len());
    }
});
