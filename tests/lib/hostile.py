"""Hostile libvirt clients for tests/system/proxy-hostile.sh and proxy-load.sh.

Each mode connects to a UNIX socket (the proxy's) and misbehaves the way a
local user could, then reports what it saw on stdout, one `key value` a line:

  hold SOCK N KIND SECONDS
      Open N connections and keep them for SECONDS. KIND:
        idle     send nothing
        bigword  send only a length word announcing a frame over libvirt's
                 32 MiB limit (256 MiB)
        slow     announce a 32 MiB DOMAIN_DEFINE_XML call (length word and
                 header), then send one byte per connection every second
        mixed    a third of each
      Prints "connected K" once all are connected (then "alive K" at the end:
      connections the peer had not closed).
  fill SOCK N MIB SECONDS
      N connections each send a 16 MiB DOMAIN_DEFINE_XML call of which only
      the first MIB MiB arrive quickly; the rest never comes. Prints
      "connected K", holds SECONDS, prints "alive K".
  stray SOCK STRAY_FILE FD_FILE
      Opens a libvirt connection, sends CONNECT_GET_LIB_VERSION with a
      descriptor of STRAY_FILE attached (that call takes none), prints the
      reply's status ("stray_call_status 0"), then sends
      DOMAIN_CREATE_XML_WITH_FILES announcing one descriptor, FD_FILE's, with
      its carrier byte, and prints that reply's status and message. Waits for
      a line on stdin before closing.
  attach-name SOCK NAME
      Opens a libvirt connection and sends DOMAIN_ATTACH_DEVICE_FLAGS of an
      e1000 vhost-user NIC to a domain called NAME (Python escapes allowed:
      "evil\\nline"); prints the reply's status and message.
"""

import array
import os
import resource
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rawrpc as r  # noqa: E402

DEFINE_XML = 11
CONNECT_GET_LIB_VERSION = 157
DOMAIN_CREATE_XML_WITH_FILES = 309
DOMAIN_ATTACH_DEVICE_FLAGS = 160


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def connect(path, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


# Connecting stops after this long: a proxy that stopped accepting must not
# make the attack itself take forever.
CONNECT_FOR = 20.0


def header(proc, mtype=0, serial=1):
    return struct.pack(">IIiiIi", r.PROG_REMOTE, 1, proc, mtype, serial, 0)


def say(key, value):
    print(key, value, flush=True)


def alive(socks):
    """Connections the peer has not closed (a read would not return EOF)."""
    n = 0
    for s in socks:
        if s is None:
            continue
        try:
            s.settimeout(0)
            got = s.recv(4096, socket.MSG_PEEK)
            n += 1 if got else 0
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def send_quiet(s, data):
    try:
        s.sendall(data)
        return s
    except OSError:
        return None


def hold(path, n, kind, seconds):
    raise_nofile()
    socks = []
    kinds = []
    until = time.monotonic() + CONNECT_FOR
    for i in range(n):
        k = kind if kind != "mixed" else ("idle", "bigword", "slow")[i % 3]
        if time.monotonic() > until:
            break
        try:
            s = connect(path, 2)
        except OSError:
            continue
        if k == "bigword":
            s = send_quiet(s, r.u32(256 << 20))
        elif k == "slow":
            s = send_quiet(s, r.u32(32 << 20) + header(DEFINE_XML))
        socks.append(s)
        kinds.append(k)
    say("connected", sum(1 for s in socks if s is not None))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        for i, s in enumerate(socks):
            if s is not None and kinds[i] == "slow":
                s.settimeout(0.01)
                try:
                    s.send(b"x")
                except OSError:
                    pass
    say("alive", alive(socks))


def fill(path, n, mib, seconds):
    raise_nofile()
    socks = []
    chunk = b"<" * (1 << 20)
    until = time.monotonic() + CONNECT_FOR
    for _ in range(n):
        if time.monotonic() > until:
            break
        try:
            s = connect(path, 3)
        except OSError:
            continue
        s = send_quiet(s, r.u32(16 << 20) + header(DEFINE_XML))
        for _ in range(mib):
            if s is None:
                break
            s = send_quiet(s, chunk)
        socks.append(s)
    say("connected", sum(1 for s in socks if s is not None))
    time.sleep(seconds)
    say("alive", alive(socks))


def open_client(path):
    c = r.Client.__new__(r.Client)
    c.sock = connect(path)
    c.sock.settimeout(30)
    c.serial = 0
    for proc, args in ((r.AUTH_LIST, b""), (r.CONNECT_OPEN, r.opt_string("qemu:///system") + r.u32(0))):
        status, payload = c.call(proc, args)
        if status != 0:
            raise RuntimeError("setup call %d failed: %r" % (proc, r.error(payload)))
    return c


def reply(c, serial, proc):
    while True:
        (length,) = struct.unpack(">I", c._read(4))
        body = c._read(length - 4)
        prog, _v, rproc, mtype, rserial, status = struct.unpack(">IIiiIi", body[:24])
        if prog == r.PROG_REMOTE and mtype in (1, 5) and rserial == serial and rproc == proc:
            return status, body[24:]


def stray(path, stray_file, fd_file):
    c = open_client(path)
    fd = os.open(stray_file, os.O_RDONLY)
    serial = 100
    frame = header(CONNECT_GET_LIB_VERSION, 0, serial)
    frame = r.u32(4 + len(frame)) + frame
    c.sock.sendmsg([frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
    os.close(fd)
    status, _ = reply(c, serial, CONNECT_GET_LIB_VERSION)
    say("stray_call_status", status)
    xml = "<domain type='qemu'><name>vhfx-stray-fds</name></domain>"
    serial = 101
    args = r.u32(1) + r.string(xml) + r.u32(0)  # nfds, xml, flags
    frame = header(DOMAIN_CREATE_XML_WITH_FILES, 4, serial) + args
    frame = r.u32(4 + len(frame)) + frame
    fd = os.open(fd_file, os.O_RDONLY)
    c.sock.sendall(frame)
    c.sock.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
    os.close(fd)
    status, payload = reply(c, serial, DOMAIN_CREATE_XML_WITH_FILES)
    say("files_call_status", status)
    if status == 1:
        say("files_call_error", r.error(payload)[2])
    sys.stdin.readline()
    c.close()


def attach_name(path, name):
    name = name.encode().decode("unicode_escape")
    c = open_client(path)
    nic = (
        "<interface type='vhostuser'><mac address='52:54:00:5a:0e:01'/>"
        "<source type='unix' path='/run/vhu-test/evil.sock' mode='server'/>"
        "<model type='e1000'/></interface>"
    )
    dom = r.string(name) + b"\x11" * 16 + r.u32(0xFFFFFFFF)  # name, uuid, id
    status, payload = c.call(DOMAIN_ATTACH_DEVICE_FLAGS, dom + r.string(nic) + r.u32(2))
    say("status", status)
    if status == 1:
        say("message", repr(r.error(payload)[2]))
    c.close()


def main(argv):
    mode = argv[1]
    if mode == "hold":
        hold(argv[2], int(argv[3]), argv[4], float(argv[5]))
    elif mode == "fill":
        fill(argv[2], int(argv[3]), int(argv[4]), float(argv[5]))
    elif mode == "stray":
        stray(argv[2], argv[3], argv[4])
    elif mode == "attach-name":
        attach_name(argv[2], argv[3])
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main(sys.argv)
