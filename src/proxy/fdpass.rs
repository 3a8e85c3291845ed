//! Moving frames and their file descriptors over UNIX sockets.
//!
//! libvirt sends the descriptors of a *_WITH_FDS frame after the frame, each in
//! its own message: one dummy data byte with an SCM_RIGHTS control message that
//! holds exactly one fd. The dummy bytes are not part of the frame length.
//! Linux delivers a descriptor together with its carrier byte and ends the read
//! after it, so a buffered reader that always reads with `recvmsg` sees every
//! fd arrive with the last byte of the read that brought its carrier; we queue
//! the fds and pair them with carrier bytes when a frame announces them.
//!
//! All system calls go through `rustix`, whose SCM_RIGHTS API hands out
//! `OwnedFd`s: no `unsafe` here, and a descriptor we drop is closed.

use super::wire::{self, FrameError, Header, HEADER_LEN, LEN_WORD};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// One frame as read: its bytes (length word included), borrowed from the
/// reader's buffer until the next read, and the fds after it. Relaying a frame
/// writes straight from that buffer: stream data is never copied in user space.
#[derive(Debug)]
pub struct Frame<'a> {
    pub bytes: &'a [u8],
    pub fds: Vec<OwnedFd>,
}

/// Why reading a frame stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed the connection between two frames.
    #[error("end of stream")]
    Eof,
    #[error("connection closed inside a frame")]
    Truncated,
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("file descriptors out of step with the frame ({0})")]
    Fds(&'static str),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Most fds one control message may bring; more is a protocol violation.
const CMSG_FDS: usize = 8;
const READ_CHUNK: usize = 256 * 1024;

/// Reads whole frames from a socket, with any fds that follow them.
///
/// `buf[frame..start]` is the frame being read (kept in place, since the frame
/// handed out borrows it), `buf[start..end]` what was received and not yet
/// consumed.
pub struct FrameReader {
    sock: UnixStream,
    /// How long a read polls the socket before it sleeps (see `set_poll`).
    poll: Duration,
    /// The pipe for spliced stream frames, made when the first one comes.
    splicer: Option<Splicer>,
    buf: Vec<u8>,
    frame: usize,
    start: usize,
    end: usize,
    fds: VecDeque<OwnedFd>,
}

impl FrameReader {
    pub fn new(sock: UnixStream) -> Self {
        FrameReader {
            sock,
            poll: Duration::ZERO,
            splicer: None,
            buf: vec![0; READ_CHUNK],
            frame: 0,
            start: 0,
            end: 0,
            fds: VecDeque::new(),
        }
    }

    /// Makes the next reads poll the socket for up to `d` before they sleep
    /// in the kernel. On a virtual machine, waking a sleeping thread costs tens
    /// of microseconds (the idle vCPU has to be woken); polling trades CPU
    /// time for that latency. Zero (the default) never polls.
    pub fn set_poll(&mut self, d: Duration) {
        self.poll = d;
    }

    /// One `recvmsg` into `buf[end..]`, polling first when asked to.
    fn recv(
        &mut self,
        control: &mut RecvAncillaryBuffer<'_>,
    ) -> rustix::io::Result<rustix::net::RecvMsg> {
        let mut iov = [IoSliceMut::new(&mut self.buf[self.end..])];
        polled(self.poll, RecvFlags::CMSG_CLOEXEC, |flags| {
            rustix::net::recvmsg(&self.sock, &mut iov, control, flags)
        })
    }

    fn available(&self) -> usize {
        self.end - self.start
    }

    /// Moves the current frame and what follows it to the front of the buffer.
    fn compact(&mut self) {
        let base = self.frame;
        self.buf.copy_within(base..self.end, 0);
        self.frame = 0;
        self.start -= base;
        self.end -= base;
    }

    /// Makes at least `need` bytes available; false on EOF before that.
    fn fill(&mut self, need: usize) -> Result<bool, ReadError> {
        while self.available() < need {
            if self.buf.len() - self.start < need {
                // Not enough room behind: compact, and grow for a large frame.
                self.compact();
                if self.buf.len() - self.start < need {
                    self.buf.resize((self.start + need).max(READ_CHUNK), 0);
                }
            } else if self.end == self.buf.len() {
                self.compact();
            }
            let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(CMSG_FDS))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let got = match self.recv(&mut control) {
                Ok(m) => m,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(ReadError::Io(e.into())),
            };
            for msg in control.drain() {
                if let RecvAncillaryMessage::ScmRights(fds) = msg {
                    self.fds.extend(fds);
                }
            }
            if got.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
                return Err(ReadError::Fds("too many descriptors in one message"));
            }
            if got.bytes == 0 {
                return Ok(false);
            }
            self.end += got.bytes;
        }
        Ok(true)
    }

    /// The next frame, or `Err(Eof)` when the peer closed between frames.
    pub fn read_frame(&mut self) -> Result<Frame<'_>, ReadError> {
        if self.start == self.end {
            // The previous frame is gone: start again at the front, and give
            // back the memory of a large frame.
            self.start = 0;
            self.end = 0;
            if self.buf.len() > 4 * READ_CHUNK {
                self.buf = vec![0; READ_CHUNK];
            }
        }
        self.frame = self.start;
        if !self.fill(LEN_WORD)? {
            return Err(if self.available() == 0 {
                ReadError::Eof
            } else {
                ReadError::Truncated
            });
        }
        let word = [
            self.buf[self.start],
            self.buf[self.start + 1],
            self.buf[self.start + 2],
            self.buf[self.start + 3],
        ];
        let len = wire::frame_len(word)?;
        if !self.fill(len)? {
            return Err(ReadError::Truncated);
        }
        self.start += len;
        let nfds = wire::fd_count(&self.buf[self.frame..self.start])? as usize;
        let mut fds = Vec::with_capacity(nfds);
        for _ in 0..nfds {
            // One carrier byte per descriptor; the fd came with it. The frame
            // stays in the buffer (`fill` moves it along when it compacts), but
            // the carrier bytes are not part of it: step over them afterwards.
            if !self.fill(1)? {
                return Err(ReadError::Truncated);
            }
            self.buf.copy_within(self.frame..self.start, self.frame + 1);
            self.frame += 1;
            self.start += 1;
            match self.fds.pop_front() {
                Some(fd) => fds.push(fd),
                None => return Err(ReadError::Fds("a carrier byte came without a descriptor")),
            }
        }
        if self.fds.len() > wire::MAX_FDS as usize {
            return Err(ReadError::Fds("descriptors that no frame announced"));
        }
        Ok(Frame {
            bytes: &self.buf[self.frame..self.frame + len],
            fds,
        })
    }
}

