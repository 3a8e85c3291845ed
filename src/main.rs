//! Entry point: libvirt hook when started as one, the command line otherwise.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let argv0 = args
        .first()
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    if vhostfix::hook::invoked_as_hook(&argv0) {
        // libvirt runs us as `qemu NAME OP SUBOP EXTRA`: four words taken as
        // they are, never parsed as options (a domain may be named `--help`).
        let words = args.get(1..).unwrap_or_default();
        return ExitCode::from(vhostfix::cli::hook_main("qemu", words, None));
    }
    ExitCode::from(vhostfix::cli::main(args))
}
