//! [`FrameCursor`]: reads frames of one segment file through a read-ahead
//! window. Shared by recovery, readers and `verify` (through `scan`).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::format::{self, FrameError, FrameView};

const READ_AHEAD: usize = 1 << 20;

/// What lies at a position.
#[derive(Debug)]
pub(crate) enum Step<'a> {
    Frame(FrameView<'a>),
    /// The file (or the limit) ends exactly here.
    End,
    /// The file ends inside a frame.
    Torn,
    /// The bytes here are not a frame at this LSN.
    Invalid(&'static str),
}

#[derive(Debug)]
pub(crate) struct FrameCursor {
    pub(crate) base: u64,
    /// Read buffer; only `buf[..filled]` holds file bytes. It keeps its
    /// length between refills, so refilling never zeroes it again.
    buf: Vec<u8>,
    filled: usize,
    buf_lsn: u64,
}

impl FrameCursor {
    pub(crate) fn new(base: u64) -> FrameCursor {
        FrameCursor { base, buf: Vec::new(), filled: 0, buf_lsn: base }
    }

    /// Makes `[lsn, lsn + want)` resident if the file (and `limit`) has it;
    /// returns how many bytes from `lsn` are resident.
    fn fill(&mut self, file: &File, lsn: u64, want: usize, limit: u64) -> io::Result<usize> {
        let resident_end = self.buf_lsn + self.filled as u64;
        if lsn >= self.buf_lsn && lsn + want as u64 <= resident_end {
            return Ok((resident_end - lsn) as usize);
        }
        let span = (limit - lsn).min(want.max(READ_AHEAD) as u64) as usize;
        if self.buf.len() < span {
            self.buf = vec![0; span];
        }
        self.filled = 0;
        self.buf_lsn = lsn;
        let offset = format::file_offset(self.base, lsn);
        let mut got = 0;
        while got < span {
            match file.read_at(&mut self.buf[got..span], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.filled = got;
        Ok(got)
    }

    /// Decodes the frame at `lsn`, reading no byte at or beyond `limit`.
    pub(crate) fn step(&mut self, file: &File, lsn: u64, limit: u64) -> io::Result<Step<'_>> {
        if lsn >= limit {
            return Ok(Step::End);
        }
        let have = self.fill(file, lsn, format::FRAME_HEADER_LEN, limit)?;
        if have == 0 {
            return Ok(Step::End);
        }
        let at = (lsn - self.buf_lsn) as usize;
        // The header alone: cheap checks, and the frame's full length.
        let header_end = at + have.min(format::FRAME_HEADER_LEN);
        let needed = match format::decode_frame(&self.buf[at..header_end], lsn) {
            Ok(_) => format::FRAME_HEADER_LEN,
            Err(FrameError::Invalid(why)) => return Ok(Step::Invalid(why)),
            Err(FrameError::Truncated { needed }) => needed,
        };
        if have < needed {
            let have = self.fill(file, lsn, needed, limit)?;
            if have < needed {
                let past_limit = limit != u64::MAX && lsn + needed as u64 > limit;
                return Ok(if past_limit {
                    Step::Invalid("frame extends past the end of its segment")
                } else {
                    Step::Torn
                });
            }
        }
        let at = (lsn - self.buf_lsn) as usize;
        Ok(match format::decode_frame(&self.buf[at..at + needed], lsn) {
            Ok(view) => Step::Frame(view),
            Err(FrameError::Invalid(why)) => Step::Invalid(why),
            Err(FrameError::Truncated { .. }) => Step::Torn,
        })
    }
}