/// Stream data frames at least this long are spliced (see `Splicer`).
const SPLICE_MIN: usize = 64 * 1024;
/// The pipe a `Splicer` asks for: four 256 KiB stream frames.
const SPLICE_PIPE: usize = 1 << 20;

/// Moves the bytes of stream data frames from one socket to another through a
/// pipe with splice(2): the kernel hands the pages on, and the payload of a
/// `vol-upload` never passes through the proxy's memory.
struct Splicer {
    r: OwnedFd,
    w: OwnedFd,
    cap: usize,
}

impl Splicer {
    fn new() -> io::Result<Splicer> {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        // An unprivileged pipe may be capped at /proc/sys/fs/pipe-max-size.
        let cap = rustix::pipe::fcntl_setpipe_size(&w, SPLICE_PIPE)
            .or_else(|_| rustix::pipe::fcntl_getpipe_size(&w))?;
        Ok(Splicer { r, w, cap })
    }

    /// Moves exactly `len` bytes from `from` to `to`.
    fn transfer(&self, from: &UnixStream, to: &UnixStream, len: usize) -> Result<(), ReadError> {
        use rustix::pipe::{splice, SpliceFlags};
        let mut left = len;
        while left > 0 {
            let got = match splice(
                from,
                None,
                &self.w,
                None,
                left.min(self.cap),
                SpliceFlags::MOVE,
            ) {
                Ok(0) => return Err(ReadError::Truncated),
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(ReadError::Io(e.into())),
            };
            let mut queued = got;
            while queued > 0 {
                match splice(&self.r, None, to, None, queued, SpliceFlags::MOVE) {
                    Ok(0) => return Err(ReadError::Io(io::ErrorKind::WriteZero.into())),
                    Ok(n) => queued -= n,
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(ReadError::Io(e.into())),
                }
            }
            left -= got;
        }
        Ok(())
    }
}

