"""A minimal libvirt RPC client for system tests: sends calls that no libvirt
binding exposes (the steps of a migration) over a libvirt UNIX socket.

    import rawrpc
    c = rawrpc.Client("/run/libvirt/libvirt-sock")   # AUTH_LIST, CONNECT_OPEN
    status, payload = c.call(306, args)               # status 0 ok, 1 error
    code, domain, message = rawrpc.error(payload)

Encoders follow XDR as libvirt uses it (see libvirt-rpc-facts.md).
"""

import socket
import struct

PROG_REMOTE = 0x20008086
AUTH_LIST = 66
CONNECT_OPEN = 1


def u32(v):
    return struct.pack(">I", v & 0xFFFFFFFF)


def hyper(v):
    return struct.pack(">Q", v)


def string(b):
    if isinstance(b, str):
        b = b.encode()
    return u32(len(b)) + b + b"\0" * (-len(b) % 4)


def opt_string(b):
    return u32(0) if b is None else u32(1) + string(b)


def typed_string_params(pairs):
    out = u32(len(pairs))
    for name, value in pairs:
        out += string(name) + u32(7) + string(value)
    return out


class Client:
    def __init__(self, path, uri="qemu:///system"):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(path)
        self.serial = 0
        for proc, args in ((AUTH_LIST, b""), (CONNECT_OPEN, opt_string(uri) + u32(0))):
            status, payload = self.call(proc, args)
            if status != 0:
                raise RuntimeError("setup call %d failed: %r" % (proc, error(payload)))

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            got = self.sock.recv(n - len(buf))
            if not got:
                raise EOFError("connection closed")
            buf += got
        return buf

    def call(self, proc, args):
        serial = self.serial
        self.serial += 1
        header = struct.pack(">IIiiIi", PROG_REMOTE, 1, proc, 0, serial, 0)
        self.sock.sendall(u32(4 + len(header) + len(args)) + header + args)
        while True:
            (length,) = struct.unpack(">I", self._read(4))
            body = self._read(length - 4)
            prog, _vers, rproc, mtype, rserial, status = struct.unpack(">IIiiIi", body[:24])
            # Skip events and keepalives; the reply is type 1 with our serial.
            if prog == PROG_REMOTE and mtype == 1 and rserial == serial and rproc == proc:
                return status, body[24:]

    def close(self):
        self.sock.close()


def error(payload):
    """(code, domain, message) of a remote_error payload."""
    code, domain = struct.unpack(">ii", payload[:8])
    (present,) = struct.unpack(">I", payload[8:12])
    message = None
    if present:
        (n,) = struct.unpack(">I", payload[12:16])
        message = payload[16 : 16 + n].decode("utf-8", "replace")
    return code, domain, message
