//! Test seams and the test suite's view of the machine. Not a stable API:
//! it may change in any release. Nothing in the library imports this
//! module: it wraps the library's seams from outside.
//!
//! - [`Seams`] opens a journal whose file operations and substrate are
//!   wrapped: by a [`Recorder`] (what reaches the OS, for crash-state
//!   enumeration) and by a [`FaultPlan`] (injected failures and delays).
//!   The wrappers compose; with neither, the journal is the one
//!   `Journal::open` makes.
//! - [`skip`] decides every skip of the suite: a test (or one cell of it)
//!   that cannot run here says why, on the terminal even when the test
//!   passes, and fails instead when `TIDELOG_REQUIRE` asks for what is
//!   missing (`all`, or a comma-separated list of [`Capability`] names).

mod faults;
mod machine;
mod recorder;

use std::path::Path;
use std::sync::Arc;

pub use faults::FaultPlan;
pub use machine::{capability_report, required, skip, Capability};
pub use recorder::{Event, FileId, Listing, Recorded, Recorder};

use crate::journal::Hooks;
use crate::storage::{OsStorage, Storage};
use crate::substrate::Backend;
use crate::{Journal, JournalOptions, Result};

/// The chunk a backup paces its copy in by default (bytes).
pub const BACKUP_PACED_CHUNK: u64 = crate::backup::PACED_CHUNK;

/// How backups copy onto the journal's device: `Some(bytes)` paced in
/// chunks of about that size (the default: [`BACKUP_PACED_CHUNK`]), `None`
/// unpaced, as before pacing. For benchmarks comparing copies in one run;
/// process-wide.
pub fn set_backup_pacing(chunk_bytes: Option<u64>) {
    crate::backup::set_paced_chunk(chunk_bytes);
}

/// The seams a journal is opened with: see the module docs.
#[derive(Debug, Clone, Default)]
pub struct Seams {
    recorder: Option<Arc<Recorder>>,
    faults: Option<Arc<FaultPlan>>,
}

impl Seams {
    /// No seams: what `Journal::open` does.
    pub fn new() -> Seams {
        Seams::default()
    }

    /// Record what reaches the OS into `rec`.
    pub fn record(mut self, rec: &Arc<Recorder>) -> Seams {
        self.recorder = Some(rec.clone());
        self
    }

    /// Inject what `plan` says (it can be changed while the journal runs).
    pub fn faults(mut self, plan: &Arc<FaultPlan>) -> Seams {
        self.faults = Some(plan.clone());
        self
    }

    /// Opens the journal in `dir` with these seams. Faults act on what the
    /// journal is told; the recorder sees what reached the OS (so an op a
    /// fault failed before it happened is not recorded).
    pub async fn open(&self, dir: impl AsRef<Path>, opts: JournalOptions) -> Result<Journal> {
        let mut storage: Arc<dyn Storage> = Arc::new(OsStorage);
        if let Some(rec) = &self.recorder {
            storage = Arc::new(recorder::RecordingStorage { inner: storage, rec: rec.clone() });
        }
        if let Some(plan) = &self.faults {
            storage = Arc::new(faults::FaultStorage { inner: storage, plan: plan.clone() });
        }
        let (rec, plan) = (self.recorder.clone(), self.faults.clone());
        let wrap = move |mut backend: Box<dyn Backend>, direct: bool| -> Box<dyn Backend> {
            if let Some(rec) = rec {
                backend = Box::new(recorder::RecordingBackend::new(backend, rec));
            }
            if let Some(plan) = plan {
                backend = Box::new(faults::FaultBackend::new(backend, plan, direct));
            }
            backend
        };
        Journal::open_with(dir.as_ref(), opts, Hooks { storage, wrap_backend: Some(Box::new(wrap)) }).await
    }

    /// [`open`](Self::open), as [`Streams`](crate::Streams).
    pub async fn open_streams(&self, dir: impl AsRef<Path>, opts: JournalOptions) -> Result<crate::Streams> {
        crate::Streams::over(self.open(dir, opts).await?).await
    }
}

/// Fuzz entry (`fuzz/`, property tests): decodes `bytes` as a frame at
/// the LSN its own header claims and at zero. Must never panic; a frame
/// it accepts must re-encode to exactly the bytes it was decoded from.
pub fn fuzz_frame(bytes: &[u8]) {
    use crate::format::{decode_frame, encode_frame};
    // Frames are only ever decoded at aligned LSNs.
    let align = crate::format::FRAME_ALIGN as u64;
    let claimed = bytes.get(8..16).map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    for lsn in [claimed / align * align, 0] {
        if let Ok(view) = decode_frame(bytes, lsn) {
            let mut again = vec![0u8; view.len()];
            encode_frame(&mut again, lsn, view.kind, view.flags, view.payload);
            assert_eq!(again, bytes[..view.len()], "an accepted frame re-encodes to its bytes");
        }
    }
}

/// Fuzz entry: decodes `bytes` as a segment header block. Must never
/// panic; a header it accepts must re-encode to the same block.
pub fn fuzz_segment_header(bytes: &[u8]) {
    use crate::format::{decode_segment_header, encode_segment_header};
    if let Ok(header) = decode_segment_header(bytes) {
        // The fields (60 bytes) and their checksum; the rest of the block is not read.
        let again = encode_segment_header(&header);
        assert_eq!(again[..64], bytes[..64], "an accepted header re-encodes to its bytes");
    }
}
