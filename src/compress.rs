//! Record compression (cargo feature `compression`): [`Compression`], the
//! appender-side [`Compressor`] with its back-off, and [`record_payload`],
//! which every read path uses to turn a record frame into its payload.
//!
//! Appenders compress on their own thread *before* they reserve space in
//! the log buffer: nothing here runs under the log buffer's lock. A record
//! is stored compressed only when that saves at least an eighth of it;
//! after incompressible records the compressor stops trying for a while
//! (longer each time a probe fails again), so random payloads cost little
//! more than the attempts it still makes.

use std::path::Path;
#[cfg(feature = "compression")]
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::format::{self, FrameView, KIND_COMPRESSED};
use crate::{Error, Lsn, Result};

/// How a journal compresses the records it appends
/// ([`JournalOptions::compression`](crate::JournalOptions::compression)).
/// Records are always *read* whatever this says: a journal may hold plain
/// and compressed records side by side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Store every record as given (the default).
    #[default]
    None,
    /// LZ4 (block format), per record, for records of at least
    /// [`compression_min_bytes`](crate::JournalOptions::compression_min_bytes).
    /// Needs the `compression` cargo feature; without it `Journal::open`
    /// returns [`Error::Unsupported`].
    Lz4,
}

/// Consecutive incompressible records before the compressor backs off.
#[cfg(feature = "compression")]
const MISSES_BEFORE_BACKOFF: u32 = 8;
/// Records stored plain without an attempt after the first back-off (in
/// log bytes: this many frames of the record that missed); the span
/// doubles each time the probe after it fails too, up to the maximum.
#[cfg(feature = "compression")]
const BACKOFF_MIN: u32 = 16;
#[cfg(feature = "compression")]
const BACKOFF_MAX: u32 = 1024;
#[cfg(feature = "compression")]
const _: () = assert!(BACKOFF_MIN > 0 && BACKOFF_MIN <= BACKOFF_MAX);

/// Decides, record by record, whether to store it compressed, and
/// compresses it. Shared by every appender of a journal: its counters are
/// a heuristic, so relaxed atomics (and the odd lost update) are fine.
#[cfg(feature = "compression")]
#[derive(Debug)]
pub(crate) struct Compressor {
    min_bytes: usize,
    /// Incompressible records in a row (reset by a compressible one).
    misses: AtomicU32,
    /// No attempt until the log reaches this LSN: while backing off, an
    /// append costs one load (the LSN comes from the log buffer's mirror).
    resume_at: AtomicU64,
    /// The current back-off span, in records (0 when not backing off).
    span: AtomicU32,
}

#[cfg(feature = "compression")]
impl Compressor {
    /// `None` when `how` stores records plain.
    pub(crate) fn new(how: Compression, min_bytes: usize) -> Option<Compressor> {
        match how {
            Compression::None => None,
            Compression::Lz4 => Some(Compressor {
                min_bytes: min_bytes.max(1),
                misses: AtomicU32::new(0),
                resume_at: AtomicU64::new(0),
                span: AtomicU32::new(0),
            }),
        }
    }

    /// The payload of a `KIND_COMPRESSED` frame for `payload`, or `None`
    /// to store it plain (too small, backing off, or not worth it). `lsn`
    /// is about where the log ends now (a relaxed read will do).
    pub(crate) fn compress(&self, payload: &[u8], lsn: u64) -> Option<Vec<u8>> {
        if payload.len() < self.min_bytes || lsn < self.resume_at.load(Relaxed) {
            return None;
        }
        // Worth storing only if it saves an eighth of the record, header
        // included. (The encoder wants room for its worst case.)
        let room = (payload.len() - payload.len() / 8).checked_sub(format::COMPRESSED_HEADER_LEN)?;
        let mut out =
            vec![0u8; format::COMPRESSED_HEADER_LEN + lz4_flex::block::get_maximum_output_size(payload.len())];
        match lz4_flex::block::compress_into(payload, &mut out[format::COMPRESSED_HEADER_LEN..]) {
            Ok(n) if n < room => {
                format::encode_compressed_header(&mut out, format::CODEC_LZ4, payload.len());
                out.truncate(format::COMPRESSED_HEADER_LEN + n);
                self.misses.store(0, Relaxed);
                self.span.store(0, Relaxed);
                Some(out)
            }
            _ => {
                self.missed(payload.len(), lsn);
                None
            }
        }
    }

    /// An attempt did not pay: after enough of them (or at once, when the
    /// attempt was the probe after a back-off) skip the next ones.
    fn missed(&self, len: usize, lsn: u64) {
        let span = self.span.load(Relaxed);
        if span == 0 && self.misses.fetch_add(1, Relaxed) + 1 < MISSES_BEFORE_BACKOFF {
            return;
        }
        let next = span.saturating_mul(2).clamp(BACKOFF_MIN, BACKOFF_MAX);
        self.misses.store(0, Relaxed);
        self.span.store(next, Relaxed);
        let bytes = u64::from(next) * format::frame_len(len) as u64;
        self.resume_at.store(lsn.saturating_add(bytes), Relaxed);
    }
}

/// `Compression` asked for by options, checked at open: without the
/// feature nothing can compress.
pub(crate) fn check_available(how: Compression) -> Result<()> {
    if how == Compression::None || cfg!(feature = "compression") {
        return Ok(());
    }
    Err(Error::Unsupported(format!(
        "Compression::{how:?} needs tidelog's `compression` cargo feature, which this build lacks"
    )))
}

