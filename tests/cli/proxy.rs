//! `vhostfix proxy` started the way systemd starts it, with sockets passed
//! by `systemd-socket-activate` (systemd's own tool): without names, as
//! systemd 219 passes them, the proxy tells the read-write socket from the
//! read-only one by its path. No libvirt is needed: each socket's first call
//! is answered with the error that names the libvirt socket its clients go
//! to, which shows how the proxy routed it. (tests/system/systemd-units.sh
//! runs the packaged units under a real systemd.)

use crate::*;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::process::Child;
use std::time::{Duration, Instant};

/// A CONNECT_OPEN call (REMOTE program, serial 0, no URI, flags 0).
fn connect_open_call() -> Vec<u8> {
    let words: [u32; 9] = [36, 0x2000_8086, 1, 1, 0, 0, 0, 0, 0];
    words.iter().flat_map(|w| w.to_be_bytes()).collect()
}

/// Connects to `path`, retrying while systemd-socket-activate sets it up.
fn connect(path: &Path) -> UnixStream {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return s,
            Err(e) if Instant::now() > until => panic!("{}: {e}", path.display()),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Sends one call on a new connection to `path` and returns the message of
/// the error reply.
fn first_answer(path: &Path) -> String {
    let mut s = connect(path);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&connect_open_call()).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut rest = vec![0u8; u32::from_be_bytes(len) as usize - 4];
    s.read_exact(&mut rest).unwrap();
    // header (24) | code | domain | message present (1) | length | bytes
    let payload = &rest[24..];
    let n = u32::from_be_bytes(payload[12..16].try_into().unwrap()) as usize;
    String::from_utf8_lossy(&payload[16..16 + n]).into_owned()
}

struct Activated {
    child: Child,
}

impl Drop for Activated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `systemd-socket-activate -l A -l B ... vhostfix --config C proxy ...`.
fn activate(dir: &Path, sockets: &[&Path], proxy_args: &[&str]) -> Activated {
    // The admin socket would go to /run/vhostfix; the test's own group is
    // admitted on the read-write socket (root is anyway).
    let gid = std::fs::metadata(dir).unwrap().gid();
    let config = dir.join("vhostfix.toml");
    std::fs::write(
        &config,
        format!("[proxy]\nadmin_socket = \"\"\nallowed_groups = [\"{gid}\"]\n"),
    )
    .unwrap();
    let mut cmd = Command::new("systemd-socket-activate");
    for s in sockets {
        cmd.arg("-l").arg(s);
    }
    // It passes the program no environment but what -E names.
    cmd.arg("-E")
        .arg("VHOSTFIX_LOG=stderr:info")
        .arg(BIN)
        .arg("--config")
        .arg(&config)
        .arg("proxy")
        .args(proxy_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("proxy.log")).unwrap());
    let child = cmd
        .spawn()
        .expect("systemd-socket-activate (Debian package systemd) runs");
    Activated { child }
}

#[test]
fn sockets_passed_without_names_are_told_apart_by_their_paths() {
    let d = scratch("activate-unnamed");
    let (rw, ro) = (d.join("rw.sock"), d.join("rw.sock-ro"));
    let up = d.join("libvirt-sock");
    let _p = activate(&d, &[&rw, &ro], &["--upstream", up.to_str().unwrap()]);
    let a = first_answer(&rw);
    assert!(
        a.contains(&format!("cannot reach libvirt at {}:", up.display())),
        "{a}"
    );
    let a = first_answer(&ro);
    assert!(
        a.contains(&format!("cannot reach libvirt at {}-ro:", up.display())),
        "{a}"
    );
    let log = read(d.join("proxy.log").to_str().unwrap());
    assert!(
        log.contains(&format!(
            "systemd passed {} without a vhostfix name (none); serving it read-only by its path",
            ro.display()
        )),
        "{log}"
    );
}

#[test]
fn the_configured_read_only_path_decides_over_the_suffix() {
    let d = scratch("activate-configured");
    let (a, b) = (d.join("one.sock"), d.join("two.sock"));
    let up = d.join("up");
    let _p = activate(
        &d,
        &[&a, &b],
        &[
            "--upstream",
            up.to_str().unwrap(),
            "--listen-ro",
            a.to_str().unwrap(),
        ],
    );
    let ans = first_answer(&a);
    assert!(
        ans.contains(&format!("cannot reach libvirt at {}-ro:", up.display())),
        "{ans}"
    );
    let ans = first_answer(&b);
    assert!(
        ans.contains(&format!("cannot reach libvirt at {}:", up.display())),
        "{ans}"
    );
}

#[test]
fn two_sockets_that_cannot_be_told_apart_are_an_error_that_says_what_to_do() {
    let d = scratch("activate-ambiguous");
    let (a, b) = (d.join("one.sock"), d.join("two.sock"));
    let mut p = activate(&d, &[&a, &b], &["--upstream", "/nonexistent"]);
    // systemd-socket-activate starts the program on the first connection.
    let _c = connect(&a);
    let status = p.child.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    let log = read(d.join("proxy.log").to_str().unwrap());
    assert!(
        log.contains("systemd passed 2 sockets that vhostfix would all serve read-write")
            && log.contains("name them FileDescriptorName=vhostfix-rw and vhostfix-ro, or set proxy.listen and proxy.listen_ro to their paths"),
        "{log}"
    );
}

/// Issue 20: `vhostfix proxy --stats` could not find a proxy started by hand
/// with --listen (it looked in /run/vhostfix). The admin socket now follows
/// --listen, and --stats --listen finds it; --admin-socket names it.
#[test]
fn stats_find_a_proxy_started_with_listen() {
    let d = scratch("stats-listen");
    let sock = d.join("proxy.sock");
    let config = d.join("empty.toml");
    std::fs::write(&config, "").unwrap();
    let log = std::fs::File::create(d.join("proxy.log")).unwrap();
    let child = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "proxy", "--listen"])
        .arg(&sock)
        .args(["--upstream", "/nonexistent/libvirt-sock"])
        .env("VHOSTFIX_LOG", "stderr")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // Killed when the test ends, also when it fails.
    let _proxy = Activated { child };
    let admin = d.join("admin-sock");
    let until = Instant::now() + Duration::from_secs(10);
    while !admin.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = |args: &[&str]| {
        let mut all = vec!["--config", config.to_str().unwrap(), "proxy", "--stats"];
        all.extend_from_slice(args);
        run(&all)
    };
    let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    for o in [
        stats(&["--listen", sock.to_str().unwrap()]),
        stats(&["--admin-socket", admin.to_str().unwrap()]),
    ] {
        if root {
            assert_eq!(o.code, 0, "{}", o.stderr);
            assert!(o.stdout.contains("connections_active 0\n"), "{}", o.stdout);
        } else {
            // The admin socket answers root only; it was found all the same.
            assert!(
                o.stderr.contains(&format!(
                    "{}: the proxy answered nothing (only root may read its counters)",
                    admin.display()
                )),
                "{}",
                o.stderr
            );
        }
    }
}
