//! [`IoFile`]: a file the substrate writes and syncs, with the extra open
//! file descriptions that let syncs overlap.

use std::fs::File;
use std::path::PathBuf;

/// A file ops are submitted against. Ops hold it through an `Arc`, so it
/// stays open until every op on it has completed.
#[derive(Debug)]
pub(crate) struct IoFile {
    /// Names the file in errors and tells files apart in test seams (a
    /// segment's base LSN).
    pub(crate) key: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    /// Further open file descriptions of the same file, one for each sync
    /// that may run beside another. The kernel reports a writeback error
    /// once per open file description (errseq), so two concurrent
    /// `fdatasync`s on one description could split an error between them:
    /// the one whose range failed might return success. On descriptions of
    /// their own, each sees every error since its previous sync.
    lanes: Vec<File>,
}

impl IoFile {
    /// `file`, with up to `more_lanes` further descriptions for syncs that
    /// may run beside another. Fewer lanes only means fewer overlapping
    /// syncs, so failing to open one is logged, not returned.
    pub(crate) fn new(key: u64, path: PathBuf, file: File, more_lanes: usize) -> IoFile {
        let mut lanes = Vec::with_capacity(more_lanes);
        while lanes.len() < more_lanes {
            match File::open(&path) {
                Ok(lane) => lanes.push(lane),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot open a second sync lane");
                    break;
                }
            }
        }
        IoFile { key, path, file, lanes }
    }

    /// How many syncs may run on this file at once.
    pub(crate) fn sync_lanes(&self) -> usize {
        1 + self.lanes.len()
    }

    /// The descriptor sync lane `lane` uses (0 is the one writes use).
    pub(crate) fn sync_fd(&self, lane: usize) -> &File {
        lane.checked_sub(1).and_then(|i| self.lanes.get(i)).unwrap_or(&self.file)
    }
}
