//! Frames over a blocking TCP stream: a reader that keeps partial frames across read
//! timeouts (so a thread can look at its stop flag between frames), and a writer with one
//! reusable buffer. Buffers are sized once, at connection time.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::frame::{self, Frame, FrameError};

/// Largest frame accepted (a RECORDS batch is cut well below it).
pub const MAX_FRAME_BYTES: usize = 8 << 20;
/// Bytes of records a RECORDS frame carries at most before it is sent.
pub const BATCH_BYTES: usize = 256 << 10;
// Why: a full batch plus one largest record (keel's default payload limit is 64 KiB) fits.
const _: () = assert!(BATCH_BYTES + (1 << 20) < MAX_FRAME_BYTES);

/// A failed frame exchange.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The socket failed.
    #[error("data connection: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent bytes that are not a frame.
    #[error("data connection: {0}")]
    Frame(#[from] FrameError),
    /// The peer closed the connection.
    #[error("data connection closed by the peer")]
    Closed,
}

/// Reads frames from a stream.
#[derive(Debug)]
pub struct FrameReader {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl FrameReader {
    /// Reads from `stream`, returning `Ok(None)` from [`FrameReader::read_frame`] when nothing
    /// complete arrived within `poll` (None: block).
    pub fn new(stream: TcpStream, poll: Option<Duration>) -> std::io::Result<Self> {
        stream.set_read_timeout(poll)?;
        Ok(FrameReader {
            stream,
            buf: vec![0; MAX_FRAME_BYTES],
            start: 0,
            end: 0,
        })
    }

    /// The next frame, or `None` if the poll interval passed first.
    pub fn read_frame(&mut self) -> Result<Option<Frame<'_>>, WireError> {
        loop {
            if let Some(len) = frame::frame_len(&self.buf[self.start..self.end], MAX_FRAME_BYTES)? {
                if self.end - self.start >= len {
                    let at = self.start;
                    self.start += len;
                    return Ok(Some(frame::decode(&self.buf[at..at + len])?));
                }
            }
            if self.start > 0 && self.end == self.buf.len() || self.start == self.end {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(WireError::Closed),
                Ok(n) => self.end += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(None)
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Writes frames to a stream.
#[derive(Debug)]
pub struct FrameWriter {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl FrameWriter {
    /// Writes to `stream` (no delay: frames are whole when written).
    pub fn new(stream: TcpStream) -> std::io::Result<Self> {
        stream.set_nodelay(true)?;
        Ok(FrameWriter {
            stream,
            buf: Vec::with_capacity(1024),
        })
    }

    /// Encodes and sends one frame.
    pub fn send(&mut self, frame: &Frame<'_>) -> Result<(), WireError> {
        self.buf.clear();
        frame::encode(frame, &mut self.buf);
        self.stream.write_all(&self.buf)?;
        Ok(())
    }

    /// Sends bytes that already are a whole frame.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Closes both directions (wakes a reader blocked on the other half).
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}
