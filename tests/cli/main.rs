//! Black-box tests of the built `vhostfix` binary: every subcommand, flag and
//! exit code, stdout/stderr separation, and the hook's contract with libvirt.
//! One module per subject; the helpers that run the binary are here.

mod audit;
mod check;
mod config;
mod diff;
mod docs;
mod filter;
mod hook;
mod proxy;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_vhostfix");

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn files(name: &str) -> String {
    format!("{}/tests/files/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn example() -> String {
    format!(
        "{}/examples/windows-vhostuser.xml",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An empty configuration file: the built-in defaults, whatever the machine
/// has in /etc/vhostfix/vhostfix.toml (a package another suite installed).
fn defaults() -> PathBuf {
    let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-defaults.toml");
    if !p.exists() {
        let tmp = p.with_extension(format!("{:?}.tmp", std::thread::current().id()));
        std::fs::write(&tmp, "").unwrap();
        std::fs::rename(&tmp, &p).unwrap();
    }
    p
}

fn run_with(program: &Path, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("VHOSTFIX_CONFIG", defaults())
        .env_remove("NO_COLOR")
        .env_remove("VHOSTFIX_LIBVIRT_VERSION")
        .env("VHOSTFIX_LOG", "stderr")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run(args: &[&str]) -> Out {
    run_with(Path::new(BIN), args, b"", &[])
}

fn run_stdin(args: &[&str], stdin: &[u8]) -> Out {
    run_with(Path::new(BIN), args, stdin, &[])
}

fn run_env_stdin(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Out {
    run_with(Path::new(BIN), args, stdin, env)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap()
}