impl FrameReader {
    /// Waits for the next frame and tells whether it should be spliced: when
    /// nothing is buffered and it is a stream data frame of at least
    /// `SPLICE_MIN` bytes, its length (then call `splice_frame`). `None`: read
    /// it with `read_frame`. `Err(Eof)` when the peer closed between frames.
    pub fn next_stream_frame(&mut self) -> Result<Option<usize>, ReadError> {
        if self.start != self.end {
            return Ok(None);
        }
        let mut head = [0u8; LEN_WORD + HEADER_LEN];
        let seen = self.peek(&mut head)?;
        if seen == 0 {
            return Err(ReadError::Eof);
        }
        if seen < head.len() {
            return Ok(None);
        }
        let len = wire::frame_len([head[0], head[1], head[2], head[3]])?;
        let stream = Header::of_frame(&head)
            .is_some_and(|h| h.mtype == wire::mtype::STREAM && h.status == wire::status::CONTINUE);
        if !stream || len < SPLICE_MIN {
            return Ok(None);
        }
        if self.splicer.is_none() {
            // Without a pipe (fd limit) the frame takes the buffered path.
            self.splicer = Splicer::new().ok();
        }
        Ok(self.splicer.as_ref().map(|_| len))
    }

    /// Moves the next `len` bytes, a frame `next_stream_frame` announced,
    /// unchanged to `to`.
    pub fn splice_frame(&mut self, len: usize, to: &UnixStream) -> Result<(), ReadError> {
        match &self.splicer {
            Some(s) => s.transfer(&self.sock, to, len),
            None => Err(ReadError::Io(io::Error::other("no pipe to splice through"))),
        }
    }

    /// Looks at the next bytes without consuming them, polling first when
    /// asked to (see `set_poll`).
    fn peek(&self, head: &mut [u8]) -> Result<usize, ReadError> {
        polled(self.poll, RecvFlags::PEEK, |flags| {
            rustix::net::recv(&self.sock, &mut *head, flags).map(|(n, _)| n)
        })
        .map_err(|e| ReadError::Io(e.into()))
    }
}

/// One receive with `flags`: first, for up to `poll`, attempts that do not
/// wait (DONTWAIT), then one that may sleep in the kernel. EINTR is retried.
fn polled<T>(
    poll: Duration,
    flags: RecvFlags,
    mut op: impl FnMut(RecvFlags) -> rustix::io::Result<T>,
) -> rustix::io::Result<T> {
    let until = (!poll.is_zero()).then(|| Instant::now() + poll);
    loop {
        let polling = until.is_some_and(|u| Instant::now() < u);
        let f = if polling {
            flags | RecvFlags::DONTWAIT
        } else {
            flags
        };
        match op(f) {
            Err(rustix::io::Errno::AGAIN) if polling => std::hint::spin_loop(),
            Err(rustix::io::Errno::INTR) => continue,
            r => return r,
        }
    }
}

/// Writes a frame and then its fds, one carrier message each.
pub fn write_frame(sock: &UnixStream, bytes: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
    let mut w = sock;
    w.write_all(bytes)?;
    for fd in fds {
        let one = [fd.as_fd()];
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&one)) {
            return Err(io::Error::other("control buffer too small for one fd"));
        }
        loop {
            match rustix::net::sendmsg(
                sock,
                &[IoSlice::new(&[0u8])],
                &mut control,
                SendFlags::NOSIGNAL,
            ) {
                Ok(1) => break,
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "fd carrier not sent",
                    ))
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// The send buffer the proxy asks for on both sockets of a connection.
pub const SEND_BUFFER: usize = 1 << 20;

/// Widens a socket's send buffer to `SEND_BUFFER`, so that a 256 KiB stream
/// frame goes out in one write instead of waiting for the reader halfway
/// (Linux's default is 208 KiB). Beyond `net.core.wmem_max` only root may go
/// (SO_SNDBUFFORCE); otherwise the kernel's cap applies. Best effort: a
/// socket that keeps its default still works, only slower.
pub fn widen_send_buffer(sock: &UnixStream) {
    if rustix::net::sockopt::set_socket_send_buffer_size_force(sock, SEND_BUFFER).is_err() {
        let _ = rustix::net::sockopt::set_socket_send_buffer_size(sock, SEND_BUFFER);
    }
}

/// The credentials of the process at the other end of a UNIX socket (SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
}

