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

mod budget;
mod splice;

pub(crate) use budget::Budget;
use splice::Splicer;

use super::frame::{self, FrameError, Header, LEN_WORD};
use memmap2::MmapMut;
use rustix::event::{PollFd, PollFlags};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One frame as read: its bytes (length word included), borrowed from the
/// reader's buffer until the next read, and the fds after it. Relaying a frame
/// writes straight from that buffer: stream data is never copied in user space.
#[derive(Debug)]
pub(crate) struct Frame<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) fds: Vec<OwnedFd>,
}

/// Why reading a frame stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The peer closed the connection between two frames.
    #[error("end of stream")]
    Eof,
    #[error("connection closed inside a frame")]
    Truncated,
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("file descriptors out of step with the frame ({0})")]
    Fds(&'static str),
    /// A deadline of the reader's `Guard` passed.
    #[error("{0}")]
    Timeout(Deadline),
    /// A frame longer than the `Guard` allows.
    #[error("a frame of {0} bytes is longer than the reader's limit")]
    TooLarge(usize),
    /// The memory budget the reader draws on is spent.
    #[error("the shared memory budget is spent")]
    Budget,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Which deadline of a `Guard` passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Deadline {
    /// A frame whose first byte came did not finish in time.
    #[error("a frame took longer than its deadline")]
    Frame,
    /// The peer did not open its libvirt connection in time.
    #[error("no successful CONNECT_OPEN before the deadline")]
    Open,
}

/// Most fds one control message may bring; more is a protocol violation.
const CMSG_FDS: usize = 8;
const READ_CHUNK: usize = 256 * 1024;
/// Frames looked at before they are read, after one that could be spliced.
const LOOK_AHEAD: u8 = 8;
/// A buffer grows by at most this much per step, as bytes really arrive: a
/// length word alone never makes the proxy allocate what it announces.
const GROW_STEP: usize = 1 << 20;

/// What a reader enforces on a peer it does not trust. Its socket must have a
/// receive timeout (SO_RCVTIMEO), so that a silent peer wakes the reader up to
/// check the deadlines.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    /// Once a frame's first byte came, the whole frame must come within this.
    pub(crate) frame_timeout: Duration,
    /// Longest frame read into memory (longer stream or call data that needs
    /// no decision is spliced, see `next_passthrough_frame`).
    pub(crate) max_frame: usize,
    /// Growth beyond the first chunk is drawn from here, when set.
    pub(crate) budget: Option<Arc<Budget>>,
    /// Until `opened` is set, the peer must not be idle past this instant.
    pub(crate) open_by: Option<Instant>,
    pub(crate) opened: Arc<AtomicBool>,
}

/// The reader's buffer: anonymous memory mapped for it alone, so that what a
/// burst of large frames took goes back to the system when they are done
/// (glibc keeps freed heap memory, and its mmap threshold grows after frees).
struct Buf {
    map: MmapMut,
}

impl Buf {
    fn new(len: usize) -> io::Result<Buf> {
        Ok(Buf {
            map: MmapMut::map_anon(len.max(1))?,
        })
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    /// A larger buffer holding the first `keep` bytes of this one.
    fn grown(&self, len: usize, keep: usize) -> io::Result<Buf> {
        let mut b = Buf::new(len)?;
        b.map[..keep].copy_from_slice(&self.map[..keep]);
        Ok(b)
    }
}

/// Reads whole frames from a socket, with any fds that follow them.
///
/// `buf[frame..start]` is the frame being read (kept in place, since the frame
/// handed out borrows it), `buf[start..end]` what was received and not yet
/// consumed. Every fd is queued with the stream offset of the byte it came
/// with, so a descriptor is only ever paired with its own carrier byte; fds
/// that came with the bytes of a frame (no libvirt peer sends such) are closed.
pub(crate) struct FrameReader {
    sock: UnixStream,
    /// The socket's receive timeout when the reader was made.
    timeout: Option<Duration>,
    /// Whether a read polls the socket before it sleeps (see `set_poll`).
    spin: Option<Box<dyn Spin>>,
    /// Frames still to look at before reading them (see
    /// `next_passthrough_frame`): `LOOK_AHEAD` after a frame that could be
    /// spliced, one less after each that could not. libvirt sends stream
    /// data as large frames, or large and small ones in turn.
    look_ahead: u8,
    /// The pipe for spliced stream frames, made when the first one comes.
    splicer: Option<Splicer>,
    buf: Buf,
    /// Stream offset of `buf[0]`.
    base: u64,
    frame: usize,
    start: usize,
    end: usize,
    fds: VecDeque<(u64, OwnedFd)>,
    guard: Option<Guard>,
    /// Budget drawn for `buf` beyond `READ_CHUNK`.
    held: usize,
    /// When the first byte of the frame being read came.
    frame_since: Option<Instant>,
    /// Descriptors closed because no frame announced them.
    pub(crate) stray_fds: u64,
}

impl FrameReader {
    pub(crate) fn new(sock: UnixStream) -> Self {
        FrameReader {
            timeout: sock.read_timeout().ok().flatten(),
            sock,
            spin: None,
            look_ahead: 0,
            splicer: None,
            buf: Buf::new(READ_CHUNK).expect("mapping the first read buffer"),
            base: 0,
            frame: 0,
            start: 0,
            end: 0,
            fds: VecDeque::new(),
            guard: None,
            held: 0,
            frame_since: None,
            stray_fds: 0,
        }
    }

