//! Large frames that need no decision (stream data, calls without XML or
//! fds) moved from one socket to another through a pipe with splice(2): the
//! kernel hands the pages on, and the payload of a `vol-upload` never passes
//! through the reader's memory.

use super::{polled, Deadline, FrameReader, ReadError};
use crate::rpc::frame::{self, mtype, status, Header, HEADER_LEN, LEN_WORD};
use crate::rpc::procs;
use rustix::net::RecvFlags;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Stream data frames at least this long are spliced (see `Splicer`).
const SPLICE_MIN: usize = 64 * 1024;
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

impl FrameReader {
    /// Waits for the next frame and tells whether it should be spliced: when
    /// nothing is buffered and it is a frame of at least `SPLICE_MIN` bytes
    /// that needs no decision (stream data, or a call that carries neither
    /// XML nor fds), its length and header (then call `splice_frame`).
    /// `None`: read it with `read_frame`. `Err(Eof)` when the peer closed
    /// between frames.
    pub(crate) fn next_passthrough_frame(&mut self) -> Result<Option<(usize, Header)>, ReadError> {
        if self.start != self.end {
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
        let stream = h.mtype == mtype::STREAM && h.status == status::CONTINUE;
        let plain_call = h.mtype == mtype::CALL && !procs::may_carry_xml(h.prog, h.procedure);
        if !(stream || plain_call) || len < SPLICE_MIN {
            return Ok(None);
        }
        if self.splicer.is_none() {
            // Without a pipe (fd limit) the frame takes the buffered path.
            self.splicer = Splicer::new().ok();
        }
        Ok(self.splicer.as_ref().map(|_| (len, h)))
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
    fn peek(&self, head: &mut [u8]) -> Result<usize, ReadError> {
        polled(self.poll, RecvFlags::PEEK, |flags| {
            rustix::net::recv(&self.sock, &mut *head, flags).map(|(n, _)| n)
        })
        .map_err(|e| ReadError::Io(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::frame::remote_frame;
    use crate::rpc::transport::write_frame;
    use std::io::{Read, Write};

    fn frame(mt: i32, payload: &[u8]) -> Vec<u8> {
        remote_frame(309, mt, 1, status::OK, payload)
    }

    /// A stream data frame (status CONTINUE) with `n` payload bytes.
    fn stream_frame(n: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
        remote_frame(209, mtype::STREAM, 3, status::CONTINUE, &payload)
    }

    #[test]
    fn large_stream_frames_are_spliced_byte_for_byte() {
        let (a, b) = UnixStream::pair().unwrap();
        let (out, mut out_r) = UnixStream::pair().unwrap();
        let big = stream_frame(3 * super::super::READ_CHUNK);
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
        assert_eq!(
            r.next_passthrough_frame().unwrap().map(|(n, _)| n),
            Some(big.len())
        );
        r.splice_frame(big.len(), &out).unwrap();
        // A small call is not spliced: it is read as usual.
        assert!(r.next_passthrough_frame().unwrap().is_none());
        assert_eq!(r.read_frame().unwrap().bytes, small);
        t.join().unwrap();
        assert!(matches!(r.next_passthrough_frame(), Err(ReadError::Eof)));
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
        let len = r.next_passthrough_frame().unwrap().unwrap().0;
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
        assert!(r.next_passthrough_frame().unwrap().is_none());
        assert_eq!(r.read_frame().unwrap().bytes, short);
        assert!(r.next_passthrough_frame().unwrap().is_none());
        assert_eq!(r.read_frame().unwrap().bytes, whole);
    }
}