/// The payload of the record frame `frame` of the segment at `path`:
/// its bytes, or for a compressed record its decompressed bytes.
///
/// A compressed record whose bytes do not decompress to the length its
/// header gives is [`Error::Corrupt`] (its CRC held, so the writer wrote
/// it so). A build without the `compression` feature, or a codec this
/// version does not know, is [`Error::Unsupported`] naming the file and LSN.
pub(crate) fn record_payload(frame: &FrameView<'_>, path: &Path) -> Result<Vec<u8>> {
    if frame.kind != KIND_COMPRESSED {
        return Ok(frame.payload.to_vec());
    }
    let lsn = Lsn::new(frame.start_lsn);
    let packed = format::decode_compressed(frame.payload).map_err(|why| Error::corrupt(path, lsn, why))?;
    if packed.codec != format::CODEC_LZ4 {
        return Err(Error::Unsupported(format!(
            "{} at LSN {lsn}: a record compressed with codec {} unknown to this version",
            path.display(),
            packed.codec
        )));
    }
    decompress_lz4(&packed, path, lsn)
}

#[cfg(feature = "compression")]
fn decompress_lz4(packed: &format::Compressed<'_>, path: &Path, lsn: Lsn) -> Result<Vec<u8>> {
    let mut out = vec![0u8; packed.raw_len];
    match lz4_flex::block::decompress_into(packed.body, &mut out) {
        Ok(n) if n == packed.raw_len => Ok(out),
        Ok(n) => Err(Error::corrupt(
            path,
            lsn,
            format!("compressed record decompresses to {n} bytes, its header says {}", packed.raw_len),
        )),
        Err(e) => Err(Error::corrupt(path, lsn, format!("compressed record does not decompress: {e}"))),
    }
}

#[cfg(not(feature = "compression"))]
fn decompress_lz4(_: &format::Compressed<'_>, path: &Path, lsn: Lsn) -> Result<Vec<u8>> {
    Err(Error::Unsupported(format!(
        "{} at LSN {lsn}: an LZ4-compressed record; reading it needs tidelog's `compression` cargo feature",
        path.display()
    )))
}

#[cfg(all(test, feature = "compression"))]
mod tests {
    use super::*;

    fn text(len: usize) -> Vec<u8> {
        b"{\"event\":\"click\",\"page\":\"/home\"}\n".iter().copied().cycle().take(len).collect()
    }

    fn noise(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    fn view(payload: &[u8]) -> FrameView<'_> {
        FrameView { start_lsn: 64, kind: KIND_COMPRESSED, flags: 0, payload }
    }

    #[test]
    fn compressible_records_round_trip_and_small_ones_stay_plain() {
        let c = Compressor::new(Compression::Lz4, 256).unwrap();
        let input = text(4096);
        let packed = c.compress(&input, 0).expect("text compresses");
        assert!(packed.len() < input.len() / 4, "{} bytes", packed.len());
        assert_eq!(record_payload(&view(&packed), Path::new("seg")).unwrap(), input);
        assert!(c.compress(&text(255), 0).is_none(), "below the minimum");
    }

    #[test]
    fn random_records_make_the_compressor_back_off_and_probe_again() {
        let c = Compressor::new(Compression::Lz4, 1).unwrap();
        let frame = format::frame_len(4096) as u64;
        let mut lsn = 0u64;
        let mut attempts = 0;
        for i in 0..2000u64 {
            attempts += u32::from(lsn >= c.resume_at.load(Relaxed));
            assert!(c.compress(&noise(4096, i + 1), lsn).is_none());
            lsn += frame; // stored plain
        }
        // 8 misses, then spans of 16, 32, ..., 1024 with one probe each.
        assert!(attempts <= MISSES_BEFORE_BACKOFF + 8, "{attempts} attempts on 2000 random records");
        // Compressible records come back after the span: a probe succeeds
        // and the compressor stops backing off.
        let mut hits = 0;
        for _ in 0..=BACKOFF_MAX {
            let packed = c.compress(&text(4096), lsn);
            hits += usize::from(packed.is_some());
            lsn += packed.map_or(frame, |p| format::frame_len(p.len()) as u64);
        }
        assert!(hits >= 1);
        assert_eq!(c.span.load(Relaxed), 0);
        assert!(c.compress(&text(4096), lsn).is_some());
    }

    #[test]
    fn bad_compressed_payloads_are_corrupt_not_panics() {
        let c = Compressor::new(Compression::Lz4, 1).unwrap();
        let good = c.compress(&text(4096), 0).unwrap();
        let mut wrong_len = good.clone();
        wrong_len[4..8].copy_from_slice(&4000u32.to_le_bytes());
        let mut garbage = good.clone();
        for b in &mut garbage[format::COMPRESSED_HEADER_LEN..] {
            *b = 0xFF;
        }
        let truncated = good[..good.len() / 2].to_vec();
        for bad in [wrong_len, garbage, truncated, good[..3].to_vec()] {
            match record_payload(&view(&bad), Path::new("seg")) {
                Err(Error::Corrupt { lsn, .. }) => assert_eq!(lsn, Lsn::new(64)),
                other => panic!("expected Corrupt, got {other:?}"),
            }
        }
        let mut unknown = good.clone();
        unknown[0] = 9;
        assert!(matches!(record_payload(&view(&unknown), Path::new("seg")), Err(Error::Unsupported(_))));
    }
}