    /// Enforces `g` on the peer from now on.
    pub(crate) fn guarded(mut self, g: Guard) -> Self {
        self.guard = Some(g);
        self
    }

    /// Makes the next reads poll the socket for up to `d` before they sleep
    /// in the kernel. On a virtual machine, waking a sleeping thread costs tens
    /// of microseconds (the idle vCPU has to be woken); polling trades CPU
    /// time for that latency. Zero (the default) never polls.
    pub(crate) fn set_poll(&mut self, d: Duration) {
        self.spin = (!d.is_zero()).then(|| Box::new(Fixed(d)) as Box<dyn Spin>);
    }

    /// Makes the next reads poll the socket for as long as `s` says.
    pub(crate) fn set_spin(&mut self, s: Box<dyn Spin>) {
        self.spin = Some(s);
    }

    /// One `recvmsg` of at most `max` bytes into `buf[end..]`, polling first
    /// when asked to.
    fn recv(
        &mut self,
        max: usize,
        control: &mut RecvAncillaryBuffer<'_>,
    ) -> rustix::io::Result<rustix::net::RecvMsg> {
        let to = self.buf.len().min(self.end.saturating_add(max));
        let wait = Wait {
            sock: &self.sock,
            timeout: self.timeout,
            ready: self.frame_since.is_some(),
        };
        let mut iov = [IoSliceMut::new(&mut self.buf.map[self.end..to])];
        polled(wait, self.spin.as_mut(), RecvFlags::CMSG_CLOEXEC, |flags| {
            rustix::net::recvmsg(wait.sock, &mut iov, control, flags)
        })
    }

    fn available(&self) -> usize {
        self.end - self.start
    }

    /// Moves the current frame and what follows it to the front of the buffer.
    fn compact(&mut self) {
        let base = self.frame;
        self.buf.map.copy_within(base..self.end, 0);
        self.frame = 0;
        self.start -= base;
        self.end -= base;
        self.base += base as u64;
    }

    /// Called when a read timed out: fails once a deadline has passed.
    fn check_deadlines(&self) -> Result<(), ReadError> {
        let Some(g) = &self.guard else { return Ok(()) };
        if let Some(since) = self.frame_since {
            if since.elapsed() > g.frame_timeout {
                return Err(ReadError::Timeout(Deadline::Frame));
            }
        }
        if let Some(by) = g.open_by {
            if !g.opened.load(Ordering::SeqCst) && Instant::now() > by {
                return Err(ReadError::Timeout(Deadline::Open));
            }
        }
        Ok(())
    }

    /// Grows the buffer for a frame that needs `need` bytes from `frame`.
    fn grow(&mut self, need: usize) -> Result<(), ReadError> {
        let len = self.buf.len();
        let want = (self.start + need).min(len + GROW_STEP).max(len + 1);
        if let Some(b) = self.guard.as_ref().and_then(|g| g.budget.clone()) {
            let extra = want.saturating_sub(READ_CHUNK.max(len));
            if !b.take(extra) {
                return Err(ReadError::Budget);
            }
            self.held += extra;
        }
        self.buf = self.buf.grown(want, self.end)?;
        Ok(())
    }

