//! Scanning a segment file: frames through a read-ahead window
//! ([`FrameCursor`]), the end of its valid frames ([`scan_segment`]), and
//! where its non-zero bytes end ([`nonzero_extent`]). Shared by recovery,
//! readers and `verify`.

use std::fs::File;
use std::path::Path;

use super::cursor::{FrameCursor, Step};
use crate::format::{Units, UnknownRequired, KIND_COMPRESSED};
use crate::storage::os;
use crate::{Error, Lsn, Result};

/// The outcome of scanning one segment from its base.
#[derive(Debug)]
pub(crate) struct Scan {
    /// End of the last complete record or batch.
    pub(crate) end: u64,
    /// Where scanning stopped (end of a dropped partial batch, or `end`).
    pub(crate) stop: u64,
    pub(crate) records: u64,
    pub(crate) unknown_required: Option<u8>,
    /// The first record whose payload does not decode (a compressed
    /// record that does not decompress), when asked to check payloads.
    pub(crate) undecodable: Option<Error>,
}

/// Scans the segment in `file` (based at `base`) from its base to its
/// first invalid frame. With `check_payloads`, compressed records are
/// decompressed too: the first that fails is kept in `undecodable` (its
/// frame is valid, so the scan goes on), and a build that cannot
/// decompress one fails the scan with `Error::Unsupported`.
pub(crate) fn scan_segment(file: &File, base: u64, path: &Path, check_payloads: bool) -> Result<Scan> {
    scan_segment_to(file, base, path, u64::MAX, check_payloads)
}

/// [`scan_segment`], reading nothing at or beyond LSN `bound` (a live
/// segment's frontier: what lies past it may be mid-write).
pub(crate) fn scan_segment_to(file: &File, base: u64, path: &Path, bound: u64, check_payloads: bool) -> Result<Scan> {
    let mut cursor = FrameCursor::new(base);
    let mut units = Units::default();
    let (mut pos, mut end, mut records) = (base, base, 0u64);
    let mut undecodable = None;
    loop {
        let step = cursor.step(file, pos, bound).map_err(|e| Error::io_at("read segment", path, Lsn::new(pos), e))?;
        let Step::Frame(frame) = step else { break };
        let fed = match units.feed(frame.kind, frame.flags) {
            Ok(fed) => fed,
            Err(UnknownRequired(kind)) => {
                return Ok(Scan { end, stop: pos, records, unknown_required: Some(kind), undecodable })
            }
        };
        if check_payloads && fed.record && frame.kind == KIND_COMPRESSED && undecodable.is_none() {
            match crate::compress::record_payload(&frame, path) {
                Ok(_) => {}
                Err(e @ Error::Corrupt { .. }) => undecodable = Some(e),
                Err(e) => return Err(e),
            }
        }
        pos = frame.end_lsn();
        if fed.unit_ends {
            end = pos;
            records += fed.unit_records;
        }
    }
    Ok(Scan { end, stop: pos, records, unknown_required: None, undecodable })
}

/// Bytes from `from` to the last non-zero byte before `len`.
pub(crate) fn nonzero_extent(file: &File, from: u64, len: u64) -> std::io::Result<u64> {
    // Without read-ahead, the pages a read brings in are only the ones it
    // asked for; the next SEEK_DATA then skips preallocated zeros instead
    // of finding read-ahead pages there (and reading the whole segment).
    os::advise_random(file, true);
    let result = scan_nonzero(file, from, len);
    os::advise_random(file, false);
    result
}

fn scan_nonzero(file: &File, from: u64, len: u64) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 1 << 20];
    let mut last = from;
    let mut off = from;
    while off < len {
        // Skip holes and unwritten (preallocated) extents: they read as zeros.
        match os::next_data(file, off)? {
            Some(data) if data < len => off = data,
            Some(_) | None => break,
        }
        // End each read on a page boundary: a partly read page is cached,
        // and SEEK_DATA from inside it would report data there, chaining
        // reads through every preallocated zero.
        let end = ((off + buf.len() as u64) & !4095).max(off + 1).min(len);
        let want = (end - off) as usize;
        let n = file.read_at(&mut buf[..want], off)?;
        if n == 0 {
            break;
        }
        if let Some(i) = last_nonzero(&buf[..n]) {
            last = off + i as u64 + 1;
        }
        off += n as u64;
    }
    Ok(last - from)
}

/// Index of the last non-zero byte. This runs over whole preallocated
/// segments: all-zero blocks are skipped by comparing against zeros (a
/// memcmp), and only the last block with data is searched byte by byte.
fn last_nonzero(bytes: &[u8]) -> Option<usize> {
    const BLOCK: usize = 4096;
    static ZEROS: [u8; BLOCK] = [0; BLOCK];
    let mut end = bytes.len();
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let block = &bytes[start..end];
        if block != &ZEROS[..block.len()] {
            return block.iter().rposition(|&b| b != 0).map(|i| start + i);
        }
        end = start;
    }
    None
}

#[cfg(all(test, tidelog_linux))]
mod tests {
    #[test]
    fn last_nonzero_finds_the_last_set_byte_at_every_position() {
        for len in [0usize, 1, 7, 8, 9, 4095, 4096, 4097, 9000] {
            assert_eq!(super::last_nonzero(&vec![0u8; len]), None);
            for at in (0..len).filter(|at| len < 100 || at % 97 == 0 || at + 2 >= len || at % 4096 < 2) {
                let mut bytes = vec![0u8; len];
                bytes[at] = 1;
                if at > 0 {
                    bytes[0] = 2;
                }
                assert_eq!(super::last_nonzero(&bytes), Some(at), "len {len}, set at {at}");
            }
        }
    }

    use std::os::unix::fs::FileExt;

    use super::nonzero_extent;
    use crate::storage::os;

    /// Bytes this thread has read through read syscalls (`rchar`).
    fn thread_rchar() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").expect("/proc/thread-self/io");
        io.lines().find_map(|l| l.strip_prefix("rchar: ")).expect("rchar").trim().parse().expect("number")
    }

    /// The scan past a torn tail must not read a preallocated segment's
    /// zeros: a read that ended inside a page left that page cached,
    /// SEEK_DATA then reported data there, and the chain of reads went on
    /// to the end of the file.
    #[test]
    fn scanning_past_the_tail_skips_preallocated_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let file =
            std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(dir.path().join("seg")).unwrap();
        let len = 64u64 << 20;
        os::allocate(&file, len).unwrap();
        if os::next_data(&file, 1 << 20).unwrap().is_some_and(|d| d < len) {
            let why = "this filesystem reports preallocated extents as data to SEEK_DATA";
            crate::testing::skip(crate::testing::Capability::SeekData, "the scan past a torn tail", why);
            return;
        }
        let data = vec![0xA5u8; 150_001];
        file.write_all_at(&data, 0).unwrap();
        // Torn bytes a little past the end of the valid frames.
        file.write_all_at(b"torn", 150_001 + 100).unwrap();
        // A reader has been here before: cache the pages around the tail.
        let mut buf = vec![0u8; 1 << 20];
        file.read_at(&mut buf, 123).unwrap();

        let before = thread_rchar();
        let tail = nonzero_extent(&file, 150_001, len).unwrap();
        let read = thread_rchar() - before;
        assert_eq!(tail, 104, "up to the last non-zero byte");
        assert!(read <= 4 << 20, "read {read} bytes of a {len}-byte preallocated file");
    }
}
