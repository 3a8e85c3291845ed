//! The core's two paths on arbitrary input: the fast path (a streaming scan)
//! either leaves the document to the tree path or gives exactly the tree
//! path's answer; neither panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vhostfix::stages::{analyze_fast, analyze_tree};
use vhostfix::{decode, Policy};

fuzz_target!(|data: &[u8]| {
    let policy = Policy::default();
    let Ok(text) = decode(data, &policy.limits) else {
        return;
    };
    let tree = analyze_tree(text, &policy);
    if let Some(fast) = analyze_fast(text, &policy) {
        assert_eq!(format!("{fast:?}"), format!("{tree:?}"), "on {text:?}");
    }
});