    /// Gives back a large buffer once nothing is in it.
    fn shrink(&mut self) {
        if self.buf.len() > READ_CHUNK && self.start == self.end {
            if let Ok(b) = Buf::new(READ_CHUNK) {
                self.base += self.end as u64;
                self.buf = b;
                self.frame = 0;
                self.start = 0;
                self.end = 0;
                if let Some(budget) = self.guard.as_ref().and_then(|g| g.budget.as_ref()) {
                    budget.give(self.held);
                }
                self.held = 0;
            }
        }
    }

    /// Makes at least `need` bytes available; false on EOF before that.
    fn fill(&mut self, need: usize) -> Result<bool, ReadError> {
        while self.available() < need {
            if self.end == self.buf.len() {
                self.compact();
            }
            if self.end == self.buf.len() {
                self.grow(need)?;
            }
            let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(CMSG_FDS))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            // While large frames come, read none past the one being read,
            // so that the next starts at an empty buffer and can be spliced.
            let max = if self.look_ahead > 0 {
                need - self.available()
            } else {
                usize::MAX
            };
            let got = match self.recv(max, &mut control) {
                Ok(m) => m,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => {
                    self.check_deadlines()?;
                    continue;
                }
                Err(e) => return Err(ReadError::Io(e.into())),
            };
            let mut came = Vec::new();
            for msg in control.drain() {
                if let RecvAncillaryMessage::ScmRights(fds) = msg {
                    came.extend(fds);
                }
            }
            if got.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
                return Err(ReadError::Fds("too many descriptors in one message"));
            }
            if got.bytes == 0 {
                return Ok(false);
            }
            if self.frame_since.is_none() {
                self.frame_since = Some(Instant::now());
            }
            self.end += got.bytes;
            // Linux ends a read after the byte that carried descriptors.
            let at = self.base + (self.end - 1) as u64;
            self.fds.extend(came.into_iter().map(|fd| (at, fd)));
        }
        Ok(true)
    }

    /// Closes queued fds that came before stream offset `before`.
    fn drop_stray(&mut self, before: u64) {
        while self.fds.front().is_some_and(|(at, _)| *at < before) {
            self.fds.pop_front();
            self.stray_fds += 1;
        }
    }

    /// The next frame, or `Err(Eof)` when the peer closed between frames.
    pub(crate) fn read_frame(&mut self) -> Result<Frame<'_>, ReadError> {
        if self.start == self.end {
            // The previous frame is gone: start again at the front, and give
            // back the memory of a large frame.
            self.base += self.end as u64;
            self.start = 0;
            self.end = 0;
            self.frame_since = None;
            self.shrink();
        }
        self.check_open_deadline()?;
        self.frame = self.start;
        if !self.fill(LEN_WORD)? {
            return Err(if self.available() == 0 {
                ReadError::Eof
            } else {
                ReadError::Truncated
            });
        }
        let word = [
            self.buf.map[self.start],
            self.buf.map[self.start + 1],
            self.buf.map[self.start + 2],
            self.buf.map[self.start + 3],
        ];
        let len = frame::frame_len(word)?;
        if let Some(g) = &self.guard {
            if len > g.max_frame {
                return Err(ReadError::TooLarge(len));
            }
        }
        if !self.fill(len)? {
            return Err(ReadError::Truncated);
        }
        self.start += len;
        let nfds = frame::fd_count(&self.buf.map[self.frame..self.start])? as usize;
        self.drop_stray(self.base + self.start as u64);
        let mut fds = Vec::with_capacity(nfds);
        for _ in 0..nfds {
            // One carrier byte per descriptor; the fd came with it. The frame
            // stays in the buffer (`fill` moves it along when it compacts), but
            // the carrier bytes are not part of it: step over them afterwards.
            if !self.fill(1)? {
                return Err(ReadError::Truncated);
            }
            let carrier = self.base + self.start as u64;
            self.buf
                .map
                .copy_within(self.frame..self.start, self.frame + 1);
            self.frame += 1;
            self.start += 1;
            match self.fds.front() {
                Some((at, _)) if *at == carrier => {
                    if let Some((_, fd)) = self.fds.pop_front() {
                        fds.push(fd);
                    }
                }
                _ => return Err(ReadError::Fds("a carrier byte came without a descriptor")),
            }
        }
        if self.fds.len() > frame::MAX_FDS as usize {
            return Err(ReadError::Fds("descriptors that no frame announced"));
        }
        // After a large frame that could have been spliced, look at the next
        // ones first, as they may be more.
        let worthy = len >= splice::SPLICE_MIN
            && Header::of_frame(&self.buf.map[self.frame..self.frame + len])
                .is_some_and(|h| splice::splice_worthy(len, &h));
        self.looked(worthy);
        // Bytes of the next frame may already be here.
        self.frame_since = (self.available() > 0).then(Instant::now);
        Ok(Frame {
            bytes: &self.buf.map[self.frame..self.frame + len],
            fds,
        })
    }

    /// Counts a frame for `look_ahead`: whether it could have been spliced.
    fn looked(&mut self, worthy: bool) {
        self.look_ahead = if worthy {
            LOOK_AHEAD
        } else {
            self.look_ahead.saturating_sub(1)
        };
    }

    /// Between frames: fails when the peer has not opened its connection in time.
    fn check_open_deadline(&self) -> Result<(), ReadError> {
        match &self.guard {
            Some(g)
                if g.open_by.is_some_and(|by| Instant::now() > by)
                    && !g.opened.load(Ordering::SeqCst) =>
            {
                Err(ReadError::Timeout(Deadline::Open))
            }
            _ => Ok(()),
        }
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        if let Some(b) = self.guard.as_ref().and_then(|g| g.budget.as_ref()) {
            b.give(self.held);
        }
    }
}

