//! vhostfix: keeps Windows guests with vhost-user NICs bootable on libvirt hosts.
//!
//! The layers, top to bottom (arrows point down only; `tests/architecture.rs`
//! fails when one points up, and docs/ARCHITECTURE.md draws them):
//!
//! - front ends: [`cli`] (the command line), `hook` (libvirt's qemu hook),
//!   `proxy` (the API proxy), `audit` (every domain libvirt knows);
//! - services: `config`, `logging`, `prometheus`, `host` (what the core must
//!   not do: look at this host), `transparent` (what transparent mode recorded);
//! - `rpc`: libvirt's wire protocol, shared by the proxy and audit;
//! - `core`: pure, no I/O: parse, detect, rules, rewrite, findings, report.
//!
//! Every module is private to the crate. What tests, benches and fuzz
//! targets need is re-exported below, and nothing else.

mod audit;
mod cli;
mod config;
pub(crate) mod core;
mod hook;
mod host;
mod logging;
mod prometheus;
mod proxy;
mod rpc;
mod transparent;

pub use crate::core::analysis::{analyze, Analysis, NicStatus, Policy};
pub use crate::core::detect::{Detection, Verdict};
pub use crate::core::findings::{findings, unchecked};
pub use crate::core::parse::{decode, InputLimits};
pub use crate::core::report;
pub use crate::core::rules::{Guests, TargetModel};

/// Runs the program: the libvirt hook when started as one (argv0 `qemu`, or
/// in a `qemu.d` directory), the command line otherwise. Returns the exit status.
pub fn main(args: Vec<std::ffi::OsString>) -> u8 {
    let argv0 = args
        .first()
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    if hook::invoked_as_hook(&argv0) {
        // libvirt runs us as `qemu NAME OP SUBOP EXTRA`: four words taken as
        // they are, never parsed as options (a domain may be named `--help`).
        let words = args.get(1..).unwrap_or_default();
        return cli::hook_main("qemu", words, None);
    }
    cli::main(args)
}

/// The stages of `analyze` and of writing its result, for benches/core.rs;
/// its two paths alone, for the tests that hold them to the same answers.
#[doc(hidden)]
pub mod stages {
    pub use crate::core::analysis::{analyze_fast, analyze_tree};
    pub use crate::core::parse::parse;
    pub use crate::core::rewrite::{apply, write_edited};
}

/// What the fuzz targets drive: the proxy's decision and the frame decoders.
#[doc(hidden)]
pub mod fuzzing {
    use crate::config::Config;
    use crate::core::rules::LibvirtVersion;
    use crate::proxy::decide::{decide, FrameAction};
    use crate::proxy::upstream::Upstream;
    use crate::rpc::xdr::DomainRef;
    use crate::rpc::{calls, error, frame};

    /// A libvirt that answers every domain lookup with `domain_xml`.
    struct Fixed(&'static str);

    impl Upstream for Fixed {
        fn domain_xml(&mut self, _dom: &DomainRef<'_>) -> Result<String, String> {
            Ok(self.0.to_string())
        }

        fn lib_version(&mut self) -> Option<LibvirtVersion> {
            None
        }
    }

    /// The proxy's decision on `frame` with the default configuration; the
    /// replacement frame when it rewrites.
    pub fn decide_default(frame: &[u8], domain_xml: &'static str) -> Option<Vec<u8>> {
        match decide(frame, &Config::default(), "fuzz", &mut Fixed(domain_xml)).action {
            FrameAction::Replace(f) => Some(f),
            _ => None,
        }
    }

    /// The frame's whole length from its length word, if valid.
    pub fn frame_len(word: [u8; 4]) -> Option<usize> {
        frame::frame_len(word).ok()
    }

    /// Every decoder run on `data`; the XML argument of the call it holds,
    /// after replacing it with `replacement` and decoding again.
    pub fn decode_all(data: &[u8], replacement: &[u8]) -> Option<Vec<u8>> {
        let _ = frame::Header::of_frame(data);
        let _ = frame::fd_count(data);
        let _ = error::decode_error(frame::payload(data));
        let call = calls::xml_call(data).ok()??;
        let replaced = calls::replace_string(data, call.range.clone(), replacement)?;
        let again = calls::xml_call(&replaced)
            .expect("a rewritten frame decodes")
            .expect("and is still a call");
        Some(again.xml.to_vec())
    }
}
