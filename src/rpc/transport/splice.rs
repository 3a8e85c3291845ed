//! Large frames that need no decision (stream data, calls without XML or
//! fds) moved from one socket to another through a pipe with splice(2): the
//! kernel hands the pages on, and the payload of a `vol-upload` never passes
//! through the reader's memory.

use super::{polled, Deadline, FrameReader, ReadError, Wait};
use crate::rpc::frame::{self, mtype, status, Header, HEADER_LEN, LEN_WORD};
use crate::rpc::procs;
use rustix::net::RecvFlags;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Stream data frames at least this long are spliced (see `Splicer`).
pub(super) const SPLICE_MIN: usize = 64 * 1024;
/// The pipe a `Splicer` asks for: four 256 KiB stream frames.
const SPLICE_PIPE: usize = 1 << 20;

/// Moves the bytes of stream data frames from one socket to another through a
/// pipe with splice(2): the kernel hands the pages on, and the payload of a
/// `vol-upload` never passes through the proxy's memory.
pub(super) struct Splicer {
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
    fn transfer(
        &self,
        from: &UnixStream,
        to: &UnixStream,
        len: usize,
        since: Instant,
        timeout: Option<Duration>,
    ) -> Result<(), ReadError> {
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
                Err(rustix::io::Errno::AGAIN) => {
                    if timeout.is_some_and(|t| since.elapsed() > t) {
                        return Err(ReadError::Timeout(Deadline::Frame));
                    }
                    continue;
                }
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

/// A frame that is spliced rather than read: at least `SPLICE_MIN` bytes
/// that need no decision (stream data, or a call that cannot carry XML).
pub(super) fn splice_worthy(len: usize, h: &Header) -> bool {
    let stream = h.mtype == mtype::STREAM && h.status == status::CONTINUE;
    let plain_call = h.mtype == mtype::CALL && !procs::may_carry_xml(h.prog, h.procedure);
    len >= SPLICE_MIN && (stream || plain_call)
}

impl FrameReader {
    /// Tells whether the next frame should be spliced: when nothing is
    /// buffered and it is a frame of at least `SPLICE_MIN` bytes that needs
    /// no decision (stream data, or a call that carries neither XML nor fds),
    /// its length and header (then call `splice_frame`). `None`: read it with
    /// `read_frame`. `Err(Eof)` when the peer closed between frames.
    ///
    /// Looking costs a receive (MSG_PEEK) per frame, so the reader looks only
    /// while large frames come (`look_ahead`); otherwise it answers `None` at
    /// once and a small frame costs the one receive that reads it.
    pub(crate) fn next_passthrough_frame(&mut self) -> Result<Option<(usize, Header)>, ReadError> {
        if self.start != self.end || self.look_ahead == 0 {
            return Ok(None);
        }
        self.check_open_deadline()?;
        let mut head = [0u8; LEN_WORD + HEADER_LEN];
        let seen = loop {
            match self.peek(&mut head) {
                Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.check_deadlines()?;
                    self.check_open_deadline()?;
                }
                r => break r?,
            }
        };
        if seen == 0 {
            return Err(ReadError::Eof);
        }
        if seen < head.len() {
            return Ok(None);
        }
        let len = frame::frame_len([head[0], head[1], head[2], head[3]])?;
        let Some(h) = Header::of_frame(&head) else {
            return Ok(None);
        };
        if !splice_worthy(len, &h) {
            // read_frame counts it.
            return Ok(None);
        }
        if self.splicer.is_none() {
            // Without a pipe (fd limit) the frame takes the buffered path.
            self.splicer = Splicer::new().ok();
        }
        if self.splicer.is_none() {
            return Ok(None);
        }
        self.looked(true);
        Ok(Some((len, h)))
    }

    /// Moves the next `len` bytes, a frame `next_passthrough_frame`
    /// announced, unchanged to `to`.
    pub(crate) fn splice_frame(&mut self, len: usize, to: &UnixStream) -> Result<(), ReadError> {
        let since = Instant::now();
        let timeout = self.guard.as_ref().map(|g| g.frame_timeout);
        match &self.splicer {
            Some(s) => s.transfer(&self.sock, to, len, since, timeout),
            None => Err(ReadError::Io(io::Error::other("no pipe to splice through"))),
        }
    }

    /// Looks at the next bytes without consuming them, polling first when
    /// asked to (see `set_poll`).
    fn peek(&mut self, head: &mut [u8]) -> Result<usize, ReadError> {
        let wait = Wait {
            sock: &self.sock,
            timeout: self.timeout,
            ready: false,
        };
        polled(wait, self.spin.as_mut(), RecvFlags::PEEK, |flags| {
            rustix::net::recv(wait.sock, &mut *head, flags).map(|(n, _)| n)
        })
        .map_err(|e| ReadError::Io(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::transport::tests::{frame, stream_frame};
    use crate::rpc::transport::write_frame;
    use std::io::{Read, Write};

    /// A socket whose peer collects everything written to it, and the
    /// thread that does.
    fn collector() -> (UnixStream, std::thread::JoinHandle<Vec<u8>>) {
        let (out, mut out_r) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            let mut got = Vec::new();
            out_r.read_to_end(&mut got).unwrap();
            got
        });
        (out, t)
    }

    /// Relays every frame from `r` to `out` as the proxy does, until the end:
    /// the lengths of the frames read through the buffer, and how many were
    /// spliced.
    fn relay_all(r: &mut FrameReader, out: &UnixStream) -> (Vec<usize>, usize) {
        let (mut read, mut spliced) = (Vec::new(), 0);
        loop {
            match r.next_passthrough_frame() {
                Ok(Some((len, _))) => {
                    r.splice_frame(len, out).unwrap();
                    spliced += 1;
                }
                Ok(None) => match r.read_frame() {
                    Ok(f) => {
                        let mut w = out;
                        w.write_all(f.bytes).unwrap();
                        read.push(f.bytes.len());
                    }
                    Err(ReadError::Eof) => break,
                    Err(e) => panic!("{e}"),
                },
                Err(ReadError::Eof) => break,
                Err(e) => panic!("{e}"),
            }
        }
        (read, spliced)
    }

    /// Writes `frames` to `a` from a thread; all their bytes.
    fn send_all(a: UnixStream, frames: Vec<Vec<u8>>) -> (std::thread::JoinHandle<()>, Vec<u8>) {
        let sent = frames.iter().flatten().copied().collect();
        let t = std::thread::spawn(move || {
            for f in &frames {
                write_frame(&a, f, &[]).unwrap();
            }
        });
        (t, sent)
    }

    #[test]
    fn large_stream_frames_are_spliced_byte_for_byte() {
        let (a, b) = UnixStream::pair().unwrap();
        let (out, reader_t) = collector();
        let first = stream_frame(SPLICE_MIN);
        let second = stream_frame(SPLICE_MIN + 1);
        let big = stream_frame(3 * super::super::READ_CHUNK);
        let small = frame(mtype::CALL, b"abcd");
        write_frame(&a, &first, &[]).unwrap();
        write_frame(&a, &second, &[]).unwrap();
        let mut r = FrameReader::new(b);
        // Before any large frame came, none is looked for: the first is
        // read, and the second with it.
        assert!(r.next_passthrough_frame().unwrap().is_none());
        assert_eq!(r.read_frame().unwrap().bytes, first);
        assert!(r.next_passthrough_frame().unwrap().is_none());
        assert_eq!(r.read_frame().unwrap().bytes, second);
        // Now the buffer is empty: the next large frame is spliced.
        let (t, _) = send_all(a, vec![big.clone(), small.clone()]);
        assert_eq!(
            r.next_passthrough_frame().unwrap().map(|(n, _)| n),
            Some(big.len())
        );
        r.splice_frame(big.len(), &out).unwrap();
        // A small call is not spliced: it is read as usual.
        assert!(r.next_passthrough_frame().unwrap().is_none());
        assert_eq!(r.read_frame().unwrap().bytes, small);
        t.join().unwrap();
        // Large frames came lately: the end is seen by looking.
        assert!(matches!(r.next_passthrough_frame(), Err(ReadError::Eof)));
        drop(out);
        assert_eq!(
            reader_t.join().unwrap(),
            big,
            "the spliced frame arrives unchanged"
        );
    }

    #[test]
    fn once_large_frames_come_a_read_takes_no_more_than_its_frame() {
        // So that the one after it can be spliced. The frames have the size
        // of libvirt's stream frames: a read takes at most part of one.
        let (a, b) = UnixStream::pair().unwrap();
        let (out, reader_t) = collector();
        let chunk = super::super::READ_CHUNK;
        let (writer, sent) = send_all(a, (0..6).map(|i| stream_frame(chunk + i)).collect());
        let mut r = FrameReader::new(b);
        let (read, spliced) = relay_all(&mut r, &out);
        writer.join().unwrap();
        drop(out);
        assert_eq!(read.len(), 1, "{read:?} read, {spliced} spliced");
        assert_eq!(read.len() + spliced, 6);
        assert_eq!(reader_t.join().unwrap(), sent);
    }

    #[test]
    fn a_download_splices_its_large_frames_with_small_ones_between() {
        // libvirt's vol-download: large data frames with a small one after
        // each. All large ones but the first are spliced.
        let (a, b) = UnixStream::pair().unwrap();
        let (out, reader_t) = collector();
        let chunk = super::super::READ_CHUNK;
        let frames = (0..8)
            .map(|i| stream_frame(if i % 2 == 0 { chunk } else { 24 }))
            .collect();
        let (writer, sent) = send_all(a, frames);
        let mut r = FrameReader::new(b);
        let (read, spliced) = relay_all(&mut r, &out);
        writer.join().unwrap();
        drop(out);
        let large_read = read.iter().filter(|&&n| n > chunk).count();
        assert_eq!((large_read, spliced), (1, 3));
        assert_eq!(reader_t.join().unwrap(), sent);
    }

    #[test]
    fn a_stream_frame_cut_short_is_truncated() {
        let (a, b) = UnixStream::pair().unwrap();
        let (out, mut out_r) = UnixStream::pair().unwrap();
        let drain = std::thread::spawn(move || std::io::copy(&mut out_r, &mut std::io::sink()));
        let whole = stream_frame(super::super::READ_CHUNK);
        let sent = whole.clone();
        let t = std::thread::spawn(move || {
            (&a).write_all(&sent).unwrap();
            (&a).write_all(&sent[..sent.len() - 100]).unwrap();
        });
        let mut r = FrameReader::new(b);
        assert_eq!(r.read_frame().unwrap().bytes, whole);
        let len = r.next_passthrough_frame().unwrap().unwrap().0;
        assert!(matches!(
            r.splice_frame(len, &out),
            Err(ReadError::Truncated)
        ));
        t.join().unwrap();
        drop(out);
        drain.join().unwrap().unwrap();
    }

    #[test]
    fn a_large_frame_partly_buffered_is_read_whole() {
        // Read into the buffer along with the frame before it, it takes the
        // buffered path.
        let whole = stream_frame(SPLICE_MIN);
        let (a, b) = UnixStream::pair().unwrap();
        let short = stream_frame(100);
        (&a).write_all(&short).unwrap();
        (&a).write_all(&whole).unwrap();
        drop(a);
        let mut r = FrameReader::new(b);
        assert!(r.next_passthrough_frame().unwrap().is_none());
        assert_eq!(r.read_frame().unwrap().bytes, short);
        assert!(r.next_passthrough_frame().unwrap().is_none());
        assert_eq!(r.read_frame().unwrap().bytes, whole);
    }
}