/// Decides, attempt by attempt, whether a receive polls its socket
/// (attempts that do not wait) or sleeps in the kernel.
pub(crate) trait Spin: Send {
    /// A receive begins.
    fn begin(&mut self) {}
    /// True to make one more attempt that does not wait, `waited` after the
    /// receive began. Once false, the receive sleeps until data comes.
    fn keep(&mut self, waited: Duration) -> bool;
    /// The receive returned (data, end of stream or an error) after `waited`.
    fn end(&mut self, _waited: Duration) {}
}

/// Polls for a fixed period.
struct Fixed(Duration);

impl Spin for Fixed {
    fn keep(&mut self, waited: Duration) -> bool {
        waited < self.0
    }
}

/// How a receive waits for data.
#[derive(Clone, Copy)]
struct Wait<'a> {
    sock: &'a UnixStream,
    /// The socket's receive timeout (SO_RCVTIMEO): a wait this long ends the
    /// receive with `AGAIN`, as a receive that slept in the socket would.
    timeout: Option<Duration>,
    /// Data is probably there already (the rest of a frame): try first.
    ready: bool,
}

/// One receive with `flags`, which never sleeps in the socket itself:
/// attempts that do not wait (DONTWAIT) while `spin` says so, then poll(2)
/// for data before each further attempt. A receive that sleeps in a UNIX
/// socket is also woken whenever the peer reads what was written to that
/// socket (the kernel wakes every sleeper when send space frees up); poll
/// wakes only for data. EINTR is retried.
fn polled<T>(
    w: Wait<'_>,
    mut spin: Option<&mut Box<dyn Spin>>,
    flags: RecvFlags,
    mut op: impl FnMut(RecvFlags) -> rustix::io::Result<T>,
) -> rustix::io::Result<T> {
    let t0 = Instant::now();
    if let Some(s) = spin.as_deref_mut() {
        s.begin();
    }
    let mut polling = spin.is_some();
    let mut try_now = w.ready;
    let r = loop {
        if polling {
            polling = spin.as_deref_mut().is_some_and(|s| s.keep(t0.elapsed()));
        }
        if polling || try_now {
            try_now = false;
            match op(flags | RecvFlags::DONTWAIT) {
                Err(rustix::io::Errno::AGAIN) => {
                    if polling {
                        std::hint::spin_loop();
                    }
                    continue;
                }
                Err(rustix::io::Errno::INTR) => continue,
                r => break r,
            }
        }
        match wait_readable(w.sock, w.timeout) {
            Ok(()) => try_now = true,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => break Err(e),
        }
    };
    if let Some(s) = spin {
        s.end(t0.elapsed());
    }
    r
}

/// Waits until `sock` has data, an error or a hang-up to report, for at most
/// `timeout`: `Err(AGAIN)` when it passed.
fn wait_readable(sock: &UnixStream, timeout: Option<Duration>) -> rustix::io::Result<()> {
    let mut fds = [PollFd::new(sock, PollFlags::IN)];
    let ts = timeout.map(|d| rustix::event::Timespec {
        tv_sec: d.as_secs() as _,
        tv_nsec: d.subsec_nanos() as _,
    });
    match rustix::event::poll(&mut fds, ts.as_ref())? {
        0 => Err(rustix::io::Errno::AGAIN),
        _ => Ok(()),
    }
}