pub fn peer_cred(sock: &UnixStream) -> io::Result<PeerCred> {
    let c = rustix::net::sockopt::socket_peercred(sock)?;
    Ok(PeerCred {
        uid: c.uid.as_raw(),
        gid: c.gid.as_raw(),
        pid: c.pid.as_raw_nonzero().get(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::wire::{build_frame, mtype, put_u32, status, Header, PROG_REMOTE};
    use std::io::Read;
    use std::os::fd::AsRawFd;

    fn frame(mt: i32, payload: &[u8]) -> Vec<u8> {
        let h = Header {
            prog: PROG_REMOTE,
            vers: 1,
            procedure: 309,
            mtype: mt,
            serial: 1,
            status: status::OK,
        };
        build_frame(&h, payload)
    }

    #[test]
    fn frames_and_fds_cross_a_socket_pair() {
        let (a, b) = UnixStream::pair().unwrap();
        let (p1, mut p1r) = UnixStream::pair().unwrap();
        let (p2, mut p2r) = UnixStream::pair().unwrap();
        let mut args = Vec::new();
        put_u32(&mut args, 2);
        args.extend_from_slice(b"rest");
        let with = frame(mtype::CALL_WITH_FDS, &args);
        let plain = frame(mtype::CALL, b"abcd");
        write_frame(&a, &plain, &[]).unwrap();
        write_frame(&a, &with, &[OwnedFd::from(p1), OwnedFd::from(p2)]).unwrap();
        write_frame(&a, &plain, &[]).unwrap();
        drop(a);
        let mut r = FrameReader::new(b);
        let f1 = r.read_frame().unwrap();
        assert_eq!(f1.bytes, plain);
        assert!(f1.fds.is_empty());
        let f2 = r.read_frame().unwrap();
        assert_eq!(f2.bytes, with);
        assert_eq!(f2.fds.len(), 2);
        // The descriptors are the ends of our pairs: write through them.
        let mut s1 = UnixStream::from(f2.fds.into_iter().next().unwrap());
        s1.write_all(b"x").unwrap();
        let mut got = [0u8; 1];
        p1r.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"x");
        let _ = p2r.as_raw_fd();
        assert_eq!(r.read_frame().unwrap().bytes, plain);
        assert!(matches!(r.read_frame(), Err(ReadError::Eof)));
        let _ = &mut p2r;
    }

    #[test]
    fn frame_stays_whole_when_its_fd_carrier_needs_a_compaction() {
        // The fd frame ends exactly at the end of the buffer, so reading its
        // carrier byte moves the frame to the front while it is being handed out.
        let (a, b) = UnixStream::pair().unwrap();
        let (p1, _p1r) = UnixStream::pair().unwrap();
        let mut args = Vec::new();
        put_u32(&mut args, 1);
        args.extend_from_slice(b"fd frame");
        let with = frame(mtype::CALL_WITH_FDS, &args);
        let pad = frame(mtype::STREAM, &vec![9u8; READ_CHUNK - with.len() - 28]);
        assert_eq!(pad.len() + with.len(), READ_CHUNK);
        let (pad2, with2) = (pad.clone(), with.clone());
        let t = std::thread::spawn(move || {
            write_frame(&a, &pad2, &[]).unwrap();
            write_frame(&a, &with2, &[OwnedFd::from(p1)]).unwrap();
            write_frame(&a, &pad2, &[]).unwrap();
        });
        let mut r = FrameReader::new(b);
        assert_eq!(r.read_frame().unwrap().bytes, pad);
        let f = r.read_frame().unwrap();
        assert_eq!(f.bytes, with);
        assert_eq!(f.fds.len(), 1);
        assert_eq!(r.read_frame().unwrap().bytes, pad);
        t.join().unwrap();
        assert!(matches!(r.read_frame(), Err(ReadError::Eof)));
    }

    #[test]
    fn polling_reads_frames_that_come_early_or_late() {
        let (a, b) = UnixStream::pair().unwrap();
        let plain = frame(mtype::REPLY, b"abcd");
        let sent = plain.clone();
        let t = std::thread::spawn(move || {
            // One frame at once (caught while polling), one long after the
            // poll period (caught by the sleeping read), then EOF.
            write_frame(&a, &sent, &[]).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            write_frame(&a, &sent, &[]).unwrap();
        });
        let mut r = FrameReader::new(b);
        r.set_poll(Duration::from_micros(200));
        assert_eq!(r.read_frame().unwrap().bytes, plain);
        assert_eq!(r.read_frame().unwrap().bytes, plain);
        t.join().unwrap();
        assert!(matches!(r.read_frame(), Err(ReadError::Eof)));
    }

    /// A stream data frame (status CONTINUE) with `n` payload bytes.
    fn stream_frame(n: usize) -> Vec<u8> {
        let h = Header {
            prog: PROG_REMOTE,
            vers: 1,
            procedure: 209,
            mtype: mtype::STREAM,
            serial: 3,
            status: status::CONTINUE,
        };
        let payload: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
        build_frame(&h, &payload)
    }

    #[test]
    fn large_stream_frames_are_spliced_byte_for_byte() {
        let (a, b) = UnixStream::pair().unwrap();
        let (out, mut out_r) = UnixStream::pair().unwrap();
        let big = stream_frame(3 * READ_CHUNK);
        let small = frame(mtype::CALL, b"abcd");
        let (big2, small2) = (big.clone(), small.clone());
        let t = std::thread::spawn(move || {
            write_frame(&a, &big2, &[]).unwrap();
            write_frame(&a, &small2, &[]).unwrap();
        });
        let reader_t = std::thread::spawn(move || {
            let mut got = Vec::new();
            out_r.read_to_end(&mut got).unwrap();
            got
        });
        let mut r = FrameReader::new(b);
        assert_eq!(r.next_stream_frame().unwrap(), Some(big.len()));
        r.splice_frame(big.len(), &out).unwrap();
        // A small call is not spliced: it is read as usual.
        assert_eq!(r.next_stream_frame().unwrap(), None);
        assert_eq!(r.read_frame().unwrap().bytes, small);
        t.join().unwrap();
        assert!(matches!(r.next_stream_frame(), Err(ReadError::Eof)));
        drop(out);
        assert_eq!(
            reader_t.join().unwrap(),
            big,
            "the spliced frame arrives unchanged"
        );

        // A stream frame cut short by its sender.
        let (a, b) = UnixStream::pair().unwrap();
        let (out, _out_r) = UnixStream::pair().unwrap();
        let whole = stream_frame(SPLICE_MIN);
        (&a).write_all(&whole[..whole.len() - 100]).unwrap();
        drop(a);
        let mut r = FrameReader::new(b);
        let len = r.next_stream_frame().unwrap().unwrap();
        assert!(matches!(
            r.splice_frame(len, &out),
            Err(ReadError::Truncated)
        ));

        // A large stream frame partly read into the buffer along with the
        // frame before it takes the buffered path, whole.
        let (a, b) = UnixStream::pair().unwrap();
        let short = stream_frame(100);
        (&a).write_all(&short).unwrap();
        (&a).write_all(&whole).unwrap();
        drop(a);
        let mut r = FrameReader::new(b);
        assert_eq!(r.next_stream_frame().unwrap(), None);
        assert_eq!(r.read_frame().unwrap().bytes, short);
        assert_eq!(r.next_stream_frame().unwrap(), None);
        assert_eq!(r.read_frame().unwrap().bytes, whole);
    }

    #[test]
    fn bad_lengths_and_truncation() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&(40u32 << 20).to_be_bytes()).unwrap();
        let mut r = FrameReader::new(b);
        assert!(matches!(
            r.read_frame(),
            Err(ReadError::Frame(FrameError::TooLong(_)))
        ));

        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&100u32.to_be_bytes()).unwrap();
        a.write_all(&[0; 10]).unwrap();
        drop(a);
        let mut r = FrameReader::new(b);
        assert!(matches!(r.read_frame(), Err(ReadError::Truncated)));

        // Announced fds that never come.
        let (a, b) = UnixStream::pair().unwrap();
        let mut args = Vec::new();
        put_u32(&mut args, 1);
        let mut aw = &a;
        aw.write_all(&frame(mtype::CALL_WITH_FDS, &args)).unwrap();
        aw.write_all(&[0]).unwrap();
        drop(a);
        let mut r = FrameReader::new(b);
        assert!(matches!(r.read_frame(), Err(ReadError::Fds(_))));
    }

    #[test]
    fn large_frame_grows_the_buffer() {
        let (a, b) = UnixStream::pair().unwrap();
        let big = frame(mtype::STREAM, &vec![7u8; 3 * READ_CHUNK + 5]);
        let sent = big.clone();
        let t = std::thread::spawn(move || write_frame(&a, &sent, &[]).unwrap());
        let mut r = FrameReader::new(b);
        assert_eq!(r.read_frame().unwrap().bytes, big);
        t.join().unwrap();
    }

    #[test]
    fn send_buffer_is_widened() {
        let (a, _b) = UnixStream::pair().unwrap();
        let before = rustix::net::sockopt::socket_send_buffer_size(&a).unwrap();
        widen_send_buffer(&a);
        let after = rustix::net::sockopt::socket_send_buffer_size(&a).unwrap();
        if rustix::process::geteuid().is_root() {
            // Linux reports twice the size asked for (bookkeeping overhead).
            assert!(after >= SEND_BUFFER, "{before} -> {after}");
        } else {
            assert!(after >= before, "{before} -> {after}");
        }
    }

    #[test]
    fn peer_cred_of_self() {
        let (a, _b) = UnixStream::pair().unwrap();
        let c = peer_cred(&a).unwrap();
        assert_eq!(c.pid as u32, std::process::id());
        assert_eq!(c.uid, rustix::process::getuid().as_raw());
    }
}
