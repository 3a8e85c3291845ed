//! Entry point: everything happens in the library (`vhostfix::main`).

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(vhostfix::main(std::env::args_os().collect()))
}