/// Writes a frame and then its fds, one carrier message each.
pub(crate) fn write_frame(sock: &UnixStream, bytes: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
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
pub(crate) const SEND_BUFFER: usize = 1 << 20;

/// Widens a socket's send buffer to `SEND_BUFFER`, so that a 256 KiB stream
/// frame goes out in one write instead of waiting for the reader halfway
/// (Linux's default is 208 KiB). Beyond `net.core.wmem_max` only root may go
/// (SO_SNDBUFFORCE); otherwise the kernel's cap applies. Best effort: a
/// socket that keeps its default still works, only slower.
pub(crate) fn widen_send_buffer(sock: &UnixStream) {
    if rustix::net::sockopt::set_socket_send_buffer_size_force(sock, SEND_BUFFER).is_err() {
        let _ = rustix::net::sockopt::set_socket_send_buffer_size(sock, SEND_BUFFER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::frame::{mtype, remote_frame, status};
    use crate::rpc::xdr::put_u32;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    /// A frame of procedure 309 (also for the splicer's tests).
    pub(super) fn frame(mt: i32, payload: &[u8]) -> Vec<u8> {
        remote_frame(309, mt, 1, status::OK, payload)
    }

    /// A stream data frame (status CONTINUE) with `n` payload bytes, not all
    /// alike, so that a byte out of place shows.
    pub(super) fn stream_frame(n: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
        remote_frame(209, mtype::STREAM, 3, status::CONTINUE, &payload)
    }

    /// Sends `bytes` with `fds` attached to them (what no libvirt peer does).
    fn send_with_fds(sock: &UnixStream, bytes: &[u8], fds: &[OwnedFd]) {
        let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        assert!(control.push(SendAncillaryMessage::ScmRights(&borrowed)));
        let n = rustix::net::sendmsg(
            sock,
            &[IoSlice::new(bytes)],
            &mut control,
            SendFlags::NOSIGNAL,
        )
        .unwrap();
        assert_eq!(n, bytes.len());
    }

    #[test]
    fn fds_sent_with_a_frame_that_takes_none_are_closed_not_kept() {
        let (a, b) = UnixStream::pair().unwrap();
        let (stray, mut stray_peer) = UnixStream::pair().unwrap();
        let plain = frame(mtype::CALL, b"abcd");
        send_with_fds(&a, &plain, &[OwnedFd::from(stray)]);
        // Then a frame that announces one fd, sent properly.
        let (p1, _p1r) = UnixStream::pair().unwrap();
        let mut args = Vec::new();
        put_u32(&mut args, 1);
        let with = frame(mtype::CALL_WITH_FDS, &args);
        write_frame(&a, &with, &[OwnedFd::from(p1)]).unwrap();
        drop(a);
        let mut r = FrameReader::new(b);
        assert!(r.read_frame().unwrap().fds.is_empty());
        let f = r.read_frame().unwrap();
        assert_eq!(f.fds.len(), 1);
        // The fd handed out is the announced one, not the stray.
        let got = UnixStream::from(f.fds.into_iter().next().unwrap());
        drop(got);
        assert_eq!(r.stray_fds, 1);
        // The stray descriptor was closed: its peer sees EOF.
        let mut buf = [0u8; 1];
        assert_eq!(stray_peer.read(&mut buf).unwrap(), 0);
    }

    fn guard(frame_timeout_ms: u64, max_frame: usize, budget: Option<Arc<Budget>>) -> Guard {
        Guard {
            frame_timeout: Duration::from_millis(frame_timeout_ms),
            max_frame,
            budget,
            open_by: None,
            opened: Arc::new(AtomicBool::new(false)),
        }
    }

    #[test]
    fn a_slow_frame_times_out_and_a_huge_one_is_refused_before_it_is_read() {
        let (a, b) = UnixStream::pair().unwrap();
        b.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut r = FrameReader::new(b).guarded(guard(200, 1 << 20, None));
        (&a).write_all(&[0, 0, 1, 0, 0]).unwrap();
        let t = Instant::now();
        assert!(matches!(r.read_frame(), Err(ReadError::Timeout(_))));
        assert!(t.elapsed() >= Duration::from_millis(200));
        let (a, b) = UnixStream::pair().unwrap();
        let mut r = FrameReader::new(b).guarded(guard(200, 1 << 20, None));
        (&a).write_all(&(32u32 << 20).to_be_bytes()).unwrap();
        assert!(matches!(r.read_frame(), Err(ReadError::TooLarge(n)) if n == 32 << 20));
    }

    /// Voluntary context switches of a thread (`/proc/PID/task/TID`).
    fn sleeps(task: &std::path::Path) -> u64 {
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn a_waiting_read_is_not_woken_when_the_peer_reads_what_was_written() {
        // A relay writes to the socket it waits on (the other direction's
        // frames); each time the peer reads one, the kernel frees send space
        // and wakes whoever sleeps in that socket. The waiting reader must
        // not be among them.
        let (a, b) = UnixStream::pair().unwrap();
        let writer = a.try_clone().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            tx.send(std::fs::read_link("/proc/thread-self").unwrap())
                .unwrap();
            let mut r = FrameReader::new(a);
            r.read_frame().unwrap().bytes.to_vec()
        });
        let task = std::path::Path::new("/proc").join(rx.recv().unwrap());
        std::thread::sleep(Duration::from_millis(50));
        let before = sleeps(&task);
        let reply = frame(mtype::REPLY, b"abcd");
        let mut got = vec![0u8; reply.len()];
        for _ in 0..50 {
            write_frame(&writer, &reply, &[]).unwrap();
            (&b).read_exact(&mut got).unwrap();
            // Time for a woken reader to run (and count a sleep).
            std::thread::sleep(Duration::from_millis(1));
        }
        let after = sleeps(&task);
        let call = frame(mtype::CALL, b"done");
        write_frame(&b, &call, &[]).unwrap();
        assert_eq!(reader.join().unwrap(), call);
        assert!(after - before < 10, "woken {} times", after - before);
    }

    #[test]
    fn an_idle_peer_must_open_in_time() {
        let open_by = || {
            let mut g = guard(1000, 1 << 20, None);
            g.open_by = Some(Instant::now() + Duration::from_millis(100));
            g
        };
        // Waiting for a frame to read.
        let (_a, b) = UnixStream::pair().unwrap();
        b.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut r = FrameReader::new(b).guarded(open_by());
        assert!(r.next_passthrough_frame().unwrap().is_none());
        assert!(matches!(
            r.read_frame(),
            Err(ReadError::Timeout(Deadline::Open))
        ));
        // Waiting, after a large stream frame, for one that may be spliced.
        let (a, b) = UnixStream::pair().unwrap();
        b.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let big = stream_frame(splice::SPLICE_MIN);
        write_frame(&a, &big, &[]).unwrap();
        let mut r = FrameReader::new(b).guarded(open_by());
        assert_eq!(r.read_frame().unwrap().bytes, big);
        assert!(matches!(
            r.next_passthrough_frame(),
            Err(ReadError::Timeout(Deadline::Open))
        ));
    }

    #[test]
    fn large_frames_draw_on_the_budget_and_give_it_back() {
        let budget = Arc::new(Budget::new(2 << 20));
        let big = frame(mtype::CALL, &vec![7u8; 1536 * 1024]);
        let (a, b) = UnixStream::pair().unwrap();
        let w = std::thread::spawn(move || {
            write_frame(&a, &big, &[]).unwrap();
            write_frame(&a, &frame(mtype::CALL, b"x"), &[]).unwrap();
            big
        });
        let mut r = FrameReader::new(b).guarded(guard(5000, 16 << 20, Some(budget.clone())));
        let got = r.read_frame().unwrap().bytes.to_vec();
        assert!(budget.used() > 0);
        assert_eq!(got, w.join().unwrap());
        r.read_frame().unwrap();
        assert_eq!(budget.used(), 0);
        // A frame larger than the whole budget is refused once it is spent.
        let (a, b) = UnixStream::pair().unwrap();
        let huge = frame(mtype::CALL, &vec![1u8; 3 << 20]);
        let w = std::thread::spawn(move || {
            let _ = write_frame(&a, &huge, &[]);
        });
        let mut r = FrameReader::new(b).guarded(guard(5000, 16 << 20, Some(budget.clone())));
        assert!(matches!(r.read_frame(), Err(ReadError::Budget)));
        drop(r);
        w.join().unwrap();
        assert_eq!(budget.used(), 0);
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
        if nix::unistd::geteuid().is_root() {
            // Linux reports twice the size asked for (bookkeeping overhead).
            assert!(after >= SEND_BUFFER, "{before} -> {after}");
        } else {
            assert!(after >= before, "{before} -> {after}");
        }
    }
}
