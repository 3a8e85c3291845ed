//! Entry point: libvirt hook when started as one, the command line otherwise.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let argv0 = args
        .first()
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    if vhostfix::hook::invoked_as_hook(&argv0) {
        // libvirt runs us as `qemu NAME OP SUBOP EXTRA`.
        let mut argv = vec!["vhostfix".into(), "hook".into(), "qemu".into()];
        argv.extend(args.into_iter().skip(1));
        return ExitCode::from(vhostfix::cli::main(argv));
    }
    ExitCode::from(vhostfix::cli::main(args))
}
